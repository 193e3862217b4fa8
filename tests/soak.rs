//! Soak (issue 7): for HUSK_SOAK_SECS seconds (default 120), four workers run pull,
//! run --rm, run -d, exec, stop, rm, rmi, system prune and system check at random
//! against one store, as an unprivileged user. A command may fail only by losing a race
//! to another worker, with the message that says so (the container is gone or not
//! running, the image is gone or in use; a foreground `run --rm` that another worker
//! picked from `ps` and stopped or removed ends with 137); `system check` must find nothing at any
//! moment. At the end every container is removed, `system check` is clean, and no
//! process and no mount of the test is left. The operations completed are counted and
//! printed (HUSK_SOAK_SEED=N repeats a run's choices).
mod common;
use common::reg;

use common::{ensure_prereqs, pids_with_env, seed_from_env, shared_registry, Husk, Output, Rng, TestUser};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WORKERS: u64 = 4;
/// More containers than this up at once and workers stop starting new ones.
const MAX_RUNNING: usize = 6;

fn images() -> [String; 3] {
    [reg("busybox:latest"), reg("busybox:zstd"), reg("layered:latest")]
}

fn marker(h: &Husk) -> String {
    format!("HUSK_SOAK_MARKER={}", h.home.display())
}

/// What became of each kind of operation.
#[derive(Default)]
struct Tally {
    done: BTreeMap<&'static str, usize>,
    /// Lost races, by kind.
    lost: BTreeMap<&'static str, usize>,
    /// Failures that are not lost races.
    wrong: Vec<String>,
    /// Names of the containers a worker stopped or removed (by force).
    killed: HashSet<String>,
}

/// Messages of a command that lost a race with another worker's.
const LOST_RACE: &[&str] = &[
    "no such container",
    "is not running",
    "image not known",
    "must be forced",
    "was removed while the container was being made",
    "started again while being removed",
    "is being started",
];

/// `name` is that of the container of a `run --rm`.
fn record(tally: &Mutex<Tally>, kind: &'static str, args: &[&str], name: Option<&str>, out: &Output) {
    let mut t = tally.lock().unwrap();
    let killed = matches!(out.status, 137 | 143) && out.stderr.is_empty();
    if out.status == 0 {
        *t.done.entry(kind).or_default() += 1;
    } else if kind != "check" && LOST_RACE.iter().any(|m| out.stderr.contains(m))
        // the exec'd process dies with the container's pid 1 (stopped or removed meanwhile)
        || (kind == "exec" && out.status == 137 && out.stderr.is_empty())
        // a foreground container another worker picked from `ps` and stopped or removed
        || (killed && name.is_some_and(|n| t.killed.contains(n)))
    {
        *t.lost.entry(kind).or_default() += 1;
    } else {
        t.wrong.push(format!("husk {}: {out:?}", args.join(" ")));
    }
}

/// Container names (running ones, or all).
fn containers(h: &Husk, all: bool) -> Vec<String> {
    let args: &[&str] = if all { &["ps", "-a", "--format", "json"] } else { &["ps", "--format", "json"] };
    let rows: Vec<serde_json::Value> = serde_json::from_str(&h.run(args).assert_ok().stdout).expect("ps json");
    rows.iter().map(|r| r["Names"][0].as_str().expect("a name").to_string()).collect()
}

/// Marks a container as stopped or removed by a worker, before that is done.
fn kill(tally: &Mutex<Tally>, name: &str) {
    tally.lock().unwrap().killed.insert(name.to_string());
}

static FOREGROUND: AtomicUsize = AtomicUsize::new(0);

/// One random operation.
fn operate(h: &Husk, rng: &mut Rng, tally: &Mutex<Tally>) {
    let images = images();
    let image = rng.pick(&images).unwrap().clone();
    let mark = marker(h);
    let running = containers(h, false);
    let roll = rng.next() % 100;
    let (kind, args): (&'static str, Vec<String>) = match roll {
        0..=9 => ("pull", vec!["pull".into(), "-q".into(), image]),
        10..=24 => {
            let cmd = ["sh", "-c", "echo $((6 * 7))"].map(String::from);
            let name = format!("soak-fg-{}", FOREGROUND.fetch_add(1, Ordering::Relaxed));
            let mut a =
                ["run", "--rm", "--name", &name, "--network", "none", "-e", &mark, &image].map(String::from).to_vec();
            a.extend(cmd);
            ("run --rm", a)
        }
        25..=39 if running.len() < MAX_RUNNING => {
            let mut a = ["run", "-d", "-e", &mark].map(String::from).to_vec();
            if rng.next().is_multiple_of(2) {
                a.push("--init".into()); // then stop's SIGTERM ends it at once
            }
            a.extend([image, "sleep".into(), "20".into()]);
            ("run -d", a)
        }
        40..=54 => match rng.pick(&running) {
            Some(id) => ("exec", ["exec", id, "sh", "-c", "test -d /proc/1"].map(String::from).to_vec()),
            None => return,
        },
        55..=64 => match rng.pick(&running) {
            Some(id) => {
                kill(tally, id);
                ("stop", ["stop", "-t", "1", id].map(String::from).to_vec())
            }
            None => return,
        },
        65..=79 => match rng.pick(&containers(h, true)) {
            Some(id) => {
                kill(tally, id);
                ("rm", ["rm", "-f", id].map(String::from).to_vec())
            }
            None => return,
        },
        80..=89 => ("rmi", vec!["rmi".into(), image]),
        90..=94 => {
            let mut a = ["system", "prune", "-f"].map(String::from).to_vec();
            a.extend((rng.next().is_multiple_of(2)).then(|| "-a".to_string()));
            ("prune", a)
        }
        95..=99 => ("check", ["system", "check"].map(String::from).to_vec()),
        _ => return,
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.run(&args);
    if kind == "run --rm" && out.status == 0 {
        assert_eq!(out.stdout, "42\n", "husk {}: {out:?}", args.join(" "));
    }
    let name = (kind == "run --rm").then(|| args[3]);
    record(tally, kind, &args, name, &out);
}

#[test]
fn soak_of_concurrent_commands_on_one_store() {
    ensure_prereqs();
    shared_registry();
    let secs: u64 = std::env::var("HUSK_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let seed = seed_from_env("HUSK_SOAK_SEED");
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &images()[0]]).assert_ok();
    let tally = Mutex::new(Tally::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (h, tally) = (&h, &tally);
            s.spawn(move || {
                let mut rng = Rng(seed ^ w.wrapping_mul(0x2545_f491_4f6c_dd1d));
                while Instant::now() < until {
                    operate(h, &mut rng, tally);
                }
            });
        }
    });
    let ran = started.elapsed();
    // the end: every container removed, then the store checked
    for id in containers(&h, true) {
        h.run(&["rm", "-f", &id]).assert_ok();
    }
    let check = h.run(&["system", "check"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = Vec::new();
    while Instant::now() < deadline {
        left = pids_with_env(&format!("HOME={}", h.home.display()));
        left.extend(pids_with_env(&marker(&h)));
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let home = h.home.display().to_string();
    let mounts: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&home)).collect();
    let t = tally.into_inner().unwrap();
    let total: usize = t.done.values().sum();
    let lost: usize = t.lost.values().sum();
    let per_kind: Vec<String> =
        t.done.iter().map(|(k, n)| format!("{k} {n} (lost races {})", t.lost.get(k).copied().unwrap_or(0))).collect();
    eprintln!(
        "soak: {total} operations completed in {ran:.1?} by {WORKERS} workers ({:.1}/s), {lost} lost races (seed {seed}):\n  {}",
        total as f64 / ran.as_secs_f64(),
        per_kind.join("\n  ")
    );
    assert!(
        t.wrong.is_empty(),
        "{} commands failed other than by losing a race:\n{}",
        t.wrong.len(),
        t.wrong.join("\n")
    );
    assert!(check.status == 0 && check.stdout.is_empty(), "system check after the soak:\n{check:?}");
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    for kind in ["pull", "run --rm", "run -d", "exec", "stop", "rm", "rmi", "prune", "check"] {
        assert!(t.done.get(kind).copied().unwrap_or(0) > 0, "no {kind} completed in {secs} s");
    }
}
