//! `husk system check [--repair]` as an unprivileged user: a store in use is clean and
//! left as it was; damage made by hand (a changed file in a layer, a truncated blob) and
//! what killed commands leave (temp files, scratch dirs, half-made and half-removed
//! containers, stale name reservations and locks, unused blobs, a container whose
//! monitor was killed) are each reported on one line with the right class and exit
//! status, and `--repair` mends exactly that, after which the store checks clean and
//! works.
mod common;
use common::reg;

use common::{ensure_prereqs, shared_registry, Husk, TempDir, TestUser};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn setup(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    let h = Husk::new(user);
    h.run(&["pull", "-q", &busybox()]).assert_ok();
    h
}

fn busybox() -> String {
    reg("busybox:latest")
}

/// `husk system check` (with `--repair`): exit status and the lines it printed.
fn check(h: &Husk, repair: bool) -> (i32, Vec<String>, String) {
    let mut args = vec!["system", "check"];
    if repair {
        args.push("--repair");
    }
    let out = h.run(&args);
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    (out.status, out.stdout.lines().map(str::to_string).collect(), out.stderr)
}

#[track_caller]
fn assert_clean(h: &Husk) {
    let (status, lines, stderr) = check(h, false);
    assert_eq!((status, lines.len()), (0, 0), "not clean: {lines:#?}\n{stderr}");
    assert_eq!(stderr.trim(), "no problems found");
}

/// Every path under `root` but `locks/` (lock files are made on first use), with its
/// size and mtime (not that of `tmp/`, where check has its scratch space).
fn snapshot(root: &Path) -> BTreeSet<(PathBuf, u64, i64)> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with("locks") {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            let mtime = if rel == Path::new("tmp") { 0 } else { m.mtime() };
            out.insert((rel, if m.is_dir() { 0 } else { m.len() }, mtime));
        }
    }
    out
}

/// The one layer of the store's busybox image.
fn busybox_layer(h: &Husk) -> PathBuf {
    let layers: Vec<PathBuf> = fs::read_dir(h.store().join("layers")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
    layers[0].clone()
}

/// The first regular, non-empty file under `dir` (by name, depth first).
fn some_file(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    let file = names.iter().find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0));
    file.cloned().or_else(|| {
        names.iter().filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())).find_map(|p| some_file(p))
    })
}

#[test]
fn a_store_in_use_is_clean_and_left_as_it_was() {
    let h = setup(TestUser::Sub);
    h.run(&["run", "--name", "changed", &busybox(), "sh", "-c", "echo hi > /note; mkdir -p /d && touch /d/x"])
        .assert_ok();
    h.run(&["run", "-d", "--name", "sleeper", &busybox(), "sleep", "600"]).assert_ok();
    h.run(&["commit", "-m", "a note", "changed", "check:committed"]).assert_ok();
    let ctx = TempDir::new("check-ctx");
    fs::write(ctx.path().join("Dockerfile"), format!("FROM {}\nRUN echo built > /built\n", busybox())).unwrap();
    fs::write(ctx.path().join("unused"), "x").unwrap();
    std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(ctx.path()).status().unwrap();
    h.run(&["build", "-q", "-t", "check:built", ctx.path().to_str().unwrap()]).assert_ok();
    let before = snapshot(&h.store());
    let changes = |after: BTreeSet<(PathBuf, u64, i64)>| -> Vec<String> {
        let gone = before.difference(&after).map(|e| format!("- {e:?}"));
        gone.chain(after.difference(&before).map(|e| format!("+ {e:?}"))).collect()
    };
    assert_clean(&h);
    assert_eq!(changes(snapshot(&h.store())), Vec::<String>::new(), "check changed the store");
    // --repair on a clean store changes nothing either
    let (status, lines, _) = check(&h, true);
    assert_eq!((status, lines.len()), (0, 0), "{lines:#?}");
    assert_eq!(changes(snapshot(&h.store())), Vec::<String>::new(), "check --repair changed a clean store");
    h.run(&["rm", "-f", "sleeper", "changed"]).assert_ok();
    assert_clean(&h);
}

#[test]
fn a_changed_layer_file_is_damage_and_repair_extracts_the_layer_again() {
    let h = setup(TestUser::Sub);
    h.run(&["create", "--name", "keep", &busybox(), "true"]).assert_ok();
    let layer = busybox_layer(&h);
    let file = some_file(&layer.join("diff")).expect("a file in busybox");
    let original = fs::read(&file).unwrap();
    let mut changed = original.clone();
    changed[0] ^= 0xff;
    fs::write(&file, &changed).unwrap(); // as root: owner and mode stay
    let chain = format!("sha256:{}", layer.file_name().unwrap().to_string_lossy());
    let rel = file.strip_prefix(layer.join("diff")).unwrap().display().to_string();
    let (status, lines, stderr) = check(&h, false);
    assert_eq!(status, 2, "{lines:#?}\n{stderr}");
    assert_eq!(lines, [format!("damaged  layer {chain}: its files differ from its blob's: /{rel}: other content")]);
    assert_eq!(stderr.trim(), "1 problem found: 1 damaged");
    let (status, lines, stderr) = check(&h, true);
    assert_eq!(status, 0, "{lines:#?}\n{stderr}");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with("[replaced by a fresh extraction of its blob]"), "{lines:#?}");
    assert_eq!(stderr.trim(), "1 problem found, 1 repaired: the store is consistent");
    assert_eq!(fs::read(&file).unwrap(), original);
    assert_clean(&h);
    h.run(&["start", "-a", "keep"]).assert_ok();
    h.run(&["run", "--rm", &busybox(), "true"]).assert_ok();
}

#[test]
fn a_truncated_layer_blob_takes_its_image_and_repair_lets_it_be_pulled_again() {
    let h = setup(TestUser::NoSub);
    h.run(&["create", "--name", "keep", &busybox(), "true"]).assert_ok();
    let index: serde_json::Value = serde_json::from_slice(&fs::read(h.store().join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| h.store().join("blobs/sha256").join(&d[7..]);
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    let layer_blob = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let f = fs::OpenOptions::new().write(true).open(blob(&layer_blob)).unwrap();
    f.set_len(100).unwrap();
    let (status, lines, stderr) = check(&h, false);
    assert_eq!(status, 2, "{lines:#?}\n{stderr}");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with(&format!("damaged  blob {layer_blob}: its content does not match its digest")));
    assert_eq!(
        lines[1],
        format!("damaged  image {} ({manifest_digest}): its layer blob {layer_blob} is missing or damaged", busybox())
    );
    let (status, lines, stderr) = check(&h, true);
    assert_eq!(status, 0, "{lines:#?}\n{stderr}");
    assert!(lines[0].ends_with("[removed]") && lines[1].ends_with("[removed from the images; pull it again]"));
    // the manifest and config went with the image; the layer stays: container keep uses it
    assert!(lines[2..].iter().all(|l| l.starts_with("leftover blob ") && l.ends_with("[removed]")), "{lines:#?}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(h.run(&["images", "-q"]).assert_ok().stdout, "");
    assert_clean(&h);
    h.run(&["start", "-a", "keep"]).assert_ok();
    h.run(&["pull", "-q", &busybox()]).assert_ok();
    assert_clean(&h);
    h.run(&["run", "--rm", &busybox(), "true"]).assert_ok();
}

#[test]
fn leftovers_of_killed_commands_are_reported_and_collected() {
    let h = setup(TestUser::Sub);
    let (uid, gid) = TestUser::Sub.ids();
    let store = h.store();
    // a container whose monitor is killed: its process dies with it (parent-death signal)
    h.run(&["run", "-d", "--name", "orphan", &busybox(), "sleep", "600"]).assert_ok();
    let id = h.run(&["ps", "-q", "--no-trunc"]).stdout.trim().to_string();
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(store.join("containers").join(&id).join("state.json")).unwrap()).unwrap();
    let monitor = state["monitor"]["pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::alive(monitor as i64) || !h.leftover_processes().is_empty() {
        assert!(Instant::now() < deadline, "the monitor and container did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    // what killed husks leave, made as the user would have
    let ghost = "0".repeat(64);
    let half_made = "1".repeat(64);
    let half_removed = "2".repeat(64);
    let orphan_blob = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b"orphan"));
    let made: Vec<(String, &[u8])> = vec![
        ("tmp/4194305-0-0/layer-x".into(), b"partial"),
        (".index.json.tmp-4194305-0-0".into(), b"{"),
        (format!("blobs/sha256/{orphan_blob}"), b"orphan"),
        (format!("containers/.new-{half_made}/upper/f"), b"x"),
        (format!("locks/new-{half_made}.lock"), b""),
        (format!("containers/.rm-{half_removed}/upper/f"), b"x"),
        ("container-names/ghost".into(), ghost.as_bytes()),
        // an rm killed between its rename and the release of the name
        ("container-names/halfgone".into(), half_removed.as_bytes()),
        (format!("locks/layer-{ghost}.lock"), b""),
        ("volumes/.new-4194305-0-0/_data/f".into(), b"x"),
    ];
    for (path, content) in &made {
        let p = store.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        // owned by the user, as husk would have made it (and nothing else changed)
        for a in p.ancestors().take_while(|a| a.starts_with(&store) && *a != store) {
            std::os::unix::fs::chown(a, Some(uid), Some(gid)).unwrap();
        }
    }
    let (status, lines, stderr) = check(&h, false);
    assert_eq!(status, 1, "{lines:#?}\n{stderr}");
    let found: BTreeSet<String> = lines.iter().cloned().collect();
    let expected: BTreeSet<String> = [
        "tmp/4194305-0-0: left by a process that is gone".to_string(),
        ".index.json.tmp-4194305-0-0: left by a process that is gone".into(),
        format!("blob sha256:{orphan_blob}: used by no image or build step"),
        format!("containers/.new-{half_made}: a container half-made by a husk that is gone"),
        format!("containers/.rm-{half_removed}: a container half-removed by a husk that is gone"),
        "container-names/ghost: reserves the name for container 000000000000, which does not exist".into(),
        "container-names/halfgone: reserves the name for container 222222222222, which does not exist".into(),
        format!("locks/layer-{ghost}.lock: lock of a layer that is not stored"),
        "volumes/.new-4194305-0-0: a volume half-made or half-removed by a husk that is gone".into(),
        format!("container orphan ({}): marked running but its monitor is gone", &id[..12]),
    ]
    .into_iter()
    .map(|l| format!("leftover {l}"))
    .collect();
    assert_eq!(found, expected, "\n{stderr}");
    assert_eq!(stderr.trim(), "10 problems found: 10 leftovers of interrupted commands");
    let (status, lines, stderr) = check(&h, true);
    assert_eq!(status, 0, "{lines:#?}\n{stderr}");
    assert_eq!(lines.len(), 10, "{lines:#?}");
    for l in &lines {
        let done = if l.contains("container orphan") { "[recorded as exited (137)]" } else { "[removed]" };
        assert!(l.ends_with(done), "{l}");
    }
    let dirs = ["tmp/4194305-0-0", "volumes/.new-4194305-0-0"].map(String::from);
    let dirs =
        [format!("containers/.new-{half_made}"), format!("containers/.rm-{half_removed}")].into_iter().chain(dirs);
    for path in made.iter().map(|(p, _)| p.clone()).chain(dirs) {
        assert!(!store.join(&path).exists(), "{path} is still there");
    }
    let ps = h.run(&["ps", "-a", "--format", "json"]).assert_ok().stdout.clone();
    let ps: serde_json::Value = serde_json::from_str(&ps).unwrap();
    assert_eq!((ps[0]["State"].as_str(), ps[0]["ExitCode"].as_i64()), (Some("exited"), Some(137)), "{ps}");
    assert_clean(&h);
    h.run(&["run", "--rm", "--name", "ghost", &busybox(), "true"]).assert_ok();
    h.run(&["rm", "orphan"]).assert_ok();
    assert_clean(&h);
}
