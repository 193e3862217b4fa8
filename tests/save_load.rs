//! `husk save` and `husk load`, checked with independent tools: what husk saves is
//! read by `skopeo inspect`, unpacked by `umoci` and loaded and run by rootless podman
//! (as husk-sub, with a store of its own); archives written by `podman save` and
//! `skopeo copy` (also gzip- and zstd-compressed) load and run in husk; a round trip
//! keeps the image id; hostile archives are refused in one line with nothing stored.
mod common;
use common::reg;

use common::{compare_trees, ensure_prereqs, fixtures, run_output, shared_registry, umoci_unpack};
use common::{pids_with_env, Husk, Output, TempDir, TestUser};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn husk_with(user: TestUser, images: &[&str]) -> Husk {
    ensure_prereqs();
    shared_registry();
    let h = Husk::new(user);
    for image in images {
        h.run(&["pull", "-q", &reg(image)]).assert_ok();
    }
    h
}

/// name -> image id, from `husk images --format json`.
fn images(h: &Husk) -> Vec<(String, String)> {
    let out = h.run(&["images", "--format", "json"]);
    out.assert_ok();
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut all = Vec::new();
    for row in rows.as_array().unwrap() {
        let id = row["Id"].as_str().unwrap().to_string();
        let names: Vec<String> =
            row["Names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
        if names.is_empty() {
            all.push(("<none>".to_string(), id.clone()));
        }
        all.extend(names.into_iter().map(|n| (n, id.clone())));
    }
    all.sort();
    all
}

fn image_id(h: &Husk, name: &str) -> String {
    images(h).into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("husk has no image {name}")).1
}

fn run_echo(h: &Husk, image: &str) {
    let out = h.run(&["run", "--rm", "--network", "none", image, "echo", "ran from the archive"]);
    out.assert_ok();
    assert_eq!(out.stdout, "ran from the archive\n", "{out:?}");
}

/// Runs a tool as root; panics with its output unless it succeeds.
fn tool(args: &[&str]) -> String {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    let out = run_output(cmd, None);
    assert_eq!(out.status, 0, "{args:?} failed:\n{out:?}");
    out.stdout
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// A file for `user` to read: copied into `dir` and given to them.
fn give(src: &Path, dir: &Path, user: TestUser) -> PathBuf {
    let dest = dir.join(src.file_name().unwrap());
    fs::copy(src, &dest).unwrap();
    std::os::unix::fs::chown(&dest, Some(user.uid()), Some(user.gid())).unwrap();
    dest
}

/// Rootless podman as husk-sub, in a home of its own holding its store and run
/// directory, so that it never touches the machine's podman state. Its processes (the
/// pause process) are killed and its files removed on drop.
struct Podman {
    home: TempDir,
}

impl Podman {
    fn new() -> Podman {
        assert!(Path::new("/usr/bin/podman").exists(), "missing prerequisite: install the Debian package podman");
        let (uid, gid) = TestUser::Sub.ids();
        let home = TempDir::new("podman");
        for d in ["", "x"] {
            let p = home.path().join(d);
            fs::create_dir_all(&p).unwrap();
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        }
        Podman { home }
    }

    fn path(&self) -> &Path {
        self.home.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        let mut c = Command::new("runuser");
        c.args(["-u", TestUser::Sub.name(), "--", "/usr/bin/env", "-i"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", home.join("x").display()))
            .args(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "USER=husk-sub", "LOGNAME=husk-sub", "podman"])
            .arg("--root")
            .arg(home.join("s"))
            .arg("--runroot")
            .arg(home.join("x/r"))
            // vfs: no fuse-overlayfs mounts to leave behind; runc: crun refuses this
            // machine's hybrid cgroup layout (shared/NOTES.md).
            .args(["--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .args(args)
            .current_dir(home);
        run_output(c, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status, 0, "podman {args:?} failed:\n{out:?}");
        out.stdout
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for pid in pids_with_env(&format!("HOME={}", self.home.path().display())) {
            // SAFETY: kill(2) with a pid read from /proc touches no memory.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn save(h: &Husk, format: &str, file: &str, images: &[&str]) -> PathBuf {
    let path = h.home.join(file);
    let mut args = vec!["save", "--format", format, "-o", path.to_str().unwrap()];
    args.extend(images);
    let out = h.run(&args);
    out.assert_ok();
    assert_eq!(out.stdout, "", "save -o prints nothing: {out:?}");
    path
}

fn load(h: &Husk, file: &Path) -> String {
    let out = h.run(&["load", "-i", file.to_str().unwrap()]);
    out.assert_ok();
    out.stdout
}

fn inspect_json(transport_ref: &str, config: bool) -> serde_json::Value {
    let mut args = vec!["skopeo", "inspect"];
    if config {
        args.extend(["--raw", "--config"]);
    }
    args.push(transport_ref);
    serde_json::from_str(&tool(&args)).unwrap_or_else(|e| panic!("skopeo inspect {transport_ref}: {e}"))
}

/// What husk saves, in both formats, is what skopeo, umoci and podman read and run.
#[test]
fn saved_archives_are_read_by_skopeo_umoci_and_podman() {
    let podman = Podman::new();
    for user in [TestUser::Sub, TestUser::NoSub] {
        let h = husk_with(user, &["busybox:latest"]);
        let name = reg("busybox:latest");
        let id = image_id(&h, &name);
        let docker = save(&h, "docker-archive", "d.tar", &[&name]);
        let oci = save(&h, "oci-archive", "o.tar", &[&name]);

        // skopeo: the config is byte for byte the image's; the layers are its diff ids.
        let raw = tool(&["skopeo", "inspect", "--raw", "--config", &format!("docker-archive:{}", docker.display())]);
        assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), id);
        let inspected = inspect_json(&format!("docker-archive:{}", docker.display()), false);
        let config: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(inspected["Layers"], config["rootfs"]["diff_ids"], "{inspected}");
        let oci_ref = format!("oci-archive:{}:{}", oci.display(), name);
        let raw = tool(&["skopeo", "inspect", "--raw", "--config", &oci_ref]);
        assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), id);
        // the OCI manifest is the registry's, unchanged
        let digest = inspect_json(&oci_ref, false)["Digest"].as_str().unwrap().to_string();
        let pulled = h.run(&["image", "inspect", &name]);
        assert!(pulled.stdout.contains(&digest), "manifest {digest} kept:\n{}", pulled.stdout);

        // umoci unpacks the layout to the same tree as the fixture's
        let layout = TempDir::new("saved-layout");
        tool(&["tar", "-xf", oci.to_str().unwrap(), "-C", layout.path().to_str().unwrap()]);
        let bundle = layout.path().join("bundle");
        tool(&[
            "umoci",
            "unpack",
            "--image",
            &format!("{}:{}", layout.path().display(), name),
            bundle.to_str().unwrap(),
        ]);
        let expected = umoci_unpack("busybox");
        let diffs = compare_trees(&expected.rootfs(), &bundle.join("rootfs"), &|u, g| Some((u, g)));
        assert!(diffs.is_empty(), "umoci unpack of the saved archive differs:\n{}", diffs.join("\n"));

        // podman loads both and runs the image
        for (archive, tag) in [(&docker, "from-docker-archive"), (&oci, "from-oci-archive")] {
            let file = give(archive, podman.path(), TestUser::Sub);
            let out = podman.ok(&["load", "-i", file.to_str().unwrap()]);
            assert!(out.contains(&format!("Loaded image: {name}")), "podman load: {out}");
            let local = format!("localhost/{tag}:{}", user.name());
            podman.ok(&["tag", &name, &local]);
            let ran = podman.ok(&["run", "--rm", "--network", "none", &local, "cat", "/etc/group"]);
            assert!(ran.starts_with("root:x:0:"), "podman run: {ran}");
            assert_eq!(podman.ok(&["image", "inspect", "--format", "{{.Id}}", &local]).trim(), &id[7..]);
            podman.ok(&["rmi", "-f", &name]);
        }
    }
}

/// Without -o the archive goes to standard output, the same bytes as with -o; to a
/// terminal it is refused.
#[test]
fn save_streams_to_stdout_but_not_to_a_terminal() {
    let h = husk_with(TestUser::Sub, &["busybox:latest"]);
    let name = reg("busybox:latest");
    for format in ["docker-archive", "oci-archive"] {
        let file = save(&h, format, "f.tar", &[&name]);
        let piped = h.home.join("piped.tar");
        let out = h
            .cmd(&["save", "--format", format, &name])
            .stdout(Stdio::from(fs::File::create(&piped).unwrap()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(fs::read(&file).unwrap() == fs::read(&piped).unwrap(), "{format}: stdout and -o differ");
    }
    let mut term = common::pty::Terminal::new(24, 80);
    let mut child = term.spawn(h.cmd(&["save", &name]));
    term.read_until("standard output");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(125), "{}", term.seen);
    assert!(term.seen.contains("-o FILE"), "{}", term.seen);
    assert!(term.seen.len() < 300, "nothing but the error reached the terminal: {:?}", term.seen);
}

/// save, rmi, load: the same image id, and it runs.
fn round_trip(user: TestUser) {
    let h = husk_with(user, &["busybox:latest"]);
    let name = reg("busybox:latest");
    let id = image_id(&h, &name);
    for format in ["docker-archive", "oci-archive"] {
        let file = save(&h, format, &format!("{format}.tar"), &[&name]);
        h.run(&["rmi", &name]).assert_ok();
        assert!(images(&h).is_empty(), "{format}: rmi left {:?}", images(&h));
        assert_eq!(load(&h, &file), format!("Loaded image: {name}\n"));
        assert_eq!(image_id(&h, &name), id, "{format} round trip as {user:?}");
        run_echo(&h, &name);
        // loading what the store has already adds nothing
        assert_eq!(load(&h, &file), format!("Loaded image: {name}\n"));
        assert_eq!(images(&h), vec![(name.clone(), id.clone())]);
    }
}

#[test]
fn round_trip_keeps_the_image_id_as_user_with_subids() {
    round_trip(TestUser::Sub);
}

#[test]
fn round_trip_keeps_the_image_id_as_user_without_subids() {
    round_trip(TestUser::NoSub);
}

#[test]
fn round_trip_keeps_the_image_id_as_root() {
    round_trip(TestUser::Root);
}

/// Several images, one of them under two names, in one archive of each format; an
/// image saved by id goes without a name.
#[test]
fn multi_image_archives() {
    let podman = Podman::new();
    let h = husk_with(TestUser::Sub, &["busybox:latest", "layered:latest", "config:latest"]);
    h.run(&["tag", &reg("busybox:latest"), "example.com/alias:1"]).assert_ok();
    let before = images(&h);
    let names = [reg("busybox:latest"), reg("layered:latest"), "example.com/alias:1".to_string()];
    let config_id = image_id(&h, &reg("config:latest"));
    for format in ["docker-archive", "oci-archive"] {
        let mut args: Vec<&str> = names.iter().map(String::as_str).collect();
        args.push(&config_id[7..19]);
        let file = save(&h, format, &format!("multi-{format}.tar"), &args);
        let mut ids: Vec<String> = images(&h).into_iter().map(|(_, id)| id).collect();
        ids.sort();
        ids.dedup();
        let mut rmi = vec!["rmi", "-f"];
        rmi.extend(ids.iter().map(String::as_str));
        h.run(&rmi).assert_ok();
        assert!(images(&h).is_empty());
        let out = load(&h, &file);
        for n in &names {
            assert!(out.contains(&format!("Loaded image: {n}\n")), "{format}: {out}");
        }
        assert!(out.contains(&format!("Loaded image ID: {config_id}\n")), "{format}: {out}");
        let expected: Vec<(String, String)> =
            before
                .iter()
                .map(|(n, id)| {
                    if *n == reg("config:latest") {
                        ("<none>".to_string(), id.clone())
                    } else {
                        (n.clone(), id.clone())
                    }
                })
                .collect();
        let mut expected = expected;
        expected.sort();
        assert_eq!(images(&h), expected, "{format}");
        run_echo(&h, &reg("layered:latest"));
        h.run(&["tag", &config_id, &reg("config:latest")]).assert_ok();
        if format == "oci-archive" {
            for n in &names {
                let raw =
                    tool(&["skopeo", "inspect", "--raw", "--config", &format!("oci-archive:{}:{n}", file.display())]);
                assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), image_id(&h, n));
            }
        } else {
            // podman reads every image of a docker-archive (its oci-archive reader takes one)
            let copy = give(&file, podman.path(), TestUser::Sub);
            let out = podman.ok(&["load", "-i", copy.to_str().unwrap()]);
            for n in &names {
                assert!(out.contains(&format!("Loaded image: {n}")), "podman load: {out}");
            }
            let ids = podman.ok(&["images", "--no-trunc", "--format", "{{.ID}}"]);
            assert!(ids.contains(&config_id[7..]), "{ids}");
        }
    }
}

/// Archives written by `podman save` (one image or several) and `skopeo copy`, plain,
/// gzip- and zstd-compressed, load and run.
#[test]
fn archives_from_podman_and_skopeo_load() {
    let podman = Podman::new();
    let h = husk_with(TestUser::Sub, &[]);
    let busybox = reg("busybox:latest");
    let layered = reg("layered:latest");
    for image in [&busybox, &layered] {
        podman.ok(&["pull", "-q", "--tls-verify=false", image]);
    }
    let p = |f: &str| podman.path().join(f).display().to_string();
    podman.ok(&["save", "-q", "--format", "docker-archive", "-o", &p("pd.tar"), &busybox]);
    podman.ok(&["save", "-q", "--format", "oci-archive", "-o", &p("po.tar"), &busybox]);
    podman.ok(&["save", "-q", "-m", "--format", "docker-archive", "-o", &p("pm.tar"), &busybox, &layered]);
    let skopeo = TempDir::new("skopeo-archives");
    let src = format!("oci:{}:busybox", fixtures().display());
    let named = "example.com/skopeo/busybox:copied";
    let sd = skopeo.path().join("sd.tar");
    let so = skopeo.path().join("so.tar");
    tool(&["skopeo", "--insecure-policy", "copy", "-q", &src, &format!("docker-archive:{}:{named}", sd.display())]);
    tool(&["skopeo", "--insecure-policy", "copy", "-q", &src, &format!("oci-archive:{}:{named}", so.display())]);
    let fixture_id = {
        let raw = tool(&["skopeo", "inspect", "--raw", "--config", &src]);
        format!("sha256:{}", sha256_hex(raw.as_bytes()))
    };

    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (PathBuf::from(p("pd.tar")), vec![&busybox]),
        (PathBuf::from(p("po.tar")), vec![&busybox]),
        (PathBuf::from(p("pm.tar")), vec![&busybox, &layered]),
        (sd.clone(), vec![named]),
        (so.clone(), vec![named]),
    ];
    for (archive, names) in &cases {
        let file = give(archive, &h.home, h.user);
        let out = load(&h, &file);
        for n in names {
            assert!(out.contains(&format!("Loaded image: {n}\n")), "{}: {out}", archive.display());
            run_echo(&h, n);
        }
        let mut rmi = vec!["rmi", "-f"];
        rmi.extend(names.iter());
        h.run(&rmi).assert_ok();
    }

    // compressed, on standard input: gzip and zstd, as Docker reads them
    let plain = fs::read(&sd).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    for (what, bytes) in [("gzip", gz.finish().unwrap()), ("zstd", zst)] {
        let out = h.run_stdin(&["load"], &bytes);
        assert_eq!(out.status, 0, "{what}: {out:?}");
        assert_eq!(out.stdout, format!("Loaded image: {named}\n"), "{what}");
        assert_eq!(image_id(&h, named), fixture_id, "{what}");
        run_echo(&h, named);
        h.run(&["rmi", named]).assert_ok();
    }
}

// ---------------------------------------------------------------------------
// hostile archives
// ---------------------------------------------------------------------------

struct Entry {
    name: String,
    kind: tar::EntryType,
    link: String,
    data: Vec<u8>,
}

fn entries_of(archive: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let kind = e.header().entry_type();
        let link = e.link_name_bytes().map(|l| String::from_utf8(l.into_owned()).unwrap()).unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(Entry { name, kind, link, data });
    }
    out
}

/// A tar of `entries`, names written raw (`..` included).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(e.data.len() as u64);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn file(name: &str, data: &[u8]) -> Entry {
    Entry { name: name.into(), kind: tar::EntryType::Regular, link: String::new(), data: data.to_vec() }
}

fn link(name: &str, target: &str) -> Entry {
    Entry { name: name.into(), kind: tar::EntryType::Symlink, link: target.into(), data: Vec::new() }
}

/// Fails unless the load of `archive` is refused in one line naming `cause`, with
/// nothing left in the store: no image, blob, layer or temp file.
#[track_caller]
fn refused(h: &Husk, what: &str, archive: &[u8], cause: &str) {
    let out = h.run_stdin(&["load"], archive);
    let line = out.error_line(what);
    eprintln!("{what}: {line}");
    assert!(line.contains(cause), "{what}: expected {cause:?} in {line:?}");
    assert!(images(h).is_empty(), "{what}: an image is visible");
    for dir in ["blobs/sha256", "layers", "tmp"] {
        let left: Vec<_> = fs::read_dir(h.store().join(dir)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{what}: {dir} holds {left:?}");
    }
}

#[test]
fn hostile_archives_are_refused_with_nothing_stored() {
    ensure_prereqs();
    let h = husk_with(TestUser::Sub, &[]);
    let dir = TempDir::new("hostile");
    let src = format!("oci:{}:busybox", fixtures().display());
    let docker = dir.path().join("d.tar");
    let oci = dir.path().join("o.tar");
    tool(&["skopeo", "--insecure-policy", "copy", "-q", &src, &format!("docker-archive:{}:x/y:1", docker.display())]);
    tool(&["skopeo", "--insecure-policy", "copy", "-q", &src, &format!("oci-archive:{}:x/y:1", oci.display())]);
    let base_docker = entries_of(&docker);
    let base_oci = entries_of(&oci);
    let manifest = base_docker.iter().find(|e| e.name == "manifest.json").unwrap();
    let layer_path = {
        let m: serde_json::Value = serde_json::from_slice(&manifest.data).unwrap();
        m[0]["Layers"][0].as_str().unwrap().to_string()
    };
    let with = |base: &[Entry], change: &dyn Fn(&Entry) -> Option<Entry>, extra: Vec<Entry>| -> Vec<u8> {
        let mut all: Vec<Entry> = base.iter().filter_map(change).collect();
        all.extend(extra);
        tar_of(&all)
    };
    let same =
        |e: &Entry| Some(Entry { name: e.name.clone(), kind: e.kind, link: e.link.clone(), data: e.data.clone() });

    // the unchanged archives load (the shapes below differ from them in one point only)
    assert!(h.run_stdin(&["load"], &with(&base_docker, &same, vec![])).success());
    assert!(h.run_stdin(&["load"], &with(&base_oci, &same, vec![])).success());
    // Docker 25's layout: an OCI layout whose manifest.json names blobs/sha256/ files
    let blob = |digest: &str| base_oci.iter().find(|e| e.name == format!("blobs/sha256/{}", &digest[7..])).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&base_oci.iter().find(|e| e.name == "index.json").unwrap().data).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap()).data).unwrap();
    let docker25 = serde_json::json!([{
        "Config": blob(manifest["config"]["digest"].as_str().unwrap()).name,
        "RepoTags": ["x/y:25"],
        "Layers": [blob(manifest["layers"][0]["digest"].as_str().unwrap()).name],
    }]);
    let out =
        h.run_stdin(&["load"], &with(&base_oci, &same, vec![file("manifest.json", docker25.to_string().as_bytes())]));
    assert_eq!(out.stdout, "Loaded image: docker.io/x/y:25\n", "{out:?}");
    assert_eq!(images(&h).len(), 2, "one image, two names: {:?}", images(&h));
    h.run(&["rmi", "-f", &image_id(&h, "docker.io/x/y:1")]).assert_ok();
    assert!(images(&h).is_empty());

    refused(&h, "a path with ..", &with(&base_docker, &same, vec![file("../../escaped", b"x")]), "leaves the archive");
    refused(&h, "an absolute path", &with(&base_docker, &same, vec![file("/tmp/escaped", b"x")]), "leaves the archive");
    let outside = TempDir::new("outside");
    let blobs_out = |e: &Entry| {
        if e.name.starts_with("blobs") {
            None
        } else {
            same(e)
        }
    };
    let mut moved: Vec<Entry> = base_oci
        .iter()
        .filter(|e| e.name.starts_with("blobs/"))
        .map(|e| Entry {
            name: e.name.replacen("blobs/", "real/", 1),
            kind: e.kind,
            link: e.link.clone(),
            data: e.data.clone(),
        })
        .collect();
    refused(
        &h,
        "blobs symlinked out of the archive",
        &with(&base_oci, &blobs_out, vec![link("blobs", outside.path().to_str().unwrap())]),
        "outside the archive",
    );
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing written through the link");
    moved.push(link("blobs", "real"));
    refused(&h, "blobs symlinked inside the archive", &with(&base_oci, &blobs_out, moved), "under the link");
    refused(
        &h,
        "a file under a symlinked blobs dir",
        &with(&base_oci, &same, vec![link("blobs2", "real2"), file("blobs2/sha256/a", b"x")]),
        "not a directory",
    );
    refused(
        &h,
        "a layer symlink leaving the archive",
        &with(
            &base_docker,
            &|e| if e.name == layer_path { None } else { same(e) },
            vec![link(&layer_path, "../../etc/passwd")],
        ),
        "outside the archive",
    );
    refused(
        &h,
        "manifest.json naming a missing layer",
        &with(&base_docker, &|e| if e.name == layer_path { None } else { same(e) }, vec![]),
        "no file",
    );
    // a layer whose bytes differ from its diff id: plain, then gzip-compressed (found
    // only once extracted: the extracted layer must go again)
    let tampered = |e: &Entry| {
        let mut c = same(e).unwrap();
        if e.name == layer_path {
            let n = c.data.len() / 2;
            c.data[n] ^= 0x55;
        }
        Some(c)
    };
    refused(&h, "a layer not matching its diff id", &with(&base_docker, &tampered, vec![]), "refused");
    let other_layer = {
        let mut t = tar::Builder::new(Vec::new());
        let mut hd = tar::Header::new_gnu();
        hd.set_size(5);
        hd.set_mode(0o644);
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_mtime(0);
        t.append_data(&mut hd, "other", &b"other"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    };
    let swapped = |e: &Entry| {
        let mut c = same(e).unwrap();
        if e.name == layer_path {
            c.data = other_layer.clone();
        }
        Some(c)
    };
    refused(&h, "a compressed layer not matching its diff id", &with(&base_docker, &swapped, vec![]), "refused");
    // an oci-archive blob whose content is not its name's digest
    let layer_blob =
        base_oci.iter().filter(|e| e.name.starts_with("blobs/sha256/")).max_by_key(|e| e.data.len()).unwrap();
    let flipped = |e: &Entry| {
        let mut c = same(e).unwrap();
        if e.name == layer_blob.name {
            let n = c.data.len() / 2;
            c.data[n] ^= 0x55;
        }
        Some(c)
    };
    refused(&h, "a blob not matching its digest", &with(&base_oci, &flipped, vec![]), "does not match its digest");
    refused(&h, "not an archive", b"this is not a tar archive at all, only some text", "not an image archive");
    refused(&h, "a truncated archive", &with(&base_docker, &same, vec![])[..5000], "archive");
}

/// A save that fails (here: a damaged blob in the store) leaves an existing FILE as
/// it was and no temp file beside it.
#[test]
fn failed_save_leaves_the_output_file_untouched() {
    let h = husk_with(TestUser::Sub, &["busybox:latest"]);
    let name = reg("busybox:latest");
    let out_dir = h.home.join("out");
    fs::create_dir(&out_dir).unwrap();
    std::os::unix::fs::chown(&out_dir, Some(h.user.uid()), Some(h.user.gid())).unwrap();
    let target = out_dir.join("image.tar");
    fs::write(&target, "previous content").unwrap();
    std::os::unix::fs::chown(&target, Some(h.user.uid()), Some(h.user.gid())).unwrap();
    let t = target.to_str().unwrap();
    let line = h.run(&["save", "-o", t, &name, "no-such-image"]).error_line("unknown image").to_string();
    assert!(line.contains("no-such-image"), "{line}");
    // damage the layer blob: both formats stop before the archive is complete
    let inspect: serde_json::Value = serde_json::from_str(&h.run(&["image", "inspect", &name]).stdout).unwrap();
    let manifest_digest = inspect[0]["Manifest"]["Digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(h.store().join("blobs/sha256").join(&manifest_digest[7..])).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = h.store().join("blobs/sha256").join(&layer[7..]);
    let mut data = fs::read(&blob).unwrap();
    let n = data.len() - 100;
    data[n] ^= 0x55;
    fs::write(&blob, data).unwrap();
    for format in ["oci-archive", "docker-archive"] {
        let out = h.run(&["save", "--format", format, "-o", t, &name]);
        out.error_line(format);
        assert_eq!(fs::read_to_string(&target).unwrap(), "previous content", "{format}");
        let left: Vec<_> = fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{format}: temp files left: {left:?}");
    }
}

/// A save killed half-way (SIGTERM, as on shutdown; SIGINT from a terminal alike) leaves
/// no temp file and no FILE.
#[test]
fn interrupted_save_leaves_nothing() {
    let h = husk_with(TestUser::Sub, &["debian:bookworm"]);
    let out_dir = h.home.join("out");
    fs::create_dir(&out_dir).unwrap();
    std::os::unix::fs::chown(&out_dir, Some(h.user.uid()), Some(h.user.gid())).unwrap();
    let target = out_dir.join("debian.tar");
    let mut interrupted = false;
    for _attempt in 0..5 {
        let mut child = h
            .cmd(&["save", "-o", target.to_str().unwrap(), &reg("debian:bookworm")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        // the temp file beside FILE shows the archive is being written
        while fs::read_dir(&out_dir).unwrap().next().is_none() && start.elapsed().as_secs() < 20 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for pid in pids_with_env(&format!("HOME={}", h.home.display())) {
            // SAFETY: kill(2) with a pid read from /proc touches no memory.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let status = child.wait().unwrap();
        if status.success() {
            fs::remove_file(&target).unwrap(); // done before the signal came: again
            continue;
        }
        interrupted = true;
        break;
    }
    assert!(interrupted, "the save always finished before SIGTERM reached it");
    let left: Vec<_> = fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "an interrupted save left {left:?}");
}
