//! Hostile image configs (and the few layer entries they play with): a working
//! directory in /proc (`/proc/self/fd/N`, the CVE-2024-21626 shape, and other magic
//! links), users with ids over 2^32, at 2^32-1, negative or garbage, from an image
//! /etc/passwd that is a FIFO, huge, or reached through a symlink out of the image, an
//! environment of megabytes or with NUL bytes, and a rootfs whose /proc, /dev or /sys is
//! a symlink (out, or to a file) or no directory at all. The images are written by hand
//! (tests/common/hostile.rs) on busybox's layer and pushed with skopeo; husk pulls and
//! runs them as a user with and without subordinate ids.
//!
//! Every case ends in a clean refusal (exit 125, one line on stderr naming the thing
//! and the cause, no container left) or in a container that runs safely (what it prints
//! is checked); in every case nothing outside husk's store changes (the victim directory
//! the configs aim at, the user's HOME outside the store, the mounts under them).

mod common;

use common::hostile::{
    busybox_base, check_refusal, husk_for_cases, tar, ups, Header, ImageSpec, LayerBlob, Pushed, Results, Victim,
};
use common::{reg, Husk, TestUser};
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::Instant;

const REPO: &str = "hostile-configs";

enum Expect {
    /// `husk run` refuses with one line containing all these words (case-insensitive).
    Refused(Vec<String>),
    /// `husk run` runs the image's command (or `sh -c script` when one is given),
    /// which prints `stdout`.
    Runs { script: Option<String>, stdout: String },
}

struct Case {
    tag: String,
    shape: String,
    /// Extra layers on busybox's.
    layers: Vec<Vec<u8>>,
    /// The image config's `config` section.
    config: Value,
    /// Options for `husk run` before the image.
    opts: Vec<String>,
    expect: Expect,
}

fn refused(words: &[&str]) -> Expect {
    Expect::Refused(words.iter().map(|w| w.to_string()).collect())
}

fn runs(script: Option<&str>, stdout: &str) -> Expect {
    Expect::Runs { script: script.map(str::to_string), stdout: stdout.into() }
}

/// busybox's config section with `set` applied.
fn config(set: &[(&str, Value)]) -> Value {
    let mut c = busybox_base().config;
    for (k, v) in set {
        c[*k] = v.clone();
    }
    c
}

fn case(tag: &str, shape: &str, layers: Vec<Vec<u8>>, config: Value, expect: Expect) -> Case {
    Case { tag: tag.into(), shape: shape.into(), layers, config, opts: Vec::new(), expect }
}

/// An /etc/passwd and /etc/group (with `extra` passwd lines) in a layer.
fn passwd_layer(extra: &str) -> Vec<u8> {
    tar(|t| {
        t.dir("etc");
        t.file(
            "etc/passwd",
            format!("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n{extra}").as_bytes(),
        );
        t.file("etc/group", b"root:x:0:\napp:x:1000:\n");
    })
}

fn cases(v: &Victim) -> Vec<Case> {
    let va = v.abs();
    let mut out = Vec::new();
    // ---- working directories in /proc -----------------------------------------------
    for fd in 3..=9 {
        out.push(case(
            &format!("workdir-proc-self-fd-{fd}"),
            "WorkingDir /proc/self/fd/N: a descriptor husk might leak (CVE-2024-21626)",
            vec![],
            config(&[("WorkingDir", json!(format!("/proc/self/fd/{fd}")))]),
            // open in husk then (a magic link), or not (nothing to create there)
            refused(&[&format!("working directory /proc/self/fd/{fd}"), "magic link|ENOENT"]),
        ));
    }
    for (tag, dir, cause) in [
        ("workdir-proc-thread-self-fd", "/proc/thread-self/fd/3", "magic link"),
        ("workdir-proc-self-cwd", "/proc/self/cwd", "magic link"),
        ("workdir-proc-1-root", "/proc/1/root/tmp", "magic link"),
        ("workdir-proc-self-root-up", "/proc/self/root/../../..", "magic link"),
        ("workdir-proc-self-exe", "/proc/self/exe", "magic link"),
        ("workdir-proc-new-dir", "/proc/husk-new-dir", "ENOENT"),
        ("workdir-sys-new-dir", "/sys/fs/husk-new-dir", "EROFS"),
    ] {
        out.push(case(
            tag,
            "WorkingDir on a magic link of /proc, or where nothing can be made",
            vec![],
            config(&[("WorkingDir", json!(dir))]),
            refused(&[&format!("working directory {dir}"), cause]),
        ));
    }
    out.push(case(
        "workdir-symlink-to-proc-fd",
        "WorkingDir /work, a symlink in the image to /proc/self/fd/5",
        vec![tar(|t| {
            t.symlink("work", "/proc/self/fd/5");
        })],
        config(&[("WorkingDir", json!("/work"))]),
        refused(&["working directory /work", "magic link"]),
    ));
    out.push(case(
        "workdir-proc-self-fd-dir",
        "WorkingDir /proc/self/fd: a directory of the container's own procfs",
        vec![],
        config(&[("WorkingDir", json!("/proc/self/fd"))]),
        // The kernel names it by the container process's pid (1); ls, exec'd as pid 1,
        // lists its own descriptors there: 0-2 and the directory it reads, none leaked.
        runs(Some("pwd; exec ls"), "/proc/1/fd\n0\n1\n2\n3\n"),
    ));
    out.push(case(
        "workdir-through-symlink-out",
        "WorkingDir under a symlink to the victim (an absolute host path)",
        vec![tar(|t| {
            t.symlink("evil", &va);
        })],
        config(&[("WorkingDir", json!("/evil/made-by-husk"))]),
        runs(Some("pwd -P; touch here && echo touched"), &format!("{va}/made-by-husk\ntouched\n")),
    ));
    out.push(case(
        "workdir-nul",
        "a WorkingDir with a NUL byte",
        vec![],
        config(&[("WorkingDir", json!("/tmp\u{0}/../../x"))]),
        refused(&["working directory", "NUL"]),
    ));
    // ---- users -------------------------------------------------------------------------
    for (tag, user, words) in [
        ("user-2-32", "4294967296", &["4294967296", "unable to find user"][..]),
        ("user-minus-1", "-1", &["-1", "unable to find user"]),
        ("user-2-64", "99999999999999999999", &["99999999999999999999", "unable to find user"]),
        ("user-u32-max", "4294967295", &["4294967295", "not a valid id"]),
        ("group-2-32", "0:4294967296", &["4294967296", "unable to find group"]),
        ("group-u32-max", "0:4294967295", &["4294967295", "not a valid id"]),
        ("user-garbage", "0:ot:x", &["ot:x", "unable to find group"]),
        ("user-unmapped", "65537:65537", &["65537", "not mapped"]),
    ] {
        out.push(case(tag, "User out of range or garbage", vec![], config(&[("User", json!(user))]), refused(words)));
    }
    out.push(case(
        "passwd-uid-2-32",
        "User big, whose /etc/passwd line has uid 2^32",
        vec![passwd_layer("big:x:4294967296:0::/:/bin/sh\n")],
        config(&[("User", json!("big"))]),
        refused(&["/etc/passwd", "big", "4294967296", "not a valid id"]),
    ));
    out.push(case(
        "passwd-gid-negative",
        "User neg, whose /etc/passwd line has gid -1",
        vec![passwd_layer("neg:x:0:-1::/:/bin/sh\n")],
        config(&[("User", json!("neg"))]),
        refused(&["/etc/passwd", "neg", "-1", "not a valid id"]),
    ));
    out.push(case(
        "etc-symlink-out-user",
        "User evil, with /etc a symlink to the victim, which has a passwd naming evil",
        vec![tar(|t| {
            t.symlink("etc", &va);
        })],
        config(&[("User", json!("evil"))]),
        refused(&["evil", "unable to find user"]),
    ));
    out.push(case(
        "passwd-symlink-out-user",
        "User evil, with /etc/passwd a relative symlink climbing out to the victim's passwd",
        vec![tar(|t| {
            t.dir("etc");
            t.symlink("etc/passwd", &format!("{}{}/passwd", ups(12), v.rel()));
        })],
        config(&[("User", json!("evil"))]),
        refused(&["evil", "unable to find user"]),
    ));
    out.push(case(
        "passwd-fifo",
        "User app, with /etc/passwd a FIFO (a read would wait forever)",
        vec![tar(|t| {
            t.dir("etc");
            t.entry(Header::new(b'6', b"etc/passwd"), b"");
        })],
        config(&[("User", json!("app"))]),
        refused(&["app", "unable to find user"]),
    ));
    out.push(case(
        "passwd-40-mib",
        "User app, with an /etc/passwd of 40 MiB",
        vec![{
            let line = b"padding:x:1:1:a line to pad the file with:/nonexistent:/bin/false\n";
            let mut data = Vec::with_capacity(41 << 20);
            while data.len() < 40 << 20 {
                data.extend_from_slice(line);
            }
            data.extend_from_slice(b"app:x:1000:1000::/home/app:/bin/sh\n");
            tar(|t| {
                t.dir("etc");
                t.file("etc/passwd", &data);
            })
        }],
        config(&[("User", json!("app"))]),
        refused(&["/etc/passwd", "more than husk reads"]),
    ));
    // ---- environments ----------------------------------------------------------------
    out.push(case(
        "env-3-mib-variable",
        "one environment variable of 3 MiB",
        vec![],
        config(&[("Env", json!(["PATH=/bin:/usr/bin", format!("BIG={}", "b".repeat(3 << 20))]))]),
        refused(&["environment", "BIG", "too long"]),
    ));
    out.push(case(
        "env-60000-variables",
        "60000 environment variables, 3 MiB in all",
        vec![],
        config(&[(
            "Env",
            Value::Array(
                std::iter::once(json!("PATH=/bin:/usr/bin"))
                    .chain((0..60000).map(|i| json!(format!("V{i:05}={}", "v".repeat(44)))))
                    .collect(),
            ),
        )]),
        refused(&["environment", "arguments", "too long"]),
    ));
    out.push(case(
        "env-1-4-mib",
        "an environment of 1.4 MiB in 12 variables (within the kernel's limits)",
        vec![],
        config(&[(
            "Env",
            Value::Array(
                std::iter::once(json!("PATH=/bin:/usr/bin"))
                    .chain((0..12).map(|i| json!(format!("E{i:02}={}", "e".repeat(120 << 10)))))
                    .collect(),
            ),
        )]),
        runs(Some("env | grep -c '^E[0-9][0-9]=eeee'; echo \"$E11\" | wc -c"), "12\n122881\n"),
    ));
    out.push(case(
        "env-nul",
        "an environment variable with a NUL byte",
        vec![],
        config(&[("Env", json!(["PATH=/bin:/usr/bin", "LD_PRELOAD=/x\u{0}harmless"]))]),
        refused(&["LD_PRELOAD", "NUL"]),
    ));
    out.push(case(
        "cmd-nul",
        "a command argument with a NUL byte",
        vec![],
        config(&[("Cmd", json!(["/bin/echo", "ok\u{0}--evil"]))]),
        refused(&["argument", "NUL"]),
    ));
    // ---- /proc, /dev, /sys ----------------------------------------------------------------
    for (tag, name, target) in [
        ("proc-symlink-to-file", "proc", "/etc/hostname".to_string()),
        ("proc-symlink-to-victim", "proc", va.clone()),
        ("dev-symlink-relative-out", "dev", format!("{}tmp", ups(12))),
        ("dev-symlink-to-file", "dev", "/bin/busybox".to_string()),
        ("sys-symlink-to-victim", "sys", va.clone()),
    ] {
        out.push(case(
            tag,
            "/proc, /dev or /sys a symlink (out of the rootfs, or to a file)",
            vec![tar(|t| {
                t.symlink(name, &target);
            })],
            config(&[]),
            refused(&[&format!("/{name}"), "symlink"]),
        ));
    }
    for (tag, name, typ) in [
        ("proc-a-file", "proc", b'0'),
        ("dev-a-file", "dev", b'0'),
        ("proc-a-fifo", "proc", b'6'),
        ("sys-a-file", "sys", b'0'),
    ] {
        out.push(case(
            tag,
            "/proc, /dev or /sys a file or a FIFO",
            vec![tar(|t| {
                t.entry(Header::new(typ, name.as_bytes()), b"");
            })],
            config(&[]),
            refused(&[&format!("/{name}"), "not a directory"]),
        ));
    }
    out.push(case(
        "etc-hostname-into-proc",
        "/etc/hostname a symlink into /proc/sys (husk binds its hostname file there)",
        vec![tar(|t| {
            t.dir("etc");
            t.symlink("etc/hostname", "/proc/sys/kernel/hostname");
        })],
        config(&[]),
        refused(&["/etc/hostname", "resolves into /proc"]),
    ));
    out.push(case(
        "etc-hosts-to-magic-link",
        "/etc/hosts a symlink to /proc/self/fd/1 (a magic link)",
        vec![tar(|t| {
            t.dir("etc");
            t.symlink("etc/hosts", "/proc/self/fd/1");
        })],
        config(&[]),
        refused(&["/etc/hosts", "magic link"]),
    ));
    out
}

fn pushed() -> &'static Pushed<Case> {
    static P: OnceLock<Pushed<Case>> = OnceLock::new();
    P.get_or_init(|| {
        Pushed::new(REPO, cases, |c| ImageSpec {
            tag: c.tag.clone(),
            base: true,
            layers: c.layers.iter().map(|t| LayerBlob::gzip(t)).collect(),
            config: c.config.clone(),
            raw_config: None,
        })
    })
}

fn image(tag: &str) -> String {
    reg(&format!("{REPO}:{tag}"))
}

fn containers(h: &Husk) -> usize {
    h.container_entries().len()
}

fn run_case(h: &Husk, c: &Case) -> Result<String, String> {
    let img = image(&c.tag);
    let pull = h.run(&["pull", "-q", &img]);
    if !pull.success() {
        return Err(format!("the pull failed: {pull:?}"));
    }
    let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none"];
    args.extend(c.opts.iter().map(String::as_str));
    args.push(&img);
    if let Expect::Runs { script: Some(s), .. } = &c.expect {
        args.extend(["sh", "-c", s]);
    }
    let out = h.run(&args);
    let outcome = match &c.expect {
        Expect::Refused(words) => format!("refused: {}", check_refusal(&out, words)?),
        Expect::Runs { stdout, .. } => {
            if !out.success() || out.stdout != *stdout {
                return Err(format!("expected it to run and print {stdout:?}: {out:?}"));
            }
            "runs".to_string()
        }
    };
    if containers(h) != 0 {
        return Err(format!("--rm left {} container(s)", containers(h)));
    }
    h.run(&["rmi", &img]).assert_ok();
    Ok(outcome)
}

fn config_cases(user: TestUser) {
    let p = pushed();
    let h = husk_for_cases(user);
    let t = Instant::now();
    let mut results = Results::default();
    for c in &p.cases {
        results.case(&h, p.victim.path(), &c.tag, &c.shape, || run_case(&h, c));
    }
    assert!(h.leftover_processes().is_empty(), "processes left: {:?}", h.leftover_processes());
    let out = h.run(&["run", "--rm", "--network", "none", &reg("busybox:latest"), "echo", "still usable"]);
    out.assert_ok();
    assert_eq!(out.stdout, "still usable\n");
    results.report(&format!("hostile configs as {user:?}"), t.elapsed());
}

#[test]
fn hostile_configs_with_subids() {
    config_cases(TestUser::Sub);
}

#[test]
fn hostile_configs_without_subids() {
    config_cases(TestUser::NoSub);
}
