//! Volumes: `husk volume create|ls|inspect|rm|prune`, `-v NAME:/path[:ro]`, anonymous
//! volumes (`-v /path`, the image's VOLUME entries), `rm -v`, `--mount`, filling new
//! volumes from the image with its owners, and symlinks in the image that must not
//! send a volume anywhere else. As unprivileged users with and without subordinate ids.
mod common;
use common::reg;

use common::{ensure_prereqs, rootless_owner_map, shared_registry, Husk, Output, TestUser};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const BUSYBOX: &str = "busybox:latest";
const DEBIAN: &str = "debian:bookworm";
/// busybox + /data/hello (1000:1000), config Volumes ["/data"].
const VOLUME: &str = "volume:latest";
const EVIL_LINKS: &str = "evil-links:latest";

fn setup(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    Husk::new(user)
}

/// `husk run -q OPTS... IMAGE CMD...`
fn run(h: &Husk, opts: &[&str], image: &str, cmd: &[&str]) -> Output {
    let image = reg(image);
    let mut a: Vec<&str> = vec!["run", "-q"];
    a.extend(opts);
    a.push(&image);
    a.extend(cmd);
    h.run(&a)
}

/// `husk run -q --rm OPTS... busybox sh -c SCRIPT`, checked, its stdout.
#[track_caller]
fn sh_ok(h: &Husk, opts: &[&str], script: &str) -> String {
    let mut o = vec!["--rm"];
    o.extend(opts);
    let out = run(h, &o, BUSYBOX, &["sh", "-c", script]);
    out.assert_ok();
    out.stdout
}

fn volume_names(h: &Husk) -> BTreeSet<String> {
    let out = h.run(&["volume", "ls", "-q"]);
    out.assert_ok();
    out.stdout.lines().map(String::from).collect()
}

fn data_dir(h: &Husk, name: &str) -> PathBuf {
    h.store().join("volumes").join(name).join("_data")
}

fn is_anonymous_name(n: &str) -> bool {
    n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A name for host-side markers that no other test (or test process) uses.
fn unique(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("husk-test-{label}-{}-{}-{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------

fn data_outlives_the_container(user: TestUser) {
    let h = setup(user);
    sh_ok(&h, &["-v", "keep:/data"], "echo persisted > /data/f; mkdir /data/sub; echo deep > /data/sub/g");
    assert!(volume_names(&h).contains("keep"), "created on first use");
    assert_eq!(fs::read_to_string(data_dir(&h, "keep").join("f")).unwrap(), "persisted\n");
    let out = sh_ok(&h, &["-v", "keep:/elsewhere"], "cat /elsewhere/f /elsewhere/sub/g");
    assert_eq!(out, "persisted\ndeep\n", "a second container sees the data");
}

#[test]
fn data_outlives_the_container_with_subids() {
    data_outlives_the_container(TestUser::Sub);
}

#[test]
fn data_outlives_the_container_without_subids() {
    data_outlives_the_container(TestUser::NoSub);
}

#[test]
fn read_only_volumes() {
    let h = setup(TestUser::Sub);
    sh_ok(&h, &["-v", "ro1:/d"], "echo x > /d/f");
    for opts in [&["-v", "ro1:/d:ro"][..], &["--mount", "type=volume,source=ro1,target=/d,readonly"][..]] {
        let out = sh_ok(
            &h,
            opts,
            "cat /d/f; echo y > /d/f 2>/dev/null && echo WROTE; touch /d/new 2>/dev/null && echo MADE; true",
        );
        assert_eq!(out, "x\n", "{opts:?}: the volume is read-only");
    }
    assert_eq!(fs::read_to_string(data_dir(&h, "ro1").join("f")).unwrap(), "x\n");
}

fn new_volume_gets_the_image_content(user: TestUser) {
    let h = setup(user);
    let map = rootless_owner_map(user);
    // The volume fixture: /data/hello is 1000:1000.
    let out =
        run(&h, &["--rm", "-v", "filled:/data"], VOLUME, &["sh", "-c", "cat /data/hello; stat -c %u:%g /data/hello"]);
    out.assert_ok();
    let inside = if user == TestUser::Sub { "1000:1000" } else { "0:0" };
    assert_eq!(out.stdout, format!("hello\n{inside}\n"), "{out:?}");
    let md = fs::metadata(data_dir(&h, "filled").join("hello")).unwrap();
    let (hu, hg) = map(1000, 1000).unwrap_or(user.ids());
    assert_eq!((md.uid(), md.gid()), (hu, hg), "owner on the host");

    // Debian: /etc/apt's content, and /var/mail (root:mail 2775) gives the volume its owner and mode.
    let out = run(
        &h,
        &["--rm", "-v", "apt:/etc/apt", "-v", "mail:/var/mail"],
        DEBIAN,
        &["sh", "-c", "ls /etc/apt; stat -c '%u:%g %a' /var/mail"],
    );
    out.assert_ok();
    assert!(out.stdout.contains("apt.conf.d\n") && out.stdout.contains("sources.list"), "{out:?}");
    let mail = if user == TestUser::Sub { "0:8 2775" } else { "0:0 2775" };
    assert!(out.stdout.ends_with(&format!("{mail}\n")), "{out:?}");
    assert!(data_dir(&h, "apt").join("apt.conf.d").is_dir());
    let md = fs::metadata(data_dir(&h, "mail")).unwrap();
    assert_eq!(md.gid(), map(0, 8).map(|m| m.1).unwrap_or(user.gid()), "group of the volume on the host");
    assert_eq!(md.mode() & 0o7777, 0o2775);
}

#[test]
fn new_volume_gets_the_image_content_with_subids() {
    new_volume_gets_the_image_content(TestUser::Sub);
}

#[test]
fn new_volume_gets_the_image_content_without_subids() {
    new_volume_gets_the_image_content(TestUser::NoSub);
}

#[test]
fn a_volume_with_content_is_not_overwritten() {
    let h = setup(TestUser::Sub);
    run(&h, &["--rm", "-v", "mine:/data"], VOLUME, &["sh", "-c", "rm /data/hello; echo mine > /data/mine"]).assert_ok();
    let out = run(&h, &["--rm", "-v", "mine:/data"], VOLUME, &["ls", "/data"]);
    out.assert_ok();
    assert_eq!(out.stdout, "mine\n", "{out:?}");
    // nocopy: a new volume stays empty.
    let out = run(&h, &["--rm", "-v", "bare:/data:nocopy"], VOLUME, &["ls", "-A", "/data"]);
    out.assert_ok();
    assert_eq!(out.stdout, "", "{out:?}");
}

#[test]
fn ls_inspect_and_create() {
    let h = setup(TestUser::Sub);
    for n in ["alpha", "beta"] {
        let out = h.run(&["volume", "create", n]);
        out.assert_ok();
        assert_eq!(out.stdout, format!("{n}\n"));
    }
    h.run(&["volume", "create", "alpha"]).assert_ok(); // exists already: no error, as Docker
    let out = h.run(&["volume", "create"]);
    out.assert_ok();
    let random = out.stdout.trim().to_string();
    assert!(is_anonymous_name(&random), "{out:?}");
    assert_eq!(volume_names(&h), BTreeSet::from(["alpha".to_string(), "beta".into(), random.clone()]));

    let out = h.run(&["volume", "ls"]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("DRIVER") && lines[0].contains("VOLUME NAME"), "{out:?}");
    assert!(lines.iter().any(|l| l.starts_with("local") && l.ends_with(" alpha")), "{out:?}");
    assert_eq!(lines.len(), 4, "{out:?}");

    let out = h.run(&["volume", "ls", "--format", "json"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    let names: BTreeSet<&str> = v.as_array().unwrap().iter().map(|e| e["Name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["alpha", "beta", random.as_str()]));
    assert!(v.as_array().unwrap().iter().all(|e| e["Driver"] == "local" && e["Scope"] == "local"), "{v}");

    let out = h.run(&["volume", "inspect", "alpha", "beta"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let a = &v[0];
    assert_eq!(a["Name"], "alpha");
    assert_eq!(a["Driver"], "local");
    assert_eq!(a["Scope"], "local");
    assert_eq!(a["Labels"], serde_json::json!({}));
    assert_eq!(Path::new(a["Mountpoint"].as_str().unwrap()), data_dir(&h, "alpha"));
    assert!(a["CreatedAt"].as_str().unwrap().starts_with("20"), "{a}");
    assert!(data_dir(&h, "alpha").is_dir());

    let line = h.run(&["volume", "inspect", "nope"]).status;
    assert_eq!(line, 125);
    for bad in ["a", "-x", "a/b", "../up"] {
        let out = h.run(&["volume", "create", "--", bad]);
        let line = out.error_line(bad);
        assert!(line.contains("invalid volume name"), "{line}");
    }
}

#[test]
fn rm_is_refused_while_a_container_uses_the_volume() {
    let h = setup(TestUser::Sub);
    let out = h.run(&["create", "-q", "--name", "user1", "-v", "busy:/d", &reg(BUSYBOX), "true"]);
    out.assert_ok();
    let out = h.run(&["volume", "rm", "busy"]);
    let line = out.error_line("rm of a volume in use");
    assert!(line.contains("in use") && line.contains("user1"), "{line}");
    assert!(volume_names(&h).contains("busy"));
    // -f removes it anyway.
    let out = h.run(&["volume", "rm", "-f", "busy"]);
    out.assert_ok();
    assert_eq!(out.stdout, "busy\n");
    assert!(!volume_names(&h).contains("busy"));
    assert!(!h.store().join("volumes/busy").exists());

    // Once the container is gone, a plain rm works; files of other owners go too.
    h.run(&["create", "-q", "--name", "user2", "-v", "busy2:/d", &reg(BUSYBOX), "true"]).assert_ok();
    run(
        &h,
        &["--rm", "-v", "busy2:/d"],
        BUSYBOX,
        &["sh", "-c", "mkdir /d/sub; echo x > /d/sub/f; chown -R 1000:1000 /d/sub; chmod 755 /d/sub"],
    )
    .assert_ok();
    h.run(&["rm", "user2"]).assert_ok();
    let out = h.run(&["volume", "rm", "busy2"]);
    out.assert_ok();
    assert!(volume_names(&h).is_empty(), "{:?}", volume_names(&h));
    assert_eq!(h.run(&["volume", "rm", "busy2"]).status, 125, "no such volume");
    h.run(&["volume", "rm", "-f", "busy2"]).assert_ok();
}

#[test]
fn prune_removes_unused_anonymous_volumes_or_all_unused_with_a() {
    let h = setup(TestUser::Sub);
    h.run(&["volume", "create", "named1"]).assert_ok();
    h.run(&["create", "-q", "--name", "holder", "-v", "used:/d", &reg(BUSYBOX), "true"]).assert_ok();
    // An anonymous volume whose container was removed without -v.
    h.run(&["create", "-q", "--name", "anon", "-v", "/scratch", &reg(BUSYBOX), "true"]).assert_ok();
    let anon: Vec<String> = volume_names(&h).into_iter().filter(|n| is_anonymous_name(n)).collect();
    assert_eq!(anon.len(), 1, "-v /scratch made one anonymous volume");
    h.run(&["rm", "anon"]).assert_ok();
    assert!(volume_names(&h).contains(&anon[0]), "rm without -v keeps it");

    let out = h.run(&["volume", "prune", "-f"]);
    out.assert_ok();
    assert!(out.stdout.contains(&anon[0]) && out.stdout.contains("Total reclaimed space"), "{out:?}");
    assert_eq!(volume_names(&h), BTreeSet::from(["named1".to_string(), "used".into()]));

    let out = h.run(&["volume", "prune", "-f", "-a"]);
    out.assert_ok();
    assert!(out.stdout.contains("named1"), "{out:?}");
    assert_eq!(volume_names(&h), BTreeSet::from(["used".to_string()]), "in use: kept");
}

#[test]
fn anonymous_volumes_from_the_image_and_rm_v() {
    let h = setup(TestUser::Sub);
    let out = run(&h, &["--name", "c1"], VOLUME, &["sh", "-c", "cat /data/hello; echo more > /data/more"]);
    out.assert_ok();
    assert_eq!(out.stdout, "hello\n", "the image's VOLUME is filled from the image");
    let names = volume_names(&h);
    assert_eq!(names.len(), 1, "{names:?}");
    let anon = names.into_iter().next().unwrap();
    assert!(is_anonymous_name(&anon));
    assert_eq!(fs::read_to_string(data_dir(&h, &anon).join("more")).unwrap(), "more\n");
    let out = h.run(&["volume", "inspect", &anon]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v[0]["Labels"], serde_json::json!({"com.docker.volume.anonymous": ""}));
    let out = h.run(&["inspect", "c1"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mounts = v[0]["Mounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["Type"] == "volume" && m["Name"] == anon.as_str() && m["Destination"] == "/data"),
        "{v}"
    );

    h.run(&["rm", "-v", "c1"]).assert_ok();
    assert!(volume_names(&h).is_empty(), "rm -v removes the anonymous volume");

    // A named volume at the image's VOLUME path replaces the anonymous one; rm -v keeps named ones.
    run(&h, &["--name", "c2", "-v", "named:/data", "-v", "/extra"], VOLUME, &["true"]).assert_ok();
    let names = volume_names(&h);
    assert_eq!(names.len(), 2, "named + the one for -v /extra: {names:?}");
    h.run(&["rm", "-v", "c2"]).assert_ok();
    assert_eq!(volume_names(&h), BTreeSet::from(["named".to_string()]));

    // A tmpfs at the image's VOLUME path: no volume.
    run(&h, &["--rm", "--tmpfs", "/data"], VOLUME, &["true"]).assert_ok();
    assert_eq!(volume_names(&h), BTreeSet::from(["named".to_string()]));

    // --rm removes anonymous volumes too, as Docker's.
    run(&h, &["--rm", "-v", "/x"], VOLUME, &["true"]).assert_ok();
    assert_eq!(volume_names(&h), BTreeSet::from(["named".to_string()]));
}

#[test]
fn mount_flag_variants_and_errors() {
    let h = setup(TestUser::Sub);
    let dir = h.home.join("bind-src");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("payload"), "payload\n").unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let bind = format!("type=bind,source={},target=/h,readonly", dir.display());
    let out = sh_ok(
        &h,
        &["--mount", &bind, "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m", "--mount", "type=volume,src=mv,destination=/m"],
        "cat /h/payload; touch /h/x 2>/dev/null && echo BIND-WRITABLE; grep -c ' /t tmpfs ' /proc/mounts; echo v > /m/f",
    );
    assert_eq!(out, "payload\n1\n", "bind ro, tmpfs mounted");
    assert_eq!(fs::read_to_string(data_dir(&h, "mv").join("f")).unwrap(), "v\n");
    // Without a source: an anonymous volume.
    run(&h, &["--rm", "--mount", "type=volume,target=/anon"], BUSYBOX, &["true"]).assert_ok();

    for (bad, want) in [
        (vec!["--mount", "type=bind,target=/d"], "source is required"),
        (vec!["--mount", "type=bind,source=/nonexistent-husk-src,target=/d"], "/nonexistent-husk-src"),
        (vec!["--mount", "type=nfs,target=/d"], "not bind, volume or tmpfs"),
        (vec!["--mount", "type=volume,source=x1"], "target is required"),
        (vec!["--mount", "type=volume,source=a/b,target=/d"], "invalid volume name"),
        (vec!["--mount", "type=volume,target=/d,colour=blue"], "unknown option"),
        (vec!["--mount", "type=tmpfs,source=x,target=/d"], "no source"),
        (vec!["--mount", "type=volume,target=relative"], "must be absolute"),
        (vec!["-v", "x:/d"], "invalid volume name"),
        (vec!["-v", "vol1:/d:rx"], "unknown option"),
        (vec!["-v", "vol1:/"], "cannot be /"),
        (vec!["-v", "vol1:/proc/x"], "/proc"),
        (vec!["-v", "vol1:/d", "-v", "vol2:/d/"], "duplicate mount point"),
    ] {
        let mut opts = vec!["--rm"];
        opts.extend(&bad);
        let out = run(&h, &opts, BUSYBOX, &["true"]);
        let line = out.error_line(&format!("{bad:?}"));
        assert!(line.contains(want), "{bad:?}: {line}");
    }
    let left: Vec<String> = volume_names(&h).into_iter().filter(|n| !is_anonymous_name(n) && n != "mv").collect();
    assert!(left.is_empty(), "refused runs made no volumes: {left:?}");
}

/// evil-links has /evil -> /tmp and /evil-rel -> ../../../../tmp: a volume there lands
/// on the container's /tmp, and filling it never reads the host's /tmp.
fn symlinks_in_the_image_cannot_redirect_volumes(user: TestUser) {
    let h = setup(user);
    for link in ["evil", "evil-rel"] {
        let name = unique(link);
        let host_path = Path::new("/tmp").join(&name);
        let vol = format!("v-{link}");
        let out = run(
            &h,
            &["--rm", "-v", &format!("{vol}:/{link}/{name}")],
            EVIL_LINKS,
            &["sh", "-c", &format!("echo in > /tmp/{name}/f; grep -c ' /tmp/{name} ' /proc/self/mountinfo")],
        );
        let escaped = host_path.exists();
        let _ = fs::remove_dir_all(&host_path);
        assert!(!escaped, "{} was created on the host: {out:?}", host_path.display());
        out.assert_ok();
        assert_eq!(out.stdout, "1\n", "{out:?}");
        assert_eq!(fs::read_to_string(data_dir(&h, &vol).join("f")).unwrap(), "in\n");
    }
    // A volume at the link itself is filled from the image's /tmp, not the host's.
    let marker = Path::new("/tmp").join(unique("marker"));
    fs::write(&marker, "host\n").unwrap();
    let out = run(&h, &["--rm", "-v", "fill-evil:/evil-rel"], EVIL_LINKS, &["ls", "-A", "/tmp"]);
    let _ = fs::remove_file(&marker);
    out.assert_ok();
    let name = marker.file_name().unwrap().to_str().unwrap();
    assert!(!out.stdout.contains(name), "{out:?}");
    assert!(!data_dir(&h, "fill-evil").join(name).exists());
}

#[test]
fn symlinks_in_the_image_cannot_redirect_volumes_with_subids() {
    symlinks_in_the_image_cannot_redirect_volumes(TestUser::Sub);
}

#[test]
fn symlinks_in_the_image_cannot_redirect_volumes_without_subids() {
    symlinks_in_the_image_cannot_redirect_volumes(TestUser::NoSub);
}

#[test]
fn concurrent_runs_share_one_new_volume() {
    let h = setup(TestUser::Sub);
    h.run(&["pull", "-q", &reg(VOLUME)]).assert_ok();
    let image = reg(VOLUME);
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut c = h.cmd(&[
                "run",
                "-q",
                "--rm",
                "-v",
                "shared:/data",
                &image,
                "sh",
                "-c",
                &format!("echo {i} > /data/{i}"),
            ]);
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(volume_names(&h), BTreeSet::from(["shared".to_string()]));
    let mut entries: Vec<String> = fs::read_dir(data_dir(&h, "shared"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["0", "1", "2", "3", "hello"]);
    let left: Vec<_> =
        fs::read_dir(h.store().join("volumes/shared")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 2, "only _data and volume.json: {left:?}");
}

#[test]
fn create_then_start_keeps_using_the_volume() {
    let h = setup(TestUser::Sub);
    let image = reg(BUSYBOX);
    h.run(&["create", "-q", "--name", "again", "-v", "cs:/d", &image, "sh", "-c", "echo x >> /d/f"]).assert_ok();
    for _ in 0..2 {
        h.run(&["start", "-a", "again"]).assert_ok();
    }
    assert_eq!(fs::read_to_string(data_dir(&h, "cs").join("f")).unwrap(), "x\nx\n");
    h.run(&["rm", "-v", "again"]).assert_ok();
    assert_eq!(volume_names(&h), BTreeSet::from(["cs".to_string()]), "rm -v keeps named volumes");
}
