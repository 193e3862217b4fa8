//! husk killed with -9 at random moments of `pull`, `build`, `commit`, `rm` and `rmi`
//! (issue 7), as an unprivileged user: after every kill `husk system check` finds no
//! damage, only leftovers (what it classes as harmless: scratch space, temp files,
//! unused blobs and layers, half-made or half-removed containers, the containers of
//! killed builds), and the next commands work. There are no fault hooks in husk: each
//! verb runs in the background and husk (the child of runuser) gets SIGKILL after a
//! random delay within its measured duration, then every other process of the command
//! (the forked workers, a build step's container) too, as if the machine had stopped
//! them all at once. The delays come from a seeded generator: the seed is printed, and
//! `HUSK_CRASH_SEED=N` repeats a run. Each verb is killed until LANDED kills came before
//! it finished (105 in all); at the end `system check --repair` leaves a clean store.
mod common;
use common::reg;

use common::kill::shoot;
use common::{ensure_prereqs, pids_with_env, seed_from_env, shared_registry, Husk, Rng, TempDir, TestUser};
use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

/// Kills per verb that must land while husk runs.
const LANDED: usize = 21;
/// Shots per verb before giving up on reaching LANDED.
const MAX_SHOTS: usize = 60;

fn busybox() -> String {
    reg("busybox:latest")
}

fn layered() -> String {
    reg("layered:latest")
}

/// `HUSK_CRASH_SEED`, or one made from the clock; each verb's generator starts from it
/// and the verb's name.
fn seed(verb: &str) -> (u64, u64) {
    let base = seed_from_env("HUSK_CRASH_SEED");
    let mixed = verb.bytes().fold(base, |h, b| h.wrapping_mul(0x100_0000_01b3) ^ b as u64);
    (base, mixed)
}

/// Given to build steps' containers (ENV), so that their processes can be found.
fn marker(h: &Husk) -> String {
    format!("HUSK_CRASH_MARKER={}", h.home.display())
}

/// Every process of this test's husk: husk, what it forked, build step containers.
fn our_pids(h: &Husk) -> Vec<i32> {
    let mut v = pids_with_env(&format!("HOME={}", h.home.display()));
    v.extend(pids_with_env(&marker(h)));
    v
}

/// Kills whatever of the command still runs and waits until it is gone.
fn kill_the_rest(h: &Husk) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = our_pids(h);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes do not die: {left:?}");
        for pid in left {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `husk system check`: no damage, at most leftovers; returns the kinds of leftovers
/// (what each line says after its subject).
fn check_after_kill(h: &Husk, what: &str) -> Vec<String> {
    let out = h.run(&["system", "check"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        matches!(out.status, 0 | 1) && lines.iter().all(|l| l.starts_with("leftover ")),
        "{what}: system check found more than leftovers:\n{out:?}"
    );
    assert_eq!(out.status == 0, lines.is_empty(), "{what}: exit status and findings disagree:\n{out:?}");
    lines.iter().map(|l| l.split_once(": ").map_or(*l, |(_, kind)| kind).to_string()).collect()
}

#[track_caller]
fn assert_clean(h: &Husk, what: &str) {
    let out = h.run(&["system", "check"]);
    assert!(out.status == 0 && out.stdout.is_empty(), "{what}: the store is not clean:\n{out:?}");
}

/// A verb to kill: made ready by `prepare` before each shot, followed by `next` (the
/// next commands, which must succeed) after it.
struct Verb<'a> {
    name: &'a str,
    args: Vec<String>,
    prepare: &'a dyn Fn(&Husk),
    next: &'a dyn Fn(&Husk),
}

/// Kills `verb` at random moments until LANDED kills came before it finished; checks the
/// store after each; repairs and checks again at the end.
fn crash(h: &Husk, verb: Verb) {
    let (base, mixed) = seed(verb.name);
    let mut rng = Rng(mixed);
    let cmd = format!("husk {}", verb.args.join(" "));
    // uninterrupted (the shorter of two runs): how long it takes, and a clean store after
    let mut took = Duration::MAX;
    for _ in 0..2 {
        (verb.prepare)(h);
        let shot = shoot(h, &verb.args, None);
        assert_eq!(shot.status, 0, "`{cmd}` (not killed) failed: {}", shot.stderr);
        took = took.min(shot.ran);
        assert_clean(h, &format!("after an uninterrupted `{cmd}`"));
        (verb.next)(h);
    }
    let started = Instant::now();
    let (mut shots, mut landed) = (0, 0);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    while landed < LANDED {
        assert!(shots < MAX_SHOTS, "only {landed} of {shots} kills of `{cmd}` landed (seed {base})");
        (verb.prepare)(h);
        // over the whole run and a little after: some kills come too late, on purpose
        let delay = rng.below(took.mul_f64(1.15));
        let shot = shoot(h, &verb.args, Some(delay));
        kill_the_rest(h);
        shots += 1;
        let what = format!("`{cmd}` killed after {:.1?} (seed {base}, shot {shots})", shot.ran);
        if shot.landed {
            landed += 1;
        } else {
            assert_eq!(shot.status, 0, "{what}: it failed although it was not killed: {}", shot.stderr);
            // It ran to its end: the verb is this fast now (the first runs may have
            // shared the CPUs with other tests), so later kills aim within that.
            took = took.min(shot.ran);
        }
        for kind in check_after_kill(h, &what) {
            *kinds.entry(kind).or_default() += 1;
        }
        (verb.next)(h);
        if shots % 10 == 0 {
            let out = h.run(&["system", "check", "--repair"]);
            assert_eq!(out.status, 0, "{what}: system check --repair:\n{out:?}");
        }
    }
    let out = h.run(&["system", "check", "--repair"]);
    assert_eq!(out.status, 0, "`{cmd}`: the last system check --repair:\n{out:?}");
    assert_clean(h, &format!("`{cmd}` after the last repair"));
    let found: Vec<String> = kinds.iter().map(|(k, n)| format!("{n:>4} × {k}")).collect();
    eprintln!(
        "crash_check {}: {landed} of {shots} kills landed in `{cmd}` ({took:.1?} uninterrupted; seed {base}; {:.1?})\n  leftovers found after the kills:\n  {}",
        verb.name,
        started.elapsed(),
        if found.is_empty() { "none".to_string() } else { found.join("\n  ") }
    );
}

fn setup(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    Husk::new(user)
}

fn ok(h: &Husk, args: &[&str]) {
    h.run(args).assert_ok();
}

/// `rmi` that may find the image gone already.
fn remove_image(h: &Husk, image: &str) {
    let out = h.run(&["rmi", image]);
    assert!(out.status == 0 || out.stderr.contains("image not known"), "{out:?}");
}

fn nothing(_: &Husk) {}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// pull of an image of three layers (busybox, edge cases: hard links, xattrs, odd
/// names; whiteouts), into a store without any of them.
#[test]
fn kill_9_during_pull() {
    let h = setup(TestUser::Sub);
    let prepare = |h: &Husk| remove_image(h, &layered());
    let next = |h: &Husk| {
        ok(h, &["pull", "-q", &layered()]);
        ok(h, &["run", "--rm", &layered(), "true"]);
    };
    crash(&h, Verb { name: "pull", args: strings(&["pull", "-q", &layered()]), prepare: &prepare, next: &next });
}

/// build without the cache: two RUN steps (one making 300 files) and a COPY.
#[test]
fn kill_9_during_build() {
    let h = setup(TestUser::Sub);
    ok(&h, &["pull", "-q", &busybox()]);
    let ctx = TempDir::new("crash-ctx");
    let dockerfile = format!(
        "FROM {}\nENV {}\nRUN mkdir /out && cd /out && seq 1 300 | xargs touch\nCOPY payload /payload\nRUN echo done > /done\n",
        busybox(),
        marker(&h)
    );
    fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    fs::write(ctx.path().join("payload"), vec![b'x'; 256 << 10]).unwrap();
    std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(ctx.path()).status().unwrap();
    let dir = ctx.path().to_str().unwrap().to_string();
    let next = |h: &Husk| {
        ok(h, &["build", "-q", "-t", "crash:built", &dir]);
        let out = h.run(&["run", "--rm", "crash:built", "sh", "-c", "cat /done; ls /out | wc -l"]);
        assert_eq!(out.assert_ok().stdout.split_whitespace().collect::<Vec<_>>(), ["done", "300"]);
    };
    let args = strings(&["build", "-q", "--no-cache", "-t", "crash:built", &dir]);
    crash(&h, Verb { name: "build", args, prepare: &nothing, next: &next });
}

/// commit of a container with 300 new files.
#[test]
fn kill_9_during_commit() {
    let h = setup(TestUser::Sub);
    let script = "mkdir /data && cd /data && for i in $(seq 1 300); do echo $i > $i; done";
    ok(&h, &["run", "--name", "source", &busybox(), "sh", "-c", script]);
    let next = |h: &Husk| {
        ok(h, &["commit", "source", "crash:committed"]);
        assert_eq!(h.run(&["run", "--rm", "crash:committed", "cat", "/data/7"]).assert_ok().stdout, "7\n");
    };
    let args = strings(&["commit", "source", "crash:committed"]);
    crash(&h, Verb { name: "commit", args, prepare: &nothing, next: &next });
}

/// rm of an exited container with 1000 files in its writable layer; the name is taken
/// again by the next one.
#[test]
fn kill_9_during_rm() {
    let h = setup(TestUser::Sub);
    ok(&h, &["pull", "-q", &busybox()]);
    let prepare = |h: &Husk| {
        ok(
            h,
            &["run", "--name", "victim", &busybox(), "sh", "-c", "mkdir /junk && cd /junk && seq 1 1000 | xargs touch"],
        )
    };
    let next = |h: &Husk| {
        let out = h.run(&["rm", "victim"]);
        assert!(out.status == 0 || out.stderr.contains("no such container"), "{out:?}");
        assert_eq!(h.run(&["ps", "-a", "-q"]).assert_ok().stdout, "");
    };
    crash(&h, Verb { name: "rm", args: strings(&["rm", "victim"]), prepare: &prepare, next: &next });
}

/// rmi of an image whose three layers no other image uses.
#[test]
fn kill_9_during_rmi() {
    let h = setup(TestUser::Sub);
    let prepare = |h: &Husk| ok(h, &["pull", "-q", &layered()]);
    let next = |h: &Husk| {
        remove_image(h, &layered());
        assert_eq!(h.run(&["images", "-q"]).assert_ok().stdout, "");
    };
    crash(&h, Verb { name: "rmi", args: strings(&["rmi", &layered()]), prepare: &prepare, next: &next });
}
