//! `husk pause`, `unpause`, `top`, `port` and `stats` against a running container (a
//! foreground `husk run` in a child process), as the unprivileged user with subordinate
//! ids: with SIGSTOP/SIGCONT (no container cgroup) and with the cgroup v2 freezer (a
//! `--cgroup-parent` subtree made and delegated by the test). Every process and cgroup a
//! test makes is killed/removed on drop, also when an assertion fails.
mod common;
use common::reg;

use common::{ensure_prereqs, shared_registry, Husk, Output, TestUser};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The count goes to /tmp/count by rename: a stop between the truncation and the write
/// of `echo > file` would leave the file empty, which reads as no count at all.
const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done";

fn setup() -> Husk {
    ensure_prereqs();
    shared_registry();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    h
}

/// A container running the counter script in the foreground under `husk run`; on drop
/// its first process and husk's process group are killed and husk reaped.
struct Running {
    child: Child,
    id: String,
    /// The container's first process (host pid).
    pid: i32,
    state_file: PathBuf,
}

impl Running {
    fn start(h: &Husk, name: &str, opts: &[&str], cgroup_for_husk: Option<PathBuf>) -> Running {
        let image = reg("busybox:latest");
        let mut args = vec!["run", "-q", "--name", name];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[&image, "sh", "-c", COUNTER]);
        let mut cmd = h.cmd(&args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
        if let Some(cg) = cgroup_for_husk {
            let procs = cg.join("cgroup.procs");
            // SAFETY: only a write(2) to a file between fork and exec (as root, before
            // runuser drops to the user).
            unsafe {
                cmd.pre_exec(move || fs::write(&procs, "0"));
            }
        }
        let child = cmd.spawn().expect("spawn husk run");
        let mut r = Running { child, id: String::new(), pid: 0, state_file: PathBuf::new() };
        let dir = h.store().join("containers");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = r.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                let _ = r.child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("husk run exited early ({st}): {err}");
            }
            assert!(Instant::now() < deadline, "the container did not come up within 60 s");
            let found = fs::read_dir(&dir).ok().and_then(|rd| {
                rd.flatten().find_map(|e| {
                    let state = read_state(&e.path().join("state.json"))?;
                    (state["name"] == name).then(|| (e.file_name().to_string_lossy().into_owned(), state))
                })
            });
            if let Some((id, state)) = found {
                r.id = id;
                r.state_file = dir.join(&r.id).join("state.json");
                if let Some(pid) = state["pid"]["pid"].as_i64() {
                    r.pid = pid as i32;
                    if state["status"] == "running" && r.count().is_some() {
                        return r;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn state(&self) -> serde_json::Value {
        read_state(&self.state_file).expect("state.json")
    }

    /// The counter the container writes, read through its pid 1's root from the host.
    fn count(&self) -> Option<u64> {
        fs::read_to_string(format!("/proc/{}/root/tmp/count", self.pid)).ok()?.trim().parse().ok()
    }

    /// Host pids of the processes in the container's pid namespace.
    fn procs(&self) -> Vec<i32> {
        let ns = fs::read_link(format!("/proc/{}/ns/pid", self.pid)).expect("container pid namespace");
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| fs::read_link(format!("/proc/{p}/ns/pid")).map(|l| l == ns).unwrap_or(false))
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        if self.pid > 0 && self.child.try_wait().ok().flatten().is_none() {
            // Still our container: its husk has not been reaped, so the pid is not reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn read_state(p: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

fn proc_state(pid: i32) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("State:")).map(|s| s.trim().to_string())
}

/// The counter does not move for a while.
#[track_caller]
fn assert_counter_still(r: &Running) {
    let a = r.count();
    std::thread::sleep(Duration::from_millis(600));
    let b = r.count();
    assert!(a.is_some() && a == b, "the paused container's counter moved: {a:?} -> {b:?}");
}

/// The counter moves again.
#[track_caller]
fn assert_counter_moves(r: &Running) {
    let a = r.count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.count() == a {
        assert!(Instant::now() < deadline, "the container's counter does not move ({a:?})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[track_caller]
fn ok_stdout(out: Output) -> String {
    out.assert_ok();
    out.stdout
}

/// pause, unpause, top, port and stats on a running container; `frozen` says how to
/// check that it is paused.
fn exercise(h: &Husk, r: &Running, name: &str, frozen: &dyn Fn() -> bool) {
    // top: the shell (and, most of the time, its sleep)
    let top = ok_stdout(h.run(&["top", name]));
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "{top}");
    assert!(top.lines().any(|l| l.contains(&format!(" {} ", r.pid)) && l.contains("sh -c i=0;")), "{top}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let top = ok_stdout(h.run(&["top", &r.id[..12], "-ef"]));
        if top.lines().any(|l| l.ends_with("sleep 0.1")) {
            break;
        }
        assert!(Instant::now() < deadline, "top never showed the container's sleep:\n{top}");
    }

    // port: nothing published
    let port = h.run(&["port", name]);
    port.assert_ok();
    assert_eq!(port.stdout, "", "{port:?}");

    // stats
    let stats = ok_stdout(h.run(&["stats", "--no-stream"]));
    let row = stats.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no row for {name}:\n{stats}"));
    assert!(row.starts_with(&r.id[..12]), "{stats}");
    assert!(stats.starts_with("CONTAINER ID"), "{stats}");
    let json: serde_json::Value =
        serde_json::from_str(&ok_stdout(h.run(&["stats", "--no-stream", "--format", "json", name]))).unwrap();
    assert_eq!(json[0]["Name"], name, "{json}");
    assert!(json[0]["PIDs"].as_u64().unwrap() >= 1, "{json}");
    assert!(json[0]["MemUsage"].as_u64().unwrap() > 0, "{json}");

    // unpause of a running container fails
    let e = h.run(&["unpause", name]);
    assert_eq!(e.error_line("unpause running"), format!("Error: container {name} is not paused"));

    // pause
    assert_eq!(ok_stdout(h.run(&["pause", name])), format!("{name}\n"));
    assert_eq!(r.state()["status"], "paused");
    assert!(frozen(), "the container's processes are not stopped after pause");
    assert_counter_still(r);
    let e = h.run(&["pause", name]);
    assert_eq!(e.error_line("pause paused"), format!("Error: container {name} is not running"));
    // stats and top work on a paused container too
    assert!(ok_stdout(h.run(&["stats", "--no-stream", name])).contains(name));
    assert!(ok_stdout(h.run(&["top", name])).contains("sh -c i=0;"));

    // unpause, by id prefix
    assert_eq!(ok_stdout(h.run(&["unpause", &r.id[..10]])), format!("{}\n", &r.id[..10]));
    assert_eq!(r.state()["status"], "running");
    assert!(!frozen(), "the container's processes are still stopped after unpause");
    assert_counter_moves(r);
}

#[test]
fn pause_top_port_stats_with_signals() {
    let h = setup();
    let r = Running::start(&h, "p1", &[], None);
    assert!(r.state()["cgroup"].is_null(), "expected no container cgroup here: {}", r.state());
    let all_stopped = || {
        let procs = r.procs();
        !procs.is_empty() && procs.iter().all(|p| proc_state(*p).map(|s| s.starts_with('T')).unwrap_or(true))
    };
    exercise(&h, &r, "p1", &all_stopped);
    // after unpause, nothing is stopped any more
    assert!(r.procs().iter().all(|p| !proc_state(*p).unwrap_or_default().starts_with('T')));
}

#[test]
fn errors_for_missing_and_stopped_containers() {
    let h = setup();
    for verb in [&["pause"][..], &["unpause"], &["top"], &["port"], &["stats", "--no-stream"]] {
        let mut args = verb.to_vec();
        args.push("nonexistent");
        let out = h.run(&args);
        let line = out.error_line(&format!("{verb:?} of a missing container"));
        assert!(line.contains("no such container: nonexistent"), "{line}");
    }
    // no containers at all: stats prints only the header
    assert_eq!(ok_stdout(h.run(&["stats", "--no-stream"])).lines().count(), 1);
    // an exited container
    h.run(&["run", "-q", "--name", "done", &reg("busybox:latest"), "true"]).assert_ok();
    for verb in ["pause", "top"] {
        let out = h.run(&[verb, "done"]);
        assert_eq!(out.error_line(verb), "Error: container done is not running");
    }
    assert_eq!(h.run(&["unpause", "done"]).error_line("unpause"), "Error: container done is not paused");
    let port = h.run(&["port", "done"]);
    port.assert_ok();
    assert_eq!(port.stdout, "");
    let stats = ok_stdout(h.run(&["stats", "--no-stream", "done"]));
    assert!(stats.lines().nth(1).unwrap().contains("0B / 0B"), "{stats}");
}

/// A cgroup subtree of this test's own under the cgroup2 mount, delegated to the test
/// user, with a leaf `launcher` for husk itself (so that husk may move the container
/// into a sibling). Removed (deepest first) on drop; processes still inside, all
/// started by this test, are killed first.
struct Subtree {
    dir: PathBuf,
}

impl Subtree {
    fn new(user: TestUser) -> Subtree {
        let mount = mountinfo_cgroup2().expect("no cgroup2 mount in /proc/self/mountinfo");
        let dir = mount.join(format!("husk-test-{}-lifecycle", std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let t = Subtree { dir };
        fs::create_dir(t.launcher()).unwrap();
        let (uid, gid) = user.ids();
        for f in ["", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] {
            let p = if f.is_empty() { t.dir.clone() } else { t.dir.join(f) };
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        }
        t
    }

    fn launcher(&self) -> PathBuf {
        self.dir.join("launcher")
    }

    /// "/husk-test-…" as --cgroup-parent takes it.
    fn relative(&self) -> String {
        format!("/{}", self.dir.file_name().unwrap().to_string_lossy())
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        fn dirs(d: &Path, out: &mut Vec<PathBuf>) {
            out.push(d.to_path_buf());
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs(&e.path(), out);
                }
            }
        }
        let mut all = Vec::new();
        dirs(&self.dir, &mut all);
        for d in all.iter().rev() {
            let _ = fs::write(d.join("cgroup.freeze"), "0");
            for p in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().split_whitespace() {
                if let Ok(p) = p.parse::<i32>() {
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while d.exists() && fs::remove_dir(d).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if d.exists() {
                eprintln!("warning: could not remove test cgroup {}", d.display());
            }
        }
    }
}

fn mountinfo_cgroup2() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

#[test]
fn pause_with_the_cgroup_freezer() {
    let h = setup();
    let tree = Subtree::new(TestUser::Sub);
    let r = Running::start(&h, "f1", &["--cgroup-parent", &tree.relative()], Some(tree.launcher()));
    let cg = r.state()["cgroup"].as_str().map(PathBuf::from);
    let cg = cg.unwrap_or_else(|| panic!("husk made no container cgroup under --cgroup-parent: {}", r.state()));
    assert_eq!(cg.parent(), Some(tree.dir.as_path()), "{}", cg.display());
    let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(procs.split_whitespace().any(|p| p == r.pid.to_string()), "container pid not in {}", cg.display());
    let frozen = || fs::read_to_string(cg.join("cgroup.events")).unwrap_or_default().lines().any(|l| l == "frozen 1");
    exercise(&h, &r, "f1", &frozen);
    // the container's end: its husk removes the cgroup it made
    let mut r = r;
    // SAFETY: kill(2) of the container's process, whose husk has not been reaped yet.
    unsafe { libc::kill(r.pid, libc::SIGKILL) };
    r.child.wait().unwrap();
    assert!(!cg.exists(), "{} left behind", cg.display());
    drop(r);
    drop(tree);
}
