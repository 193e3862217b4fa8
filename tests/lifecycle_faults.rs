//! husk itself killed with -9 at any point of `create`, `run -d`, `start`, `stop` and
//! `rm` (issue 4): the next commands see a consistent state. There are no fault hooks
//! in husk: each verb runs in the background and husk (the child of runuser) gets
//! SIGKILL after a delay swept across the verb's measured duration, so that some kills
//! land early, some mid-way and some after it finished. After each kill: `ps -a` works
//! and shows sane states, `inspect` by id and by name agrees with it, every container
//! has the config `start` needs, `rm -f` removes it, nothing is left in containers/, the
//! name can be taken again by `run -d --name`, no process of husk or of a container and
//! no mount is left, and a new `run --rm` works. Every inconsistency of a sweep is
//! collected (the store is then cleaned by force so the sweep goes on) and reported
//! together at its end.
mod common;
use common::reg;

use common::kill::shoot;
use common::{ensure_prereqs, pids_with_env, shared_registry, Husk, TestUser};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name of the container each trial is about.
const NAME: &str = "victim";
/// Kills per verb and user, spread over 0..1.3 times the verb's duration.
const SWEEP: u32 = 8;
/// A running container: pid 1 is sh, which ignores SIGTERM, so stopping needs SIGKILL.
const SLEEPER: &str = "while true; do sleep 0.05; done";
/// Fills the writable layer with 1000 files, so that removing the container takes a while.
const JUNK: &str = "mkdir /junk && cd /junk && seq 1 1000 | xargs touch";

fn busybox() -> String {
    reg("busybox:latest")
}

fn setup(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    let h = Husk::new(user);
    h.run(&["pull", "-q", &busybox()]).assert_ok();
    h
}

/// Given to every container (`-e`), so that its processes can be found on the host.
fn marker(h: &Husk) -> String {
    format!("HUSK_FAULT_MARKER={}", h.home.display())
}

/// `verb` (e.g. `run -d`) of a busybox container named NAME running `sh -c script`.
fn container_cmd(h: &Husk, verb: &[&str], script: &str) -> Vec<String> {
    let (m, image) = (marker(h), busybox());
    verb.iter().chain(&["--name", NAME, "-e", &m, &image, "sh", "-c", script]).map(|s| s.to_string()).collect()
}

fn run_ok(h: &Husk, args: &[String]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    h.run(&args).assert_ok();
}

fn containers_dir(h: &Husk) -> PathBuf {
    h.store().join("containers")
}

fn dir_entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Up to 12 paths under `root` (relative), for messages.
fn describe_tree(root: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).into_iter().flatten().flatten() {
            let r = rel.join(e.file_name());
            if out.len() < 12 {
                out.push(r.display().to_string());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(r);
            }
        }
    }
    out.sort();
    out.join(" ")
}

/// Polls `cond` for up to 10 s.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(10) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn describe_pids(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " ").trim())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Processes of husk (its HOME) and of this test's containers (the marker).
fn our_pids(h: &Husk) -> Vec<i32> {
    let mut v = pids_with_env(&format!("HOME={}", h.home.display()));
    v.extend(pids_with_env(&marker(h)));
    v
}

// ---------------------------------------------------------------------------
// killing husk
// ---------------------------------------------------------------------------

/// The kill delays: SWEEP points from 0 to 1.3 × `took`, each moved by a random part
/// of its step so that repeated runs probe different moments.
fn delays(took: Duration) -> Vec<Duration> {
    let step = took.mul_f64(1.3) / SWEEP;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    (0..SWEEP)
        .map(|i| {
            let r = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9)).wrapping_mul(2_654_435_761) >> 8;
            step * i + step.mul_f64((r % 1000) as f64 / 1000.0)
        })
        .collect()
}

/// Kills `husk verb` (made by `args`, after `prepare` each time) at delays swept over
/// its uninterrupted duration (and once more over the time it really took, if fewer
/// than 3 kills landed: the measurement may have been slowed by other tests); checks
/// the state after every kill, that at least 3 kills landed before husk finished, and
/// reports every inconsistency found.
fn sweep(user: TestUser, prepare: &dyn Fn(&Husk), args: &dyn Fn(&Husk) -> Vec<String>) {
    let h = setup(user);
    let args = args(&h);
    let cmd = format!("husk {}", args.join(" "));
    // uninterrupted: how long it takes (the shorter of two runs); the checks must pass
    let mut took = Duration::MAX;
    for _ in 0..2 {
        prepare(&h);
        let shot = shoot(&h, &args, None);
        assert_eq!(shot.status, 0, "`{cmd}` (not killed) failed: {}", shot.stderr);
        took = took.min(shot.ran);
        let (_, problems) = check_consistent(&h, &format!("`{cmd}` not killed"));
        assert!(problems.is_empty(), "after an uninterrupted `{cmd}`:\n  {}", problems.join("\n  "));
    }
    let mut landed = 0;
    let mut shots = 0;
    let mut log = Vec::new();
    let mut problems = Vec::new();
    let mut todo: Vec<Duration> = delays(took).into_iter().rev().collect();
    // by when husk had surely finished (the earliest kill that came too late)
    let mut done_by = Duration::MAX;
    while let Some(delay) = todo.pop() {
        prepare(&h);
        let shot = shoot(&h, &args, Some(delay));
        shots += 1;
        if shot.landed {
            landed += 1;
        } else {
            assert_eq!(shot.status, 0, "`{cmd}` failed although it was not killed: {}", shot.stderr);
            done_by = done_by.min(shot.ran);
        }
        let when = if shot.landed { "before it finished" } else { "after it finished" };
        let what = format!("{user:?}: killed after {:.1?} ({when})", shot.ran);
        let (seen, found) = check_consistent(&h, &what);
        let flag = if found.is_empty() { "" } else { "  INCONSISTENT" };
        log.push(format!("{:>8.1?} {when:<18} -> {seen}{flag}", shot.ran));
        problems.extend(found);
        // The machine may have been slower while measuring: sweep once more, over
        // the time husk really took.
        if todo.is_empty() && landed < 3 && shots == SWEEP && done_by < Duration::MAX {
            todo = delays(done_by.div_f64(1.3)).into_iter().rev().collect();
        }
    }
    eprintln!("{cmd}\n  ({user:?}; {took:.1?} uninterrupted)\n  {}", log.join("\n  "));
    assert!(problems.is_empty(), "`{cmd}` killed with -9 left an inconsistent state:\n  {}", problems.join("\n  "));
    assert!(
        landed >= 3,
        "only {landed} of {shots} kills of `{cmd}` landed before it finished; the sweep does not reach into the command"
    );
}

// ---------------------------------------------------------------------------
// what the next commands must see
// ---------------------------------------------------------------------------

/// The output of `husk args` as JSON, or a problem.
fn json_of(h: &Husk, args: &[&str], problems: &mut Vec<String>, what: &str) -> Option<Value> {
    let out = h.run(args);
    if out.status != 0 {
        problems.push(format!("{what}: `husk {}` failed ({}): {}", args.join(" "), out.status, out.stderr.trim()));
        return None;
    }
    match serde_json::from_str(&out.stdout) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("{what}: `husk {}` printed no JSON ({e}): {}", args.join(" "), out.stdout));
            None
        }
    }
}

/// Checks the state the next commands see after a kill, then leaves the store with no
/// container (by force, as root, if husk cannot). Returns what ps showed and the
/// inconsistencies found.
fn check_consistent(h: &Husk, what: &str) -> (String, Vec<String>) {
    let mut problems = Vec::new();
    let p = &mut problems;
    macro_rules! check {
        ($cond:expr, $($fmt:tt)*) => {
            if !$cond {
                p.push(format!("{what}: {}", format!($($fmt)*)));
            }
        };
    }
    let mut seen = String::from("no container");
    // 1. ps -a lists the container (at most one) with a sane state
    let rows = json_of(h, &["ps", "-a", "--format", "json"], p, what);
    let rows = rows.and_then(|v| v.as_array().cloned()).unwrap_or_default();
    check!(rows.len() <= 1, "ps -a lists {} containers: {rows:?}", rows.len());
    for row in &rows {
        let id = row["Id"].as_str().unwrap_or_default().to_string();
        let state = row["State"].as_str().unwrap_or_default().to_string();
        let status = row["Status"].as_str().unwrap_or_default().to_string();
        let pid = row["Pid"].as_i64().unwrap_or(-1);
        seen = format!("{state} ({status})");
        check!(id.len() == 64 && row["Names"] == serde_json::json!([NAME]), "ps -a: {row}");
        let sane = match state.as_str() {
            "created" => status == "Created" && pid == 0,
            "running" => status.starts_with("Up ") && pid > 0,
            "exited" => status.starts_with("Exited (") && pid == 0 && row["ExitCode"].as_i64().is_some(),
            _ => false,
        };
        check!(sane, "ps -a shows state {state:?}, status {status:?}, pid {pid}");
        // 2. inspect by id and by name agrees with ps. The state may have moved on, but
        //    only forwards: a monitor that outlived the killed husk may still be starting
        //    the container (created -> running) or recording its end (-> exited).
        let rank = |s: &str| ["created", "running", "exited"].iter().position(|x| *x == s);
        let mut last = state.clone();
        let mut exiting = false;
        for key in [id.as_str(), NAME] {
            let Some(v) = json_of(h, &["inspect", key], p, what) else { continue };
            let s = &v[0]["State"];
            let now = s["Status"].as_str().unwrap_or_default().to_string();
            check!(
                v[0]["Id"] == id.as_str() && v[0]["Name"] == format!("/{NAME}"),
                "inspect {key} shows {}",
                v[0]["Name"]
            );
            check!(
                rank(&now).is_some() && rank(&now) >= rank(&last),
                "the state went back from {last} to {now} (ps -a said {state}, then inspect {key})"
            );
            let running = s["Running"].as_bool() == Some(true);
            check!(
                (running && now == "running" && s["Pid"].as_i64() > Some(0)) || (!running && s["Pid"] == 0),
                "inspect {key}: status {now} with {s}"
            );
            exiting |= now == "running" && !running;
            last = now;
        }
        // "running" with its process gone: its monitor must be recording the exit
        if exiting {
            let recorded = eventually(|| {
                let out = h.run(&["inspect", &id]);
                out.status == 0 && out.stdout.contains("\"Status\": \"exited\"")
            });
            check!(recorded, "inspect still says running 10 s after the container's process ended");
        }
        // 3. what `start` needs is there
        let config = containers_dir(h).join(&id).join("config.json");
        let readable = fs::read(&config).ok().and_then(|d| serde_json::from_slice::<Value>(&d).ok()).is_some();
        check!(
            readable,
            "container {id} ({state}) has no readable config.json: {}",
            describe_tree(&config.with_file_name(""))
        );
        // 4. rm -f removes it
        let out = h.run(&["rm", "-f", &id]);
        check!(out.status == 0, "rm -f {id} failed ({}): {}", out.status, out.stderr.trim());
    }
    let after = json_of(h, &["ps", "-a", "--format", "json"], p, what);
    check!(after.as_ref().is_none_or(|a| a == &serde_json::json!([])), "ps -a after rm -f: {after:?}");
    // 5. no container left in containers/ (half-made or half-removed ones are hidden,
    // `.new-*` and `.rm-*`, and collected later: checked at 8)
    let cdir = containers_dir(h);
    let visible = |d: &Path| dir_entries(d).into_iter().filter(|e| !e.starts_with('.')).collect::<Vec<_>>();
    let leftovers = visible(&cdir);
    check!(leftovers.is_empty(), "left in containers/ after rm -f: {}", describe_tree(&cdir));
    // 6. the name is free: run -d --name takes it (and --rm gives it back)
    let out = h.run(&container_cmd(h, &["run", "-d", "--rm"], "true").iter().map(String::as_str).collect::<Vec<_>>());
    check!(out.status == 0, "the name {NAME} cannot be taken again by run -d ({}): {}", out.status, out.stderr.trim());
    check!(eventually(|| visible(&cdir) == leftovers), "run -d --rm left {}", describe_tree(&cdir));
    // 7. no process of husk or of a container, no mount
    let mut left = Vec::new();
    check!(
        eventually(|| {
            left = our_pids(h);
            left.is_empty()
        }),
        "processes left: {}",
        describe_pids(&left)
    );
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let home = h.home.display().to_string();
    let mounts: Vec<&str> = mi.lines().filter(|l| l.contains(&home)).collect();
    check!(mounts.is_empty(), "mounts left: {mounts:?}");
    // 8. the store is usable
    let out = h.run(&["run", "--rm", &busybox(), "true"]);
    check!(out.status == 0, "run --rm failed ({}): {}", out.status, out.stderr.trim());
    check!(visible(&cdir) == leftovers, "run --rm left {}", describe_tree(&cdir));
    // 9. what killed husks left is collected (a new container collects half-made ones,
    // prune half-removed ones)
    let out = h.run(&["system", "prune", "-f"]);
    check!(out.status == 0, "system prune failed ({}): {}", out.status, out.stderr.trim());
    check!(dir_entries(&cdir).is_empty(), "left after prune: {}", describe_tree(&cdir));
    force_clean(h, &left);
    (seen, problems)
}

/// After an inconsistency: kills the processes found and removes every container
/// directory and name reservation as root, so that the next trial starts clean.
fn force_clean(h: &Husk, pids: &[i32]) {
    for &pid in pids {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for dir in [containers_dir(h), h.store().join("container-names")] {
        for e in dir_entries(&dir) {
            let p = dir.join(e);
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

// ---------------------------------------------------------------------------
// the verbs
// ---------------------------------------------------------------------------

fn nothing(_: &Husk) {}

/// A created (never started) container.
fn created(h: &Husk) {
    run_ok(h, &container_cmd(h, &["create"], SLEEPER));
}

/// A running container whose pid 1 ignores SIGTERM.
fn running(h: &Husk) {
    run_ok(h, &container_cmd(h, &["run", "-d"], SLEEPER));
}

/// A running container that exits 3 on SIGTERM.
fn running_trapping_term(h: &Husk) {
    run_ok(h, &container_cmd(h, &["run", "-d"], &format!("trap 'exit 3' TERM; {SLEEPER}")));
}

/// A running container with 1000 files in its writable layer; it exits 3 on SIGTERM.
fn running_with_junk(h: &Husk) {
    run_ok(h, &container_cmd(h, &["run", "-d"], &format!("{JUNK} && echo ready; trap 'exit 3' TERM; {SLEEPER}")));
    assert!(eventually(|| h.run(&["logs", NAME]).stdout == "ready\n"), "the container did not write its files");
}

/// An exited container with 1000 files in its writable layer.
fn exited_with_junk(h: &Husk) {
    run_ok(h, &container_cmd(h, &["run"], JUNK));
}

fn verb(words: &'static [&'static str]) -> impl Fn(&Husk) -> Vec<String> {
    move |_| words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn kill_9_during_create_with_subids() {
    sweep(TestUser::Sub, &nothing, &|h| container_cmd(h, &["create"], SLEEPER));
}

#[test]
fn kill_9_during_create_without_subids() {
    sweep(TestUser::NoSub, &nothing, &|h| container_cmd(h, &["create"], SLEEPER));
}

#[test]
fn kill_9_during_run_detached_with_subids() {
    sweep(TestUser::Sub, &nothing, &|h| container_cmd(h, &["run", "-d"], SLEEPER));
}

#[test]
fn kill_9_during_run_detached_without_subids() {
    sweep(TestUser::NoSub, &nothing, &|h| container_cmd(h, &["run", "-d"], SLEEPER));
}

#[test]
fn kill_9_during_start_with_subids() {
    sweep(TestUser::Sub, &created, &verb(&["start", NAME]));
}

#[test]
fn kill_9_during_start_without_subids() {
    sweep(TestUser::NoSub, &created, &verb(&["start", NAME]));
}

/// stop -t 0: SIGTERM (ignored by the container's sh), then SIGKILL at once.
#[test]
fn kill_9_during_stop_with_subids() {
    sweep(TestUser::Sub, &running, &verb(&["stop", "-t", "0", NAME]));
}

/// stop -t 1 of a container that exits on SIGTERM.
#[test]
fn kill_9_during_stop_without_subids() {
    sweep(TestUser::NoSub, &running_trapping_term, &verb(&["stop", "-t", "1", NAME]));
}

/// rm of an exited container with 1000 files to remove.
#[test]
fn kill_9_during_rm_with_subids() {
    sweep(TestUser::Sub, &exited_with_junk, &verb(&["rm", NAME]));
}

/// rm -f of a running container with 1000 files to remove: stop, then removal.
#[test]
fn kill_9_during_rm_f_without_subids() {
    sweep(TestUser::NoSub, &running_with_junk, &verb(&["rm", "-f", NAME]));
}
