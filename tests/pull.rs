//! `husk pull` and the image verbs against a real registry with fixture images made
//! by umoci/skopeo/debootstrap, run as unprivileged users (with and without
//! subordinate ids) and as root.
mod common;
use common::reg;

use common::{compare_trees, ensure_prereqs, rootless_owner_map, shared_registry, umoci_unpack, Husk, TestUser};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn setup() {
    ensure_prereqs();
    shared_registry();
}

fn inspect(h: &Husk, image: &str) -> serde_json::Value {
    let out = h.run(&["image", "inspect", image]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v[0].clone()
}

fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(p) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{} {}", p, d)))),
        };
        out.push(next);
    }
    out
}

/// The extracted layer dirs of an image, bottom first.
fn layer_dirs(h: &Husk, image: &str) -> Vec<PathBuf> {
    let v = inspect(h, image);
    let diffs: Vec<String> =
        v["RootFS"]["Layers"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    chain_ids(&diffs).iter().map(|c| h.store().join("layers").join(&c[7..]).join("diff")).collect()
}

/// An overlay of the image's layers, mounted read-only by root, unmounted on drop.
struct Merged {
    mnt: common::TempDir,
}

impl Merged {
    fn new(layers: &[PathBuf]) -> Merged {
        let mnt = common::TempDir::new("merged");
        let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
        let status = if lower.len() == 1 {
            Command::new("mount").args(["--bind", "-o", "ro", &lower[0]]).arg(mnt.path()).status().unwrap()
        } else {
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &format!("lowerdir={},userxattr", lower.join(":"))])
                .arg(mnt.path())
                .status()
                .unwrap()
        };
        assert!(status.success(), "mounting the layers failed");
        Merged { mnt }
    }
    fn path(&self) -> &Path {
        self.mnt.path()
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt.path()).status();
    }
}

fn pull_and_compare(user: TestUser, tag_in_layout: &str, image: &str) {
    pull_and_compare_with(user, tag_in_layout, image)
}

/// Pulls `image` and compares it with umoci's extraction of `tag_in_layout`.
fn pull_and_compare_with(user: TestUser, tag_in_layout: &str, image: &str) {
    setup();
    let h = Husk::new(user);
    let out = h.run(&["pull", &reg(image)]);
    out.assert_ok();
    let id = out.stdout.trim();
    assert_eq!(id.len(), 64, "pull prints the image id: {:?}", out);
    let merged = Merged::new(&layer_dirs(&h, &reg(image)));
    let expected = umoci_unpack(tag_in_layout);
    let map = rootless_owner_map(user);
    let mut diffs = compare_trees(&expected.rootfs(), merged.path(), &map);
    if user == TestUser::Root {
        // As root, husk clears setuid/setgid bits rather than make real setuid-root files.
        diffs.retain(|d| !(d.contains(": mode: expected") && is_setid_only_change(d)));
    }
    // The root directory of an image comes from its first layer or from nothing at all.
    diffs.retain(|d| !d.starts_with(": ") && !d.starts_with(".: "));
    assert!(diffs.is_empty(), "{} as {:?} differs from umoci unpack:\n{}", image, user, diffs.join("\n"));
}

fn is_setid_only_change(line: &str) -> bool {
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| s.len() == 4)
        .filter_map(|s| u32::from_str_radix(s, 8).ok())
        .collect();
    nums.len() >= 2 && (nums[0] & !0o6000) == nums[1]
}

#[test]
fn busybox_matches_umoci_as_user_with_subids() {
    pull_and_compare(TestUser::Sub, "busybox", "busybox:latest");
}

#[test]
fn layered_matches_umoci_as_user_with_subids() {
    pull_and_compare(TestUser::Sub, "layered", "layered:latest");
}

#[test]
fn layered_matches_umoci_as_user_without_subids() {
    pull_and_compare(TestUser::NoSub, "layered", "layered:latest");
}

#[test]
fn layered_matches_umoci_as_root() {
    pull_and_compare(TestUser::Root, "layered", "layered:latest");
}

#[test]
fn zstd_layers_match_umoci() {
    // umoci cannot unpack zstd layers; the zstd fixture holds the same tar as busybox.
    pull_and_compare_with(TestUser::Sub, "busybox", "busybox:zstd");
}

#[test]
fn debian_matches_umoci() {
    pull_and_compare(TestUser::Sub, "debian", "debian:bookworm");
}

#[test]
fn whiteouts_are_kept_for_overlay_and_owners_are_mapped() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    setup();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("layered:latest")]).assert_ok();
    let layers = layer_dirs(&h, &reg("layered:latest"));
    let top = &layers[2];
    let wh = std::fs::symlink_metadata(top.join("remove-me-too")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout is a 0/0 char device");
    let opq = xattr_get(&top.join("opaque"), "user.overlay.opaque");
    assert_eq!(opq.as_deref(), Some(&b"y"[..]), "opaque dir marked for overlay");
    let names: Vec<String> = walk(&layers[2]);
    assert!(names.iter().all(|n| !n.contains(".wh.")), "no .wh. files stored: {:?}", names);
    // uid 1000 in the image is subuid base + 999 on the host; nothing is host root.
    let base = common::subid_base("husk-sub");
    let owned = std::fs::symlink_metadata(layers[1].join("edge")).unwrap();
    assert!(owned.uid() == h.user.uid() || owned.uid() >= base);
    let setuid = std::fs::symlink_metadata(layers[1].join("edge/setuid-app")).unwrap();
    assert_eq!(setuid.uid(), base + 999);
    assert!(setuid.mode() & 0o4000 != 0, "setuid bit kept on a file owned by a subordinate id");
    for p in walk(&h.store()) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.uid() != 0, "{} is owned by host root", p);
        assert!(!(m.file_type().is_char_device() && m.rdev() != 0), "{} is a real device", p);
    }
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf outlives the call.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p.display().to_string());
        }
    }
    out
}

#[test]
fn shared_base_layers_are_fetched_once() {
    setup();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", &reg("busybox:latest")]).assert_ok();
    let out = h.run(&["pull", &reg("layered:latest")]);
    out.assert_ok();
    assert!(out.stderr.contains("already present"), "second pull says the base layer was present: {:?}", out);
    assert_eq!(out.stderr.matches("downloading").count(), 2, "only the two new layers are downloaded: {:?}", out);
    let layers: BTreeSet<String> = std::fs::read_dir(h.store().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(layers.len(), 3, "busybox's layer is shared: {:?}", layers);
    // Pulling again fetches nothing at all.
    let again = h.run(&["pull", &reg("layered:latest")]);
    again.assert_ok();
    assert!(!again.stderr.contains("downloading"), "{:?}", again);
}

#[test]
fn store_is_an_oci_layout_that_skopeo_reads() {
    setup();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("layered:latest")]).assert_ok();
    let name = format!("{}/layered:latest", shared_registry().host());
    let out =
        Command::new("skopeo").arg("inspect").arg(format!("oci:{}:{}", h.store().display(), name)).output().unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 3);
    let ours = inspect(&h, &name);
    assert_eq!(v["Digest"], ours["Manifest"]["Digest"]);
}

#[test]
fn images_tag_inspect_rmi_and_df() {
    setup();
    let h = Husk::new(TestUser::Sub);
    let id = h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok().stdout.trim().to_string();
    h.run(&["pull", "-q", &reg("layered:latest")]).assert_ok();
    let table = h.run(&["images"]).assert_ok().stdout.clone();
    let header = table.lines().next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{}", table);
    }
    assert!(table.contains(&format!("{}/busybox", shared_registry().host())) && table.contains(&id[..12]), "{}", table);
    let q = h.run(&["images", "-q"]).assert_ok().stdout.clone();
    assert_eq!(q.lines().count(), 2, "{}", q);
    let json: serde_json::Value =
        serde_json::from_str(&h.run(&["images", "--format", "json"]).assert_ok().stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert!(json[0]["Size"].as_u64().unwrap() > 1_000_000);

    h.run(&["tag", &reg("busybox:latest"), "mybox:v1"]).assert_ok();
    let v = inspect(&h, "mybox:v1");
    assert_eq!(v["Id"].as_str().unwrap(), format!("sha256:{}", id));
    assert_eq!(v["RepoTags"].as_array().unwrap().len(), 2);
    // By id with two names: refused without -f.
    let refused = h.run(&["rmi", &id[..12]]);
    assert_eq!(refused.status, 125, "{:?}", refused);
    // Untagging one name keeps the image.
    h.run(&["rmi", "mybox:v1"]).assert_ok();
    assert_eq!(h.run(&["images", "-q"]).stdout.lines().count(), 2);
    let df = h.run(&["system", "df"]).assert_ok().stdout.clone();
    assert!(df.contains("Images") && df.contains("RECLAIMABLE"), "{}", df);
    // Removing busybox keeps its layer: layered still uses it.
    h.run(&["rmi", &reg("busybox:latest")]).assert_ok();
    assert_eq!(std::fs::read_dir(h.store().join("layers")).unwrap().count(), 3);
    h.run(&["rmi", &reg("layered:latest")]).assert_ok();
    assert_eq!(std::fs::read_dir(h.store().join("layers")).unwrap().count(), 0, "layers go with their last image");
    assert_eq!(std::fs::read_dir(h.store().join("blobs/sha256")).unwrap().count(), 0);
    let unknown = h.run(&["rmi", "nosuchimage"]);
    assert_eq!(unknown.status, 125);
    assert!(unknown.stderr.contains("nosuchimage"), "{:?}", unknown);
}

#[test]
fn prune_removes_unused_images() {
    setup();
    let h = Husk::new(TestUser::NoSub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    h.run(&["system", "prune", "-f"]).assert_ok();
    assert_eq!(h.run(&["images", "-q"]).stdout.lines().count(), 1, "a tagged image is not dangling");
    let out = h.run(&["system", "prune", "-a", "-f"]);
    out.assert_ok();
    assert!(out.stdout.contains("Total reclaimed space"), "{:?}", out);
    assert_eq!(h.run(&["images", "-q"]).stdout.lines().count(), 0);
    assert_eq!(std::fs::read_dir(h.store().join("layers")).unwrap().count(), 0);
}

/// Every visible blob matches its digest and every visible layer is complete.
fn assert_store_consistent(store: &Path) {
    if !store.join("blobs/sha256").exists() {
        // Killed while creating the skeleton: whatever exists must not claim content.
        assert!(!store.join("layers").exists(), "layers without blobs in {}", store.display());
        return;
    }
    for e in std::fs::read_dir(store.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&data)), e.file_name().to_string_lossy(), "blob matches its name");
    }
    for e in std::fs::read_dir(store.join("layers")).unwrap() {
        let p = e.unwrap().path();
        assert!(p.join("layer.json").is_file() && p.join("diff").is_dir(), "{} is complete", p.display());
    }
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    assert!(index["manifests"].is_array());
}

#[test]
fn concurrent_pulls_share_one_copy() {
    setup();
    let h = Husk::new(TestUser::Sub);
    let images =
        ["busybox:latest", "layered:latest", "busybox:latest", "layered:latest", "multi:latest", "busybox:zstd"];
    let children: Vec<_> = images
        .iter()
        .map(|i| {
            h.cmd(&["pull", "-q", &reg(i)])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (c, i) in children.into_iter().zip(images) {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{} failed: {}", i, String::from_utf8_lossy(&out.stderr));
    }
    assert_store_consistent(&h.store());
    // busybox gzip, busybox zstd (same diff id: same chain), layered's two, multi's platform layer.
    let layers = std::fs::read_dir(h.store().join("layers")).unwrap().count();
    assert_eq!(layers, 4, "one layer dir per chain id");
    let tmp: Vec<_> = std::fs::read_dir(h.store().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "no leftovers in tmp: {:?}", tmp);
    assert_eq!(h.run(&["images", "-q"]).stdout.lines().count(), 4);
}

#[test]
fn kill_9_during_pull_leaves_a_usable_store() {
    setup();
    let h = Husk::new(TestUser::Sub);
    let image = reg("debian:bookworm");
    let mut interrupted = 0;
    for delay_ms in [50u64, 150, 300, 600, 1000] {
        let mut child = h
            .cmd(&["pull", "-q", &image])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SIGKILL husk itself (the child of runuser), not just runuser.
        let _ = Command::new("pkill").args(["-KILL", "-P", &child.id().to_string()]).status();
        let _ = child.kill();
        let _ = child.wait();
        assert_store_consistent(&h.store());
        let images = h.run(&["images", "-q"]);
        assert!(images.stdout.trim().is_empty() || images.stdout.lines().count() == 1, "{:?}", images);
        if images.stdout.trim().is_empty() {
            interrupted += 1;
        }
    }
    assert!(interrupted >= 3, "only {} of 5 kills landed mid-pull; the test needs slower pulls", interrupted);
    let out = h.run(&["pull", "-q", &image]);
    out.assert_ok();
    assert_store_consistent(&h.store());
    let tmp: Vec<_> = std::fs::read_dir(h.store().join("tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(tmp.is_empty(), "the next pull cleaned the leftovers: {:?}", tmp);
    for dir in [h.store(), h.store().join("blobs/sha256")] {
        let stray: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(stray.is_empty(), "no temp files of killed writers in {}: {:?}", dir.display(), stray);
    }
    assert_eq!(h.run(&["images", "-q"]).stdout.lines().count(), 1);
}

/// Processes whose environment has this test's HOME.
fn processes_with_home(home: &Path) -> Vec<String> {
    let needle = format!("HOME={}", home.display());
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                found.push(format!(
                    "{} {}",
                    name,
                    std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default().replace('\0', " ")
                ));
            }
        }
    }
    found
}

#[test]
fn no_husk_process_is_left_after_commands() {
    setup();
    let h = Husk::new(TestUser::NoSub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    h.run(&["images"]).assert_ok();
    h.run(&["rmi", &reg("busybox:latest")]).assert_ok();
    let left = processes_with_home(&h.home);
    assert!(left.is_empty(), "husk processes left: {:?}", left);
}

#[test]
fn root_override_and_env_override_choose_the_store() {
    setup();
    let h = Husk::new(TestUser::Sub);
    let alt = h.home.join("alt-store");
    h.run(&["--root", alt.to_str().unwrap(), "pull", "-q", &reg("busybox:latest")]).assert_ok();
    assert!(alt.join("index.json").is_file());
    assert!(!h.store().exists(), "the default store was not touched");
    let env_store = h.home.join("env-store");
    let out = h.run_env(&[("HUSK_ROOT", env_store.to_str().unwrap())], &["images", "-q"]);
    out.assert_ok();
    assert!(env_store.join("oci-layout").is_file());
}

#[test]
fn info_says_which_id_mapping_is_used() {
    setup();
    let sub = Husk::new(TestUser::Sub).run(&["info"]).assert_ok().stdout.clone();
    assert!(sub.contains("subordinate ids") && sub.contains("200000"), "{}", sub);
    let nosub = Husk::new(TestUser::NoSub).run(&["info"]).assert_ok().stdout.clone();
    assert!(nosub.contains("single id"), "{}", nosub);
}

#[test]
fn a_closed_stdout_ends_husk_quietly() {
    setup();
    let h = Husk::new(TestUser::NoSub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    let mut child = h
        .cmd(&["image", "inspect", &reg("busybox:latest")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away, like `| head -0`
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "husk panicked on a closed pipe: {}", stderr);
}

// ---------------------------------------------------------------------------
// the multi-platform fixture, and owners without subordinate ids
// ---------------------------------------------------------------------------

/// A one-tag OCI layout holding the manifest that `multi`'s index has for this host (and
/// the blobs it names, copied from the fixture layout), for `umoci unpack`, which does
/// not choose a platform from an index itself.
fn multi_host_layout() -> common::TempDir {
    let layout = common::fixtures();
    let read = |d: &str| std::fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let multi = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "multi")
        .expect("multi in the fixture layout");
    let idx: serde_json::Value = serde_json::from_slice(&read(multi["digest"].as_str().unwrap())).unwrap();
    let arch = common::fake_registry::host_arch();
    let entry = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("multi has no {arch} image: {idx}"))
        .clone();
    let manifest: serde_json::Value = serde_json::from_slice(&read(entry["digest"].as_str().unwrap())).unwrap();
    let dir = common::TempDir::new("multi-layout");
    std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
    let mut digests = vec![entry["digest"].as_str().unwrap().to_string()];
    digests.push(manifest["config"]["digest"].as_str().unwrap().to_string());
    digests.extend(manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    for d in &digests {
        std::fs::copy(layout.join("blobs/sha256").join(&d[7..]), dir.path().join("blobs/sha256").join(&d[7..]))
            .unwrap();
    }
    std::fs::write(dir.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut desc = entry;
    desc.as_object_mut().unwrap().remove("platform");
    desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "host"});
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
    std::fs::write(dir.path().join("index.json"), top.to_string()).unwrap();
    dir
}

#[test]
fn multi_matches_umoci_for_the_host_platform() {
    setup();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("multi:latest")]).assert_ok();
    let layout = multi_host_layout();
    let bundle = common::TempDir::new("umoci-multi");
    let out = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:host", layout.path().display()))
        .arg(bundle.path().join("bundle"))
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    let merged = Merged::new(&layer_dirs(&h, &reg("multi:latest")));
    let platform = std::fs::read_to_string(merged.path().join("platform")).unwrap();
    assert!(platform.contains(common::fake_registry::host_arch()), "the host's image was pulled: {platform:?}");
    let mut diffs = compare_trees(&bundle.path().join("bundle/rootfs"), merged.path(), &rootless_owner_map(h.user));
    diffs.retain(|d| !d.starts_with(": ") && !d.starts_with(".: "));
    assert!(diffs.is_empty(), "multi differs from umoci unpack:\n{}", diffs.join("\n"));
}

/// Without subordinate ids every file of the image belongs to the user, whatever owner
/// the image gave it (on top of the umoci comparison, which leaves those owners out).
#[test]
fn non_root_owners_become_the_user_without_subids() {
    use std::os::unix::fs::MetadataExt;
    setup();
    let h = Husk::new(TestUser::NoSub);
    h.run(&["pull", "-q", &reg("layered:latest")]).assert_ok();
    let expected = umoci_unpack("layered");
    let merged = Merged::new(&layer_dirs(&h, &reg("layered:latest")));
    let (uid, gid) = h.user.ids();
    let mut non_root = Vec::new();
    for p in walk(&expected.rootfs()) {
        let rel = Path::new(&p).strip_prefix(expected.rootfs()).unwrap().to_path_buf();
        let want = std::fs::symlink_metadata(&p).unwrap();
        let got = std::fs::symlink_metadata(merged.path().join(&rel))
            .unwrap_or_else(|e| panic!("{} missing from husk's tree: {e}", rel.display()));
        if want.uid() != 0 || want.gid() != 0 {
            non_root.push(format!("{} ({}:{})", rel.display(), want.uid(), want.gid()));
        }
        assert_eq!(
            (got.uid(), got.gid()),
            (uid, gid),
            "{} (image owner {}:{}) is not owned by husk-nosub",
            rel.display(),
            want.uid(),
            want.gid()
        );
    }
    assert!(
        non_root.iter().any(|n| n.starts_with("edge/setuid-app ")),
        "the fixture has files with non-root owners: {non_root:?}"
    );
}

// ---------------------------------------------------------------------------
// Docker media types, parallel layers, re-pulls and progress, against fake registries
// ---------------------------------------------------------------------------

use common::fake_registry::{host_arch, FakeRegistry, Image, Layer, Resp, Routes, Server};
use serde_json::json;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// An image for `arch` in Docker's schema 2 media types (manifest, config and layers).
fn docker_image(arch: &str, files: &[(&str, &[u8])]) -> Image {
    let layer = Layer { media_type: DOCKER_GZIP, ..Layer::gzip(files) };
    let mut img = Image::new(arch, vec![layer]);
    img.manifest["mediaType"] = json!(DOCKER_MANIFEST);
    img.manifest["config"]["mediaType"] = json!(DOCKER_CONFIG);
    img
}

fn serve_docker(reg: &FakeRegistry, repo: &str, tag: &str, img: &Image) {
    reg.manifest(repo, tag, DOCKER_MANIFEST, img.manifest_bytes());
    reg.blob(repo, &img.config_digest(), Resp::blob(img.config.clone()));
    for l in &img.layers {
        reg.blob(repo, &l.digest(), Resp::blob(l.blob.clone()));
    }
}

fn blob_gets(reqs: &[String]) -> Vec<String> {
    reqs.iter().filter(|r| r.starts_with("GET ") && r.contains("/blobs/")).cloned().collect()
}

#[test]
fn docker_schema2_manifest_and_manifest_list_pull() {
    ensure_prereqs();
    let reg = FakeRegistry::start();
    let img = docker_image(host_arch(), &[("docker.txt", b"a docker schema 2 image\n")]);
    serve_docker(&reg, "docker/app", "v1", &img);
    let other_arch = if host_arch() == "s390x" { "amd64" } else { "s390x" };
    let other = docker_image(other_arch, &[("docker.txt", b"the wrong platform\n")]);
    // Only the manifest of the other platform is served: choosing it fails the pull.
    reg.manifest("docker/app", &other.manifest_digest(), DOCKER_MANIFEST, other.manifest_bytes());
    let entry = |i: &Image, arch: &str| {
        json!({"mediaType": DOCKER_MANIFEST, "digest": i.manifest_digest(), "size": i.manifest_bytes().len(),
               "platform": {"architecture": arch, "os": "linux"}})
    };
    let list = json!({"schemaVersion": 2, "mediaType": DOCKER_LIST,
                      "manifests": [entry(&other, other_arch), entry(&img, host_arch())]});
    reg.manifest("docker/app", "list", DOCKER_LIST, serde_json::to_vec(&list).unwrap());

    let h = Husk::new(TestUser::Sub);
    for tag in ["v1", "list"] {
        let r = reg.reference("docker/app", tag);
        let out = h.run(&["pull", "-q", &r]);
        out.assert_ok();
        assert_eq!(out.stdout.trim(), &img.config_digest()[7..], "{out:?}\n{:#?}", reg.requests());
        let v = inspect(&h, &r);
        assert_eq!(v["Manifest"]["MediaType"], DOCKER_MANIFEST, "{v}");
        assert_eq!(v["Manifest"]["Digest"], img.manifest_digest().as_str(), "{v}");
        assert_eq!(v["RootFS"]["Layers"], json!([img.layers[0].diff_id()]), "{v}");
    }
    let diff = h.store().join("layers").join(&img.layers[0].diff_id()[7..]).join("diff/docker.txt");
    assert_eq!(std::fs::read(&diff).unwrap(), b"a docker schema 2 image\n");
    let asked_other = reg.requests().iter().any(|r| r.contains(&other.config_digest()));
    assert!(!asked_other, "the other platform's blobs were requested: {:#?}", reg.requests());
}

#[test]
fn layers_are_fetched_in_parallel() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    ensure_prereqs();
    let img = Image::new(
        host_arch(),
        (0..3).map(|i| Layer::gzip(&[(&format!("layer{i}.txt"), &format!("layer {i}\n").into_bytes()[..])])).collect(),
    );
    let layer_paths: Vec<String> = img.layers.iter().map(|l| format!("/v2/par/app/blobs/{}", l.digest())).collect();
    let routes = Routes::with("par/app", "v1", &img);
    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reg = {
        let (in_flight, most) = (in_flight.clone(), most.clone());
        Server::start(move |req| {
            if !layer_paths.iter().any(|p| p == req.path()) {
                return routes.answer(req);
            }
            // Hold each layer request until another one arrives (or 10 s pass): a husk
            // that fetches one layer at a time never has two in flight.
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while most.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let resp = routes.answer(req);
            in_flight.fetch_sub(1, Ordering::SeqCst);
            resp
        })
    };
    let h = Husk::new(TestUser::Sub);
    let out = h.run(&["pull", "-q", &format!("{}/par/app:v1", reg.host())]);
    out.assert_ok();
    assert!(most.load(Ordering::SeqCst) >= 2, "the registry never saw two layer requests at once:\n{}", reg.dump());
}

#[test]
fn repull_of_a_stored_image_makes_no_blob_requests() {
    ensure_prereqs();
    let reg = FakeRegistry::start();
    let img =
        Image::new(host_arch(), vec![Layer::gzip(&[("a.txt", b"first\n")]), Layer::gzip(&[("b.txt", b"second\n")])]);
    reg.serve("re/app", "v1", &img);
    reg.serve("re/app", "v2", &img);
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg.reference("re/app", "v1")]).assert_ok();
    let first = blob_gets(&reg.requests());
    assert_eq!(first.len(), 3, "config and two layers fetched once each: {first:#?}");
    for (tag, what) in [("v1", "the same tag again"), ("v2", "another tag of the same image")] {
        let before = reg.requests().len();
        let out = h.run(&["pull", &reg.reference("re/app", tag)]);
        out.assert_ok();
        let again = blob_gets(&reg.requests()[before..]);
        assert!(again.is_empty(), "pulling {what} fetched blobs: {again:#?}\n{out:?}");
        assert_eq!(out.stderr.matches("already present").count(), 2, "{out:?}");
    }
    assert_eq!(h.run(&["images"]).assert_ok().stdout.lines().count(), 3, "two names, one image");
}

#[test]
fn pull_q_prints_only_the_id_and_plain_lines_without_a_terminal() {
    ensure_prereqs();
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("q/app", "v1", &img);
    let h = Husk::new(TestUser::Sub);
    let out = h.run(&["pull", "-q", &reg.reference("q/app", "v1")]);
    out.assert_ok();
    assert_eq!(out.stderr, "", "pull -q writes nothing on stderr");
    assert_eq!(out.stdout, format!("{}\n", &img.config_digest()[7..]), "pull -q prints the image id alone");

    let h = Husk::new(TestUser::Sub);
    let out = h.run(&["pull", &reg.reference("q/app", "v1")]);
    out.assert_ok();
    let short = &img.layers[0].digest()[7..19];
    assert!(out.stderr.contains(&format!("Layer {short}: downloading (")), "{out:?}");
    assert!(out.stderr.contains(&format!("Layer {short}: done")), "{out:?}");
    assert!(out.stderr.contains(&format!("Digest: {}", img.manifest_digest())), "{out:?}");
    assert!(!out.stderr.contains('\x1b') && !out.stderr.contains('█'), "no bars without a terminal: {out:?}");
}

#[test]
fn progress_bars_on_a_terminal() {
    use nix::pty::openpty;
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    ensure_prereqs();
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("tty/app", "v1", &img);
    let h = Husk::new(TestUser::Sub);
    let pty = openpty(None, None).unwrap();
    let mut cmd = h.cmd_env(&[("TERM", "xterm")], &["pull", &reg.reference("tty/app", "v1")]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(pty.slave.try_clone().unwrap()));
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let child = cmd.spawn().unwrap();
    drop(cmd);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once every holder of the terminal's other end has exited
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let out = child.wait_with_output().unwrap();
    let shown = reader.join().unwrap();
    assert!(out.status.success(), "husk pull on a terminal failed:\n{shown}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), &img.config_digest()[7..]);
    let short = &img.layers[0].digest()[7..19];
    let bar_line = shown
        .split(['\n', '\r'])
        .rev()
        .find(|l| l.contains(&format!("Layer {short}")) && l.contains(&"█".repeat(30)))
        .unwrap_or_else(|| panic!("no finished progress bar for layer {short}; the terminal showed:\n{shown:?}"));
    assert!(bar_line.contains("done"), "{bar_line:?} in\n{shown:?}");
    assert!(!shown.contains(": downloading ("), "plain lines on a terminal:\n{shown:?}");
    assert!(shown.contains(&format!("Digest: {}", img.manifest_digest())), "{shown:?}");
}

// ---------------------------------------------------------------------------
// rmi -f, prune and df with containers
// ---------------------------------------------------------------------------

/// `system df` as rows of cells (columns are three or more spaces apart).
fn df(h: &Husk) -> Vec<Vec<String>> {
    let out = h.run(&["system", "df"]);
    out.assert_ok();
    out.stdout
        .lines()
        .map(|l| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect())
        .collect()
}

#[track_caller]
fn df_row(rows: &[Vec<String>], name: &str) -> Vec<String> {
    rows.iter().find(|r| r[0] == name).unwrap_or_else(|| panic!("no {name} row in {rows:?}")).clone()
}

fn layer_count(h: &Husk) -> usize {
    std::fs::read_dir(h.store().join("layers")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn rmi_force_removes_an_image_a_container_uses() {
    setup();
    let h = Husk::new(TestUser::Sub);
    let image = reg("busybox:latest");
    let id = h.run(&["pull", "-q", &image]).assert_ok().stdout.trim().to_string();
    h.run(&["create", "--name", "keeper", &image, "true"]).assert_ok();
    let refused = h.run(&["rmi", &image]);
    let line = refused.error_line("rmi of an image a container uses");
    assert!(line.contains("keeper"), "{line}");
    // prune -a keeps it too: a container was made from it
    let out = h.run(&["system", "prune", "-a", "-f"]);
    out.assert_ok();
    assert!(!out.stdout.contains(&id), "{out:?}");
    assert_eq!(h.run(&["images", "-q"]).stdout.lines().count(), 1, "prune -a removed an image in use");

    let out = h.run(&["rmi", "-f", &image]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("Untagged: {image}")), "{out:?}");
    assert!(out.stdout.contains(&format!("Deleted: sha256:{id}")), "{out:?}");
    assert_eq!(h.run(&["images", "-q"]).stdout, "", "the image is gone");
    assert_eq!(layer_count(&h), 1, "the container keeps its layer");
    let ps = h.run(&["ps", "-a"]).assert_ok().stdout.clone();
    assert!(ps.contains("keeper"), "{ps}");
    h.run(&["rm", "keeper"]).assert_ok();
    h.run(&["system", "prune", "-f"]).assert_ok();
    assert_eq!(layer_count(&h), 0, "with the container gone, prune removes its layer");
}

#[test]
fn prune_removes_a_dangling_image() {
    setup();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    let layered = h.run(&["pull", "-q", &reg("layered:latest")]).assert_ok().stdout.trim().to_string();
    // layered's only name moves to busybox: layered is left dangling
    h.run(&["tag", &reg("layered:latest"), "mine:v1"]).assert_ok();
    h.run(&["rmi", &reg("layered:latest")]).assert_ok();
    h.run(&["tag", &reg("busybox:latest"), "mine:v1"]).assert_ok();
    let table = h.run(&["images"]).assert_ok().stdout.clone();
    assert!(table.lines().any(|l| l.starts_with("<none>") && l.contains(&layered[..12])), "{table}");
    assert_eq!(layer_count(&h), 3);
    let out = h.run(&["system", "prune", "-f"]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("Deleted: sha256:{layered}")), "{out:?}");
    assert!(!out.stdout.contains("reclaimed space: 0B"), "{out:?}");
    assert_eq!(h.run(&["images", "-q"]).stdout.lines().count(), 1, "the named image stays");
    assert_eq!(layer_count(&h), 1, "layered's own layers went, the shared base stayed");
    assert_eq!(std::fs::read_dir(h.store().join("blobs/sha256")).unwrap().count(), 3, "busybox's 3 blobs stay");
}

#[test]
fn system_df_shows_real_values() {
    setup();
    let h = Husk::new(TestUser::Sub);
    let rows = df(&h);
    assert_eq!(df_row(&rows, "Images"), ["Images", "0", "0", "0B", "0B"]);
    assert_eq!(df_row(&rows, "Containers"), ["Containers", "0", "0", "0B", "0B"]);

    let image = reg("busybox:latest");
    h.run(&["pull", "-q", &image]).assert_ok();
    let images = h.run(&["images"]).assert_ok().stdout.clone();
    let size = images.lines().nth(1).unwrap().split("   ").map(str::trim).filter(|c| !c.is_empty()).last().unwrap();
    let rows = df(&h);
    assert_eq!(df_row(&rows, "Images"), ["Images", "1", "0", size, &format!("{size} (100%)")], "{images}");

    // a stopped container that wrote 1 MB, and a running one
    h.run(&["run", "--name", "writer", &image, "sh", "-c", "head -c 1000000 /dev/zero > /big"]).assert_ok();
    let rows = df(&h);
    assert_eq!(df_row(&rows, "Images"), ["Images", "1", "1", size, "0B"]);
    assert_eq!(df_row(&rows, "Containers"), ["Containers", "1", "0", "1.00MB", "1.00MB (100%)"]);
    h.run(&["run", "-d", "--name", "sleeper", &image, "sleep", "60"]).assert_ok();
    let rows = df(&h);
    let c = df_row(&rows, "Containers");
    assert_eq!(
        c,
        ["Containers", "2", "1", "1.00MB", "1.00MB (100%)"],
        "a running container is active and not reclaimable"
    );
    h.run(&["rm", "-f", "sleeper", "writer"]).assert_ok();
}
