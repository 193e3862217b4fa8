//! Seccomp and privileges: Docker's default filter (what it denies fails with EPERM,
//! ordinary programs are unaffected), `--security-opt seccomp=unconfined`,
//! `seccomp=PROFILE.json` (Docker's format, enforced; malformed ones refused in one
//! line), `no-new-privileges`, `--privileged`, and the same filter for `start` and
//! `exec`.
mod common;
use common::reg;

use common::{ensure_prereqs, shared_registry, Husk, Output, TempDir, TestUser};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const BUSYBOX: &str = "busybox:latest";
const DEBIAN: &str = "debian:bookworm";

fn setup(user: TestUser, images: &[&str]) -> Husk {
    ensure_prereqs();
    shared_registry();
    let h = Husk::new(user);
    for i in images {
        h.run(&["pull", "-q", &reg(i)]).assert_ok();
    }
    h
}

/// `husk run --rm -q OPTS... IMAGE CMD...`
fn run(h: &Husk, opts: &[&str], image: &str, cmd: &[&str]) -> Output {
    let image = reg(image);
    let args: Vec<&str> = [&["run", "--rm", "-q"], opts, &[image.as_str()], cmd].concat();
    h.run(&args)
}

/// busybox `sh -c SCRIPT`, which must succeed; its stdout.
#[track_caller]
fn sh_ok(h: &Husk, opts: &[&str], script: &str) -> String {
    let out = run(h, opts, BUSYBOX, &["sh", "-c", script]);
    out.assert_ok();
    out.stdout
}

/// The value of a field of /proc/self/status as the script's shell sees it.
fn status_field(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {text:?}"))
        .trim()
        .to_string()
}

/// Perl (in Debian's base) makes raw system calls: prints "RESULT ERRNO-TEXT".
const SYSCALLS_PL: &str = r#"for $n (@ARGV) { $! = 0; $r = syscall($n, 0, 0, 0, 0, 0); print "$n $r $!\n" }"#;

/// A profile file husk-sub and husk-nosub can read.
struct Profile {
    _dir: TempDir,
    path: PathBuf,
}

fn profile(text: &str) -> Profile {
    let dir = TempDir::new("seccomp");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("profile.json");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    Profile { _dir: dir, path }
}

/// `--security-opt seccomp=FILE`
fn opt(p: &Profile) -> String {
    format!("seccomp={}", p.path.display())
}

/// A detached busybox container, removed on drop.
struct Detached<'a> {
    h: &'a Husk,
    name: String,
}

impl<'a> Detached<'a> {
    fn start(h: &'a Husk, name: &str, opts: &[&str]) -> Detached<'a> {
        let image = reg(BUSYBOX);
        let args: Vec<&str> = [&["run", "-d", "-q", "--name", name], opts, &[image.as_str(), "sleep", "600"]].concat();
        h.run(&args).assert_ok();
        Detached { h, name: name.to_string() }
    }

    #[track_caller]
    fn exec(&self, opts: &[&str], script: &str) -> Output {
        let args: Vec<&str> = [&["exec"], opts, &[self.name.as_str(), "sh", "-c", script]].concat();
        self.h.run(&args)
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = self.h.run(&["rm", "-f", &self.name]);
    }
}

const DENY_MKDIR: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "EACCES"}
    ]
}"#;

#[test]
fn the_default_filter_denies_what_docker_denies_with_eperm() {
    let h = setup(TestUser::Sub, &[BUSYBOX, DEBIAN]);
    let out = sh_ok(&h, &[], "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true 2>&1; echo rc=$?");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    // Docker's default does not set no_new_privs: setuid programs keep working
    assert_eq!(status_field(&out, "NoNewPrivs"), "0", "{out}");
    assert!(out.contains("Operation not permitted") && out.contains("rc=1"), "unshare -U: {out}");
    // keyctl (250), add_key (248), unshare (272), mount (165), setns (308) fail with
    // EPERM; clone3 (435) with ENOSYS so that the C library falls back to clone
    let out = run(&h, &[], DEBIAN, &["perl", "-e", SYSCALLS_PL, "250", "248", "272", "165", "308", "435"]);
    out.assert_ok();
    for nr in ["250", "248", "272", "165", "308"] {
        assert!(out.stdout.contains(&format!("{nr} -1 Operation not permitted")), "{nr}: {out:?}");
    }
    assert!(out.stdout.contains("435 -1 Function not implemented"), "{out:?}");
}

#[test]
fn ordinary_programs_are_unaffected() {
    for user in [TestUser::Sub, TestUser::NoSub] {
        let h = setup(user, &[BUSYBOX, DEBIAN]);
        let script = "set -e; ls / >/dev/null; cat /etc/passwd >/dev/null; ps >/dev/null; date >/dev/null; \
            mkdir -p /tmp/a/b; echo x > /tmp/a/b/f; cp /tmp/a/b/f /tmp/g; ln -s /tmp/g /tmp/l; rm -r /tmp/a; \
            sort /etc/passwd | wc -l >/dev/null; find /etc -name passwd | grep -q passwd; \
            sleep 0.1 & wait; (echo sub) | sed s/sub/shell/; hostname >/dev/null; id -u";
        let out = sh_ok(&h, &[], script);
        assert_eq!(out, "shell\n0\n");
        if user == TestUser::Sub {
            assert_eq!(sh_ok(&h, &["-u", "1000", "--init"], "touch /tmp/x && id -u"), "1000\n");
        }
        let out = run(&h, &[], DEBIAN, &["sh", "-c", "apt-get --version | head -1; dpkg -l | grep -c '^ii'"]);
        out.assert_ok();
        assert!(out.stdout.starts_with("apt "), "{out:?}");
        let packages: u32 = out.stdout.lines().nth(1).unwrap().trim().parse().unwrap();
        assert!(packages > 50, "{out:?}");
        // threads (clone with CLONE_THREAD...) and fork in perl
        let out = run(
            &h,
            &[],
            DEBIAN,
            &["perl", "-e", "$p = fork; if ($p) { waitpid($p, 0); print $? >> 8 } else { exit 7 }"],
        );
        assert_eq!(out.stdout, "7", "{out:?}");
    }
}

#[test]
fn unconfined_lifts_the_filter() {
    let h = setup(TestUser::Sub, &[BUSYBOX, DEBIAN]);
    let out = sh_ok(
        &h,
        &["--security-opt", "seccomp=unconfined"],
        "grep '^Seccomp:' /proc/self/status; unshare -U true && echo nested",
    );
    assert_eq!(status_field(&out, "Seccomp"), "0");
    assert!(out.contains("nested"), "a nested user namespace without the filter: {out}");
    let out = run(&h, &["--security-opt", "seccomp=unconfined"], DEBIAN, &["perl", "-e", SYSCALLS_PL, "250"]);
    assert!(!out.stdout.contains("Operation not permitted"), "{out:?}");
}

#[test]
fn a_docker_format_profile_is_accepted_and_enforced() {
    let h = setup(TestUser::Sub, &[BUSYBOX]);
    let p = profile(DENY_MKDIR);
    let out = sh_ok(&h, &["--security-opt", &opt(&p)], "mkdir /tmp/d 2>&1; echo rc=$?; unshare -U true && echo nested");
    // the profile replaces the default one: mkdir is denied, unshare allowed
    assert!(out.contains("Permission denied") && out.contains("rc=1"), "{out}");
    assert!(out.contains("nested"), "{out}");
    // husk's default profile, a file in Docker's format with includes/excludes, read from disk
    let p = profile(include_str!("../src/ns/seccomp/default.json"));
    let out = sh_ok(&h, &["--security-opt", &opt(&p)], "unshare -U true 2>&1; echo rc=$?; mkdir /tmp/d && echo made");
    assert!(out.contains("Operation not permitted") && out.contains("made"), "{out}");
    // `start` of a created container applies the profile stored in its config
    let out = h.run(&[
        "create",
        "-q",
        "--name",
        "made",
        "--security-opt",
        &opt(&profile(DENY_MKDIR)),
        &reg(BUSYBOX),
        "mkdir",
        "/d",
    ]);
    out.assert_ok();
    let out = h.run(&["start", "-a", "made"]);
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
    h.run(&["rm", "-f", "made"]).assert_ok();
}

#[test]
fn a_malformed_profile_is_refused_in_one_line() {
    let h = setup(TestUser::Sub, &[BUSYBOX]);
    for (text, want) in [
        ("{\"defaultAction\": ", "seccomp profile"),
        (r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#, "unknown variant"),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "not supported",
        ),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
            "unknown variant",
        ),
    ] {
        let p = profile(text);
        let out = run(&h, &["--security-opt", &opt(&p)], BUSYBOX, &["true"]);
        let line = out.error_line(text);
        assert!(line.contains(want) && line.contains("profile.json"), "{line}");
    }
    let out = run(&h, &["--security-opt", "seccomp=/nonexistent/profile.json"], BUSYBOX, &["true"]);
    assert!(out.error_line("missing profile").contains("/nonexistent/profile.json"));
    let out = run(&h, &["--security-opt", "apparmor=unconfined"], BUSYBOX, &["true"]);
    assert!(out.error_line("unknown option").contains("apparmor"));
    assert!(h.run(&["ps", "-a", "-q"]).stdout.trim().is_empty(), "nothing was created");
}

#[test]
fn exec_gets_the_containers_filter() {
    let h = setup(TestUser::Sub, &[BUSYBOX]);
    let c = Detached::start(&h, "confined", &[]);
    for opts in [&[][..], &["-u", "1000"]] {
        let out = c.exec(opts, "grep '^Seccomp:' /proc/self/status; unshare -U true 2>&1; echo rc=$?");
        out.assert_ok();
        assert_eq!(status_field(&out.stdout, "Seccomp"), "2", "{out:?}");
        assert!(out.stdout.contains("Operation not permitted"), "{out:?}");
    }
    let p = profile(DENY_MKDIR);
    let c = Detached::start(&h, "custom", &["--security-opt", &opt(&p)]);
    drop(p);
    let out = c.exec(&[], "mkdir /d 2>&1; echo rc=$?");
    assert!(out.stdout.contains("Permission denied"), "the profile is the container's, not re-read: {out:?}");
    let c = Detached::start(&h, "open", &["--security-opt", "seccomp=unconfined"]);
    assert_eq!(status_field(&c.exec(&[], "cat /proc/self/status").stdout, "Seccomp"), "0");
}

#[test]
fn no_new_privileges_and_init() {
    let h = setup(TestUser::Sub, &[BUSYBOX]);
    for opts in
        [&["--security-opt", "no-new-privileges"][..], &["--security-opt", "no-new-privileges", "-u", "1000", "--init"]]
    {
        let out = sh_ok(&h, opts, "cat /proc/self/status; unshare -U true 2>&1; echo rc=$?");
        assert_eq!(status_field(&out, "NoNewPrivs"), "1", "{opts:?}: {out}");
        assert_eq!(status_field(&out, "Seccomp"), "2", "{opts:?}: {out}");
        assert!(out.contains("Operation not permitted"), "{out}");
    }
    // --init: the init (pid 1) is filtered as well as the command, with and without -u
    for opts in [&["--init"][..], &["--init", "-u", "1000"]] {
        let out = sh_ok(&h, opts, "grep '^Seccomp:' /proc/1/status /proc/self/status");
        assert_eq!(out.matches(":2\n").count() + out.matches("\t2\n").count(), 2, "{opts:?}: {out}");
    }
    let c = Detached::start(&h, "nnp", &["--security-opt", "no-new-privileges"]);
    assert_eq!(status_field(&c.exec(&[], "cat /proc/self/status").stdout, "NoNewPrivs"), "1");
}

#[test]
fn privileged_has_every_capability_no_filter_and_no_masked_paths() {
    let h = setup(TestUser::Sub, &[BUSYBOX]);
    // every capability this kernel has (the user namespace grants them all within it)
    let last: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap().trim().parse().unwrap();
    let all = format!("{:016x}", (1u64 << (last + 1)) - 1);
    let masked = "grep -c ' /proc/keys ' /proc/self/mountinfo || true";
    let out = sh_ok(
        &h,
        &["--privileged"],
        &format!("cat /proc/self/status; mount -t tmpfs t /tmp && echo mounted; {masked}"),
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert_eq!(status_field(&out, "CapEff"), all, "{out}");
    assert!(out.contains("mounted"), "{out}");
    assert!(out.ends_with("\n0\n"), "/proc/keys is not masked: {out}");
    // without it, the same is masked, denied and limited
    let out =
        sh_ok(&h, &[], &format!("cat /proc/self/status; mount -t tmpfs t /tmp 2>/dev/null || echo refused; {masked}"));
    assert_eq!(status_field(&out, "Seccomp"), "2");
    assert_ne!(status_field(&out, "CapEff"), all);
    assert!(out.contains("refused") && out.ends_with("\n1\n"), "{out}");
}
