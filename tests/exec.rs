//! `husk exec` into running containers, as users with and without subordinate ids and as
//! root: exit codes, environment, working directory, user, the container's namespaces and
//! capabilities, descriptors, stdin, -d, -t, signal forwarding, --init and --network none
//! containers, and refusals (unknown, exited or paused containers).
//!
//! Each test starts its container with a foreground `husk run ... sleep 600` in a child
//! process, owned by a guard that kills it (and so the whole container) on drop, panics
//! included, and checks that no process of the container is left.
mod common;
use common::reg;

use common::pty::Terminal;
use common::{ensure_prereqs, run_output, shared_registry, Husk, Output, TestUser};
use nix::sys::termios::LocalFlags;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "busybox:latest";

fn setup(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    let h = Husk::new(user);
    h.run(&["pull", "-q", &reg(BUSYBOX)]).assert_ok();
    h
}

/// `husk exec ARGS...`
fn exec(h: &Husk, args: &[&str]) -> Output {
    h.run(&[&["exec"], args].concat())
}

/// `husk exec ARGS...`, which must succeed; its stdout.
#[track_caller]
fn exec_ok(h: &Husk, args: &[&str]) -> String {
    let out = exec(h, args);
    out.assert_ok();
    out.stdout
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn ns_link(pid: i32, ns: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok().map(|p| p.to_string_lossy().into_owned())
}

/// Host pids of the processes in the pid namespace `ns` ("pid:[...]").
fn members(ns: &str) -> Vec<i32> {
    all_pids().into_iter().filter(|&p| ns_link(p, "pid").as_deref() == Some(ns)).collect()
}

/// (pid, command line) of the processes in the container, as its `ps` shows them.
#[track_caller]
fn processes(h: &Husk, container: &str) -> Vec<(i32, String)> {
    exec_ok(h, &[container, "ps", "-o", "pid,args"])
        .lines()
        .skip(1)
        .map(|l| {
            let (pid, args) = l.trim_start().split_once(' ').unwrap();
            (pid.parse().unwrap(), args.trim().to_string())
        })
        .collect()
}

fn args_of(ps: &[(i32, String)]) -> Vec<&str> {
    ps.iter().map(|(_, a)| a.as_str()).collect()
}

/// The `Cap*` lines of /proc/PID/status.
fn cap_lines(status: &str) -> String {
    status.lines().filter(|l| l.starts_with("Cap")).map(|l| format!("{l}\n")).collect()
}

/// A container running `sleep 600` under a foreground `husk run` (a child of the test);
/// killed with everything in it when dropped.
struct Running<'a> {
    h: &'a Husk,
    child: Option<Child>,
    name: String,
    id: String,
    /// The container's first process as the host sees it.
    pid1: i32,
    /// Its pid namespace ("pid:[...]").
    pid_ns: String,
}

impl<'a> Running<'a> {
    fn start(h: &'a Husk, name: &str, opts: &[&str]) -> Running<'a> {
        let image = reg(BUSYBOX);
        let mut args = vec!["run", "-q", "--name", name];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[&image, "sleep", "600"]);
        let mut cmd = h.cmd(&args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut r =
            Running { h, child: Some(child), name: name.into(), id: String::new(), pid1: 0, pid_ns: String::new() };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some((id, pid)) = r.running_state() {
                // the state is written once the command runs; with --init pid 1 is husk
                if let Some(ns) = ns_link(pid, "pid") {
                    r.id = id;
                    r.pid1 = pid;
                    r.pid_ns = ns;
                    break;
                }
            }
            let exited = r.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let mut err = String::new();
                if exited.is_none() {
                    r.kill();
                }
                let _ = r.child.as_mut().unwrap().stderr.take().unwrap().read_to_string(&mut err);
                panic!("container {name} did not start (husk run: {exited:?}): {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// (id, pid) from the state of the container with this name, once it runs.
    fn running_state(&self) -> Option<(String, i32)> {
        for e in fs::read_dir(self.h.store().join("containers")).ok()?.flatten() {
            let Ok(data) = fs::read(e.path().join("state.json")) else { continue };
            let Ok(st) = serde_json::from_slice::<serde_json::Value>(&data) else { continue };
            if st["name"] == self.name.as_str() && st["status"] == "running" {
                let pid = st["pid"]["pid"].as_i64()?;
                return Some((st["id"].as_str()?.to_string(), pid as i32));
            }
        }
        None
    }

    fn state_path(&self) -> PathBuf {
        self.h.store().join("containers").join(&self.id).join("state.json")
    }

    fn hostname(&self) -> String {
        let data = fs::read(self.h.store().join("containers").join(&self.id).join("config.json")).unwrap();
        let spec: serde_json::Value = serde_json::from_slice(&data).unwrap();
        spec["hostname"].as_str().unwrap().to_string()
    }

    /// Kills husk run and the container, and waits until no process of it is left.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // husk, the runuser above it and the container's processes share the group
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        if self.pid_ns.is_empty() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = members(&self.pid_ns);
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let shown: Vec<_> = left.iter().map(|p| format!("{p}: {:?}", cmdline(*p))).collect();
                panic!("processes of container {} left after it was killed:\n{}", self.name, shown.join("\n"));
            }
            for p in left {
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // never a second panic: kill what can be killed
            if let Some(mut child) = self.child.take() {
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
            }
            if !self.pid_ns.is_empty() {
                for p in members(&self.pid_ns) {
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
            return;
        }
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// exit codes, environment, working directory, stdin
// ---------------------------------------------------------------------------

fn basics(user: TestUser) {
    let h = setup(user);
    let c = Running::start(&h, "box", &[]);

    let out = exec(&h, &["box", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (3, "out\n", "err\n"), "{out:?}");
    let out = exec(&h, &["box", "true"]);
    assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""), "{out:?}");
    assert_eq!(exec(&h, &[&c.id[..12], "sh", "-c", "exit 4"]).status, 4, "by id prefix");
    assert_eq!(exec(&h, &[&c.id, "true"]).status, 0, "by full id");
    // killed by a signal: 128+N
    assert_eq!(exec(&h, &["box", "sh", "-c", "kill -TERM $$"]).status, 143);

    // the command cannot be run: 127 not found, 126 not executable
    let out = exec(&h, &["box", "no-such-command"]);
    assert_eq!(out.status, 127, "{out:?}");
    assert!(out.stderr.contains("no-such-command") && out.stdout.is_empty(), "{out:?}");
    assert_eq!(exec(&h, &["box", "/no/such/file"]).status, 127);
    let out = exec(&h, &["box", "/etc/passwd"]);
    assert_eq!(out.status, 126, "{out:?}");
    assert!(out.stderr.contains("/etc/passwd"), "{out:?}");
    assert_eq!(exec(&h, &["box", "/etc"]).status, 126, "a directory");

    // environment: the container's, then -e (KEY alone from husk's environment)
    let out = run_output(
        h.cmd_env(
            &[("BAR", "from-husk")],
            &[
                "exec",
                "-e",
                "FOO=bar=baz",
                "-e",
                "BAR",
                "-e",
                "UNSET_HERE",
                "box",
                "sh",
                "-c",
                "echo $FOO $BAR ${UNSET_HERE-unset} $HOSTNAME $PATH",
            ],
        ),
        None,
    );
    out.assert_ok();
    assert_eq!(
        out.stdout,
        format!(
            "bar=baz from-husk unset {} /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            c.hostname()
        )
    );
    assert_eq!(exec_ok(&h, &["-e", "HOSTNAME=mine", "box", "sh", "-c", "echo $HOSTNAME"]), "mine\n", "-e overrides");
    assert_eq!(exec_ok(&h, &["box", "sh", "-c", "echo $HOME"]), "/root\n");
    // strings the kernel would cut or refuse, from an env file: one line, 125
    let env_file = h.home.join("exec.env");
    for (what, content) in [
        ("NUL byte", b"CUT=a\0b\n".to_vec()),
        ("too long", [b"HUGE=".as_slice(), &vec![b'x'; 200_000], b"\n"].concat()),
    ] {
        fs::write(&env_file, content).unwrap();
        fs::set_permissions(&env_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let out = exec(&h, &["--env-file", env_file.to_str().unwrap(), "box", "true"]);
        assert!(out.error_line(what).contains(what.split(' ').next_back().unwrap()), "{out:?}");
    }

    // working directory
    assert_eq!(exec_ok(&h, &["box", "pwd"]), "/\n", "the container's working directory");
    assert_eq!(exec_ok(&h, &["-w", "/tmp", "box", "pwd"]), "/tmp\n");
    assert_eq!(exec_ok(&h, &["--workdir", "/etc/..//home/app", "box", "pwd"]), "/home/app\n");
    let out = exec(&h, &["-w", "/no/such/dir", "box", "true"]);
    assert!(out.error_line("missing working directory").contains("/no/such/dir"), "{out:?}");
    exec(&h, &["-w", "relative", "box", "true"]).error_line("relative working directory");

    // stdin: /dev/null without -i, husk's with -i
    let out = h.run_stdin(&["exec", "box", "sh", "-c", "readlink /proc/self/fd/0; wc -c"], b"hi\n");
    assert_eq!((out.status, out.stdout.as_str()), (0, "/dev/null\n0\n"), "{out:?}");
    let out = h.run_stdin(&["exec", "-i", "box", "sh", "-c", "cat; echo end"], b"hello\nworld\n");
    assert_eq!((out.status, out.stdout.as_str()), (0, "hello\nworld\nend\n"), "{out:?}");
    let out = h.run_stdin(&["exec", "-i", "box", "sh"], b"echo from script; exit 5\n");
    assert_eq!((out.status, out.stdout.as_str()), (5, "from script\n"), "{out:?}");

    // unknown container, bad usage
    let out = exec(&h, &["nosuchbox", "true"]);
    assert!(out.error_line("unknown container").contains("nosuchbox"), "{out:?}");
    assert_eq!(exec(&h, &["box"]).status, 125, "no command");
    exec(&h, &["-d", "-t", "box", "true"]).error_line("-d with -t");

    // once the container is gone: not running
    let mut c = c;
    c.kill();
    let out = exec(&h, &["box", "true"]);
    assert!(out.error_line("killed container").contains("not running"), "{out:?}");
}

#[test]
fn basics_with_subids() {
    basics(TestUser::Sub);
}

#[test]
fn basics_without_subids() {
    basics(TestUser::NoSub);
}

#[test]
fn basics_as_root() {
    basics(TestUser::Root);
}

// ---------------------------------------------------------------------------
// what the process is: namespaces, capabilities, descriptors, user
// ---------------------------------------------------------------------------

fn joins_the_container(user: TestUser) {
    let h = setup(user);
    for (name, opts) in [("shared-net", &["--network", "host"][..]), ("own-net", &["--network", "none"][..])] {
        let c = Running::start(&h, name, opts);
        // every namespace is the container's first process's
        let script = "for n in user mnt pid uts ipc net cgroup; do readlink /proc/self/ns/$n; done";
        let expected: String = ["user", "mnt", "pid", "uts", "ipc", "net", "cgroup"]
            .iter()
            .map(|n| format!("{}\n", ns_link(c.pid1, n).unwrap()))
            .collect();
        assert_eq!(exec_ok(&h, &[name, "sh", "-c", script]), expected, "namespaces of exec vs the container");
        // its pid namespace, its hostname, its root
        let out = exec_ok(&h, &[name, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; hostname; ls /"]);
        let want = format!("sleep 600 \n{}\n", c.hostname());
        assert!(out.starts_with(&want), "expected {want:?} first: {out:?}");
        assert!(
            out.lines().any(|l| l == "home") && !out.lines().any(|l| l == "husk-test"),
            "the image's root: {out:?}"
        );
        let ps = processes(&h, name);
        assert_eq!(args_of(&ps), ["sleep 600", "ps -o pid,args"], "{ps:?}");
        assert_eq!(ps[0].0, 1, "{ps:?}");
        // the network: the host's, or only lo with --network none
        let devs = exec_ok(&h, &[name, "cat", "/proc/net/dev"]);
        let only_lo = devs.lines().skip(2).all(|l| l.trim_start().starts_with("lo:"));
        assert_eq!(only_lo, name == "own-net", "{devs}");
        // capabilities: the same sets as the container's own process
        let caps = exec_ok(&h, &[name, "grep", "^Cap", "/proc/self/status"]);
        assert_eq!(caps, cap_lines(&fs::read_to_string(format!("/proc/{}/status", c.pid1)).unwrap()));
        assert!(caps.contains("CapEff:\t00000000a80425fb"), "Docker's default set: {caps}");
        // no_new_privs as the container's, seccomp off as the container's
        let nnp = |s: &str| s.lines().find(|l| l.starts_with("NoNewPrivs:")).map(str::to_string);
        let status = exec_ok(&h, &[name, "cat", "/proc/self/status"]);
        assert_eq!(nnp(&status), nnp(&fs::read_to_string(format!("/proc/{}/status", c.pid1)).unwrap()));
        // the process is in the container's cgroup, when it has one (as root here; a
        // user's only where the cgroup tree is delegated)
        let state: serde_json::Value = serde_json::from_slice(&fs::read(c.state_path()).unwrap()).unwrap();
        if let Some(dir) = state["cgroup"].as_str() {
            let out = exec_ok(&h, &[name, "cat", "/proc/self/cgroup"]);
            let unified = |s: &str| s.lines().find(|l| l.starts_with("0::")).map(str::to_string);
            let own = unified(&fs::read_to_string(format!("/proc/{}/cgroup", c.pid1)).unwrap()).unwrap();
            assert!(own.ends_with(&format!("/husk-{}", c.id)) && dir.ends_with(&own[3..]), "{own} {dir}");
            assert_eq!(unified(&out), Some(own), "cgroup of exec vs the container");
        }
        if user == TestUser::Root {
            assert!(state["cgroup"].is_string(), "root's container has a cgroup: {state}");
        }
        drop(c);
    }
}

#[test]
fn joins_the_container_with_subids() {
    joins_the_container(TestUser::Sub);
}

#[test]
fn joins_the_container_without_subids() {
    joins_the_container(TestUser::NoSub);
}

/// As root the container has a cgroup of its own (root may write the hierarchy).
#[test]
fn joins_the_container_as_root() {
    joins_the_container(TestUser::Root);
}

/// Only 0, 1 and 2 are open in the command, even with other descriptors open in husk's caller.
fn no_descriptor_leaks(user: TestUser) {
    let h = setup(user);
    let _c = Running::start(&h, "fds", &[]);
    let secret = common::TempDir::new("exec-fd-leak");
    let file = secret.path().join("host-secret");
    fs::write(&file, "host secret\n").unwrap();
    let f = fs::File::open(&file).unwrap();
    let raw = f.as_raw_fd();
    let mut cmd = h.cmd(&["exec", "fds", "sh", "-c", "ls /proc/$$/fd; cat <&7; ls -l /proc/$$/fd | grep -c secret"]);
    // SAFETY: dup2 is async-signal-safe; it leaves fd 7 without FD_CLOEXEC, inherited by husk.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_output(cmd, None);
    assert!(!out.stdout.contains("host secret"), "fd 7 readable in the container: {out:?}");
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["0", "1", "2", "0"], "only 0, 1, 2 in the container: {out:?}");
    // and with -t
    let out = exec_ok(&h, &["-t", "fds", "sh", "-c", "ls -1 /proc/$$/fd; true"]);
    assert_eq!(out.replace('\r', ""), "0\n1\n2\n", "with -t");
    drop(f);
}

#[test]
fn no_descriptor_leaks_with_subids() {
    no_descriptor_leaks(TestUser::Sub);
}

#[test]
fn no_descriptor_leaks_without_subids() {
    no_descriptor_leaks(TestUser::NoSub);
}

#[test]
fn users_with_subids() {
    let h = setup(TestUser::Sub);
    let _c = Running::start(&h, "users", &[]);
    assert_eq!(exec_ok(&h, &["-u", "1000", "users", "id", "-u"]), "1000\n");
    assert_eq!(
        exec_ok(
            &h,
            &["--user", "app", "users", "sh", "-c", "id -u; id -g; echo $HOME; grep ^Cap[EPB] /proc/self/status"]
        ),
        "1000\n1000\n/home/app\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n",
        "a name from the container's passwd; no capabilities; the bounding set kept"
    );
    assert_eq!(exec_ok(&h, &["-u", "1000:65534", "users", "sh", "-c", "id -u; id -g"]), "1000\n65534\n");
    assert_eq!(exec_ok(&h, &["-u", "app:root", "users", "id", "-g"]), "0\n");
    assert_eq!(exec_ok(&h, &["-u", "4242", "users", "id", "-u"]), "4242\n", "a uid without a passwd entry");
    // the user cannot write root's files, root can
    assert_ne!(exec(&h, &["-u", "app", "users", "touch", "/etc/x"]).status, 0);
    assert_eq!(exec(&h, &["users", "touch", "/etc/x"]).status, 0);
    // the user's working directory is checked as the user
    exec(&h, &["-u", "app", "-w", "/no/such", "users", "true"]).error_line("missing working directory");
    let out = exec(&h, &["-u", "nosuchuser", "users", "true"]);
    assert!(out.error_line("unknown user").contains("nosuchuser"), "{out:?}");
    let out = exec(&h, &["-u", "app:nosuchgroup", "users", "true"]);
    assert!(out.error_line("unknown group").contains("nosuchgroup"), "{out:?}");
    // a uid outside the mapping
    let out = exec(&h, &["-u", "70000", "users", "true"]);
    assert!(out.error_line("unmapped uid").contains("70000"), "{out:?}");
}

#[test]
fn users_without_subids() {
    let h = setup(TestUser::NoSub);
    let _c = Running::start(&h, "users", &[]);
    assert_eq!(exec_ok(&h, &["-u", "0", "users", "id", "-u"]), "0\n");
    assert_eq!(exec_ok(&h, &["-u", "root", "users", "id", "-u"]), "0\n");
    // only container root exists: another user is refused with one line
    let out = exec(&h, &["-u", "1000", "users", "id", "-u"]);
    assert!(out.error_line("unmapped uid").contains("1000"), "{out:?}");
    exec(&h, &["-u", "app", "users", "true"]).error_line("unmapped user");
}

// ---------------------------------------------------------------------------
// -d, -t, signals
// ---------------------------------------------------------------------------

fn detached(user: TestUser) {
    let h = setup(user);
    let mut c = Running::start(&h, "bg", &[]);
    let t = Instant::now();
    let out = exec(&h, &["-d", "bg", "sh", "-c", "echo lost; sleep 987"]);
    assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (0, "", ""), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "-d returned only after {:?}", t.elapsed());
    // it runs on in the container, its parent gone
    let inside = processes(&h, "bg");
    assert!(inside.iter().any(|(_, args)| args == "sleep 987"), "{inside:?}");
    let host: Vec<i32> = members(&c.pid_ns).into_iter().filter(|&p| cmdline(p) == ["sleep", "987"]).collect();
    assert_eq!(host.len(), 1, "one sleep 987 in the container's pid namespace: {inside:?}");
    // a command that cannot run is still reported
    assert_eq!(exec(&h, &["-d", "bg", "no-such-command"]).status, 127);
    // it dies with the container
    c.kill();
    assert!(!std::path::Path::new(&format!("/proc/{}", host[0])).exists() || cmdline(host[0]) != ["sleep", "987"]);
}

#[test]
fn detached_with_subids() {
    detached(TestUser::Sub);
}

#[test]
fn detached_without_subids() {
    detached(TestUser::NoSub);
}

/// SIGTERM to husk exec reaches the command.
#[test]
fn signals_are_forwarded() {
    let h = setup(TestUser::Sub);
    let _c = Running::start(&h, "sig", &[]);
    let script = "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    let mut cmd = h.cmd(&["exec", "sig", "sh", "-c", script]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().unwrap();
    let root = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    let husk = std::iter::once(root)
        .chain(all_pids())
        .find(|&p| {
            fs::read_link(format!("/proc/{p}/exe")).map(|e| e.ends_with("husk")).unwrap_or(false)
                && cmdline(p).iter().any(|a| a == "sig")
                && cmdline(p).iter().any(|a| a == "exec")
        })
        .expect("the husk exec process");
    assert_eq!(unsafe { libc::kill(husk, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(-root, libc::SIGKILL) };
            panic!("SIGTERM was not forwarded to the exec'd command");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(42));
}

/// `exec -it` driven through a real pseudo-terminal.
#[test]
fn interactive_tty() {
    let h = setup(TestUser::Sub);
    let _c = Running::start(&h, "tty", &[]);
    let mut term = Terminal::new(24, 80);
    let before = term.modes();
    let mut child = term.spawn(h.cmd(&["exec", "-it", "tty", "sh"]));
    term.type_in(b"echo marker-$((6*7)) $TERM; stty size; [ -t 0 ] && echo is-a-tty\n");
    term.read_until("marker-42 xterm");
    term.read_until("24 80");
    term.read_until("is-a-tty");
    assert!(!term.modes().local_flags.contains(LocalFlags::ICANON), "raw mode while the command runs");
    term.resize(&child, 40, 120);
    std::thread::sleep(Duration::from_millis(300));
    term.type_in(b"stty size\n");
    term.read_until("40 120");
    term.type_in(b"exit 7\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "the shell's exit status: {}", term.seen);
    let after = term.modes();
    assert_eq!(after.local_flags, before.local_flags, "terminal modes restored exactly");
}

// ---------------------------------------------------------------------------
// other containers: --init, exited, paused
// ---------------------------------------------------------------------------

/// Under --init pid 1 is a non-dumpable copy of husk; exec still joins the container.
#[test]
fn init_container() {
    let h = setup(TestUser::Sub);
    let c = Running::start(&h, "withinit", &["--init"]);
    let out =
        exec_ok(&h, &["withinit", "sh", "-c", "readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid; hostname"]);
    // the command under the init is pid 2 of the container
    let cmd = members(&c.pid_ns).into_iter().find(|&p| cmdline(p) == ["sleep", "600"]).expect("sleep 600");
    assert_eq!(
        out,
        format!("{}\n{}\n{}\n", ns_link(cmd, "mnt").unwrap(), ns_link(c.pid1, "pid").unwrap(), c.hostname())
    );
    let ps = processes(&h, "withinit");
    assert_eq!(args_of(&ps[1..]), ["sleep 600", "ps -o pid,args"], "{ps:?}");
    assert_eq!((ps[0].0, ps[1].0), (1, 2), "{ps:?}");
    assert_eq!(exec(&h, &["withinit", "sh", "-c", "exit 6"]).status, 6);
}

#[test]
fn refuses_containers_that_do_not_run() {
    let h = setup(TestUser::Sub);
    h.run(&["run", "-q", "--name", "done", &reg(BUSYBOX), "true"]).assert_ok();
    let out = exec(&h, &["done", "true"]);
    assert!(out.error_line("exited container").contains("done is not running"), "{out:?}");

    // paused: the state says so (pause itself is tested elsewhere)
    let c = Running::start(&h, "frozen", &[]);
    let path = c.state_path();
    let original = fs::read_to_string(&path).unwrap();
    let mut st: serde_json::Value = serde_json::from_str(&original).unwrap();
    st["status"] = "paused".into();
    fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
    let out = exec(&h, &["frozen", "true"]);
    fs::write(&path, original).unwrap();
    assert!(out.error_line("paused container").contains("paused"), "{out:?}");
    assert_eq!(exec(&h, &["frozen", "true"]).status, 0);

    // a pid whose start time does not match (a reused pid) is never joined
    let mut st: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let original = fs::read_to_string(&path).unwrap();
    st["pid"]["start_time"] = (st["pid"]["start_time"].as_u64().unwrap() + 1).into();
    fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
    let out = exec(&h, &["frozen", "true"]);
    fs::write(&path, original).unwrap();
    assert!(out.error_line("reused pid").contains("not running"), "{out:?}");
}
