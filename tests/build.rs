//! `husk build` against the fixture images, as unprivileged users (with and without
//! subordinate ids) and as root: every instruction kind, multi-stage builds, .dockerignore,
//! the cache, errors, the sandbox; the images it makes are run by `husk run` and read by
//! independent tools (skopeo inspect and umoci unpack of the store's OCI layout).
mod common;
use common::reg;

use common::{ensure_prereqs, shared_registry, Husk, Output, TempDir, TestUser};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn setup(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    Husk::new(user)
}

/// A build context any test user can read: `files` are (path, content) pairs.
fn context(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("build-ctx");
    for (path, content) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }
    open_up(dir.path());
    dir
}

/// chmod a+rX, recursively.
fn open_up(p: &Path) {
    let st = Command::new("chmod").arg("-R").arg("a+rX").arg(p).status().unwrap();
    assert!(st.success());
}

fn build(h: &Husk, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let d = dir.to_str().unwrap();
    args.push(d);
    h.run(&args)
}

/// The image id a successful build printed last.
#[track_caller]
fn built_id(out: &Output) -> String {
    out.assert_ok();
    let id = out.stdout.lines().last().unwrap_or("").trim().to_string();
    assert_eq!(id.len(), 64, "the last line is the image id: {out:?}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{out:?}");
    id
}

fn skopeo(args: &[&str]) -> Value {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The image's config and `skopeo inspect` summary, read from the store's OCI layout.
fn inspect(h: &Husk, name: &str) -> (Value, Value) {
    let reference = format!("oci:{}:{}", h.store().display(), name);
    (skopeo(&["inspect", "--config", "--raw", &reference]), skopeo(&["inspect", &reference]))
}

fn layer_dirs(h: &Husk) -> usize {
    fs::read_dir(h.store().join("layers")).map(|rd| rd.count()).unwrap_or(0)
}

fn containers(h: &Husk) -> usize {
    h.container_entries().len()
}

fn run_in(h: &Husk, opts: &[&str], image: &str, script: &str) -> String {
    let mut args = vec!["run", "--rm", "--network", "none", "--entrypoint", ""];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[image, "sh", "-c", script]);
    let out = h.run(&args);
    out.assert_ok();
    out.stdout
}

const ALL_KINDS: &str = r#"
# every instruction kind
ARG BASE
FROM ${BASE} AS base
LABEL stage=base
SHELL ["/bin/sh", "-c"]
ARG GREETING=hello
ENV APP_HOME=/srv/app \
    MODE=test
WORKDIR $APP_HOME
RUN echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \
 && echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd \
 && echo 'root:x:0:' > /etc/group && echo 'staff:x:50:' >> /etc/group
RUN echo "$GREETING from $MODE" > greeting.txt && mkdir -p /to-remove && touch /to-remove/x
COPY --chown=app:staff --chmod=640 conf/app.conf ./conf/
COPY data/ /data/
ADD bundle.tar.gz /opt/bundle/
COPY <<EOT /etc/motd
inline ${MODE}
EOT
RUN rm -rf /to-remove
USER app
EXPOSE 8080 53/udp
VOLUME ["/var/cache/app"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=3 CMD ["true"]
ONBUILD RUN echo child
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting.txt"]
"#;

fn all_kinds_context() -> TempDir {
    let dir = context(&[
        ("Dockerfile", ALL_KINDS),
        ("conf/app.conf", "port=8080\n"),
        ("data/a.txt", "A\n"),
        ("data/sub/b.txt", "B\n"),
    ]);
    // A gzip tar for ADD, made by tar(1).
    let src = dir.path().join("bundle-src");
    fs::create_dir_all(src.join("lib")).unwrap();
    fs::write(src.join("lib/tool.sh"), "echo tool\n").unwrap();
    fs::set_permissions(src.join("lib/tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("tar")
        .arg("-czf")
        .arg(dir.path().join("bundle.tar.gz"))
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    fs::remove_dir_all(&src).unwrap();
    open_up(dir.path());
    dir
}

fn every_instruction_kind(user: TestUser) {
    let h = setup(user);
    let ctx = all_kinds_context();
    let base = reg("busybox:latest");
    let out = build(&h, ctx.path(), &["-t", "kinds:1", "--build-arg", &format!("BASE={base}"), "--network", "none"]);
    let id = built_id(&out);
    assert!(out.stdout.contains("STEP 1/21: FROM ${BASE} AS base"), "{out:?}");
    assert!(out.stdout.contains("STEP 21/21: CMD [\"cat greeting.txt\"]"), "{out:?}");
    assert_eq!(containers(&h), 0, "RUN containers are removed");

    // The image runs: config defaults, files, owners as the image sees them.
    // Without subordinate ids only root is mapped: the image's USER app cannot run.
    let as_user: &[&str] = if user == TestUser::NoSub { &["-u", "0"] } else { &[] };
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(as_user);
    args.push("kinds:1");
    assert_eq!(h.run(&args).assert_ok().stdout, "hello from test\n");
    let seen = run_in(
        &h,
        as_user,
        "kinds:1",
        "id -u; pwd; cat /etc/motd /data/a.txt /data/sub/b.txt; /opt/bundle/lib/tool.sh; \
         stat -c '%u:%g %a' conf/app.conf; test -e /to-remove && echo still there; echo $MODE",
    );
    let (uid, owner) = if user == TestUser::NoSub { ("0", "0:0") } else { ("1000", "1000:50") };
    assert_eq!(seen, format!("{uid}\n/srv/app\ninline test\nA\nB\ntool\n{owner} 640\ntest\n"), "{seen}");

    // Independent readers: skopeo and umoci.
    let (config, summary) = inspect(&h, "docker.io/library/kinds:1");
    let reference = format!("oci:{}:docker.io/library/kinds:1", h.store().display());
    let manifest = skopeo(&["inspect", "--raw", &reference]);
    assert_eq!(manifest["config"]["digest"], format!("sha256:{id}"), "the printed id is the config digest");
    let c = &config["config"];
    assert_eq!(c["User"], "app");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat greeting.txt"]));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Labels"]["stage"], "base");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some() && c["ExposedPorts"].get("53/udp").is_some(), "{c}");
    assert!(c["Volumes"].get("/var/cache/app").is_some(), "{c}");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-c"]));
    let env: Vec<&str> = c["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(env.contains(&"APP_HOME=/srv/app") && env.contains(&"MODE=test"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("GREETING=")), "build args stay out of the config: {env:?}");
    // Layers: busybox + 2 RUN + 4 COPY/ADD + RUN rm = 8; history: one entry a step, the
    // config-only ones marked empty_layer, as Docker writes them.
    let layers = summary["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 8, "{summary}");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 8);
    let history = config["history"].as_array().unwrap();
    let ours: Vec<&Value> = history.iter().skip(1).collect();
    assert_eq!(ours.len(), 20, "{history:?}");
    let with_layer: Vec<&str> = ours
        .iter()
        .filter(|e| e.get("empty_layer") != Some(&Value::Bool(true)))
        .map(|e| e["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(with_layer.len(), 7, "{with_layer:?}");
    assert!(with_layer[1].starts_with("RUN |1 GREETING=hello /bin/sh -c echo \"$GREETING"), "{with_layer:?}");
    assert!(with_layer[2].starts_with("COPY --chown=app:staff"), "{with_layer:?}");
    assert!(ours.iter().any(|e| e["created_by"] == "ENV APP_HOME=/srv/app MODE=test"), "{history:?}");

    if common::is_root() {
        let un = TempDir::new("build-umoci");
        let bundle = un.path().join("bundle");
        let st = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:docker.io/library/kinds:1", h.store().display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(st.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&st.stderr));
        let root = bundle.join("rootfs");
        assert_eq!(fs::read_to_string(root.join("srv/app/greeting.txt")).unwrap(), "hello from test\n");
        assert!(!root.join("to-remove").exists(), "the whiteout of RUN rm hides the directory");
        let conf = fs::metadata(root.join("srv/app/conf/app.conf")).unwrap();
        assert_eq!(conf.mode() & 0o7777, 0o640);
        assert_eq!((conf.uid(), conf.gid()), (1000, 50), "--chown is in the layer whatever the user");
        assert_eq!(fs::metadata(root.join("opt/bundle/lib/tool.sh")).unwrap().mode() & 0o777, 0o755);
    }
}

#[test]
fn every_instruction_kind_sub() {
    every_instruction_kind(TestUser::Sub);
}

#[test]
fn every_instruction_kind_nosub() {
    every_instruction_kind(TestUser::NoSub);
}

#[test]
fn every_instruction_kind_root() {
    every_instruction_kind(TestUser::Root);
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    let h = setup(TestUser::Sub);
    let df = format!(
        "FROM {bb} AS unused\nRUN exit 7\n\
         FROM {bb} AS builder\nRUN mkdir -p /out && echo artifact > /out/bin.txt && ln -s bin.txt /out/link\n\
         FROM scratch AS assets\nCOPY --from=builder /out/ /assets/\n\
         FROM {bb} AS final\nCOPY --from=assets /assets/bin.txt /app/\nCOPY --from=1 /out/link /app/followed\n\
         COPY --from={bb} /bin/busybox /app/busybox-copy\nCMD [\"cat\", \"/app/bin.txt\"]\n\
         FROM final AS extra\nRUN exit 9\n",
        bb = reg("busybox:latest")
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let out = build(&h, ctx.path(), &["--target", "final", "-t", "ms", "--network", "none"]);
    built_id(&out);
    assert!(!out.stdout.contains("exit 7") && !out.stdout.contains("exit 9"), "unneeded stages are skipped: {out:?}");
    let seen = run_in(&h, &[], "ms", "cat /app/bin.txt /app/followed; cmp /bin/busybox /app/busybox-copy && echo same");
    assert_eq!(seen, "artifact\nartifact\nsame\n");
    assert_eq!(h.run(&["run", "--rm", "--network", "none", "ms"]).assert_ok().stdout, "artifact\n");
    // The scratch stage holds exactly what was copied into it.
    let out = build(&h, ctx.path(), &["--target", "assets", "-t", "assets", "--network", "none"]);
    built_id(&out);
    let (config, summary) = inspect(&h, "docker.io/library/assets:latest");
    assert_eq!(summary["Layers"].as_array().unwrap().len(), 1, "{summary}");
    assert_eq!(config["history"].as_array().unwrap().len(), 1, "{config}");
}

#[test]
fn dockerignore_and_globs_choose_the_sources() {
    let h = setup(TestUser::NoSub);
    let df =
        format!("FROM {}\nCOPY . /ctx/\nCOPY *.txt notes/n?.md /globbed/\nCMD [\"true\"]\n", reg("busybox:latest"));
    let ctx = context(&[
        ("Dockerfile", &df),
        (".dockerignore", "# comment\n*.log\n!keep.log\nsecret\nnotes/private*\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("drop.log", "x\n"),
        ("keep.log", "k\n"),
        ("secret/key", "s\n"),
        ("notes/n1.md", "n1\n"),
        ("notes/private.md", "p\n"),
    ]);
    built_id(&build(&h, ctx.path(), &["-t", "ign", "--network", "none"]));
    let seen = run_in(&h, &[], "ign", "cd /ctx && find . -type f | sort; ls /globbed");
    assert_eq!(
        seen, "./.dockerignore\n./Dockerfile\n./a.txt\n./b.txt\n./keep.log\n./notes/n1.md\na.txt\nb.txt\nn1.md\n",
        "{seen}"
    );
}

#[test]
fn cache_hits_and_partial_rebuilds() {
    let h = setup(TestUser::Sub);
    let df = format!(
        "FROM {}\nRUN echo one > /one\nCOPY first.txt /first.txt\nRUN cat /first.txt > /copy-of-first\n\
         COPY second.txt /second.txt\nRUN cat /proc/sys/kernel/random/uuid > /stamp\nCMD [\"cat\", \"/second.txt\"]\n",
        reg("busybox:latest")
    );
    let ctx = context(&[("Dockerfile", &df), ("first.txt", "1\n"), ("second.txt", "2\n")]);
    let first = built_id(&build(&h, ctx.path(), &["-t", "cached", "--network", "none"]));
    let layers = layer_dirs(&h);
    let stamp = run_in(&h, &[], "cached", "cat /stamp");

    // Nothing changed: every step from the cache, the same image, no new layer (its
    // speed is bench/build.sh's). A changed mtime is not a change.
    let st = Command::new("touch").arg(ctx.path().join("first.txt")).status().unwrap();
    assert!(st.success());
    let again = build(&h, ctx.path(), &["-t", "cached", "--network", "none"]);
    assert_eq!(built_id(&again), first);
    assert_eq!(again.stdout.matches("--> Using cache").count(), 6, "{again:?}");
    assert_eq!(layer_dirs(&h), layers);

    // One COPY source changed: the steps before it come from the cache, it and every
    // later step run again.
    fs::write(ctx.path().join("second.txt"), "two\n").unwrap();
    let partial = build(&h, ctx.path(), &["-t", "cached", "--network", "none"]);
    let second = built_id(&partial);
    assert_ne!(second, first);
    assert_eq!(partial.stdout.matches("--> Using cache").count(), 3, "{partial:?}");
    assert_eq!(run_in(&h, &[], "cached", "cat /second.txt"), "two\n");
    assert_ne!(run_in(&h, &[], "cached", "cat /stamp"), stamp, "the RUN after the change ran again");
    assert_eq!(layer_dirs(&h), layers + 2);

    // --no-cache runs everything; a build arg in use changes the key of the steps after it.
    let fresh = build(&h, ctx.path(), &["--no-cache", "--network", "none"]);
    built_id(&fresh);
    assert_eq!(fresh.stdout.matches("--> Using cache").count(), 0, "{fresh:?}");
}

#[test]
fn build_errors_name_the_line() {
    let h = setup(TestUser::NoSub);
    let bb = reg("busybox:latest");
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("FROM {bb}\nFROBNICATE x\n"), "Dockerfile:2:", "unknown instruction"),
        ("RUN true\n".to_string(), "Dockerfile:1:", "FROM"),
        (format!("FROM {bb}\n\nCOPY missing.txt /x\n"), "Dockerfile:3:", "missing.txt"),
        (format!("FROM {bb}\nCOPY --chown=nobody-here Dockerfile /x\n"), "Dockerfile:2:", "nobody-here"),
        (format!("FROM {bb}\nCOPY Dockerfile Dockerfile /x\n"), "Dockerfile:2:", "must be a directory"),
        (format!("FROM {bb}\nADD http://127.0.0.1:1/x /x\n"), "Dockerfile:2:", "URL"),
        (format!("FROM {bb}\nCOPY --from=nosuchstage-image:latest /x /x\n"), "Dockerfile:2:", "nosuchstage"),
    ];
    for (df, at, cause) in cases {
        let ctx = context(&[("Dockerfile", &df)]);
        let out = build(&h, ctx.path(), &["-q"]);
        let line = out.error_line(&df);
        assert!(line.contains(at) && line.contains(cause), "{df:?}: {line}");
    }
    // A failing RUN: its own status, like podman, and the line.
    let ctx = context(&[("Dockerfile", &format!("FROM {bb}\nRUN echo visible; exit 3\n"))]);
    let out = build(&h, ctx.path(), &["--network", "none"]);
    assert_eq!(out.status, 3, "{out:?}");
    assert!(out.stdout.contains("visible"), "{out:?}");
    assert!(out.stderr.contains("Dockerfile:2: RUN echo visible; exit 3: returned a non-zero code: 3"), "{out:?}");
    assert_eq!(containers(&h), 0, "the failed step's container is removed");
    // With -q the output of the failed step is shown, nothing else.
    let out = build(&h, ctx.path(), &["-q", "--network", "none"]);
    assert_eq!(out.status, 3, "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.contains("visible"), "{out:?}");
}

#[test]
fn steps_cannot_reach_the_context_or_the_host() {
    let h = setup(TestUser::Sub);
    let ctx = context(&[("data.txt", "original\n")]);
    let c = ctx.path().display().to_string();
    let df = format!(
        "FROM {}\nRUN echo changed > {c}/data.txt; touch {c}/new; ls {c} || true\nRUN ls /etc/shadow /root 2>&1 || true\n\
         COPY link-out /x\n",
        reg("busybox:latest")
    );
    fs::write(ctx.path().join("Dockerfile"), &df).unwrap();
    // A symlink in the context that points at a host file is never followed out of it.
    std::os::unix::fs::symlink("/etc/hostname", ctx.path().join("link-out")).unwrap();
    open_up(ctx.path());
    let out = build(&h, ctx.path(), &["--network", "none"]);
    assert_eq!(fs::read_to_string(ctx.path().join("data.txt")).unwrap(), "original\n");
    assert!(!ctx.path().join("new").exists());
    assert_eq!(out.status, 125, "{out:?}");
    let line = out.stderr.lines().last().unwrap_or("");
    assert!(line.contains("Dockerfile:4:") && line.contains("link-out"), "{out:?}");
}

#[test]
fn context_from_stdin_and_quiet() {
    let h = setup(TestUser::NoSub);
    let df = format!("FROM {}\nCOPY hello.txt /\nCMD [\"cat\", \"/hello.txt\"]\n", reg("busybox:latest"));
    let ctx = context(&[("Dockerfile", &df), ("hello.txt", "from a tar\n")]);
    let tar = Command::new("tar").arg("-cf").arg("-").arg("-C").arg(ctx.path()).arg(".").output().unwrap();
    assert!(tar.status.success());
    let out = h.run_stdin(&["build", "-q", "-t", "stdin-ctx", "-"], &tar.stdout);
    let id = built_id(&out);
    assert_eq!(out.stdout, format!("{id}\n"), "-q prints only the id");
    assert_eq!(h.run(&["run", "--rm", "--network", "none", "stdin-ctx"]).assert_ok().stdout, "from a tar\n");
    // A lone Dockerfile on stdin: no context.
    let lone = format!("FROM {}\nRUN echo lone > /lone\n", reg("busybox:latest"));
    let out = h.run_stdin(&["build", "-q", "--network", "none", "-t", "lone", "-"], lone.as_bytes());
    built_id(&out);
    assert_eq!(run_in(&h, &[], "lone", "cat /lone"), "lone\n");
}

#[test]
fn interrupted_run_leaves_no_container() {
    let h = setup(TestUser::Sub);
    let ctx = context(&[("Dockerfile", &format!("FROM {}\nRUN echo started; sleep 60\n", reg("busybox:latest")))]);
    let mut cmd = h.cmd(&["build", "--network", "none", ctx.path().to_str().unwrap()]);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers(&h) == 0 {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // Ctrl-C: the terminal signals the whole foreground process group.
    // SAFETY: kill(2) touches no memory.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "husk build did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(containers(&h), 0, "the step's container is removed");
    assert!(h.leftover_processes().is_empty());
}
