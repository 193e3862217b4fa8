//! `husk::cgroup` against the machine's real cgroup v2 hierarchy, in-process, as root.
//! Each test works in a subtree of its own (`<cgroup2 mount>/husk-test-<pid>-<name>`),
//! moves only processes it started, and removes everything it made, also when an
//! assertion fails (see `Guard`). Missing prerequisites fail the test, never skip it.
use husk::cgroup::{probe, ContainerCgroup, Limits};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child and removes the cgroups (deepest first) on drop.
struct Guard {
    child: Option<Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        for dir in self.dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while dir.exists() && fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if dir.exists() {
                eprintln!("warning: could not remove test cgroup {}", dir.display());
            }
        }
    }
}

/// A fresh cgroup directory of this test's own under the cgroup2 mount.
fn test_subtree(name: &str, guard: &mut Guard) -> PathBuf {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cgroup tests must run as root (they create cgroups under the cgroup2 mount)"
    );
    let mount = probe().mount.expect("no cgroup2 mount in /proc/self/mountinfo: the cgroup tests need cgroup v2");
    let dir = mount.join(format!("husk-test-{}-{}", std::process::id(), name));
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating test cgroup {}: {}", dir.display(), e));
    guard.dirs.push(dir.clone());
    dir
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid)).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn state(pid: u32) -> String {
    let status = fs::read_to_string(format!("/proc/{}/status", pid)).unwrap();
    status.lines().find_map(|l| l.strip_prefix("State:")).unwrap().trim().to_string()
}

fn cgroup_of(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{}/cgroup", pid)).unwrap();
    text.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_string()
}

#[test]
fn freeze_stops_a_busy_process_and_thaw_resumes_it() {
    let mut guard = Guard { child: None, dirs: vec![] };
    let subtree = test_subtree("freeze", &mut guard);
    // A busy loop without forks that ends by itself after 60 s even if this test is killed.
    let child = Command::new("bash")
        .args(["-c", "while [ $SECONDS -lt 60 ]; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning bash (needed as the busy test process)");
    let pid = child.id();
    guard.child = Some(child);

    let cg = ContainerCgroup::create(&subtree, "freeze", &Limits::default()).unwrap();
    guard.dirs.push(cg.path.clone());
    assert_eq!(cg.path, subtree.join("husk-freeze"));
    assert!(cg.procs().unwrap().is_empty());
    let before = cgroup_of(pid);
    cg.add_process(pid as i32).unwrap();
    assert_eq!(cg.procs().unwrap(), vec![pid as i32]);
    assert!(
        cgroup_of(pid).ends_with(&format!("/husk-test-{}-freeze/husk-freeze", std::process::id())),
        "{}",
        cgroup_of(pid)
    );
    assert_ne!(before, cgroup_of(pid));
    assert!(!cg.is_frozen().unwrap());

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let events = fs::read_to_string(cg.path.join("cgroup.events")).unwrap();
    assert!(events.lines().any(|l| l == "frozen 1"), "cgroup.events: {}", events);
    // A frozen busy loop sleeps in the kernel's freezer and gets no CPU time.
    assert!(state(pid).starts_with('S'), "state of the frozen busy loop: {}", state(pid));
    let ticks = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), ticks, "the frozen process still ran");
    assert_eq!(cg.procs().unwrap(), vec![pid as i32]);

    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    let events = fs::read_to_string(cg.path.join("cgroup.events")).unwrap();
    assert!(events.lines().any(|l| l == "frozen 0"), "cgroup.events: {}", events);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cpu_ticks(pid) == ticks {
        assert!(Instant::now() < deadline, "the thawed process does not run");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cg.procs().unwrap(), vec![pid as i32]);
    let stats = cg.stats().unwrap();
    assert!(stats.cpu_usage_usec.unwrap_or(0) > 0, "{:?}", stats);

    // Freezing again and removing while the process is killed: remove waits for it to go.
    cg.freeze().unwrap();
    let opened = ContainerCgroup::open(&cg.path).unwrap();
    assert!(opened.is_frozen().unwrap());
    let child = guard.child.as_mut().unwrap();
    child.kill().unwrap();
    cg.remove().unwrap();
    assert!(!cg.path.exists());
    assert!(child.wait().unwrap().code().is_none(), "killed by a signal");
    guard.child = None;
    cg.remove().unwrap(); // already gone is fine
    assert!(ContainerCgroup::open(&cg.path).is_err());
}

#[test]
fn limits_need_delegated_controllers() {
    let mut guard = Guard { child: None, dirs: vec![] };
    let subtree = test_subtree("limits", &mut guard);
    let limits = Limits::parse(Some("64m"), None, None, None, None).unwrap();
    assert_eq!(limits.required_controllers(), vec!["memory"]);
    let available = fs::read_to_string(subtree.join("cgroup.controllers")).unwrap();
    let result = ContainerCgroup::create(&subtree, "limits", &limits);
    if available.split_whitespace().any(|c| c == "memory") {
        eprintln!("memory controller delegated here: checking the limit is written");
        let cg = result.unwrap();
        guard.dirs.push(cg.path.clone());
        let max = fs::read_to_string(cg.path.join("memory.max")).unwrap();
        assert_eq!(max.trim(), (64u64 << 20).to_string());
        assert_eq!(cg.stats().unwrap().memory_max, Some(64 << 20));
        cg.remove().unwrap();
    } else {
        eprintln!("no memory controller in {} ({:?}): checking the error", subtree.display(), available.trim());
        let msg = format!("{:#}", result.expect_err("a memory limit without the memory controller must fail"));
        eprintln!("{}", msg);
        assert!(msg.starts_with("the memory controller is not delegated to "), "{}", msg);
        assert!(msg.contains(&subtree.display().to_string()), "{}", msg);
        assert!(msg.contains("subtree_control"), "{}", msg);
        assert!(!msg.contains('\n'), "one line: {}", msg);
        assert!(!subtree.join("husk-limits").exists(), "a cgroup was left behind");
        let subdirs = fs::read_dir(&subtree).unwrap().flatten().filter(|e| e.path().is_dir()).count();
        assert_eq!(subdirs, 0);
        let enabled = fs::read_to_string(subtree.join("cgroup.subtree_control")).unwrap();
        assert_eq!(enabled.trim(), "", "nothing was enabled");
    }
}

#[test]
fn empty_limits_need_no_controllers_and_create_refuses_duplicates() {
    let mut guard = Guard { child: None, dirs: vec![] };
    let subtree = test_subtree("dup", &mut guard);
    let cg = ContainerCgroup::create(&subtree, "dup", &Limits::default()).unwrap();
    guard.dirs.push(cg.path.clone());
    let e = ContainerCgroup::create(&subtree, "dup", &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{}", e);
    assert!(cg.path.exists(), "a failed duplicate create must not remove the existing cgroup");
    let e = ContainerCgroup::create(Path::new("/tmp"), "x", &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("not a cgroup v2 directory"), "{}", e);
    cg.remove().unwrap();
    assert!(!cg.path.exists());
}

#[test]
fn probe_sees_this_process_and_can_freeze_as_root() {
    assert!(nix::unistd::geteuid().is_root(), "the cgroup tests must run as root");
    let p = probe();
    let mount = p.mount.clone().expect("no cgroup2 mount in /proc/self/mountinfo");
    let own = p.own_dir.clone().expect("own cgroup not found under the cgroup2 mount");
    assert!(own.starts_with(&mount));
    assert!(p.writable, "root can write its own cgroup: {:?}", p);
    assert!(p.can_freeze, "{:?}", p);
    let line = p.describe();
    assert!(line.starts_with(&format!("cgroup v2 at {}, own cgroup ", mount.display())), "{}", line);
    assert!(line.contains("(writable; controllers: ") && line.ends_with("pause uses the freezer"), "{}", line);
    assert_eq!(p.parent_dir(None).unwrap(), own);
    eprintln!("{}", line);
}
