//! `husk run` against the fixture images, as unprivileged users (with and without
//! subordinate ids) and as root: exit codes, pid 1, environment, user, hostname, the
//! layered image seen from inside, isolation of the writable layer, stdio, capabilities,
//! masked and read-only paths, mounts, networking, runtime safety and clean-up.
mod common;
use common::reg;

use common::{ensure_prereqs, shared_registry, Husk, Output, TestUser};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "busybox:latest";
const LAYERED: &str = "layered:latest";
const DEBIAN: &str = "debian:bookworm";

fn setup(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    Husk::new(user)
}

/// `husk run -q OPTS... IMAGE CMD...`
fn run(h: &Husk, opts: &[&str], image: &str, cmd: &[&str]) -> Output {
    h.run(&strs(&run_args(opts, image, cmd)))
}

fn run_args(opts: &[&str], image: &str, cmd: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), "-q".into()];
    a.extend(opts.iter().map(|s| s.to_string()));
    a.push(reg(image));
    a.extend(cmd.iter().map(|s| s.to_string()));
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `husk run -q OPTS... busybox sh -c SCRIPT`
fn sh(h: &Husk, opts: &[&str], script: &str) -> Output {
    run(h, opts, BUSYBOX, &["sh", "-c", script])
}

/// Runs `sh -c SCRIPT` and returns its stdout after checking the run succeeded.
#[track_caller]
fn sh_ok(h: &Husk, opts: &[&str], script: &str) -> String {
    let out = sh(h, opts, script);
    out.assert_ok();
    out.stdout
}

fn pull(h: &Husk, image: &str) {
    h.run(&["pull", "-q", &reg(image)]).assert_ok();
}

fn containers_dir(h: &Husk) -> PathBuf {
    h.store().join("containers")
}

/// Container directories (full ids) in the store.
fn containers(h: &Husk) -> BTreeSet<String> {
    h.container_entries().into_iter().filter(|n| containers_dir(h).join(n).is_dir()).collect()
}

/// The one container created since `before`.
#[track_caller]
fn new_container(h: &Husk, before: &BTreeSet<String>) -> String {
    let now = containers(h);
    let new: Vec<&String> = now.difference(before).collect();
    assert_eq!(new.len(), 1, "expected exactly one new container, have {new:?}");
    new[0].clone()
}

fn state(h: &Husk, id: &str) -> serde_json::Value {
    let p = containers_dir(h).join(id).join("state.json");
    let data = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&data).unwrap()
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

// ---------------------------------------------------------------------------
// /proc helpers (host side)
// ---------------------------------------------------------------------------

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...; comm may contain spaces and parentheses
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn descendants(root: i32) -> Vec<i32> {
    let pids = all_pids();
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &c in &pids {
            if ppid(c) == Some(p) && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Host pids whose environment contains `needle` (e.g. "HOME=/tmp/husk-test-home-...").
fn pids_with_env(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| {
            fs::read(format!("/proc/{p}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn describe_pids(pids: &[i32]) -> String {
    pids.iter().map(|p| format!("{p}: {:?}", cmdline(*p))).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------------
// exit codes
// ---------------------------------------------------------------------------

fn exit_codes(user: TestUser) {
    let h = setup(user);
    pull(&h, BUSYBOX);

    let out = sh(&h, &["--rm"], "exit 3");
    assert_eq!(out.status, 3, "the command's own exit code: {out:?}");
    let out = sh(&h, &["--rm"], "exit 0");
    assert_eq!(out.status, 0, "{out:?}");

    let out = run(&h, &["--rm"], BUSYBOX, &["no-such-command"]);
    assert_eq!(out.status, 127, "command not found: {out:?}");
    assert!(out.stderr.contains("no-such-command"), "the error names the command: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = run(&h, &["--rm"], BUSYBOX, &["/no/such/file"]);
    assert_eq!(out.status, 127, "absolute path not found: {out:?}");

    let out = run(&h, &["--rm"], BUSYBOX, &["/etc/passwd"]);
    assert_eq!(out.status, 126, "not executable: {out:?}");
    assert!(out.stderr.contains("/etc/passwd"), "the error names the file: {out:?}");
    let out = run(&h, &["--rm"], BUSYBOX, &["/etc"]);
    assert_eq!(out.status, 126, "a directory is not executable: {out:?}");

    // husk's own errors: 125
    let out = run(&h, &["--rm", "--no-such-flag"], BUSYBOX, &["true"]);
    assert_eq!(out.status, 125, "bad flag: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // run begins its user namespace before the command line is parsed: nothing of it
    // may outlive a command line that turns out wrong.
    assert!(h.leftover_processes().is_empty(), "processes left: {:?}", h.leftover_processes());
    let out = run(&h, &["--rm", "--pull=never"], "nosuchimage:latest", &["true"]);
    let line = out.error_line("unknown image with --pull=never");
    assert!(line.contains("nosuchimage"), "{out:?}");
    let out = run(&h, &["--rm", "-w", "relative/dir"], BUSYBOX, &["true"]);
    out.error_line("relative working directory");
    let out = run(&h, &["--rm", "-u", "nosuchuser"], BUSYBOX, &["true"]);
    let line = out.error_line("unknown user");
    assert!(line.contains("nosuchuser"), "{out:?}");
    let out = run(&h, &["--rm", "--cap-add", "NOPE"], BUSYBOX, &["true"]);
    out.error_line("unknown capability");
    // A source without a leading / is a volume name; a relative path is not one.
    let out = run(&h, &["--rm", "-v", "relative/dir:/x"], BUSYBOX, &["true"]);
    out.error_line("relative volume source");

    // --pull=never and --pull=always with the image present
    assert_eq!(run(&h, &["--rm", "--pull=never"], BUSYBOX, &["true"]).status, 0);
    assert_eq!(run(&h, &["--rm", "--pull", "always"], BUSYBOX, &["true"]).status, 0);
    // the image's command when none is given: busybox's Cmd is ["sh"], stdin empty
    let out = run(&h, &["--rm"], BUSYBOX, &[]);
    assert_eq!(out.status, 0, "sh with empty stdin exits 0: {out:?}");
    // --entrypoint
    let out = run(&h, &["--rm", "--entrypoint", "echo"], BUSYBOX, &["from", "entrypoint"]);
    out.assert_ok();
    assert_eq!(out.stdout, "from entrypoint\n");
    // every failed run with --rm removed its container
    assert!(containers(&h).is_empty(), "--rm left containers: {:?}", containers(&h));
    // the global --root before the verb, in both spellings
    let alt = h.home.join("alt-store");
    let alt_path = alt.to_str().unwrap();
    let joined = format!("--root={alt_path}");
    let image = reg(BUSYBOX);
    for global in [vec!["--root", alt_path], vec![joined.as_str()]] {
        let args: Vec<&str> =
            global.into_iter().chain(["run", "--rm", "-q", image.as_str(), "echo", "elsewhere"]).collect();
        let out = h.run(&args);
        out.assert_ok();
        assert_eq!(out.stdout, "elsewhere\n");
    }
    assert!(alt.join("index.json").is_file());
}

#[test]
fn exit_codes_with_subids() {
    exit_codes(TestUser::Sub);
}

#[test]
fn exit_codes_without_subids() {
    exit_codes(TestUser::NoSub);
}

/// The container's `sleep` (pid 1 in its namespace) killed from the host: husk exits 128+9.
fn killed_by_signal(user: TestUser) {
    let h = setup(user);
    pull(&h, BUSYBOX);
    let before = containers(&h);
    let mut cmd = h.cmd(&strs(&run_args(&[], BUSYBOX, &["sleep", "30"])));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().unwrap();
    let root = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let sleeper = loop {
        let found = descendants(root).into_iter().find(|&p| cmdline(p) == ["sleep", "30"]);
        if let Some(p) = found {
            break p;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            unsafe { libc::kill(-root, libc::SIGKILL) };
            let out = child.wait_with_output().unwrap();
            panic!("no container sleep process appeared: {out:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // its parent is husk (the process that created the pid namespace)
    let parent = ppid(sleeper).unwrap();
    assert!(
        fs::read_link(format!("/proc/{parent}/exe")).map(|p| p.ends_with("husk")).unwrap_or(false),
        "the container process's parent is husk, not {:?}",
        cmdline(parent)
    );
    let id = new_container(&h, &before);
    // The state is recorded right after the exec, so a watcher may see the command
    // a moment before it says running (as with Docker, where the daemon records it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&h, &id)["status"] != "running" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(state(&h, &id)["status"], "running", "state while the container runs");
    assert_eq!(unsafe { libc::kill(sleeper, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(-root, libc::SIGKILL) };
            panic!("husk did not exit after its container was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(137), "SIGKILL -> 128+9 (stderr: {stderr})");
    let st = state(&h, &id);
    assert_eq!(st["status"], "exited", "{st}");
    assert_eq!(st["exit_code"], 137, "{st}");
}

#[test]
fn killed_by_signal_with_subids() {
    killed_by_signal(TestUser::Sub);
}

#[test]
fn killed_by_signal_without_subids() {
    killed_by_signal(TestUser::NoSub);
}

/// SIGTERM to husk is forwarded to the container's pid 1.
#[test]
fn signals_are_forwarded() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let script = "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    let mut cmd = h.cmd(&strs(&run_args(&["--rm"], BUSYBOX, &["sh", "-c", script])));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().unwrap();
    let root = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // husk: the process running the husk binary (runuser's child)
    let husk = std::iter::once(root)
        .chain(descendants(root))
        .find(|&p| fs::read_link(format!("/proc/{p}/exe")).map(|e| e.ends_with("husk")).unwrap_or(false))
        .expect("husk process");
    assert_eq!(unsafe { libc::kill(husk, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(-root, libc::SIGKILL) };
            panic!("SIGTERM was not forwarded to the container");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(42));
    assert!(containers(&h).is_empty(), "--rm after a forwarded signal");
}

// ---------------------------------------------------------------------------
// pid namespace
// ---------------------------------------------------------------------------

fn pid_namespace(user: TestUser) {
    let h = setup(user);
    assert_eq!(sh_ok(&h, &["--rm"], "echo $$"), "1\n", "the command is pid 1");
    // only the shell itself runs (the loop is built in): /proc lists pid 1 and nothing else
    let out = sh_ok(&h, &["--rm"], "for p in /proc/[0-9]*; do echo ${p#/proc/}; done");
    assert_eq!(out, "1\n", "/proc shows only the container's processes");
    // a child process sees itself and pid 1, nothing of the host (husk included)
    let out = sh_ok(&h, &["--rm"], "ls /proc | grep '^[0-9]*$' | sort -n");
    let pids: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.len() <= 4 && pids[0] == 1 && pids.iter().all(|p| *p < 10), "container pids: {pids:?}");
    let out = sh_ok(&h, &["--rm"], "readlink /proc/1/exe; cat /proc/1/cmdline | tr '\\0' ' '; echo");
    assert_eq!(out, "/bin/busybox\nsh -c readlink /proc/1/exe; cat /proc/1/cmdline | tr '\\0' ' '; echo \n");
}

#[test]
fn pid_namespace_with_subids() {
    pid_namespace(TestUser::Sub);
}

#[test]
fn pid_namespace_without_subids() {
    pid_namespace(TestUser::NoSub);
}

// ---------------------------------------------------------------------------
// environment, working directory, user, hostname
// ---------------------------------------------------------------------------

#[test]
fn environment() {
    let h = setup(TestUser::Sub);
    let before = containers(&h);
    let out = sh_ok(&h, &[], "env | sort");
    let id = new_container(&h, &before);
    let env: BTreeSet<&str> = out.lines().collect();
    assert!(
        env.contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "the image's Env: {out}"
    );
    assert!(env.contains(format!("HOSTNAME={}", &id[..12]).as_str()), "HOSTNAME = short id {}: {out}", &id[..12]);
    assert!(env.contains("HOME=/root"), "HOME of root: {out}");
    // nothing of husk's environment leaks in
    assert!(!out.contains("husk-test-home"), "husk's HOME leaked into the container: {out}");
    assert!(!env.iter().any(|e| e.starts_with("USER=") || e.starts_with("LOGNAME=")), "{out}");

    // -e, -e KEY (from husk's environment), --env-file; -e wins over --env-file
    let env_file = h.home.join("env.list");
    fs::write(&env_file, "# a comment\n\nFROM_FILE=file value\nBOTH=file\nPASSED\n").unwrap();
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o644)).unwrap();
    let ef = env_file.to_str().unwrap();
    let args = run_args(
        &[
            "--rm",
            "--env-file",
            ef,
            "-e",
            "FOO=bar baz",
            "-e",
            "BOTH=flag",
            "-e",
            "EMPTY=",
            "-e",
            "PATH=/bin",
            "--env",
            "HOSTNAME=custom",
        ],
        BUSYBOX,
        &["env"],
    );
    let out = h.run_env(&[("PASSED", "from husk")], &strs(&args));
    out.assert_ok();
    let env: BTreeSet<&str> = out.stdout.lines().collect();
    for want in [
        "FOO=bar baz",
        "FROM_FILE=file value",
        "BOTH=flag",
        "EMPTY=",
        "PATH=/bin",
        "HOSTNAME=custom",
        "PASSED=from husk",
    ] {
        assert!(env.contains(want), "{want} in {:?}", out.stdout);
    }
    assert!(!env.contains("BOTH=file"), "-e overrides --env-file: {:?}", out.stdout);
    // `-e KEY` for a KEY husk does not have sets nothing (Docker)
    let out = run(&h, &["--rm", "-e", "HUSK_TEST_NOT_SET_ANYWHERE"], BUSYBOX, &["env"]);
    out.assert_ok();
    assert!(
        !out.stdout.contains("HUSK_TEST_NOT_SET_ANYWHERE"),
        "an unset variable was passed as empty: {:?}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().filter(|l| l.starts_with("PATH=")).count(), 1, "{:?}", out.stdout);

    // a missing env file is husk's error
    let out = run(&h, &["--rm", "--env-file", "/no/such/env-file"], BUSYBOX, &["true"]);
    out.error_line("missing env file");
}

#[test]
fn working_directory() {
    let h = setup(TestUser::Sub);
    // the busybox image has no WorkingDir: /
    assert_eq!(sh_ok(&h, &["--rm"], "pwd"), "/\n");
    assert_eq!(sh_ok(&h, &["--rm", "-w", "/etc"], "pwd"), "/etc\n");
    // a missing directory is created (owned by root, like Docker), also for another user
    let out = sh_ok(&h, &["--rm", "-w", "/new/deep/dir"], "pwd; stat -c '%u %F' /new/deep/dir");
    assert_eq!(out, "/new/deep/dir\n0 directory\n");
    let out = sh_ok(&h, &["--rm", "--workdir", "/made/for/app", "-u", "app"], "pwd; id -u");
    assert_eq!(out, "/made/for/app\n1000\n");
    // a file is not a working directory
    let out = sh(&h, &["--rm", "-w", "/etc/passwd"], "pwd");
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// Docker creates a missing working directory in the container's layer at create time,
/// so `--read-only -w /missing` works there.
#[test]
fn working_directory_on_read_only_rootfs() {
    let h = setup(TestUser::Sub);
    assert_eq!(sh_ok(&h, &["--rm", "--read-only", "-w", "/etc"], "pwd"), "/etc\n");
    let out = sh(&h, &["--rm", "--read-only", "-w", "/new/workdir"], "pwd; touch x 2>/dev/null || echo ro");
    assert_eq!((out.status, out.stdout.as_str()), (0, "/new/workdir\nro\n"), "{out:?}");
}

#[test]
fn user_with_subids() {
    let h = setup(TestUser::Sub);
    assert_eq!(sh_ok(&h, &["--rm"], "id -u; id -g"), "0\n0\n", "root by default");
    assert_eq!(sh_ok(&h, &["--rm", "-u", "1000"], "id -u; id -g"), "1000\n1000\n");
    let out = sh_ok(&h, &["--rm", "-u", "app"], "id -un; id -u; id -gn; echo $HOME; touch /home/app/x && echo wrote");
    assert_eq!(out, "app\n1000\napp\n/home/app\nwrote\n");
    assert_eq!(sh_ok(&h, &["--rm", "-u", "1000:65534"], "id -u; id -g"), "1000\n65534\n");
    assert_eq!(sh_ok(&h, &["--rm", "-u", "app:nogroup"], "id -u; id -g"), "1000\n65534\n");
    assert_eq!(sh_ok(&h, &["--rm", "-u", "4321"], "id -u; echo $HOME"), "4321\n/\n", "a uid not in passwd");
    // a non-root user cannot write root's files
    let out = sh(&h, &["--rm", "-u", "1000"], "echo x >> /etc/passwd");
    assert_ne!(out.status, 0, "uid 1000 wrote /etc/passwd: {out:?}");
    // outside the subordinate range (65536 ids: container 0..=65536)
    let out = run(&h, &["--rm", "-u", "70000"], BUSYBOX, &["id"]);
    let line = out.error_line("uid outside the subordinate range");
    assert!(line.contains("not mapped"), "{out:?}");
    let out = run(&h, &["--rm", "-u", "app:nosuchgroup"], BUSYBOX, &["id"]);
    out.error_line("unknown group");
}

#[test]
fn user_without_subids() {
    let h = setup(TestUser::NoSub);
    assert_eq!(sh_ok(&h, &["--rm"], "id -u; id -g"), "0\n0\n");
    for u in ["1000", "app"] {
        let out = run(&h, &["--rm", "-u", u], BUSYBOX, &["id", "-u"]);
        let line = out.error_line("-u without subordinate ids");
        assert!(
            line.contains("not mapped") && line.contains("/etc/subuid"),
            "the message explains the missing mapping: {out:?}"
        );
    }
    assert!(containers(&h).is_empty(), "{:?}", containers(&h));
}

#[test]
fn hostname() {
    let h = setup(TestUser::Sub);
    let before = containers(&h);
    let out = sh_ok(&h, &[], "hostname; cat /etc/hostname; echo $HOSTNAME; grep -c \"$(hostname)\" /etc/hosts");
    let id = new_container(&h, &before);
    assert_eq!(id.len(), 64, "{id}");
    let short = &id[..12];
    assert_eq!(out, format!("{short}\n{short}\n{short}\n1\n"), "default hostname = first 12 chars of the id");
    let out = sh_ok(&h, &["--rm", "--hostname", "my-box"], "hostname; cat /etc/hostname; echo $HOSTNAME");
    assert_eq!(out, "my-box\nmy-box\nmy-box\n");
    let out = sh_ok(&h, &["--rm", "-h", "other"], "hostname");
    assert_eq!(out, "other\n", "-h is --hostname");
    // the host's hostname is untouched
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(!host.contains("my-box") && !host.contains("other\n"), "host hostname changed: {host}");
}

#[test]
fn names_and_state() {
    let h = setup(TestUser::Sub);
    let before = containers(&h);
    let out = sh(&h, &["--name", "web-1"], "exit 7");
    assert_eq!(out.status, 7, "{out:?}");
    let id = new_container(&h, &before);
    let st = state(&h, &id);
    assert_eq!(st["name"], "web-1", "{st}");
    assert_eq!(st["status"], "exited", "{st}");
    assert_eq!(st["exit_code"], 7, "{st}");
    assert_eq!(st["id"], id.as_str(), "{st}");
    // the name is taken
    let out = sh(&h, &["--name", "web-1"], "true");
    let line = out.error_line("duplicate name");
    assert!(line.contains("web-1"), "{out:?}");
    let out = sh(&h, &["--name", "bad/name"], "true");
    out.error_line("invalid name");
    assert_eq!(containers(&h).len(), 1, "failed runs left containers: {:?}", containers(&h));

    // --rm removes the container directory, whatever the outcome
    let n = containers(&h).len();
    sh(&h, &["--rm"], "exit 4");
    run(&h, &["--rm"], BUSYBOX, &["no-such-command"]);
    run(&h, &["--rm", "-w", "/etc/passwd"], BUSYBOX, &["true"]);
    assert_eq!(containers(&h).len(), n, "--rm left containers: {:?}", containers(&h));
    // without --rm a failure to start is recorded too
    let before = containers(&h);
    let out = run(&h, &[], BUSYBOX, &["no-such-command"]);
    assert_eq!(out.status, 127);
    let id = new_container(&h, &before);
    let st = state(&h, &id);
    assert_eq!((st["status"].as_str(), st["exit_code"].as_i64()), (Some("exited"), Some(127)), "{st}");
}

// ---------------------------------------------------------------------------
// the layered fixture seen from inside
// ---------------------------------------------------------------------------

const LONG100: &str = "/edge/long-name-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const UNICODE: &str = "/edge/ünïcødé-файл-名前";

fn layered_inside(user: TestUser) {
    let h = setup(user);
    let r = |script: &str| -> String {
        let out = run(&h, &["--rm"], LAYERED, &["sh", "-c", script]);
        out.assert_ok();
        out.stdout
    };
    // whiteouts
    let out = r("for f in /remove-me-too /remove-me/file /remove-me/keep; do test -e $f && echo $f yes || echo $f no; done; cat /remove-me/keep");
    assert_eq!(out, "/remove-me-too no\n/remove-me/file no\n/remove-me/keep yes\nkept\n", "whiteouts");
    // opaque directory: only the new content
    assert_eq!(r("ls -A /opaque; cat /opaque/new-c"), "new-c\nnew c\n", "opaque dir");
    // no overlay bookkeeping visible
    let out = r("find / -xdev -name '.wh.*' | head");
    assert_eq!(out, "", "whiteout files visible inside");
    // setuid / setgid / sticky bits
    assert_eq!(
        r("stat -c '%a %n' /edge/setuid-root /edge/setuid-app /edge/setgid /edge/sticky /edge/private-file"),
        "4755 /edge/setuid-root\n4755 /edge/setuid-app\n2755 /edge/setgid\n1777 /edge/sticky\n600 /edge/private-file\n"
    );
    // owners
    let owners = r("stat -c '%u:%g %n' /edge/hl-a /edge/setuid-app /edge/setgid /edge/owned-1000 /edge/dir-1234 /edge/dir-1234/inner /home/app");
    let expect = match user {
        TestUser::NoSub => "0:0 /edge/hl-a\n0:0 /edge/setuid-app\n0:0 /edge/setgid\n0:0 /edge/owned-1000\n0:0 /edge/dir-1234\n0:0 /edge/dir-1234/inner\n0:0 /home/app\n",
        _ => "0:0 /edge/hl-a\n1000:1000 /edge/setuid-app\n0:1000 /edge/setgid\n1000:1000 /edge/owned-1000\n1234:5678 /edge/dir-1234\n1234:5678 /edge/dir-1234/inner\n1000:1000 /home/app\n",
    };
    assert_eq!(owners, expect, "owners as {user:?}");
    // symlinks resolve inside the container
    assert_eq!(
        r("for l in rel-link rel-up-link abs-link; do readlink /edge/$l; done; cat /edge/rel-link; grep -c '^app:' /edge/abs-link /edge/rel-up-link"),
        "hl-a\n../etc/passwd\n/etc/passwd\nhardlinked content\n/edge/abs-link:1\n/edge/rel-up-link:1\n"
    );
    // hardlinks stay one file
    let out = r("stat -c '%i %h' /edge/hl-a /edge/hl-b");
    let l = lines(&out);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0], l[1], "hl-a and hl-b are one inode: {out}");
    assert!(l[0].ends_with(" 2"), "link count 2: {out}");
    // long, deep and non-ASCII names; special files
    assert_eq!(r(&format!("cat {LONG100} '{UNICODE}'")), "long name (gnu)\nunicode\n");
    let out = r("find /edge/deep -type f | wc -l; cat /edge/deep/*/*/*/*/deep-file-*");
    assert_eq!(out, "1\ndeep path (pax)\n");
    assert_eq!(r("stat -c '%F' /edge/fifo /edge/empty /edge/sticky"), "fifo\nregular empty file\ndirectory\n");
    // a private file of root is readable by root inside (DAC_OVERRIDE not even needed)
    assert_eq!(r("cat /edge/private-dir/secret /edge/private-file"), "secret\nprivate\n");
}

#[test]
fn layered_inside_with_subids() {
    layered_inside(TestUser::Sub);
}

#[test]
fn layered_inside_without_subids() {
    layered_inside(TestUser::NoSub);
}

// ---------------------------------------------------------------------------
// writable layer isolation
// ---------------------------------------------------------------------------

fn write_isolation(user: TestUser) {
    let h = setup(user);
    let before = containers(&h);
    sh_ok(
        &h,
        &[],
        "echo secret > /new-file && echo changed >> /etc/passwd && rm /bin/ls && mkdir /new-dir && rm -r /home/app",
    );
    let a = new_container(&h, &before);
    let before = containers(&h);
    let out = sh_ok(
        &h,
        &[],
        "test -e /new-file && echo new-file; grep -c changed /etc/passwd; test -e /bin/ls && echo ls; test -d /new-dir && echo new-dir; test -d /home/app && echo home",
    );
    let b = new_container(&h, &before);
    assert_ne!(a, b);
    assert_eq!(out, "0\nls\nhome\n", "a second container sees the image, not the first one's changes");
    // the first container's changes are in its own upper dir
    let upper = containers_dir(&h).join(&a).join("upper");
    assert_eq!(fs::read_to_string(upper.join("new-file")).unwrap(), "secret\n");
    let md = fs::symlink_metadata(upper.join("bin/ls")).unwrap();
    assert!(
        md.file_type().is_symlink() || (md.mode() & libc::S_IFMT) == libc::S_IFCHR,
        "/bin/ls is a whiteout in the upper dir: {md:?}"
    );
    // ... and not in the image's layers
    for e in fs::read_dir(h.store().join("layers")).unwrap().flatten() {
        let diff = e.path().join("diff");
        if diff.is_dir() {
            assert!(!diff.join("new-file").exists(), "{} got the container's file", diff.display());
            if diff.join("etc/passwd").exists() {
                assert!(!fs::read_to_string(diff.join("etc/passwd")).unwrap().contains("changed"));
            }
        }
    }
    // a third container still sees everything of the image
    assert_eq!(sh_ok(&h, &["--rm"], "ls /bin/ls; ls -d /home/app"), "/bin/ls\n/home/app\n");
}

#[test]
fn write_isolation_with_subids() {
    write_isolation(TestUser::Sub);
}

#[test]
fn write_isolation_without_subids() {
    write_isolation(TestUser::NoSub);
}

/// A removed container's emptied directory waits as a spare (`containers/.spare-N`) and
/// the next container is made in it; nothing of the first one's files or of what it did
/// to `/` reaches the next (its writable layer and work dir are always new). `system
/// prune` deletes the spares; `system check` has nothing to say about them.
#[test]
fn a_spare_directory_carries_nothing_to_the_next_container() {
    let h = setup(TestUser::Sub);
    let spares = || -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(containers_dir(&h))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.retain(|n| n.starts_with(".spare-"));
        v
    };
    sh_ok(&h, &["--rm"], "echo secret > /left && echo x > /tmp/t && chmod 700 / && touch -d 2001-01-01 /");
    assert_eq!(spares(), [".spare-0"], "the removed container's directory is kept");
    let before = containers(&h);
    let out = sh_ok(&h, &[], "test -e /left && echo left; test -e /tmp/t && echo tmp; stat -c '%a %Y' /");
    let id = new_container(&h, &before);
    assert!(spares().is_empty(), "the next container took the spare");
    let (mode, mtime) = out.trim_end().split_once(' ').unwrap_or_else(|| panic!("only stat's line expected: {out:?}"));
    assert_ne!(mode, "700", "/ has a new writable layer's mode");
    assert!(mtime.parse::<u64>().unwrap() > 1_500_000_000, "/ has a new writable layer's time, not 2001: {out}");
    let names: Vec<_> = fs::read_dir(containers_dir(&h).join(&id)).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(names.iter().any(|n| n == "upper") && names.iter().any(|n| n == "work"), "{names:?}");
    h.run(&["rm", &id]).assert_ok();
    assert_eq!(spares(), [".spare-0"]);
    h.run(&["system", "check"]).assert_ok();
    h.run(&["system", "prune", "-f"]).assert_ok();
    assert!(fs::read_dir(containers_dir(&h)).unwrap().next().is_none(), "prune deletes the spares");
}

/// The busybox fixture has no /proc, /dev, /sys nor /etc/hosts etc.: the mount points
/// come from a tmpfs layer, so a container that writes nothing leaves its upper dir
/// empty, and /etc keeps the image's owner and mode.
#[test]
fn mount_points_the_image_lacks_stay_off_the_disk() {
    let h = setup(TestUser::Sub);
    let before = containers(&h);
    let out = sh_ok(&h, &[], "stat -c '%a %u:%g %n' /etc; ls -d /proc/1 /dev/null /sys/kernel; cat /etc/hostname | wc -l; grep -c '^127.0.0.1' /etc/hosts");
    let id = new_container(&h, &before);
    assert_eq!(out, "755 0:0 /etc\n/dev/null\n/proc/1\n/sys/kernel\n1\n1\n", "the mount points work");
    let upper: Vec<_> =
        fs::read_dir(containers_dir(&h).join(&id).join("upper")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(upper.is_empty(), "nothing of the mount points reached the upper dir: {upper:?}");
    // the image's own /etc content is still there, merged with the mount points
    assert_eq!(
        sh_ok(&h, &["--rm"], "grep -c '^root:' /etc/passwd; echo x >> /etc/hosts && echo writable"),
        "1\nwritable\n"
    );
}

// ---------------------------------------------------------------------------
// stdio
// ---------------------------------------------------------------------------

#[test]
fn stdin_pipes() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let out = h.run_stdin(&strs(&run_args(&["--rm", "-i"], BUSYBOX, &["cat"])), b"hi\n");
    out.assert_ok();
    assert_eq!(out.stdout, "hi\n", "-i passes stdin through");
    // a larger stream, binary-safe
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let out = h.run_stdin(&strs(&run_args(&["--rm", "-i"], BUSYBOX, &["sh", "-c", "wc -c; "])), &data);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "300000");
    let out = h.run_stdin(&strs(&run_args(&["--rm", "--interactive"], BUSYBOX, &["md5sum"])), &data);
    out.assert_ok();
    let host = Command::new("md5sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut host = host;
    {
        use std::io::Write;
        host.stdin.take().unwrap().write_all(&data).unwrap();
    }
    let host = host.wait_with_output().unwrap();
    assert_eq!(
        out.stdout.split_whitespace().next(),
        String::from_utf8_lossy(&host.stdout).split_whitespace().next(),
        "content passes unchanged"
    );
    // without -i the container's stdin is empty (/dev/null), even when husk has input
    let out = h.run_stdin(&strs(&run_args(&["--rm"], BUSYBOX, &["cat"])), b"hi\n");
    out.assert_ok();
    assert_eq!(out.stdout, "", "without -i stdin is empty");
    let out =
        h.run_stdin(&strs(&run_args(&["--rm"], BUSYBOX, &["sh", "-c", "readlink /proc/self/fd/0; wc -c"])), b"hi\n");
    out.assert_ok();
    assert_eq!(out.stdout, "/dev/null\n0\n");
    // a shell reading a script from stdin
    let out = h.run_stdin(&strs(&run_args(&["--rm", "-i"], BUSYBOX, &[])), b"echo from script; exit 5\n");
    assert_eq!(out.status, 5, "{out:?}");
    assert_eq!(out.stdout, "from script\n");
}

#[test]
fn stdout_and_stderr_are_separate() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let out = sh(&h, &["--rm"], "echo out1; echo err1 >&2; echo out2; echo err2 >&2");
    out.assert_ok();
    assert_eq!(out.stdout, "out1\nout2\n");
    assert_eq!(out.stderr, "err1\nerr2\n", "nothing but the container's stderr (with -q)");
    // a failing command: the container's own message only
    let out = sh(&h, &["--rm"], "echo only-out; exit 9");
    assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (9, "only-out\n", ""));
    // stdout closed early by the reader: no hang, no husk error
    let mut cmd = h.cmd(&strs(&run_args(&["--rm"], BUSYBOX, &["sh", "-c", "yes | head -c 10000000"])));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut buf = [0u8; 10];
    child.stdout.as_mut().unwrap().read_exact(&mut buf).unwrap();
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "husk hangs after its stdout reader went away");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// capabilities
// ---------------------------------------------------------------------------

fn cap(h: &Husk, opts: &[&str], field: &str) -> String {
    let mut o = vec!["--rm"];
    o.extend_from_slice(opts);
    let out = sh_ok(h, &o, &format!("grep '^{field}:' /proc/self/status"));
    out.trim().trim_start_matches(&format!("{field}:")).trim().to_string()
}

const DOCKER_CAPS: &str = "00000000a80425fb";

fn capabilities(user: TestUser) {
    let h = setup(user);
    pull(&h, BUSYBOX);
    let out = sh_ok(&h, &["--rm"], "grep ^Cap /proc/self/status");
    let expect = format!("CapInh:\t0000000000000000\nCapPrm:\t{DOCKER_CAPS}\nCapEff:\t{DOCKER_CAPS}\nCapBnd:\t{DOCKER_CAPS}\nCapAmb:\t0000000000000000\n");
    assert_eq!(out, expect, "Docker's 14 capabilities for root");
    assert_eq!(cap(&h, &["--cap-drop", "ALL"], "CapEff"), "0000000000000000");
    assert_eq!(cap(&h, &["--cap-drop", "all"], "CapBnd"), "0000000000000000");
    // SYS_ADMIN is bit 21
    assert_eq!(cap(&h, &["--cap-add", "SYS_ADMIN"], "CapEff"), format!("{:016x}", 0xa80425fbu64 | 1 << 21));
    assert_eq!(cap(&h, &["--cap-add", "CAP_SYS_ADMIN"], "CapBnd"), format!("{:016x}", 0xa80425fbu64 | 1 << 21));
    // NET_RAW is bit 13, CHOWN bit 0
    assert_eq!(cap(&h, &["--cap-drop", "NET_RAW"], "CapEff"), format!("{:016x}", 0xa80425fbu64 & !(1 << 13)));
    assert_eq!(cap(&h, &["--cap-drop", "ALL", "--cap-add", "chown"], "CapEff"), "0000000000000001");
    // the capabilities work: CHOWN lets root chown, without it chown fails
    let out = sh(&h, &["--rm", "--cap-drop", "CHOWN"], "touch /f && chown 0:0 /f && chown 1:1 /f");
    assert_ne!(out.status, 0, "chown without CAP_CHOWN succeeded: {out:?}");
    if user == TestUser::Sub {
        sh_ok(&h, &["--rm"], "touch /f && chown 1:1 /f");
        // a non-root user has none, but the bounding set stays
        let out = sh_ok(&h, &["--rm", "-u", "1000"], "grep ^Cap /proc/self/status");
        let expect =
            format!("CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t{DOCKER_CAPS}\nCapAmb:\t0000000000000000\n");
        assert_eq!(out, expect, "-u 1000");
    }
    // without SYS_ADMIN root cannot mount
    let out = sh(&h, &["--rm"], "mkdir /m && mount -t tmpfs none /m");
    assert_ne!(out.status, 0, "mount without CAP_SYS_ADMIN: {out:?}");
}

#[test]
fn capabilities_with_subids() {
    capabilities(TestUser::Sub);
}

#[test]
fn capabilities_without_subids() {
    capabilities(TestUser::NoSub);
}

// ---------------------------------------------------------------------------
// masked and read-only paths
// ---------------------------------------------------------------------------

#[test]
fn masked_and_read_only_paths() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    // masked files read as empty (or are unreadable), masked dirs are empty
    for f in ["/proc/keys", "/proc/timer_list", "/proc/kcore", "/proc/sched_debug"] {
        let out = sh(&h, &["--rm"], &format!("test -e {f} || exit 0; cat {f} | head -c 100 | wc -c"));
        assert!(
            out.stdout.trim() == "0" || out.stdout.trim().is_empty(),
            "{f} is readable inside the container: {out:?}"
        );
    }
    // host control: /proc/timer_list does have content on the host
    assert!(
        !fs::read("/proc/timer_list").map(|v| v.is_empty()).unwrap_or(true) || !Path::new("/proc/timer_list").exists()
    );
    for d in ["/sys/firmware", "/proc/acpi", "/proc/scsi"] {
        let out = sh(
            &h,
            &["--rm"],
            &format!("test -e {d} || exit 0; ls -A {d} | wc -l; touch {d}/x 2>/dev/null && echo wrote"),
        );
        assert_eq!(
            out.stdout.trim(),
            if out.stdout.is_empty() { "" } else { "0" },
            "{d} is not empty/read-only: {out:?}"
        );
    }
    // /dev holds only the usual devices, none of the host's disks or consoles
    let out = sh_ok(&h, &["--rm"], "ls -A /dev | sort | tr '\\n' ' '");
    assert_eq!(out.trim(), "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero", "{out}");
    assert_eq!(sh_ok(&h, &["--rm"], "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo ok"), "4\nok\n");
    // read-only paths
    for (path, what) in [
        ("/proc/sys/kernel/domainname", "echo x > /proc/sys/kernel/domainname"),
        ("/proc/sys/net/ipv4/ip_forward", "echo 1 > /proc/sys/net/ipv4/ip_forward"),
        ("/proc/sysrq-trigger", "echo h > /proc/sysrq-trigger"),
    ] {
        let out = sh(&h, &["--rm"], what);
        assert_ne!(out.status, 0, "writing {path} succeeded: {out:?}");
    }
    // domainname is writable by the owner of the UTS namespace, so only the read-only
    // mount stops it: the error must say so
    let out = sh(&h, &["--rm"], "echo x > /proc/sys/kernel/domainname");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    let mi = sh_ok(&h, &["--rm"], "cat /proc/self/mountinfo");
    for p in ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"] {
        if let Some(line) = mi.lines().find(|l| l.split(' ').nth(4) == Some(p)) {
            let opts = line.split(' ').nth(5).unwrap();
            assert!(opts.split(',').any(|o| o == "ro"), "{p} is not read-only: {line}");
        }
    }
    assert!(mi.lines().any(|l| l.split(' ').nth(4) == Some("/proc/sys")), "/proc/sys is a read-only mount:\n{mi}");
    // /sys is read-only
    let out = sh(&h, &["--rm"], "echo x > /sys/kernel/uevent_helper");
    assert_ne!(out.status, 0, "{out:?}");
    // the masks cannot be undone without CAP_SYS_ADMIN
    let out = sh(&h, &["--rm"], "umount /proc/keys && cat /proc/keys | wc -c");
    assert_ne!(out.status, 0, "unmounted a mask: {out:?}");
}

// ---------------------------------------------------------------------------
// mounts and filesystem options
// ---------------------------------------------------------------------------

/// A temp dir on the host owned by `user`, reachable by it.
fn user_dir(h: &Husk, label: &str) -> common::TempDir {
    let d = common::TempDir::new(label);
    let (uid, gid) = h.user.ids();
    std::os::unix::fs::chown(d.path(), Some(uid), Some(gid)).unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn read_only_rootfs_and_tmpfs() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let out = sh(&h, &["--rm", "--read-only"], "touch /x");
    assert_ne!(out.status, 0, "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    let out = sh(&h, &["--rm", "--read-only"], "touch /tmp/x");
    assert_ne!(out.status, 0, "{out:?}");
    // /dev, /dev/shm and the generated /etc files stay usable
    let out = sh_ok(
        &h,
        &["--rm", "--read-only"],
        "echo hi > /dev/null && touch /dev/shm/x && cat /etc/hostname >/dev/null && echo ok",
    );
    assert_eq!(out, "ok\n");
    // --tmpfs on a read-only rootfs
    let out = sh_ok(
        &h,
        &["--rm", "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/new/scratch"],
        "touch /tmp/x /new/scratch/y && echo ok; grep -E ' /(tmp|new/scratch) ' /proc/self/mountinfo | grep -c tmpfs",
    );
    assert_eq!(out, "ok\n2\n");
    // tmpfs content does not land in the container's layer
    let before = containers(&h);
    sh_ok(&h, &["--tmpfs", "/scratch"], "echo data > /scratch/file && echo layer > /in-layer");
    let id = new_container(&h, &before);
    let upper = containers_dir(&h).join(&id).join("upper");
    assert!(upper.join("in-layer").exists());
    assert!(!upper.join("scratch/file").exists(), "tmpfs content in the upper dir");
    // tmpfs options
    let out = sh_ok(&h, &["--rm", "--tmpfs", "/t:size=1m,mode=700"], "stat -c %a /t; grep ' /t ' /proc/self/mountinfo");
    assert!(out.starts_with("700\n"), "{out}");
    assert!(out.contains("size=1024k"), "{out}");
    assert!(out.contains("nosuid") && out.contains("nodev"), "{out}");
}

fn volumes(user: TestUser) {
    let h = setup(user);
    pull(&h, BUSYBOX);
    let (uid, _) = h.user.ids();
    let dir = user_dir(&h, "vol");
    fs::write(dir.path().join("from-host"), "host data\n").unwrap();
    fs::set_permissions(dir.path().join("from-host"), fs::Permissions::from_mode(0o644)).unwrap();
    let spec_rw = format!("{}:/data", dir.path().display());
    let spec_ro = format!("{}:/data:ro", dir.path().display());
    // rw: reads and writes reach the host
    let out = sh_ok(&h, &["--rm", "-v", &spec_rw], "cat /data/from-host; echo container data > /data/from-container");
    assert_eq!(out, "host data\n");
    let p = dir.path().join("from-container");
    assert_eq!(fs::read_to_string(&p).unwrap(), "container data\n", "written through the rw bind");
    assert_eq!(fs::metadata(&p).unwrap().uid(), uid, "container root's file belongs to the user on the host");
    // ro
    let out = sh(&h, &["--rm", "-v", &spec_ro], "cat /data/from-host; echo x > /data/ro-write");
    assert_ne!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout, "host data\n");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!dir.path().join("ro-write").exists());
    // a single file, over an existing file of the image, and a nested destination
    let f = dir.path().join("from-host");
    let spec_file = format!("{}:/etc/motd-from-host:ro", f.display());
    let spec_over = format!("{}:/etc/group", f.display());
    let spec_nested = format!("{}:/a/b/c", dir.path().display());
    let out = sh_ok(
        &h,
        &["--rm", "-v", &spec_file, "-v", &spec_over, "-v", &spec_nested],
        "cat /etc/motd-from-host /etc/group; ls /a/b/c | grep -c from-host",
    );
    assert_eq!(out, "host data\nhost data\n1\n");
    // the bind-mount targets the container created do not appear on the host
    assert!(!dir.path().join("a").exists());
    // missing host path
    let out = sh(&h, &["--rm", "-v", "/no/such/host/path:/x"], "true");
    out.error_line("missing volume source");
}

#[test]
fn volumes_with_subids() {
    volumes(TestUser::Sub);
}

#[test]
fn volumes_without_subids() {
    volumes(TestUser::NoSub);
}

fn net_devices(s: &str) -> BTreeSet<String> {
    s.lines().skip(2).filter_map(|l| Some(l.split(':').next()?.trim().to_string())).collect()
}

#[test]
fn network_modes() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let out = sh_ok(&h, &["--rm", "--network", "none"], "cat /proc/net/dev");
    assert_eq!(net_devices(&out), BTreeSet::from(["lo".to_string()]), "only lo: {out}");
    let out = sh_ok(&h, &["--rm", "--network", "none"], "cat /sys/class/net/lo/flags; ls /sys/class/net");
    let flags = u32::from_str_radix(out.lines().next().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(flags & 1 != 0, "lo is up: {out}");
    assert_eq!(out.lines().skip(1).collect::<Vec<_>>(), ["lo"], "{out}");
    // loopback works: a tiny TCP round trip with busybox nc
    let out = sh(
        &h,
        &["--rm", "--network=none"],
        "nc -l -p 7777 > /tmp/got & for i in $(seq 100); do echo ping | nc 127.0.0.1 7777 && break; sleep 0.1; done; wait; cat /tmp/got",
    );
    out.assert_ok();
    assert!(out.stdout.contains("ping"), "{out:?}");
    // host network: the host's interfaces
    let host = net_devices(&fs::read_to_string("/proc/net/dev").unwrap());
    let out = sh_ok(&h, &["--rm", "--network", "host"], "cat /proc/net/dev");
    assert_eq!(net_devices(&out), host, "--network host shows the host's interfaces");
    // the default (pasta): its own namespace, with lo and one interface named as the host's
    let out = sh_ok(&h, &["--rm"], "cat /proc/net/dev");
    let own = net_devices(&out);
    assert!(own.len() == 2 && own.contains("lo") && own != host && own.is_subset(&host), "{out}");
    let out = run(&h, &["--rm", "--network", "bridge"], BUSYBOX, &["true"]);
    assert_eq!(out.status, 125, "{out:?}");
}

// ---------------------------------------------------------------------------
// runtime safety
// ---------------------------------------------------------------------------

fn fd_leak(user: TestUser) {
    let h = setup(user);
    pull(&h, BUSYBOX);
    let secret = common::TempDir::new("fd-leak");
    let file = secret.path().join("host-secret");
    fs::write(&file, "host secret\n").unwrap();
    let f = fs::File::open(&file).unwrap();
    let raw = f.as_raw_fd();
    let with_fd7 = |mut c: Command| -> Command {
        unsafe {
            c.pre_exec(move || {
                // dup2 leaves the new descriptor without FD_CLOEXEC: inherited by exec
                if libc::dup2(raw, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    };
    // control: the descriptor does reach processes started like husk
    let mut ctl = match user {
        TestUser::Root => Command::new("/bin/ls"),
        u => {
            let mut c = Command::new("runuser");
            c.args(["-u", u.name(), "--", "/bin/ls"]);
            c
        }
    };
    ctl.arg("/proc/self/fd");
    let ctl = common::run_output(with_fd7(ctl), None);
    assert!(ctl.stdout.lines().any(|l| l == "7"), "control: fd 7 is inherited: {ctl:?}");

    let cmd = with_fd7(h.cmd(&strs(&run_args(
        &["--rm"],
        BUSYBOX,
        &["sh", "-c", "ls /proc/$$/fd; ls -l /proc/$$/fd | grep -c host-secret; cat <&7"],
    ))));
    let out = common::run_output(cmd, None);
    let l: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(l.first().copied(), Some("0"), "{out:?}");
    assert_eq!(&l[..3.min(l.len())], ["0", "1", "2"], "{out:?}");
    assert_eq!(l.get(3).copied(), Some("0"), "only 0, 1, 2 in the container: {out:?}");
    assert!(!out.stdout.contains("host secret"), "fd 7 readable in the container: {out:?}");
    let out2 =
        common::run_output(with_fd7(h.cmd(&strs(&run_args(&["--rm"], BUSYBOX, &["ls", "/proc/self/fd"])))), None);
    out2.assert_ok();
    let fds: BTreeSet<u32> = out2.stdout.lines().map(|l| l.parse().unwrap()).collect();
    // ls's own directory descriptor is the only extra one
    assert!(fds.len() <= 4 && fds.is_superset(&BTreeSet::from([0, 1, 2])) && !fds.contains(&7), "{out2:?}");
    drop(f);
}

#[test]
fn fd_leak_with_subids() {
    fd_leak(TestUser::Sub);
}

#[test]
fn fd_leak_as_root() {
    fd_leak(TestUser::Root);
}

#[test]
fn husk_binary_unreachable() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let bin = common::husk_bin().to_string_lossy().into_owned();
    // every /proc/<pid>/exe in the container is the container's own busybox
    let out = sh_ok(&h, &["--rm"], "for p in /proc/[0-9]*; do readlink $p/exe; done; readlink /proc/self/exe");
    for l in out.lines() {
        assert_eq!(l, "/bin/busybox", "{out}");
    }
    assert!(!out.contains(&bin) && !out.contains("husk"), "{out}");
    // pid 1's parent is outside the namespace (ppid 0)
    let out = sh_ok(&h, &["--rm"], "grep ^PPid: /proc/1/status");
    assert_eq!(out, "PPid:\t0\n");
    // the host's root is not reachable: no host file under /
    let out = sh_ok(
        &h,
        &["--rm"],
        &format!("test -e '{bin}' && echo visible; test -e /proc/1/root{bin} && echo via-proc; echo done"),
    );
    assert_eq!(out, "done\n", "husk's binary is visible in the container");
}

/// A symlink in a bind-mounted host directory must resolve inside the container, both for
/// `-w` and for the destination of another bind mount (CVE-2021-30465 class).
#[test]
fn symlinks_do_not_escape() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let dir = user_dir(&h, "symlinks");
    // the target exists on the host and is writable by the user: an escape would show here
    let target = user_dir(&h, "escape-target");
    let t = target.path().display().to_string();
    std::os::unix::fs::symlink(&t, dir.path().join("abs")).unwrap();
    let depth = "../".repeat(20);
    std::os::unix::fs::symlink(format!("{depth}{}", t.trim_start_matches('/')), dir.path().join("rel")).unwrap();
    let (uid, gid) = h.user.ids();
    for l in ["abs", "rel"] {
        let _ = Command::new("chown").args(["-h", &format!("{uid}:{gid}")]).arg(dir.path().join(l)).status();
    }
    let vol = format!("{}:/mnt", dir.path().display());
    let other = user_dir(&h, "other-vol");
    fs::write(other.path().join("payload"), "payload\n").unwrap();
    fs::set_permissions(other.path().join("payload"), fs::Permissions::from_mode(0o644)).unwrap();

    for link in ["abs", "rel"] {
        // -w through the symlink: created inside the container
        let wd = format!("/mnt/{link}/workdir");
        let out = sh(&h, &["--rm", "-v", &vol, "-w", &wd], "pwd -P");
        assert_eq!(fs::read_dir(target.path()).unwrap().count(), 0, "-w {wd} created something on the host: {out:?}");
        // the link dangles inside the container: creating its target there (Docker) or a
        // clean refusal are both safe
        if out.status == 125 {
            out.error_line("-w through a dangling symlink");
        } else {
            out.assert_ok();
            assert_eq!(out.stdout, format!("{t}/workdir\n"), "resolved inside the container's root");
        }
        // a bind destination through the symlink
        let dest = format!("/mnt/{link}/x");
        let bind = format!("{}:{}", other.path().display(), dest);
        let out = sh(&h, &["--rm", "-v", &vol, "-v", &bind], &format!("cat {t}/x/payload"));
        assert_eq!(
            fs::read_dir(target.path()).unwrap().count(),
            0,
            "-v ...:{dest} mounted or created on the host: {out:?}"
        );
        if out.status == 125 {
            out.error_line("-v through a dangling symlink");
        } else {
            out.assert_ok();
            assert_eq!(out.stdout, "payload\n");
        }
        // a tmpfs through it
        let out = sh(
            &h,
            &["--rm", "-v", &vol, "--tmpfs", &format!("/mnt/{link}/tmp")],
            &format!("grep -c ' {t}/tmp ' /proc/self/mountinfo"),
        );
        assert_eq!(fs::read_dir(target.path()).unwrap().count(), 0, "--tmpfs through {link} reached the host: {out:?}");
        if out.status == 125 {
            out.error_line("--tmpfs through a dangling symlink");
        } else {
            assert_eq!(out.stdout, "1\n", "the tmpfs is on the container's {t}/tmp: {out:?}");
        }
    }
    // links to /tmp, which exists in the container and on the host
    let uniq = format!("husk-test-escape-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    std::os::unix::fs::symlink("/tmp", dir.path().join("tmp-abs")).unwrap();
    std::os::unix::fs::symlink(format!("{depth}tmp"), dir.path().join("tmp-rel")).unwrap();
    for link in ["tmp-abs", "tmp-rel"] {
        let wd = format!("/mnt/{link}/{uniq}-wd");
        let out = sh(&h, &["--rm", "-v", &vol, "-w", &wd], "pwd -P; stat -c %u .");
        let host_wd = Path::new("/tmp").join(format!("{uniq}-wd"));
        let escaped = host_wd.exists();
        let _ = fs::remove_dir(&host_wd);
        assert!(!escaped, "-w {wd} created {} on the host: {out:?}", host_wd.display());
        out.assert_ok();
        assert_eq!(out.stdout, format!("/tmp/{uniq}-wd\n0\n"), "created in the container's /tmp");
        let dest = format!("/mnt/{link}/{uniq}-bind");
        let bind = format!("{}:{}", other.path().display(), dest);
        let out = sh(&h, &["--rm", "-v", &vol, "-v", &bind], &format!("cat /tmp/{uniq}-bind/payload"));
        let host_b = Path::new("/tmp").join(format!("{uniq}-bind"));
        let escaped = host_b.exists();
        let _ = fs::remove_dir(&host_b);
        assert!(!escaped, "-v ...:{dest} created {} on the host: {out:?}", host_b.display());
        out.assert_ok();
        assert_eq!(out.stdout, "payload\n");
    }
    // a symlink in the image: /edge/abs-link -> /etc/passwd; bind over it lands on the
    // container's /etc/passwd, not the host's
    let host_passwd = fs::read("/etc/passwd").unwrap();
    let f = other.path().join("payload");
    let out = run(&h, &["--rm", "-v", &format!("{}:/edge/abs-link", f.display())], LAYERED, &["cat", "/etc/passwd"]);
    out.assert_ok();
    assert_eq!(out.stdout, "payload\n", "the bind went on the container's /etc/passwd");
    assert_eq!(fs::read("/etc/passwd").unwrap(), host_passwd);
}

// ---------------------------------------------------------------------------
// clean-up
// ---------------------------------------------------------------------------

fn nothing_left(user: TestUser) {
    let h = setup(user);
    pull(&h, BUSYBOX);
    let marker = format!("HUSK_TEST_MARKER={}", h.home.display());
    let home_env = format!("HOME={}", h.home.display());
    let before = containers(&h);
    // background processes in the container die with it
    let t = Instant::now();
    let out = sh(&h, &["-e", &marker], "sleep 1000 & sleep 1000 & echo started");
    assert_eq!((out.status, out.stdout.as_str()), (0, "started\n"), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(60), "husk waited for background processes");
    let id = new_container(&h, &before);
    let left = pids_with_env(&marker);
    assert!(left.is_empty(), "container processes left:\n{}", describe_pids(&left));
    let left = gone_soon(&home_env);
    assert!(left.is_empty(), "husk processes left:\n{}", describe_pids(&left));
    // no mount of the container on the host
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for path in [containers_dir(&h).join(&id), h.store().join("rootfs-mount"), h.home.clone()] {
        assert!(!mi.contains(&path.display().to_string()), "mount on {} left on the host:\n{mi}", path.display());
    }
    // the container dir can be removed by the test user's own tools (nothing busy, nothing mounted)
    let st = state(&h, &id);
    assert_eq!((st["status"].as_str(), st["exit_code"].as_i64()), (Some("exited"), Some(0)), "{st}");
    // --rm: everything gone
    sh_ok(&h, &["--rm", "-e", &marker], "sleep 1000 & echo x");
    assert_eq!(containers(&h), BTreeSet::from([id.clone()]));
    assert!(pids_with_env(&marker).is_empty());
    assert!(gone_soon(&home_env).is_empty());
}

/// The processes with `needle` in their environment still there after a moment: the
/// network tool (which has husk's HOME) gets SIGKILL when the container ends, and husk
/// does not wait for its end (removing its tap device takes tens of milliseconds).
fn gone_soon(needle: &str) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = pids_with_env(needle);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn nothing_left_with_subids() {
    nothing_left(TestUser::Sub);
}

#[test]
fn nothing_left_without_subids() {
    nothing_left(TestUser::NoSub);
}

// ---------------------------------------------------------------------------
// debian and root
// ---------------------------------------------------------------------------

#[test]
fn debian_tools_work() {
    let h = setup(TestUser::Sub);
    let out = run(&h, &["--rm"], DEBIAN, &["apt-get", "--version"]);
    out.assert_ok();
    assert!(out.stdout.starts_with("apt 2."), "{out:?}");
    let out = run(&h, &["--rm"], DEBIAN, &["dpkg", "-l"]);
    out.assert_ok();
    assert!(out.stdout.lines().any(|l| l.starts_with("ii  dpkg ")), "{out:?}");
    assert!(out.stdout.lines().any(|l| l.starts_with("ii  apt ")), "{out:?}");
    // the image's default command is bash; files owned by other users (e.g. _apt's dirs)
    let out = run(
        &h,
        &["--rm"],
        DEBIAN,
        &["bash", "-c", "echo $BASH_VERSION; id -un; cat /etc/debian_version; apt-config dump | grep -c ."],
    );
    out.assert_ok();
    let l = lines(&out.stdout);
    assert!(l[0].starts_with("5.2"), "{out:?}");
    assert_eq!(l[1], "root");
    assert!(l[2].starts_with("12."), "{out:?}");
    assert!(l[3].parse::<u32>().unwrap() > 10, "{out:?}");
    // a user from the image's passwd
    let out = run(&h, &["--rm", "-u", "nobody"], DEBIAN, &["id", "-un"]);
    out.assert_ok();
    assert_eq!(out.stdout, "nobody\n");
}

#[test]
fn root_smoke() {
    let h = setup(TestUser::Root);
    pull(&h, BUSYBOX);
    let before = containers(&h);
    let out = sh(&h, &[], "echo $$; id -u; hostname; grep ^CapEff /proc/self/status; for p in /proc/[0-9]*; do echo ${p#/proc/}; done; exit 3");
    assert_eq!(out.status, 3, "{out:?}");
    let id = new_container(&h, &before);
    assert_eq!(out.stdout, format!("1\n0\n{}\nCapEff:\t{DOCKER_CAPS}\n1\n", &id[..12]));
    assert_eq!(state(&h, &id)["exit_code"], 3);
    assert_eq!(
        sh_ok(&h, &["--rm", "-u", "app"], "id -u; grep ^CapEff /proc/self/status"),
        "1000\nCapEff:\t0000000000000000\n"
    );
    let out = run(&h, &["--rm"], BUSYBOX, &["/etc/passwd"]);
    assert_eq!(out.status, 126);
    let out = run(&h, &["--rm"], BUSYBOX, &["nope"]);
    assert_eq!(out.status, 127);
    let out = sh(&h, &["--rm", "--network", "none"], "cat /proc/net/dev");
    assert_eq!(net_devices(&out.stdout), BTreeSet::from(["lo".to_string()]), "{out:?}");
    // root's container cannot write the host through /proc/sys either
    let out = sh(&h, &["--rm"], "echo x > /proc/sys/kernel/domainname");
    assert_ne!(out.status, 0, "{out:?}");
    let out = sh(&h, &["--rm"], "echo 1 > /proc/sys/vm/drop_caches");
    assert_ne!(out.status, 0, "root's container wrote /proc/sys/vm/drop_caches: {out:?}");
    assert_eq!(containers(&h).len(), 1);
}

// ---------------------------------------------------------------------------
// the image config (config fixture) and hostile images (evil-links, proc-symlink,
// dev-symlink)
// ---------------------------------------------------------------------------

const CONFIG: &str = "config:latest";
const EVIL_LINKS: &str = "evil-links:latest";

/// A name for host-side markers that no other test (or test process) uses.
fn unique(label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("husk-test-{label}-{}-{}-{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// What a host path is: None when absent, else (file type, size, content of a file,
/// entries of a directory). Never follows a symlink.
fn host_snapshot(p: &Path) -> Option<String> {
    let md = fs::symlink_metadata(p).ok()?;
    let ft = md.file_type();
    let what = if ft.is_symlink() {
        format!("symlink -> {:?}", fs::read_link(p).ok())
    } else if ft.is_dir() {
        let mut names: Vec<String> = fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        format!("dir {names:?}")
    } else if ft.is_file() {
        format!("file {:?}", fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).ok())
    } else {
        format!("other {:?}", ft)
    };
    Some(format!("{what} uid={} mode={:o} mtime={}.{}", md.uid(), md.mode(), md.mtime(), md.mtime_nsec()))
}

/// Removes a host path a buggy husk created (so that the next run is not fooled).
fn remove_escaped(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

fn image_config(user: TestUser) {
    let h = setup(user);
    // no command: Entrypoint + Cmd, as the image's user in the image's working directory
    let out = run(&h, &["--rm"], CONFIG, &[]);
    out.assert_ok();
    assert_eq!(out.stdout, "hello from the image\n", "Entrypoint [/bin/sh -c] + Cmd [echo $GREETING]: {out:?}");
    // a command replaces Cmd only; WorkingDir is created although no layer has it;
    // User app is uid 1000; an empty Env value is set and empty
    let out = run(
        &h,
        &["--rm"],
        CONFIG,
        &["id -u; id -g; pwd; echo \"[$EMPTY]\"; env | grep -c '^EMPTY=$'; stat -c '%u %F' /srv/app"],
    );
    out.assert_ok();
    assert_eq!(out.stdout, "1000\n1000\n/srv/app\n[]\n1\n0 directory\n", "{out:?}");
    // -e overrides the image's Env, other image variables stay
    let out = run(&h, &["--rm", "-e", "GREETING=x"], CONFIG, &[]);
    out.assert_ok();
    assert_eq!(out.stdout, "x\n", "-e GREETING=x: {out:?}");
    let out = run(&h, &["--rm", "-e", "GREETING=x"], CONFIG, &["env | grep -E '^(GREETING|PATH)=' | sort"]);
    out.assert_ok();
    assert_eq!(
        out.stdout, "GREETING=x\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        "{out:?}"
    );
    // -w overrides WorkingDir (and /srv/app is then not created)
    let out = run(&h, &["--rm", "-w", "/other"], CONFIG, &["pwd; test -e /srv/app && echo srv-app-exists; id -u"]);
    out.assert_ok();
    assert_eq!(out.stdout, "/other\n1000\n", "-w /other: {out:?}");
    // -u overrides User; --entrypoint replaces the Entrypoint and drops the image's Cmd
    let out = run(&h, &["--rm", "-u", "0"], CONFIG, &["id -u; pwd"]);
    out.assert_ok();
    assert_eq!(out.stdout, "0\n/srv/app\n", "-u 0: {out:?}");
    let out = run(&h, &["--rm", "--entrypoint", "pwd"], CONFIG, &[]);
    out.assert_ok();
    assert_eq!(out.stdout, "/srv/app\n", "--entrypoint pwd (the image's Cmd is not appended): {out:?}");
}

#[test]
fn image_config_with_subids() {
    image_config(TestUser::Sub);
}

/// Without subordinate ids the image's `User app` (uid 1000) cannot be mapped: a clean
/// error; `-u 0` still runs the image's Entrypoint, Cmd and WorkingDir.
#[test]
fn image_config_without_subids() {
    let h = setup(TestUser::NoSub);
    let out = run(&h, &["--rm"], CONFIG, &[]);
    let line = out.error_line("the image's User without subordinate ids");
    assert!(line.contains("not mapped"), "{out:?}");
    let out = run(&h, &["--rm", "-u", "0"], CONFIG, &[]);
    out.assert_ok();
    assert_eq!(out.stdout, "hello from the image\n", "{out:?}");
    let out = run(
        &h,
        &["--rm", "-u", "root", "-e", "GREETING=x", "-w", "/other"],
        CONFIG,
        &["echo $GREETING; pwd; echo \"[$EMPTY]\""],
    );
    out.assert_ok();
    assert_eq!(out.stdout, "x\n/other\n[]\n", "{out:?}");
    assert!(containers(&h).is_empty(), "{:?}", containers(&h));
}

/// Symlinks in the image that point at /tmp must resolve inside the container for bind
/// destinations, the working directory and the generated /etc/hostname; nothing may be
/// created or changed in the host's /tmp.
fn evil_links(user: TestUser) {
    let h = setup(user);
    pull(&h, EVIL_LINKS);
    let vol = user_dir(&h, "evil-vol");
    fs::write(vol.path().join("payload"), "payload\n").unwrap();
    fs::set_permissions(vol.path().join("payload"), fs::Permissions::from_mode(0o644)).unwrap();
    let host_tmp = Path::new("/tmp");

    // -v HOSTDIR:/evil/NAME and -v HOSTDIR:/evil-rel/NAME
    for link in ["evil", "evil-rel"] {
        let name = unique(&format!("{link}-bind"));
        let host_path = host_tmp.join(&name);
        assert!(host_snapshot(&host_path).is_none(), "{} exists before the run", host_path.display());
        let bind = format!("{}:/{link}/{name}", vol.path().display());
        let out = run(
            &h,
            &["--rm", "-v", &bind],
            EVIL_LINKS,
            &["sh", "-c", &format!("cat /tmp/{name}/payload; grep -c ' /tmp/{name} ' /proc/self/mountinfo; echo written > /tmp/{name}/from-container")],
        );
        let escaped = host_snapshot(&host_path);
        remove_escaped(&host_path);
        assert!(
            escaped.is_none(),
            "-v ...:/{link}/{name} created {} on the host ({escaped:?}): {out:?}",
            host_path.display()
        );
        out.assert_ok();
        assert_eq!(out.stdout, "payload\n1\n", "the bind landed on the container's /tmp/{name}: {out:?}");
        // the write went through the bind to the volume, not to the host's /tmp
        assert_eq!(fs::read_to_string(vol.path().join("from-container")).unwrap(), "written\n");
        fs::remove_file(vol.path().join("from-container")).unwrap();
    }
    // a read-only bind through the link
    let name = unique("evil-ro");
    let host_path = host_tmp.join(&name);
    let out = run(
        &h,
        &["--rm", "-v", &format!("{}:/evil/{name}:ro", vol.path().display())],
        EVIL_LINKS,
        &["sh", "-c", &format!("cat /tmp/{name}/payload; touch /tmp/{name}/x 2>/dev/null || echo ro")],
    );
    let escaped = host_snapshot(&host_path);
    remove_escaped(&host_path);
    assert!(escaped.is_none(), "-v ...:/evil/{name}:ro created {} on the host: {out:?}", host_path.display());
    out.assert_ok();
    assert_eq!(out.stdout, "payload\nro\n", "{out:?}");

    // -w through /workdir-link -> /tmp/wd-escape: created in the container
    let wd_root = host_tmp.join("wd-escape");
    let wd_root_before = host_snapshot(&wd_root);
    let sub = unique("wd");
    let host_wd = wd_root.join(&sub);
    let out = run(
        &h,
        &["--rm", "-w", &format!("/workdir-link/{sub}")],
        EVIL_LINKS,
        &["sh", "-c", "pwd -P; stat -c %u .; touch in-wd && echo touched"],
    );
    let escaped = host_snapshot(&host_wd);
    let wd_root_after = host_snapshot(&wd_root);
    remove_escaped(&host_wd);
    if wd_root_before.is_none() {
        remove_escaped(&wd_root);
    }
    assert!(escaped.is_none(), "-w /workdir-link/{sub} created {} on the host: {out:?}", host_wd.display());
    if wd_root_before.is_none() {
        assert!(wd_root_after.is_none(), "-w /workdir-link/{sub} created {} on the host: {out:?}", wd_root.display());
    }
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!("/tmp/wd-escape/{sub}\n0\ntouched\n"),
        "the working directory is the container's /tmp/wd-escape/{sub}: {out:?}"
    );

    // /etc/hostname -> /tmp/host-hostname-target: the hostname file lands in the container
    let target = host_tmp.join("host-hostname-target");
    let target_before = host_snapshot(&target);
    let before = containers(&h);
    let out = run(&h, &[], EVIL_LINKS, &["sh", "-c", "cat /etc/hostname; hostname; cat /tmp/host-hostname-target"]);
    let target_after = host_snapshot(&target);
    if target_before.is_none() {
        remove_escaped(&target);
    }
    assert_eq!(target_after, target_before, "the host's {} was created or changed: {out:?}", target.display());
    out.assert_ok();
    let id = new_container(&h, &before);
    let short = &id[..12];
    assert_eq!(
        out.stdout,
        format!("{short}\n{short}\n{short}\n"),
        "/etc/hostname shows the container's hostname: {out:?}"
    );
    let out = run(&h, &["--rm", "--hostname", "evil-box"], EVIL_LINKS, &["cat", "/etc/hostname"]);
    let target_after = host_snapshot(&target);
    if target_before.is_none() {
        remove_escaped(&target);
    }
    assert_eq!(target_after, target_before, "the host's {} was created or changed: {out:?}", target.display());
    out.assert_ok();
    assert_eq!(out.stdout, "evil-box\n", "{out:?}");
    // the host's /etc/hostname is untouched too
    let host_hostname = fs::read("/etc/hostname").ok();
    run(&h, &["--rm"], EVIL_LINKS, &["true"]);
    assert_eq!(fs::read("/etc/hostname").ok(), host_hostname);
}

#[test]
fn evil_links_with_subids() {
    evil_links(TestUser::Sub);
}

#[test]
fn evil_links_without_subids() {
    evil_links(TestUser::NoSub);
}

/// Names an escape of /proc or /dev setup to the host's /tmp would create there.
const SPECIAL_ENTRIES: &[&str] = &[
    "null",
    "zero",
    "full",
    "random",
    "urandom",
    "tty",
    "console",
    "pts",
    "shm",
    "mqueue",
    "fd",
    "stdin",
    "stdout",
    "stderr",
    "ptmx",
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "acpi",
    "asound",
    "scsi",
    "latency_stats",
    "timer_stats",
    "bus",
    "fs",
    "irq",
    "sys",
    "sysrq-trigger",
    "self",
    "1",
];

/// An image whose /proc or /dev is a symlink (to /tmp) is refused with one clean error
/// line, and nothing appears in (or is mounted on) the host's /tmp.
fn special_symlink(user: TestUser, special: &str) {
    let h = setup(user);
    let image = format!("{special}-symlink:latest");
    pull(&h, &image);
    let host_tmp = Path::new("/tmp");
    let before: Vec<(&str, Option<String>)> =
        SPECIAL_ENTRIES.iter().map(|n| (*n, host_snapshot(&host_tmp.join(n)))).collect();
    let tmp_dev = fs::metadata(host_tmp).unwrap().dev();
    let mounts_before = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for opts in [&["--rm"][..], &["--rm", "--network", "none"][..], &["--rm", "--read-only"][..]] {
        let out = run(&h, opts, &image, &["sh", "-c", "echo started"]);
        let line = out.error_line(&format!("/{special} is a symlink ({opts:?})"));
        assert!(
            line.contains(&format!("/{special}")) && line.contains("symlink"),
            "the error names /{special} and says it is a symlink: {out:?}"
        );
        for (n, b) in &before {
            let p = host_tmp.join(n);
            let a = host_snapshot(&p);
            if b.is_none() && a.is_some() {
                remove_escaped(&p);
            }
            assert_eq!(&a, b, "the host's {} changed ({opts:?}): {out:?}", p.display());
        }
    }
    assert_eq!(fs::metadata(host_tmp).unwrap().dev(), tmp_dev, "something was mounted on the host's /tmp");
    let mounts_after = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let on_tmp = |mi: &str| mi.lines().filter(|l| l.split(' ').nth(4) == Some("/tmp")).count();
    assert_eq!(on_tmp(&mounts_after), on_tmp(&mounts_before), "a mount on the host's /tmp appeared");
    assert!(containers(&h).is_empty(), "--rm left containers: {:?}", containers(&h));
    // without --rm the failed container is recorded, and nothing is left running
    let before = containers(&h);
    let out = run(&h, &[], &image, &["true"]);
    out.error_line(&format!("/{special} is a symlink (kept container)"));
    let after = containers(&h);
    assert!(after.difference(&before).count() <= 1, "{after:?}");
}

#[test]
fn proc_symlink_refused_with_subids() {
    special_symlink(TestUser::Sub, "proc");
}

#[test]
fn dev_symlink_refused_with_subids() {
    special_symlink(TestUser::Sub, "dev");
}

#[test]
fn proc_and_dev_symlink_refused_without_subids() {
    special_symlink(TestUser::NoSub, "proc");
    special_symlink(TestUser::NoSub, "dev");
}

#[test]
fn mounts_cannot_be_led_into_proc() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    // A bound host directory holding a symlink to /proc.
    let dir = h.home.join("plinkdir");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("/proc", dir.join("plink")).unwrap();
    let v = format!("{}:/mnt", dir.display());
    for extra in [["--tmpfs", "/mnt/plink/sys"], ["-v", "/etc/hostname:/mnt/plink/sys/kernel/domainname"]] {
        let mut opts = vec!["-v", v.as_str()];
        opts.extend(extra);
        let out = run(&h, &opts, BUSYBOX, &["true"]);
        assert_eq!(out.status, 125, "{:?}", out);
        assert!(out.stderr.contains("/proc"), "{:?}", out);
    }
    for spelled in ["//proc/x", "/./proc/x", "/proc"] {
        let out = run(&h, &["--tmpfs", spelled], BUSYBOX, &["true"]);
        assert_eq!(out.status, 125, "{} must be refused: {:?}", spelled, out);
    }
}

#[test]
fn images_with_many_layers_run() {
    for user in [TestUser::Sub, TestUser::NoSub] {
        let h = setup(user);
        pull(&h, "many:latest");
        // Every layer is visible, and the bottom (busybox) one too.
        let out = run(
            &h,
            &["--rm"],
            "many:latest",
            &["sh", "-c", "ls /layers | wc -l; cat /layers/f1 /layers/f63; ls /bin/ls"],
        );
        out.assert_ok();
        assert_eq!(out.stdout, "63\n1\n63\n/bin/ls\n", "{:?}", out);
    }
}

/// A --rm container's writable layer is deleted at its end: its overlay is mounted
/// volatile (no sync of the filesystem under it at unmount); others' are not. Files
/// copied into a created --rm container reach it all the same.
#[test]
fn rm_containers_mount_their_writable_layer_volatile() {
    let h = setup(TestUser::Sub);
    pull(&h, BUSYBOX);
    let root_mount = "awk '$5 == \"/\"' /proc/self/mountinfo";
    let with_rm = sh_ok(&h, &["--rm"], root_mount);
    assert!(with_rm.contains("overlay") && with_rm.contains("volatile"), "{with_rm}");
    let kept = sh_ok(&h, &[], root_mount);
    assert!(kept.contains("overlay") && !kept.contains("volatile"), "{kept}");

    let out = h.run(&["create", "--rm", "-q", &reg(BUSYBOX), "cat", "/hello"]);
    out.assert_ok();
    let id = out.stdout.trim().to_string();
    let file = h.home.join("hello");
    fs::write(&file, "copied in\n").unwrap();
    h.run(&["cp", file.to_str().unwrap(), &format!("{id}:/hello")]).assert_ok();
    let out = h.run(&["start", "-a", &id]);
    out.assert_ok();
    assert_eq!(out.stdout, "copied in\n");
    assert!(!containers(&h).contains(&id), "--rm removed it: {:?}", containers(&h));
}

/// A user the name services do not know (no /etc/passwd line: a uid given by a batch
/// system, or a directory user whose lookup fails) pulls by host name and runs.
#[test]
fn a_uid_without_a_passwd_entry_pulls_and_runs() {
    ensure_prereqs();
    const UID: u32 = 54321;
    assert!(!fs::read_to_string("/etc/passwd").unwrap().lines().any(|l| l.split(':').nth(2) == Some("54321")));
    let home = common::TempDir::new("home-nopasswd");
    std::os::unix::fs::chown(home.path(), Some(UID), Some(UID)).unwrap();
    // the registry by name: resolved through the system's name services
    let image = format!("{}/{BUSYBOX}", shared_registry().host().replace("127.0.0.1", "localhost"));
    let husk = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "54321", "--regid", "54321", "--clear-groups", "/usr/bin/env", "-i"]);
        c.arg(format!("HOME={}", home.path().display())).arg("PATH=/usr/bin:/bin");
        c.arg(common::husk_bin()).args(args).current_dir(home.path());
        common::run_output(c, None)
    };
    husk(&["pull", "-q", &image]).assert_ok();
    let out = husk(&["run", "--rm", "--network", "none", &image, "id", "-u"]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), "0", "{out:?}");
}
