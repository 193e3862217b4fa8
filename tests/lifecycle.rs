//! Detached containers and their lifecycle verbs, as an unprivileged user: run -d,
//! ps, logs, stop, kill, wait, start, restart, create, rm, inspect; the monitor killed
//! with -9; many containers started at once.
mod common;
use common::reg;

use common::{Husk, TestUser};
use std::time::{Duration, Instant};

fn setup(user: TestUser) -> Husk {
    common::husk_with_busybox(user)
}

/// `run -d` of busybox with `script`; returns the printed id.
#[track_caller]
fn detach(h: &Husk, opts: &[&str], script: &str) -> String {
    let image = reg("busybox:latest");
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[&image, "sh", "-c", script]);
    let out = h.run(&args);
    out.assert_ok();
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the full id: {out:?}");
    id
}

fn ps_json(h: &Husk, all: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["ps", "--format", "json"];
    if all {
        args.push("-a");
    }
    let out = h.run(&args);
    out.assert_ok();
    serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

fn status_of(h: &Husk, name: &str) -> String {
    let out = h.run(&["inspect", name]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v[0]["State"]["Status"].as_str().unwrap().to_string()
}

#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const TRAP: &str = "trap 'echo got TERM; exit 3' TERM; echo ready; echo oops >&2; while true; do sleep 0.05; done";

#[test]
fn run_detached_then_ps_logs_stop_start_rm() {
    for user in [TestUser::Sub, TestUser::NoSub] {
        let h = setup(user);
        let id = detach(&h, &["--name", "web"], TRAP);
        let running = ps_json(&h, false);
        assert_eq!(running.len(), 1, "{running:?}");
        assert_eq!(running[0]["Id"], id.as_str());
        assert_eq!(running[0]["State"], "running");
        let table = h.run(&["ps"]).stdout;
        assert!(table.starts_with("CONTAINER ID   IMAGE"), "{table}");
        assert!(table.contains(&id[..12]) && table.contains("Up ") && table.contains("web"), "{table}");
        wait_for("the log", || h.run(&["logs", "web"]).stdout == "ready\n");
        let logs = h.run(&["logs", "web"]);
        assert_eq!((logs.stdout.as_str(), logs.stderr.as_str()), ("ready\n", "oops\n"), "streams kept apart");
        assert!(h.run(&["logs", "-t", "web"]).stdout.starts_with("20"), "timestamps");
        // a unique prefix of the id names the container too
        assert_eq!(h.run(&["stop", "-t", "5", &id[..6]]).stdout, format!("{}\n", &id[..6]));
        assert_eq!(status_of(&h, "web"), "exited");
        assert_eq!(h.run(&["wait", "web"]).stdout, "3\n", "the trap's exit code");
        assert!(h.run(&["logs", "web"]).stdout.contains("got TERM"));
        assert!(ps_json(&h, false).is_empty());
        let all = h.run(&["ps", "-a"]).stdout;
        assert!(all.contains("Exited (3)"), "{all}");
        // start again, then kill: 128+9
        h.run(&["start", "web"]).assert_ok();
        assert_eq!(status_of(&h, "web"), "running");
        h.run(&["kill", "web"]).assert_ok();
        assert_eq!(h.run(&["wait", "web"]).stdout, "137\n");
        // restart runs it again
        h.run(&["restart", "-t", "1", "web"]).assert_ok();
        assert_eq!(status_of(&h, "web"), "running");
        let rm = h.run(&["rm", "web"]);
        assert_eq!(rm.status, 125, "rm of a running container needs -f: {rm:?}");
        h.run(&["rm", "-f", "web"]).assert_ok();
        assert!(ps_json(&h, true).is_empty());
        assert!(!h.store().join("containers").join(&id).exists());
        // the name is free again
        let again = detach(&h, &["--name", "web", "--rm"], "exit 0");
        wait_for("--rm to remove the container", || !h.store().join("containers").join(&again).exists());
        assert_eq!(h.run(&["logs", "nosuch"]).status, 125);
    }
}

#[test]
fn create_then_start_and_inspect() {
    let h = setup(TestUser::Sub);
    let out = h.run(&["create", "--name", "later", &reg("busybox:latest"), "sh", "-c", "echo hello from later"]);
    out.assert_ok();
    let id = out.stdout.trim().to_string();
    assert_eq!(status_of(&h, "later"), "created");
    let table = h.run(&["ps", "-a"]).stdout;
    assert!(table.contains("Created"), "{table}");
    let started = h.run(&["start", "-a", "later"]);
    started.assert_ok();
    assert_eq!(started.stdout, "hello from later\n");
    let v: serde_json::Value = serde_json::from_str(&h.run(&["inspect", &id]).stdout).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["Name"], "/later");
    assert_eq!(v[0]["State"]["ExitCode"], 0);
    assert_eq!(v[0]["Config"]["Cmd"][2], "echo hello from later");
    assert_eq!(v[0]["HostConfig"]["NetworkMode"], "pasta");
    h.run(&["rm", "later"]).assert_ok();
}

#[test]
fn a_missing_command_fails_run_d_with_127_and_nothing_runs() {
    let h = setup(TestUser::Sub);
    let out = h.run(&["run", "-d", "--name", "bad", &reg("busybox:latest"), "/no/such/thing"]);
    assert_eq!(out.status, 127, "{out:?}");
    assert!(out.stdout.is_empty(), "no id printed: {out:?}");
    assert_eq!(status_of(&h, "bad"), "exited");
}

/// The monitor killed with -9 takes the container with it (parent-death signal), ps
/// does not show it running, rm -f cleans up and the name can be used again.
#[test]
fn monitor_killed_with_sigkill() {
    let h = setup(TestUser::Sub);
    let id = detach(&h, &["--name", "orphan"], "sleep 300");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.store().join("containers").join(&id).join("state.json")).unwrap())
            .unwrap();
    let monitor = state["monitor"]["pid"].as_i64().unwrap() as i32;
    let pid = state["pid"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the container's process to die with its monitor", || {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.is_empty() || s.contains("State:\tZ")
    });
    assert!(ps_json(&h, false).is_empty(), "not shown as running");
    assert_eq!(status_of(&h, "orphan"), "exited");
    h.run(&["rm", "-f", "orphan"]).assert_ok();
    let again = detach(&h, &["--name", "orphan"], "exit 0");
    h.run(&["wait", &again]).assert_ok();
    h.run(&["rm", "orphan"]).assert_ok();
}

#[test]
fn twenty_detached_runs_at_once() {
    let h = setup(TestUser::Sub);
    let image = reg("busybox:latest");
    let children: Vec<_> = (0..20)
        .map(|_| {
            h.cmd(&["run", "-d", &image, "sleep", "30"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        ids.insert(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    assert_eq!(ids.len(), 20, "distinct ids");
    let rows = ps_json(&h, false);
    assert_eq!(rows.len(), 20);
    let names: std::collections::BTreeSet<_> =
        rows.iter().map(|r| r["Names"][0].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 20, "distinct names");
    let q = h.run(&["ps", "-q"]).stdout;
    assert_eq!(q.lines().count(), 20);
    let mut args = vec!["rm", "-f"];
    args.extend(q.lines());
    h.run(&args).assert_ok();
    assert!(ps_json(&h, true).is_empty());
}

#[test]
fn limits_that_cannot_be_applied_are_refused() {
    let h = setup(TestUser::Sub);
    let out = h.run(&["run", "--rm", "--memory", "64m", &reg("busybox:latest"), "true"]);
    assert_eq!(out.status, 125, "{out:?}");
    assert!(out.stderr.contains("memory"), "names the controller: {out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    let bad = h.run(&["run", "--rm", "--memory", "lots", &reg("busybox:latest"), "true"]);
    assert_eq!(bad.status, 125);
    assert!(bad.stderr.contains("lots"), "{bad:?}");
    assert!(ps_json(&h, true).is_empty(), "nothing created");
}

/// A container another husk is starting (its state names a live starter, here a process
/// of the test) is not removed from under it: `rm` refuses, `start` leaves it alone and
/// `rm -f` waits until the start has ended (the starter exits), then removes it.
#[test]
fn rm_and_start_leave_a_container_being_started_alone() {
    let h = setup(TestUser::NoSub);
    let id =
        h.run(&["create", "--name", "starting", &reg("busybox:latest"), "true"]).assert_ok().stdout.trim().to_string();
    let mut starter = std::process::Command::new("sleep").arg("1.5").spawn().unwrap();
    let pid = starter.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start_time: u64 = stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(19).unwrap().parse().unwrap();
    let state_file = h.store().join("containers").join(&id).join("state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    state["starter"] = serde_json::json!({"pid": pid, "start_time": start_time});
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap(); // in place: the user's file
    let out = h.run(&["rm", "starting"]);
    assert!(out.stderr.contains("container starting is being started"), "{out:?}");
    h.run(&["start", "starting"]).assert_ok(); // nothing to do: it is being started
    assert_eq!(status_of(&h, "starting"), "created");
    let t = Instant::now();
    h.run(&["rm", "-f", "starting"]).assert_ok();
    assert!(starter.try_wait().unwrap().is_some(), "rm -f returned after {:?}, before the start ended", t.elapsed());
    assert!(ps_json(&h, true).is_empty());
}
