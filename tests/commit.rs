//! `husk commit`, `diff`, `export`, `import` and `history`, as unprivileged users (with
//! and without subordinate ids) and root: a container adds, changes and deletes files
//! (a file of the image's layer deleted, a directory of it replaced: an opaque
//! directory); its commit runs with those changes, and the committed image, copied out
//! of husk's store by skopeo and unpacked by umoci, holds the tree the container saw.
mod common;
use common::reg;

use common::{Husk, TestUser};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn setup(user: TestUser) -> Husk {
    common::husk_with_busybox(user)
}

#[track_caller]
fn husk_ok(h: &Husk, args: &[&str]) -> String {
    let out = h.run(args);
    out.assert_ok();
    out.stdout
}

/// A directory the test user owns.
fn user_dir(h: &Husk, label: &str) -> PathBuf {
    let d = h.home.join(label);
    fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(h.user.uid()), Some(h.user.gid())).unwrap();
    d
}

/// Adds, changes and deletes: /etc/group (a file of the image) deleted, /home (a
/// directory of the image, with /home/app in it) replaced, a hard link, a symlink, a fifo,
/// a file owned by 1000:1000 and setgid where the user has the ids for it.
fn changes_script(user: TestUser) -> String {
    let owners = if user == TestUser::NoSub { "" } else { "chown 1000:1000 /data/sub/f; chmod 2640 /data/sub/f;" };
    format!(
        "mkdir -p /data/sub && echo hello > /data/sub/f && {owners} \
         echo extra >> /etc/passwd && rm /etc/group && \
         rm -rf /home && mkdir -p /home/new && echo n > /home/new/x && \
         echo hl > /data/h1 && ln /data/h1 /data/h2 && ln -s /data/sub/f /link && mkfifo /data/fifo"
    )
}

/// What the container sees, one line a path: `PATH|TYPE|MODE|UID:GID|SIZE|SHA256` for
/// files, `PATH|TYPE|-|UID:GID|TARGET` for symlinks, `PATH|TYPE|MODE|UID:GID` otherwise.
/// The mount points husk adds (/proc, /dev, /sys, /etc/hostname, hosts, resolv.conf)
/// are not the image's.
const LISTING: &str = r#"find / -xdev | sort | grep -v -x -e / -e /proc -e /dev -e /sys -e /etc/hostname -e /etc/hosts -e /etc/resolv.conf | while read -r f; do
  t=$(stat -c %F "$f"); o=$(stat -c %u:%g "$f")
  case "$t" in
    "regular file") echo "$f|$t|$(stat -c %a "$f")|$o|$(stat -c %s "$f")|$(sha256sum < "$f" | cut -d' ' -f1)";;
    "symbolic link") echo "$f|$t|-|$o|$(readlink "$f")";;
    *) echo "$f|$t|$(stat -c %a "$f")|$o";;
  esac
done"#;

/// The same listing of a tree on the host.
fn listing_of(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let name = format!("/{}", p.strip_prefix(root).unwrap().display());
            let o = format!("{}:{}", m.uid(), m.gid());
            let mode = format!("{:o}", m.mode() & 0o7777);
            let ft = m.file_type();
            let line = if ft.is_file() {
                let sum = hex::encode(Sha256::digest(fs::read(&p).unwrap()));
                format!("{name}|regular file|{mode}|{o}|{}|{sum}", m.len())
            } else if ft.is_symlink() {
                format!("{name}|symbolic link|-|{o}|{}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                format!("{name}|directory|{mode}|{o}")
            } else if ft.is_fifo() {
                format!("{name}|fifo|{mode}|{o}")
            } else {
                format!("{name}|other|{mode}|{o}")
            };
            out.push((name, line));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out.into_iter().map(|(_, line)| line + "\n").collect()
}

/// The image `name` copied out of husk's store (an OCI image layout) by skopeo, then
/// unpacked by umoci as root (owners as the layers record them, whiteouts applied).
fn unpack_with_umoci(h: &Husk, name: &str, dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let run = |cmd: &mut Command| {
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("skopeo")
        .args(["copy", "-q"])
        .arg(format!("oci:{}:{}", h.store().display(), name))
        .arg(format!("oci:{}:img", layout.display())));
    let bundle = dir.join("bundle");
    run(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:img", layout.display())).arg(&bundle));
    bundle.join("rootfs")
}

#[track_caller]
fn assert_same_listing(got: &str, want: &str) {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    let extra: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).collect();
    let missing: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && g.len() == w.len(),
        "got but not wanted: {extra:#?}\nwanted but not got: {missing:#?}"
    );
}

fn temp_dir(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("husk-commit-test-{}-{}", label, std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn commit_round_trip(user: TestUser) {
    let h = setup(user);
    let image = reg("busybox:latest");
    let script = format!("{} && {}", changes_script(user), LISTING);
    let seen = husk_ok(&h, &["run", "--name", "box", &image, "sh", "-c", &script]);
    assert!(seen.contains("/data/sub/f|regular file") && !seen.contains("/etc/group|"), "{seen}");

    // diff: Docker's A/C/D lines, sorted
    let diff = husk_ok(&h, &["diff", "box"]);
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        [
            "A /data",
            "A /data/fifo",
            "A /data/h1",
            "A /data/h2",
            "A /data/sub",
            "A /data/sub/f",
            "C /etc",
            "D /etc/group",
            "C /etc/passwd",
            "C /home",
            "D /home/app",
            "A /home/new",
            "A /home/new/x",
            "A /link",
        ],
        "{diff}"
    );

    let id = husk_ok(&h, &["commit", "-m", "my changes", "-a", "Tester <t@example.com>", "box", "committed:v1"]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let images = husk_ok(&h, &["images", "--no-trunc"]);
    assert!(images.lines().any(|l| l.contains("committed") && l.contains("v1") && l.contains(id)), "{images}");

    // (a) the committed image runs with the changes; the default command is the
    // container's, as Docker's commit keeps it
    let again = husk_ok(&h, &["run", "--rm", "committed:v1", "sh", "-c", LISTING]);
    // As root, husk extracts layers without setuid/setgid bits (pulled ones as well).
    let expected = if user == TestUser::Root { seen.replace("|2640|", "|640|") } else { seen.clone() };
    assert_same_listing(&again, &expected);
    let inode = husk_ok(&h, &["run", "--rm", "committed:v1", "stat", "-c", "%i", "/data/h1", "/data/h2"]);
    let inodes: Vec<&str> = inode.lines().collect();
    assert_eq!(inodes[0], inodes[1], "hard link kept");

    // (b) independent tools read the same tree from the store
    let dir = temp_dir(user.name());
    let rootfs = unpack_with_umoci(&h, "docker.io/library/committed:v1", &dir);
    assert_same_listing(&listing_of(&rootfs), &seen);
    let h1 = fs::metadata(rootfs.join("data/h1")).unwrap();
    assert_eq!(h1.ino(), fs::metadata(rootfs.join("data/h2")).unwrap().ino(), "umoci sees the hard link");
    fs::remove_dir_all(&dir).unwrap();

    // history of the pulled image: its one layer, the id of the image on top
    let pulled = husk_ok(&h, &["history", &image]);
    let rows: Vec<&str> = pulled.lines().collect();
    let inspect: serde_json::Value = serde_json::from_str(&husk_ok(&h, &["image", "inspect", &image])).unwrap();
    let pulled_id = inspect[0]["Id"].as_str().unwrap()[7..19].to_string();
    assert_eq!(rows.len(), 2, "{pulled}");
    assert!(rows[1].starts_with(&pulled_id) && rows[1].contains("busybox-static rootfs"), "{pulled}");
    assert!(rows[1].split_whitespace().any(|w| w.ends_with("MB")), "a size: {pulled}");

    // history: the new layer on top, with the message and the container's command
    let hist = husk_ok(&h, &["history", "committed:v1"]);
    let rows: Vec<&str> = hist.lines().collect();
    assert_eq!(rows.len(), 3, "{hist}");
    assert!(rows[0].starts_with("IMAGE") && rows[0].contains("CREATED BY") && rows[0].contains("COMMENT"), "{hist}");
    assert!(
        rows[1].starts_with(&id[7..19]) && rows[1].contains("sh -c mkdir") && rows[1].contains("my changes"),
        "{hist}"
    );
    assert!(rows[1].contains('…'), "truncated: {hist}");
    assert!(rows[2].starts_with("<missing>") && rows[2].contains("busybox-static rootfs"), "{hist}");
    let full = husk_ok(&h, &["history", "--no-trunc", "committed:v1"]);
    assert!(full.contains(&script[..100]) && full.contains(id), "{full}");
    let quiet = husk_ok(&h, &["history", "-q", "committed:v1"]);
    assert_eq!(quiet, format!("{}\n<missing>\n", &id[7..19]));
    let json: serde_json::Value =
        serde_json::from_str(&husk_ok(&h, &["history", "--format", "json", "committed:v1"])).unwrap();
    assert_eq!(json[0]["ID"], id);
    assert_eq!(json[0]["Comment"], "my changes");
    assert!(json[0]["Size"].as_u64().unwrap() > 0);
    assert_eq!(json[1]["CreatedBy"], "busybox-static rootfs");
    husk_ok(&h, &["rm", "box"]);
}

#[test]
fn commit_round_trip_with_subids() {
    commit_round_trip(TestUser::Sub);
}

#[test]
fn commit_round_trip_without_subids() {
    commit_round_trip(TestUser::NoSub);
}

#[test]
fn commit_round_trip_as_root() {
    commit_round_trip(TestUser::Root);
}

/// Commit where the rootfs is not a native overlay: the copy mode (the changes found
/// by comparing the private copy with the layers) and fuse-overlayfs (its upper dir).
fn commit_in_mode(mode: &str) {
    let h = setup(TestUser::Sub);
    let env = [("HUSK_ROOTFS", mode)];
    let script = format!("{} && {}", changes_script(TestUser::Sub), LISTING);
    let seen = h.run_env(&env, &["run", "--name", "box", &reg("busybox:latest"), "sh", "-c", &script]);
    seen.assert_ok();
    let diff = h.run_env(&env, &["diff", "box"]);
    diff.assert_ok();
    let lines: Vec<&str> = diff.stdout.lines().collect();
    for want in ["A /data/sub/f", "C /etc/passwd", "D /etc/group", "D /home/app", "A /home/new/x", "A /link"] {
        assert!(lines.contains(&want), "{want} missing: {}", diff.stdout);
    }
    assert!(
        !lines.iter().any(|l| l.contains("/bin/") || l.contains("/proc") || l.contains("hostname")),
        "{}",
        diff.stdout
    );
    h.run_env(&env, &["commit", "box", "other:1"]).assert_ok();
    let again = husk_ok(&h, &["run", "--rm", "other:1", "sh", "-c", LISTING]);
    assert_same_listing(&again, &seen.stdout);
    husk_ok(&h, &["rm", "box"]);
}

#[test]
fn commit_in_copy_mode() {
    commit_in_mode("copy");
}

#[test]
fn commit_with_fuse_overlayfs() {
    // No udev here: make /dev/fuse what every udev distribution makes it (0666).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
    commit_in_mode("fuse-overlayfs");
}

/// `--change` edits the config; a running container is committed paused and goes on
/// running; committing again on top of a committed image stacks the layers.
#[test]
fn changes_and_running_containers() {
    let h = setup(TestUser::Sub);
    let image = reg("busybox:latest");
    husk_ok(
        &h,
        &["run", "-d", "--name", "live", "-e", "FROM_RUN=1", &image, "sh", "-c", "echo v1 > /state; sleep 300"],
    );
    let start = std::time::Instant::now();
    while h.run(&["exec", "live", "test", "-e", "/state"]).status != 0 {
        assert!(start.elapsed().as_secs() < 20, "container never got ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    husk_ok(
        &h,
        &[
            "commit",
            "-c",
            "ENV GREETING=\"hello there\"",
            "-c",
            "CMD [\"sh\", \"-c\", \"cat /state; echo $GREETING $FROM_RUN; pwd\"]",
            "-c",
            "WORKDIR /tmp",
            "-c",
            "EXPOSE 8080/tcp",
            "-c",
            "LABEL stage=one",
            "live",
            "stacked:1",
        ],
    );
    let ps: serde_json::Value = serde_json::from_str(&husk_ok(&h, &["ps", "--format", "json"])).unwrap();
    assert_eq!(ps[0]["State"], "running", "still running after the commit: {ps}");
    assert_eq!(husk_ok(&h, &["run", "--rm", "stacked:1"]), "v1\nhello there 1\n/tmp\n");
    let inspect: serde_json::Value = serde_json::from_str(&husk_ok(&h, &["image", "inspect", "stacked:1"])).unwrap();
    let config = &inspect[0]["Config"];
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert_eq!(config["Labels"]["stage"], "one", "{config}");
    assert_eq!(config["WorkingDir"], "/tmp", "{config}");
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(env.contains(&"GREETING=hello there") && env.contains(&"FROM_RUN=1"), "{config}");
    assert!(!env.iter().any(|e| e.starts_with("HOSTNAME=")), "{config}");

    // a container of the committed image, committed again without pausing
    husk_ok(&h, &["run", "--name", "second", "stacked:1", "sh", "-c", "echo v2 > /state; rm /bin/vi"]);
    husk_ok(&h, &["commit", "--pause=false", "second", "stacked:2"]);
    assert_eq!(
        husk_ok(&h, &["run", "--rm", "stacked:2", "sh", "-c", "cat /state; test -e /bin/vi || echo novi"]),
        "v2\nnovi\n"
    );
    assert_eq!(husk_ok(&h, &["history", "-q", "stacked:2"]).lines().count(), 3);
    husk_ok(&h, &["rm", "-f", "live", "second"]);
}

/// export → import: the tar holds the container's tree; import takes it plain, gzip
/// or zstd compressed, from a file or stdin, with changes and a message.
#[test]
fn export_and_import_round_trip() {
    let h = setup(TestUser::Sub);
    let image = reg("busybox:latest");
    husk_ok(&h, &["run", "--name", "ex", &image, "sh", "-c", &changes_script(TestUser::Sub)]);
    let out = user_dir(&h, "out");
    let tar_path = out.join("fs.tar");
    husk_ok(&h, &["export", "-o", tar_path.to_str().unwrap(), "ex"]);
    // an independent reader: GNU tar lists it
    let listed = Command::new("tar").arg("-tvf").arg(&tar_path).output().unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("data/sub/f") && listed.contains("bin/busybox") && listed.contains("home/new/x"),
        "{listed}"
    );
    assert!(!listed.contains("etc/group") && !listed.contains("home/app") && !listed.contains(".wh."), "{listed}");
    assert!(listed.contains("1000/1000") && listed.contains("data/h2 link to data/h1"), "{listed}");
    assert!(!fs::read_dir(&out).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("tmp")));

    let tar = fs::read(&tar_path).unwrap();
    let id = husk_ok(
        &h,
        &[
            "import",
            "-m",
            "from a tar",
            "-c",
            "CMD [\"cat\", \"/data/sub/f\"]",
            tar_path.to_str().unwrap(),
            "imported:plain",
        ],
    );
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(husk_ok(&h, &["run", "--rm", "imported:plain"]), "hello\n");
    let seen_in_ex = husk_ok(&h, &["run", "--rm", "--name", "exview", "imported:plain", "sh", "-c", LISTING]);
    assert!(seen_in_ex.contains("/data/sub/f|regular file|2640|1000:1000"), "{seen_in_ex}");

    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let o = h.run_stdin(&["import", "-", "imported:gz"], &gz);
    o.assert_ok();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let o = h.run_stdin(&["import", "-", "imported:zst"], &zst);
    o.assert_ok();
    for tag in ["imported:gz", "imported:zst"] {
        assert_eq!(husk_ok(&h, &["run", "--rm", tag, "cat", "/home/new/x"]), "n\n");
    }
    let hist = husk_ok(&h, &["history", "imported:plain"]);
    assert!(hist.lines().nth(1).unwrap().contains("from a tar"), "{hist}");
    let hist = husk_ok(&h, &["history", "imported:gz"]);
    assert!(hist.contains("Imported from -"), "{hist}");
    // the same content gives the same layer, whatever the compression of the input
    let diff_ids = |tag: &str| {
        let v: serde_json::Value = serde_json::from_str(&husk_ok(&h, &["image", "inspect", tag])).unwrap();
        v[0]["RootFS"]["Layers"].clone()
    };
    let sum = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    assert_eq!(diff_ids("imported:gz"), serde_json::json!([sum]), "the tar as given is the layer");
    assert_eq!(diff_ids("imported:zst"), diff_ids("imported:gz"));
    husk_ok(&h, &["rm", "ex"]);
}

/// Bad input of any kind: one line, exit status 125, nothing made.
#[test]
fn bad_input_is_refused_with_one_line() {
    let h = setup(TestUser::Sub);
    let image = reg("busybox:latest");
    husk_ok(&h, &["create", "--name", "idle", &image, "true"]);
    let before = husk_ok(&h, &["images", "-q"]);
    let out = user_dir(&h, "out");
    let garbage = out.join("garbage.tar");
    fs::write(&garbage, vec![0x55u8; 4096]).unwrap();
    let xz = out.join("x.tar.xz");
    fs::write(&xz, b"\xfd7zXZ\x00rest").unwrap();
    let missing = out.join("missing.tar");
    for (args, needle) in [
        (vec!["commit", "nope"], "no such container"),
        (vec!["commit", "idle", "Bad:Name"], "invalid reference"),
        (vec!["commit", "idle", "a@sha256:0000"], "invalid reference"),
        (vec!["commit", "-c", "RUN echo hi", "idle"], "not a valid change command"),
        (vec!["commit", "-c", "EXPOSE 70000", "idle"], "invalid port"),
        (vec!["commit", "-c", "ENV A=\"x", "idle"], "unterminated"),
        (vec!["diff", "nope"], "no such container"),
        (vec!["export", "-o", "/nonexistent-dir/x.tar", "idle"], "/nonexistent-dir/x.tar"),
        (vec!["export", "nope"], "no such container"),
        (vec!["import", missing.to_str().unwrap()], "missing.tar"),
        (vec!["import", garbage.to_str().unwrap()], "garbage.tar"),
        (vec!["import", xz.to_str().unwrap()], "not supported"),
        (vec!["import", garbage.to_str().unwrap(), "UPPER"], "invalid reference"),
        (vec!["history", "no-such-image"], "no-such-image"),
    ] {
        let o = h.run(&args);
        let line = o.error_line(&args.join(" "));
        assert!(line.contains(needle), "{args:?}: {line}");
    }
    let o = h.run_stdin(&["import", "-"], b"");
    assert!(o.error_line("import of nothing").contains("empty"), "{o:?}");
    assert_eq!(husk_ok(&h, &["images", "-q"]), before, "nothing made");
    let leftovers: Vec<_> = fs::read_dir(h.store().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // export to a terminal is refused (script gives husk a pty as stdout)
    let cmd = format!("{} export idle", common::husk_bin().display());
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).env("HOME", &h.home).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(125), "{text}");
    assert!(text.contains("terminal"), "{text}");
    husk_ok(&h, &["rm", "idle"]);
}
