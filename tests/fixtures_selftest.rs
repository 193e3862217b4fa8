//! Self-test of the integration-test harness (tests/common) and the fixture images
//! (tests/fixtures/build-fixtures.sh). Uses only independent tools (skopeo, umoci).

mod common;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn blob(digest: &str) -> Vec<u8> {
    let p = fixtures().join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap());
    let b = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(sha256(&b), digest, "blob {} is corrupt", p.display());
    b
}

fn json_blob(digest: &str) -> Value {
    serde_json::from_slice(&blob(digest)).unwrap()
}

/// index.json descriptor of a tag in the fixture layout
fn layout_desc(tag: &str) -> Value {
    let index: Value = serde_json::from_slice(&fs::read(fixtures().join("index.json")).unwrap()).unwrap();
    let hits: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .collect();
    assert_eq!(hits.len(), 1, "tag {tag} must be in index.json exactly once");
    hits[0].clone()
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().expect("run skopeo");
    assert!(out.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn remote(reg: &Registry, what: &[&str], image: &str) -> Vec<u8> {
    let url = format!("docker://{}/{image}", reg.host());
    let mut args = vec!["inspect", "--tls-verify=false"];
    args.extend_from_slice(what);
    args.push(&url);
    skopeo(&args)
}

fn remote_json(reg: &Registry, what: &[&str], image: &str) -> Value {
    serde_json::from_slice(&remote(reg, what, image)).unwrap()
}

fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap().to_string()).collect()
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

#[test]
fn layout_contents() {
    ensure_prereqs();
    let layout = fixtures();
    assert!(layout.starts_with("/var/tmp/husk-test-fixtures") || std::env::var_os("HUSK_FIXTURE_CACHE").is_some());
    assert_eq!(
        fs::read_to_string(layout.join("oci-layout")).unwrap().replace(' ', ""),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );

    let expect: &[(&str, usize, &str, &str)] = &[
        ("busybox", 1, MT_GZIP, "sh"),
        ("busybox-zstd", 1, MT_ZSTD, "sh"),
        ("layered", 3, MT_GZIP, "sh"),
        ("debian", 1, MT_GZIP, "bash"),
    ];
    let mut manifests = std::collections::HashMap::new();
    for (tag, n, mt, cmd) in expect {
        let d = layout_desc(tag);
        assert_eq!(d["mediaType"], MT_MANIFEST, "{tag}");
        let raw = blob(d["digest"].as_str().unwrap());
        assert_eq!(raw.len() as u64, d["size"].as_u64().unwrap(), "{tag} manifest size");
        let m: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(layer_types(&m), vec![mt.to_string(); *n], "{tag} layer media types");
        for l in m["layers"].as_array().unwrap() {
            let b = blob(l["digest"].as_str().unwrap());
            assert_eq!(b.len() as u64, l["size"].as_u64().unwrap(), "{tag} layer size");
            match *mt {
                MT_GZIP => assert_eq!(&b[..2], &[0x1f, 0x8b], "{tag}: not gzip"),
                MT_ZSTD => assert_eq!(&b[..4], &[0x28, 0xb5, 0x2f, 0xfd], "{tag}: not zstd"),
                _ => unreachable!(),
            }
        }
        let cfg = json_blob(m["config"]["digest"].as_str().unwrap());
        assert_eq!(cfg["architecture"], "amd64", "{tag}");
        assert_eq!(cfg["os"], "linux", "{tag}");
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!([cmd]), "{tag}");
        assert!(
            cfg["config"]["Env"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with("PATH=")),
            "{tag}: no PATH"
        );
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), *n, "{tag} diff_ids");
        manifests.insert(*tag, (m, cfg));
    }
    // layered starts with exactly the busybox layer; zstd has the same uncompressed content
    let bb = &manifests["busybox"];
    let layered = &manifests["layered"];
    let zstd = &manifests["busybox-zstd"];
    assert_eq!(layer_digests(&layered.0)[0], layer_digests(&bb.0)[0]);
    assert_eq!(layered.1["rootfs"]["diff_ids"][0], bb.1["rootfs"]["diff_ids"][0]);
    assert_ne!(layer_digests(&zstd.0)[0], layer_digests(&bb.0)[0]);
    assert_eq!(zstd.1["rootfs"]["diff_ids"], bb.1["rootfs"]["diff_ids"]);

    // multi: an index with linux/amd64 and linux/arm64/v8
    let d = layout_desc("multi");
    assert_eq!(d["mediaType"], MT_INDEX);
    let idx = json_blob(d["digest"].as_str().unwrap());
    assert_eq!(idx["mediaType"], MT_INDEX);
    let ms = idx["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0]["platform"], serde_json::json!({"architecture": "amd64", "os": "linux"}));
    assert_eq!(ms[1]["platform"], serde_json::json!({"architecture": "arm64", "os": "linux", "variant": "v8"}));
    let amd = json_blob(ms[0]["digest"].as_str().unwrap());
    let arm = json_blob(ms[1]["digest"].as_str().unwrap());
    assert_eq!(layer_digests(&amd).len(), 2);
    assert_eq!(layer_digests(&amd)[0], layer_digests(&bb.0)[0]);
    assert_eq!(layer_digests(&arm).len(), 1);
    let arm_cfg = json_blob(arm["config"]["digest"].as_str().unwrap());
    assert_eq!(arm_cfg["architecture"], "arm64");
    assert_eq!(arm_cfg["variant"], "v8");
    let amd_cfg = json_blob(amd["config"]["digest"].as_str().unwrap());
    assert_eq!(amd_cfg["architecture"], "amd64");
}

#[test]
fn shared_registry_serves_all_fixtures() {
    let reg = shared_registry();
    assert_eq!(reg.host(), format!("127.0.0.1:{}", reg.port));

    for (tag, dest) in FIXTURE_PUSHES {
        let want = layout_desc(tag);
        let raw = remote(reg, &["--raw"], dest);
        assert_eq!(sha256(&raw), want["digest"].as_str().unwrap(), "{dest}: manifest digest differs from layout");
        let info = remote_json(reg, &[], dest);
        assert_eq!(info["Digest"], want["digest"], "{dest}");
        assert_eq!(info["Os"], "linux", "{dest}");
        assert_eq!(info["Architecture"], "amd64", "{dest}");
        if *tag != "multi" {
            let m: Value = serde_json::from_slice(&raw).unwrap();
            let local = json_blob(want["digest"].as_str().unwrap());
            assert_eq!(m, local);
            let layers: Vec<String> =
                info["Layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
            assert_eq!(layers, layer_digests(&m), "{dest}");
        }
    }

    let bb = remote_json(reg, &["--raw"], "busybox:latest");
    assert_eq!(layer_types(&bb), vec![MT_GZIP]);
    let z = remote_json(reg, &["--raw"], "busybox:zstd");
    assert_eq!(layer_types(&z), vec![MT_ZSTD]);
    let layered = remote_json(reg, &["--raw"], "layered:latest");
    assert_eq!(layer_types(&layered), vec![MT_GZIP; 3]);
    assert_eq!(layer_digests(&layered)[0], layer_digests(&bb)[0]);
    let deb = remote_json(reg, &["--raw"], "debian:bookworm");
    assert_eq!(layer_types(&deb), vec![MT_GZIP]);
    let deb_cfg = remote_json(reg, &["--config"], "debian:bookworm");
    assert_eq!(deb_cfg["config"]["Cmd"], serde_json::json!(["bash"]));
    let bb_cfg = remote_json(reg, &["--config"], "busybox:latest");
    assert_eq!(bb_cfg["config"]["Cmd"], serde_json::json!(["sh"]));

    // multi-platform
    let idx = remote_json(reg, &["--raw"], "multi:latest");
    assert_eq!(idx["mediaType"], MT_INDEX);
    let plats: Vec<String> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                p["variant"].as_str().map(|v| format!("/{v}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(plats, ["linux/amd64", "linux/arm64/v8"]);
    let amd = remote_json(reg, &[], "multi:latest");
    assert_eq!(amd["Architecture"], "amd64");
    assert_eq!(amd["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(amd["Layers"][0], layer_digests(&bb)[0].as_str());
    let arm = remote_json(reg, &["--override-arch", "arm64", "--override-variant", "v8"], "multi:latest");
    assert_eq!(arm["Architecture"], "arm64");
    assert_eq!(arm["Layers"].as_array().unwrap().len(), 1);
    assert_ne!(arm["Layers"][0], amd["Layers"][1]);
    // the arm64 manifest is fetchable by digest
    let arm_digest = idx["manifests"][1]["digest"].as_str().unwrap();
    let by_digest = remote(reg, &["--raw"], &format!("multi@{arm_digest}"));
    assert_eq!(sha256(&by_digest), arm_digest);

    // the registry answers plain HTTP on 127.0.0.1
    let mut s = std::net::TcpStream::connect(("127.0.0.1", reg.port)).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /v2/_catalog HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    for repo in ["busybox", "layered", "debian", "multi"] {
        assert!(resp.contains(&format!("\"{repo}\"")), "catalog lacks {repo}: {resp}");
    }
}

#[test]
fn private_registry_lifecycle() {
    let reg = Registry::start();
    let port = reg.port;
    let storage = reg.storage_dir().unwrap();
    reg.push_fixture("busybox", "some/where:v1");
    let info = remote_json(&reg, &[], "some/where:v1");
    assert_eq!(info["Digest"], layout_desc("busybox")["digest"]);
    assert!(storage.join("data/docker/registry/v2/repositories/some/where").is_dir());
    drop(reg);
    assert!(!storage.exists(), "registry storage not removed");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "registry still listening");
}

#[test]
fn umoci_reference_unpack_of_layered() {
    let u = umoci_unpack("layered");
    let r = u.rootfs();
    let md = |p: &str| fs::symlink_metadata(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    // busybox layer
    assert_eq!(fs::read_link(r.join("bin/sh")).unwrap(), Path::new("busybox"));
    assert_eq!(md("bin/busybox").mode() & 0o7777, 0o755);
    assert!(fs::read_to_string(r.join("etc/passwd")).unwrap().contains("app:x:1000:1000:"));
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!((md("home/app").uid(), md("home/app").gid()), (1000, 1000));
    // edge layer
    assert_eq!(md("edge/hl-a").ino(), md("edge/hl-b").ino());
    assert_eq!(md("edge/hl-a").nlink(), 2);
    assert_eq!(fs::read_link(r.join("edge/rel-link")).unwrap(), Path::new("hl-a"));
    assert_eq!(fs::read_link(r.join("edge/abs-link")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(md("edge/setuid-root").mode() & 0o7777, 0o4755);
    assert_eq!(md("edge/setuid-root").uid(), 0);
    assert_eq!(md("edge/setuid-app").mode() & 0o7777, 0o4755);
    assert_eq!(md("edge/setuid-app").uid(), 1000);
    assert_eq!(md("edge/setgid").mode() & 0o7777, 0o2755);
    assert_eq!(md("edge/setgid").gid(), 1000);
    assert_eq!((md("edge/owned-1000").uid(), md("edge/owned-1000").gid()), (1000, 1000));
    assert_eq!((md("edge/dir-1234").uid(), md("edge/dir-1234").gid()), (1234, 5678));
    assert!(md("edge/dir-1234").is_dir());
    assert!(md("edge/fifo").file_type().is_fifo());
    assert_eq!(md("edge/empty").len(), 0);
    assert_eq!(md("edge/private-dir").mode() & 0o7777, 0o700);
    assert_eq!(md("edge/private-file").mode() & 0o7777, 0o600);
    assert_eq!(md("edge/sticky").mode() & 0o7777, 0o1777);
    assert_eq!(fs::read_to_string(r.join("edge/ünïcødé-файл-名前")).unwrap(), "unicode\n");
    let long: Vec<_> = fs::read_dir(r.join("edge"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("long-name-"))
        .collect();
    assert_eq!(long.len(), 1);
    assert!(format!("edge/{}", long[0]).len() > 100);
    let deep = Command::new("find").arg(r.join("edge/deep")).args(["-type", "f"]).output().unwrap();
    let deep = String::from_utf8(deep.stdout).unwrap();
    let deep = deep.trim().strip_prefix(&format!("{}/", r.display())).unwrap().to_string();
    assert!(deep.len() > 255, "{deep}");
    assert_eq!(fs::read_to_string(r.join(&deep)).unwrap(), "deep path (pax)\n");
    let c = std::ffi::CString::new(r.join("edge/xattr").to_str().unwrap()).unwrap();
    let mut buf = [0u8; 64];
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"user.husk.test".as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
    assert_eq!(&buf[..n.max(0) as usize], b"hello", "xattr user.husk.test");
    // whiteout layer
    assert!(!r.join("remove-me-too").exists());
    assert!(!r.join("remove-me/file").exists());
    assert!(r.join("remove-me/keep").is_file());
    let mut opaque: Vec<String> =
        fs::read_dir(r.join("opaque")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    opaque.sort();
    assert_eq!(opaque, ["new-c"]);
    let wh = Command::new("find").arg(&r).args(["-name", ".wh.*"]).output().unwrap();
    assert!(wh.stdout.is_empty(), "whiteout files left: {}", String::from_utf8_lossy(&wh.stdout));
}

#[test]
fn compare_trees_finds_differences() {
    let a = umoci_unpack("layered");
    let b = umoci_unpack("layered");
    let ident = |u, g| Some((u, g));
    let d = compare_trees(&a.rootfs(), &b.rootfs(), &ident);
    assert!(d.is_empty(), "identical unpacks differ: {d:#?}");

    let r = b.rootfs();
    fs::set_permissions(r.join("edge/setuid-root"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::lchown(r.join("edge/owned-1000"), Some(0), Some(0)).unwrap();
    fs::write(r.join("etc/group"), "root:x:0:\nAPP:x:1000:\nnogroup:x:65534:\n").unwrap(); // same size
    fs::remove_file(r.join("opaque/new-c")).unwrap();
    fs::write(r.join("extra-file"), "x").unwrap();
    fs::remove_file(r.join("edge/hl-b")).unwrap();
    fs::copy(r.join("edge/hl-a"), r.join("edge/hl-b")).unwrap();
    fs::remove_file(r.join("edge/rel-link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", r.join("edge/rel-link")).unwrap();
    fs::remove_file(r.join("edge/fifo")).unwrap();
    fs::write(r.join("edge/fifo"), "").unwrap();
    let c = std::ffi::CString::new(r.join("edge/xattr").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::lremovexattr(c.as_ptr(), c"user.husk.test".as_ptr()) }, 0);

    let d = compare_trees(&a.rootfs(), &r, &ident);
    let has = |needle: &str| d.iter().any(|l| l.contains(needle));
    for needle in [
        "edge/setuid-root: mode: expected 4755, got 0755",
        "edge/owned-1000: owner",
        "etc/group: content",
        "missing: opaque/new-c",
        "extra: extra-file",
        "hardlink: edge/hl-a and edge/hl-b",
        "edge/rel-link: symlink target",
        "edge/fifo: type",
        "edge/xattr: xattrs",
    ] {
        assert!(has(needle), "no difference containing {needle:?} in {d:#?}");
    }
    assert_eq!(d.len(), 9, "{d:#?}");
    // owners not compared when map_owner says None
    let d = compare_trees(&a.rootfs(), &r, &|_, _| None);
    assert!(!d.iter().any(|l| l.contains("owner")), "{d:#?}");
}

#[test]
fn test_users_and_homes() {
    let sub = Husk::new(TestUser::Sub);
    let (uid, gid) = TestUser::Sub.ids();
    assert_ne!(uid, 0);
    let md = fs::metadata(&sub.home).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    assert_eq!(md.mode() & 0o7777, 0o700);
    assert_eq!(sub.store(), sub.home.join(".local/share/husk"));
    let base = subid_base("husk-sub");
    assert!(base >= 100_000 && base != uid, "subuid base {base}");
    assert!(subgid_base("husk-sub") >= 100_000);
    let whoami = Command::new("runuser").args(["-u", "husk-sub", "--", "id", "-u"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&whoami.stdout).trim(), uid.to_string());

    let nosub = Husk::new(TestUser::NoSub);
    let nosub_uid = TestUser::NoSub.uid();
    let subuid = fs::read_to_string("/etc/subuid").unwrap_or_default();
    assert!(
        !subuid.lines().any(|l| l.starts_with("husk-nosub:") || l.starts_with(&format!("{nosub_uid}:"))),
        "husk-nosub must have no subuid range"
    );
    assert_ne!(sub.home, nosub.home);

    // the husk binary is executable by every test user (status 126/127 = cannot exec)
    for h in [&sub, &nosub, &Husk::new(TestUser::Root)] {
        let out = h.run(&["--version"]);
        assert!(out.status != 126 && out.status != 127 && out.status != -1, "{:?}: {out:?}", h.user);
        let env_dump = h.cmd(&["x"]);
        let args: Vec<String> = env_dump.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.contains(&format!("HOME={}", h.home.display())), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("XDG_")), "{args:?}");
    }

    let home = sub.home.clone();
    fs::write(home.join("f"), "x").unwrap();
    drop(sub);
    assert!(!home.exists(), "HOME not removed on drop");
}
