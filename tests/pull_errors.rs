//! `husk pull` given bad input: every failure must give one clear line on stderr
//! (naming the reference, host, digest or blob and the cause), exit status 125,
//! leave nothing new in the store and leave no process behind.
//!
//! Cases that need a misbehaving registry use `FakeRegistry` (tests/common/fake_registry.rs),
//! a tiny HTTP/1.1 server in a thread of this test process that answers from a table of
//! canned responses. Cases that need a real registry use `common::shared_registry()`
//! (CNCF distribution with the fixture images).

mod common;

use common::fake_registry::{
    config_json, hex_part, host_arch, sha256, FakeRegistry, Image, Layer, Length, Resp, MT_INDEX, MT_MANIFEST,
};
use common::{Husk, Output, TestUser};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// husk's limit for manifests and configs (src/fetch/registry.rs MAX_DOCUMENT).
const MAX_DOCUMENT: u64 = 4 << 20;

/// The platform husk wants by default, as its messages spell it.
fn host_platform() -> String {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64/v8".into(),
        "arm" => "linux/arm/v7".into(),
        _ => format!("linux/{}", host_arch()),
    }
}

/// A descriptor for an index entry.
fn index_entry(manifest: &[u8], os: &str, arch: &str, variant: Option<&str>) -> Value {
    let mut platform = json!({"os": os, "architecture": arch});
    if let Some(v) = variant {
        platform["variant"] = json!(v);
    }
    json!({"mediaType": MT_MANIFEST, "digest": sha256(manifest), "size": manifest.len(), "platform": platform})
}

// ---------------------------------------------------------------------------
// checks
// ---------------------------------------------------------------------------

fn husk() -> Husk {
    common::ensure_prereqs();
    Husk::new(TestUser::Sub)
}

/// What the store holds, as far as "nothing new" is concerned.
#[derive(Debug, Default, Clone, PartialEq)]
struct StoreState {
    blobs: BTreeSet<String>,
    layers: BTreeSet<String>,
    /// everything under tmp/, recursively, relative paths
    tmp: Vec<String>,
    /// index.json entries: "digest name"
    index: Vec<String>,
    /// locks/ (reported, not compared)
    locks: BTreeSet<String>,
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = format!("{prefix}{}", e.file_name().to_string_lossy());
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        out.push(if is_dir { format!("{rel}/") } else { rel.clone() });
        if is_dir {
            walk(&e.path(), &format!("{rel}/"), out);
        }
    }
}

fn store_state(store: &Path) -> StoreState {
    let mut tmp = Vec::new();
    walk(&store.join("tmp"), "", &mut tmp);
    let index = match fs::read(store.join("index.json")) {
        Ok(b) => {
            let v: Value = serde_json::from_slice(&b)
                .unwrap_or_else(|e| panic!("{}/index.json is not JSON: {e}", store.display()));
            v["manifests"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| {
                            format!(
                                "{} {}",
                                m["digest"].as_str().unwrap_or("?"),
                                m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or("<none>")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    StoreState {
        blobs: names_in(&store.join("blobs/sha256")),
        layers: names_in(&store.join("layers")),
        tmp,
        index,
        locks: names_in(&store.join("locks")),
    }
}

#[track_caller]
fn assert_nothing_new(h: &Husk, before: &StoreState, what: &str) {
    let after = store_state(&h.store());
    let new_blobs: Vec<&String> = after.blobs.difference(&before.blobs).collect();
    let new_layers: Vec<&String> = after.layers.difference(&before.layers).collect();
    assert!(
        new_blobs.is_empty() && new_layers.is_empty() && after.tmp.is_empty() && after.index == before.index,
        "{what}: the failed pull changed the store {}:\n  new blobs under blobs/sha256: {new_blobs:?}\n  \
         new dirs under layers/: {new_layers:?}\n  tmp/ holds: {:?}\n  index.json: {:?} -> {:?}\n  locks/: {:?}",
        h.store().display(),
        after.tmp,
        before.index,
        after.index,
        after.locks
    );
    let imgs = h.run(&["images", "-q"]);
    imgs.assert_ok();
    assert!(imgs.stdout.trim().is_empty(), "{what}: `husk images -q` lists images after a failed pull:\n{imgs:?}");
}

/// Processes (other than zombies) whose environment has this test's HOME: husk or
/// anything it started.
fn processes_of(h: &Husk) -> Vec<String> {
    let needle = format!("\0HOME={}\0", h.home.display()).into_bytes();
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        let mut env0 = vec![0u8];
        env0.extend_from_slice(&env);
        env0.push(0);
        if env0.windows(needle.len()).any(|w| w == &needle[..]) {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            found.push(format!("pid {name}: {}", cmd.trim()));
        }
    }
    found
}

#[track_caller]
fn assert_no_leftover_processes(h: &Husk, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes_of(h);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: processes left running after husk exited:\n  {}", left.join("\n  "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one line of a failed `husk pull -q`, after checking the whole failure contract:
/// exit status 125, nothing on stdout, exactly one non-empty line on stderr containing
/// every string of `names` and (case-insensitively) at least one of `causes`, a prompt
/// exit, no process left behind and nothing new in the store.
#[track_caller]
fn expect_pull_error(h: &Husk, args: &[&str], names: &[&str], causes: &[&str]) -> String {
    let before = store_state(&h.store());
    let mut full = vec!["pull", "-q"];
    full.extend_from_slice(args);
    let what = format!("husk {}", full.join(" "));
    let t = Instant::now();
    let out = h.run(&full);
    let took = t.elapsed();
    eprintln!("{what}\n  -> {} ({took:.1?})", out.stderr.trim_end());
    check_error_output(&out, &what, names, causes);
    assert!(took < Duration::from_secs(60), "{what}: took {took:?} to fail");
    assert_no_leftover_processes(h, &what);
    assert_nothing_new(h, &before, &what);
    out.stderr.trim_end().to_string()
}

#[track_caller]
fn check_error_output(out: &Output, what: &str, names: &[&str], causes: &[&str]) {
    // exit status 125, nothing on stdout, one line on stderr, no panic
    let line = out.error_line(what);
    for n in names {
        assert!(line.contains(n), "{what}: the error does not name {n:?}:\n  {line}");
    }
    if !causes.is_empty() {
        let lower = line.to_lowercase();
        assert!(
            causes.iter().any(|c| lower.contains(&c.to_lowercase())),
            "{what}: the error gives none of the expected causes {causes:?}:\n  {line}"
        );
    }
}

/// True if the fake registry was asked for this path.
fn requested(reg: &FakeRegistry, path: &str) -> bool {
    reg.requests().iter().any(|r| r.split(' ').nth(1).map(|t| t.split('?').next() == Some(path)).unwrap_or(false))
}

// ---------------------------------------------------------------------------
// 0. the fake registry itself serves a good image correctly
// ---------------------------------------------------------------------------

/// Control case: without tampering, the fake registry's image pulls. If this fails, the
/// failures below may not mean what they say.
#[test]
fn control_fake_registry_serves_a_pullable_image() {
    let reg = FakeRegistry::start();
    let img = Image::new(
        host_arch(),
        vec![Layer::gzip(&[("hello.txt", b"hello\n")]), Layer::gzip(&[("second.txt", b"second layer\n")])],
    );
    reg.serve("good", "v1", &img);
    let h = husk();
    let r = reg.reference("good", "v1");
    let out = h.run(&["pull", "-q", &r]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), hex_part(&img.config_digest()), "pull -q prints the image id\n{out:?}");
    let st = store_state(&h.store());
    for d in [img.config_digest(), img.manifest_digest(), img.layers[0].digest(), img.layers[1].digest()] {
        assert!(st.blobs.contains(hex_part(&d)), "blob {d} missing after the pull: {st:?}");
    }
    assert_eq!(st.layers.len(), 2, "two layers expected: {st:?}");
    assert!(st.tmp.is_empty(), "tmp/ not empty after a successful pull: {:?}", st.tmp);
    assert_no_leftover_processes(&h, "husk pull (control)");
}

/// `history` is OPTIONAL in the OCI image spec (config.md); images built by some tools
/// (e.g. `buildah --omit-history`, crane, ko) have none. Not an error case: it must pull.
#[test]
fn config_without_history_pulls() {
    let reg = FakeRegistry::start();
    let mut img = Image::simple();
    let mut cfg: Value = serde_json::from_slice(&img.config).unwrap();
    cfg.as_object_mut().unwrap().remove("history");
    img.config = cfg.to_string().into_bytes();
    img.manifest["config"]["digest"] = json!(img.config_digest());
    img.manifest["config"]["size"] = json!(img.config.len());
    reg.serve("nohistory", "v1", &img);
    let h = husk();
    let out = h.run(&["pull", "-q", &reg.reference("nohistory", "v1")]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), hex_part(&img.config_digest()), "{out:?}");
}

/// The leftover-process check is not vacuous: it sees a husk that is still running
/// (here: waiting forever on a registry that accepts connections and never answers).
#[test]
fn leftover_process_check_sees_a_running_husk() {
    use std::os::unix::process::CommandExt;
    let silent = TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts, never answers
    let r = format!("127.0.0.1:{}/x:1", silent.local_addr().unwrap().port());
    let h = husk();
    let mut cmd = h.cmd(&["pull", "-q", &r]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn husk");
    let pgid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.is_empty() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
        seen = processes_of(&h);
    }
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    assert!(!seen.is_empty(), "processes_of() did not see the running husk");
    assert!(seen.iter().any(|p| p.contains("husk")), "{seen:?}");
    assert_no_leftover_processes(&h, "killed husk");
    drop(silent);
}

// ---------------------------------------------------------------------------
// 1. malformed references
// ---------------------------------------------------------------------------

#[test]
fn malformed_references_are_refused() {
    let h = husk();
    let cases: &[(&str, &[&str])] = &[
        ("Bad/Name", &["lowercase"]),
        ("a@sha256:123", &["64 hex", "digest"]),
        ("UPPER", &["lowercase"]),
        ("busybox:-tag", &["tag"]),
        ("busybox:a@b", &["digest", "algorithm"]),
        ("a//b", &["empty path", "//"]),
        ("http://127.0.0.1/x", &["scheme"]),
        ("x@sha512:0000", &["sha512", "algorithm"]),
        ("bad host_name.com/x", &["whitespace", "invalid"]),
    ];
    for (r, causes) in cases {
        let line = expect_pull_error(&h, &[r], &[r], causes);
        assert!(
            line.to_lowercase().contains("reference"),
            "husk pull {r:?}: the error should say the reference is bad:\n  {line}"
        );
    }
    // A bad port is a malformed reference too; husk finds out when building the URL.
    expect_pull_error(&h, &["127.0.0.1:99999/x:1"], &["127.0.0.1:99999"], &["port"]);
}

// ---------------------------------------------------------------------------
// 2. unknown host, closed port
// ---------------------------------------------------------------------------

#[test]
fn unknown_host_fails_fast() {
    let h = husk();
    let t = Instant::now();
    expect_pull_error(
        &h,
        &["no-such-host.invalid/x:1"],
        &["no-such-host.invalid"],
        &["lookup", "resolve", "dns", "not known", "no such host", "name or service", "no address"],
    );
    assert!(t.elapsed() < Duration::from_secs(20), "an unresolvable host took {:?} to fail", t.elapsed());
}

#[test]
fn closed_loopback_port_is_refused() {
    assert!(
        TcpStream::connect_timeout(&"127.0.0.1:1".parse().unwrap(), Duration::from_secs(2)).is_err(),
        "something listens on 127.0.0.1:1; this test needs that port closed"
    );
    let h = husk();
    expect_pull_error(&h, &["127.0.0.1:1/x"], &["127.0.0.1:1"], &["refused", "connect"]);
}

// ---------------------------------------------------------------------------
// 3. unknown repository / tag / digest on the real fixture registry
// ---------------------------------------------------------------------------

#[test]
fn unknown_repository_tag_and_digest_on_a_real_registry() {
    let reg = common::shared_registry();
    let h = husk();
    let host = reg.host();
    expect_pull_error(
        &h,
        &[&format!("{host}/no-such-repo:latest")],
        &["no-such-repo", &host],
        &["not found", "unknown"],
    );
    expect_pull_error(
        &h,
        &[&format!("{host}/busybox:no-such-tag")],
        &["no-such-tag", &host],
        &["not found", "unknown"],
    );
    let zero = format!("sha256:{}", "0".repeat(64));
    expect_pull_error(&h, &[&format!("{host}/busybox@{zero}")], &[&zero], &["not found", "unknown"]);
}

// ---------------------------------------------------------------------------
// 4. content that does not match its digest
// ---------------------------------------------------------------------------

#[test]
fn layer_blob_not_matching_its_digest() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let layer = &img.layers[0];
    let mut bad = layer.blob.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    reg.blob("app", &layer.digest(), Resp::blob(bad));
    let h = husk();
    expect_pull_error(&h, &[&reg.reference("app", "v1")], &[&layer.digest()], &["does not match", "mismatch"]);
}

#[test]
fn layer_blob_that_is_another_valid_layer() {
    // Same size, valid gzip+tar, different content: only the digest check can tell.
    // Stored (level 0) gzip makes the blob size depend on the tar size alone.
    let reg = FakeRegistry::start();
    let layer = Layer::gzip_level(&[("file.txt", b"what the manifest promised\n")], 0);
    let other = Layer::gzip_level(&[("evil.txt", b"what the registry sent now\n")], 0);
    assert_eq!(layer.blob.len(), other.blob.len(), "test setup: the two layers must have the same size");
    assert_ne!(layer.digest(), other.digest());
    let img = Image::new(host_arch(), vec![layer]);
    reg.serve("app", "v1", &img);
    let layer = &img.layers[0];
    reg.blob("app", &layer.digest(), Resp::blob(other.blob.clone()));
    let h = husk();
    expect_pull_error(&h, &[&reg.reference("app", "v1")], &[&layer.digest()], &["does not match", "mismatch"]);
}

#[test]
fn config_blob_not_matching_its_digest() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let mut bad = img.config.clone();
    let i = bad.iter().position(|b| *b == b's').unwrap(); // "sh" -> "th": same size, still JSON
    bad[i] = b't';
    reg.blob("app", &img.config_digest(), Resp::blob(bad));
    let h = husk();
    let r = reg.reference("app", "v1");
    expect_pull_error(&h, &[&r], &[&img.config_digest()], &["does not match", "mismatch"]);
}

#[test]
fn manifest_not_matching_the_pinned_digest() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let digest = img.manifest_digest();
    let mut other = img.manifest.clone();
    other["annotations"] = json!({"tampered": "yes"});
    reg.route(&format!("/v2/app/manifests/{digest}"), Resp::ok(MT_MANIFEST, serde_json::to_vec(&other).unwrap()));
    let h = husk();
    let r = format!("{}/app@{digest}", reg.host());
    expect_pull_error(&h, &[&r], &[&digest], &["does not match", "mismatch"]);
}

/// The store requirement with more than one layer: a good first layer must not stay
/// behind when the second one turns out bad.
#[test]
fn bad_second_layer_leaves_nothing_of_the_first() {
    let reg = FakeRegistry::start();
    let img = Image::new(
        host_arch(),
        vec![
            Layer::gzip(&[("good.txt", b"a perfectly fine first layer\n")]),
            Layer::gzip(&[("bad.txt", &b"the second layer gets corrupted\n".repeat(100))]),
        ],
    );
    reg.serve("two", "v1", &img);
    let bad_layer = &img.layers[1];
    let mut bad = bad_layer.blob.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    // Delay nothing: husk fetches layers in parallel, so the good one is usually done
    // (extracted and committed) before or while the bad one fails.
    reg.blob("two", &bad_layer.digest(), Resp::blob(bad));
    let h = husk();
    expect_pull_error(&h, &[&reg.reference("two", "v1")], &[&bad_layer.digest()], &["does not match", "mismatch"]);
}

// ---------------------------------------------------------------------------
// 5. truncated / oversized blobs
// ---------------------------------------------------------------------------

#[test]
fn truncated_blob_with_honest_length() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let layer = &img.layers[0];
    let short = layer.blob[..layer.blob.len() / 2].to_vec();
    reg.blob("app", &layer.digest(), Resp::blob(short));
    let h = husk();
    let line = expect_pull_error(
        &h,
        &[&reg.reference("app", "v1")],
        &[&layer.digest()],
        &["truncated", "short", "incomplete"],
    );
    let want = format!("{} of {}", layer.blob.len() / 2, layer.blob.len());
    assert!(line.contains(&want), "the error should say how much arrived ({want}):\n  {line}");
}

#[test]
fn truncated_blob_connection_cut() {
    // Content-Length announces the whole blob, the connection closes half-way.
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let layer = &img.layers[0];
    reg.blob("app", &layer.digest(), Resp::blob(layer.blob.clone()).cut_after(layer.blob.len() / 2));
    let h = husk();
    expect_pull_error(
        &h,
        &[&reg.reference("app", "v1")],
        &[&layer.digest()],
        &["truncated", "short", "incomplete", "end of file", "eof", "closed"],
    );
}

#[test]
fn oversized_blob_is_refused() {
    // The registry sends the right bytes followed by more than the manifest declared.
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let layer = &img.layers[0];
    let mut long = layer.blob.clone();
    long.extend_from_slice(&[0u8; 4096]);
    reg.blob("app", &layer.digest(), Resp::blob(long));
    let h = husk();
    let line = expect_pull_error(
        &h,
        &[&reg.reference("app", "v1")],
        &[&layer.digest()],
        &["oversized", "larger", "more data", "too long", "too large"],
    );
    assert!(
        !line.contains(&format!("got 0 of {}", layer.blob.len())),
        "the error misreports what arrived ({} bytes were sent):\n  {line}",
        layer.blob.len() + 4096
    );
}

// ---------------------------------------------------------------------------
// 6. corrupt gzip whose digest is right
// ---------------------------------------------------------------------------

/// Serves an image whose single layer blob is `gz` (digest and size in the manifest are
/// those of `gz`, so the download verifies) while the config's diff id is `tar`'s.
fn serve_with_layer_bytes(reg: &FakeRegistry, repo: &str, tar: &[u8], gz: Vec<u8>) -> String {
    let good = Layer::gzip(&[("placeholder", b"x")]);
    let mut img = Image::new(host_arch(), vec![good]);
    // rebuild config and manifest around the given bytes
    let config = config_json(host_arch(), &[sha256(tar)]).to_string().into_bytes();
    img.manifest["config"]["digest"] = json!(sha256(&config));
    img.manifest["config"]["size"] = json!(config.len());
    img.manifest["layers"][0]["digest"] = json!(sha256(&gz));
    img.manifest["layers"][0]["size"] = json!(gz.len());
    img.config = config;
    let digest = sha256(&gz);
    reg.manifest(repo, "v1", MT_MANIFEST, img.manifest_bytes());
    reg.blob(repo, &img.config_digest(), Resp::blob(img.config.clone()));
    reg.blob(repo, &digest, Resp::blob(gz));
    digest
}

#[test]
fn corrupt_gzip_stream_with_matching_digest() {
    let reg = FakeRegistry::start();
    let layer = Layer::gzip(&[("hello.txt", b"hello\n")]);
    // A gzip header, then a deflate block of the reserved type 3 (0xff: BFINAL=1, BTYPE=11).
    let mut gz = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];
    gz.extend_from_slice(&[0xff; 64]);
    let digest = serve_with_layer_bytes(&reg, "corrupt", &layer.tar, gz);
    let h = husk();
    expect_pull_error(
        &h,
        &[&reg.reference("corrupt", "v1")],
        &[&digest],
        &["gzip", "deflate", "decompress", "corrupt", "invalid"],
    );
    // the download itself verified: the registry was asked for the blob exactly once
    let path = format!("/v2/corrupt/blobs/{digest}");
    assert!(requested(&reg, &path), "husk never fetched {path}: {:?}", reg.requests());
}

#[test]
fn gzip_stream_cut_short_with_matching_digest() {
    let reg = FakeRegistry::start();
    // incompressible-ish content so that the deflate stream is long
    let data: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let layer = Layer::gzip(&[("data.bin", &data)]);
    let gz = layer.blob[..layer.blob.len() / 2].to_vec();
    let digest = serve_with_layer_bytes(&reg, "cutgz", &layer.tar, gz);
    let h = husk();
    expect_pull_error(
        &h,
        &[&reg.reference("cutgz", "v1")],
        &[&digest],
        &["gzip", "deflate", "decompress", "corrupt", "end of file", "eof", "unexpected end", "uncompresses to"],
    );
}

// ---------------------------------------------------------------------------
// 7. a document that is both an index and a manifest (CVE-2021-41190)
// ---------------------------------------------------------------------------

#[test]
fn document_that_is_index_and_manifest_is_refused() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "real", &img);
    let h = husk();

    // served as an index, no mediaType in the body
    let mut both = img.manifest.clone();
    both.as_object_mut().unwrap().remove("mediaType");
    both["manifests"] = json!([index_entry(&img.manifest_bytes(), "linux", host_arch(), None)]);
    reg.manifest("app", "ambiguous-index", MT_INDEX, serde_json::to_vec(&both).unwrap());
    let r = reg.reference("app", "ambiguous-index");
    expect_pull_error(&h, &[&r], &[&r], &["both an index and", "ambiguous"]);

    // served and labelled as a manifest, but carrying "manifests" too
    let mut both = img.manifest.clone();
    both["manifests"] = json!([index_entry(&img.manifest_bytes(), "linux", host_arch(), None)]);
    reg.manifest("app", "ambiguous-manifest", MT_MANIFEST, serde_json::to_vec(&both).unwrap());
    let r = reg.reference("app", "ambiguous-manifest");
    expect_pull_error(&h, &[&r], &[&r], &["both an index and", "ambiguous"]);

    // an index whose entry points at an ambiguous document
    reg.manifest("app", "ambiguous-inner", MT_MANIFEST, serde_json::to_vec(&both).unwrap());
    let inner = serde_json::to_vec(&both).unwrap();
    let idx = json!({"schemaVersion": 2, "mediaType": MT_INDEX,
                     "manifests": [index_entry(&inner, "linux", host_arch(), None)]});
    reg.manifest("app", "index-to-ambiguous", MT_INDEX, serde_json::to_vec(&idx).unwrap());
    let r = reg.reference("app", "index-to-ambiguous");
    expect_pull_error(&h, &[&r], &[&r], &["both an index and", "ambiguous"]);
}

// ---------------------------------------------------------------------------
// 8. digests that try to be paths (CVE-2024-3727)
// ---------------------------------------------------------------------------

const EVIL_DIGEST: &str = "sha256:../../husk-escape-marker";

#[track_caller]
fn assert_no_escape(h: &Husk, reg: &FakeRegistry) {
    for r in reg.requests() {
        assert!(!r.contains(".."), "husk sent a request with '..' in it: {r}");
    }
    let mut all = Vec::new();
    walk(&h.home, "", &mut all);
    assert!(
        !all.iter().any(|p| p.contains("husk-escape-marker")),
        "a file named after the crafted digest appeared under {}: {all:?}",
        h.home.display()
    );
}

#[test]
fn path_like_digests_are_refused() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "real", &img);
    let h = husk();

    // as the layer digest
    let mut m = img.manifest.clone();
    m["layers"][0]["digest"] = json!(EVIL_DIGEST);
    reg.manifest("app", "evil-layer", MT_MANIFEST, serde_json::to_vec(&m).unwrap());
    let r = reg.reference("app", "evil-layer");
    expect_pull_error(&h, &[&r], &["../../husk-escape-marker"], &["invalid", "malformed"]);
    assert_no_escape(&h, &reg);

    // as the config digest
    let mut m = img.manifest.clone();
    m["config"]["digest"] = json!(EVIL_DIGEST);
    reg.manifest("app", "evil-config", MT_MANIFEST, serde_json::to_vec(&m).unwrap());
    let r = reg.reference("app", "evil-config");
    expect_pull_error(&h, &[&r], &["../../husk-escape-marker"], &["invalid", "malformed"]);
    assert_no_escape(&h, &reg);

    // as the digest of an index entry
    let mut entry = index_entry(&img.manifest_bytes(), "linux", host_arch(), None);
    entry["digest"] = json!(EVIL_DIGEST);
    let idx = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [entry]});
    reg.manifest("app", "evil-index", MT_INDEX, serde_json::to_vec(&idx).unwrap());
    let r = reg.reference("app", "evil-index");
    expect_pull_error(&h, &[&r], &["../../husk-escape-marker"], &["invalid", "malformed"]);
    assert_no_escape(&h, &reg);

    // as a diff id in the config (becomes a layer directory name via the chain id)
    let mut cfg: Value = serde_json::from_slice(&img.config).unwrap();
    cfg["rootfs"]["diff_ids"] = json!([EVIL_DIGEST]);
    let cfg = cfg.to_string().into_bytes();
    let mut m = img.manifest.clone();
    m["config"]["digest"] = json!(sha256(&cfg));
    m["config"]["size"] = json!(cfg.len());
    reg.blob("app", &sha256(&cfg), Resp::blob(cfg));
    reg.manifest("app", "evil-diffid", MT_MANIFEST, serde_json::to_vec(&m).unwrap());
    let r = reg.reference("app", "evil-diffid");
    expect_pull_error(&h, &[&r], &["../../husk-escape-marker"], &["invalid", "malformed"]);
    assert_no_escape(&h, &reg);
}

// ---------------------------------------------------------------------------
// 9. oversized documents
// ---------------------------------------------------------------------------

#[test]
fn config_declared_over_4_mib_is_refused_unfetched() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    let mut m = img.manifest.clone();
    m["config"]["size"] = json!(MAX_DOCUMENT + 1);
    reg.serve("app", "v1", &img);
    reg.manifest("app", "big-config", MT_MANIFEST, serde_json::to_vec(&m).unwrap());
    let h = husk();
    let r = reg.reference("app", "big-config");
    expect_pull_error(&h, &[&r], &["config", &r], &["limit", "too large", "too big", "over"]);
    let path = format!("/v2/app/blobs/{}", img.config_digest());
    assert!(!requested(&reg, &path), "husk downloaded a config declared over the limit: {:?}", reg.requests());
}

#[test]
fn config_served_over_4_mib_is_refused() {
    // Declared small, but the registry sends 5 MiB: with Content-Length, and without.
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let huge = vec![b' '; 5 << 20];
    let h = husk();
    let r = reg.reference("app", "v1");

    reg.blob("app", &img.config_digest(), Resp::blob(huge.clone()));
    expect_pull_error(&h, &[&r], &["config", &r], &["limit", "too large", "larger", "refused"]);

    reg.blob("app", &img.config_digest(), Resp::blob(huge).length(Length::Omit));
    expect_pull_error(&h, &[&r], &["config", &r], &["limit", "too large", "larger", "refused"]);
}

#[test]
fn manifest_over_4_mib_is_refused() {
    let reg = FakeRegistry::start();
    let img = Image::simple();
    reg.serve("app", "v1", &img);
    let mut m = img.manifest.clone();
    m["annotations"] = json!({"padding": "x".repeat(5 << 20)});
    reg.manifest("app", "big", MT_MANIFEST, serde_json::to_vec(&m).unwrap());
    let h = husk();
    let r = reg.reference("app", "big");
    expect_pull_error(&h, &[&r], &["manifest", &r], &["limit", "too large", "larger", "refused"]);
}

// ---------------------------------------------------------------------------
// 10. no manifest for this platform
// ---------------------------------------------------------------------------

#[test]
fn index_without_the_host_platform_lists_the_available_ones() {
    let reg = FakeRegistry::start();
    let others: Vec<(&str, &str, Option<&str>)> = [
        ("linux", "s390x", None),
        ("linux", "ppc64le", None),
        ("linux", "arm", Some("v7")),
        ("linux", "riscv64", None),
        ("windows", host_arch(), None),
    ]
    .into_iter()
    .filter(|(os, arch, _)| !(*os == "linux" && *arch == host_arch()))
    .collect();
    let mut entries = Vec::new();
    for (os, arch, variant) in &others {
        let img = Image::new(arch, vec![Layer::gzip(&[("arch", arch.as_bytes())])]);
        reg.serve("multi", &format!("only-{arch}"), &img);
        entries.push(index_entry(&img.manifest_bytes(), os, arch, *variant));
    }
    let idx = json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries});
    reg.manifest("multi", "foreign", MT_INDEX, serde_json::to_vec(&idx).unwrap());
    let h = husk();
    let r = reg.reference("multi", "foreign");
    let line = expect_pull_error(&h, &[&r], &[&r, &host_platform()], &["platform"]);
    for (os, arch, variant) in &others {
        let p = match variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        };
        assert!(line.contains(&p), "the error does not list the available platform {p}:\n  {line}");
    }
    // only the index was fetched
    assert!(
        reg.requests().iter().all(|r| !r.contains("/blobs/")),
        "husk fetched blobs although no platform matched: {:?}",
        reg.requests()
    );
}

#[test]
fn real_multi_image_without_the_wanted_platform_lists_the_available_ones() {
    let reg = common::shared_registry();
    let h = husk();
    let r = format!("{}/multi:latest", reg.host());
    let line = expect_pull_error(&h, &["--platform", "linux/riscv64", &r], &[&r, "linux/riscv64"], &["platform"]);
    for p in ["linux/amd64", "linux/arm64/v8"] {
        assert!(line.contains(p), "the error does not list the available platform {p}:\n  {line}");
    }
}

#[test]
fn invalid_platform_argument_is_refused() {
    let h = husk();
    let out = h.run(&["pull", "-q", "--platform", "linux", "127.0.0.1:1/x"]);
    check_error_output(&out, "husk pull --platform linux", &["linux"], &["platform"]);
    assert_nothing_new(&h, &StoreState::default(), "husk pull --platform linux");
}

// ---------------------------------------------------------------------------
// 11. --platform picks the arm64 image of the real multi-platform fixture
// ---------------------------------------------------------------------------

/// (manifest digest, config digest) of the linux/arm64 entry of the `multi` fixture.
fn fixture_multi_arm64() -> (String, String) {
    let layout = common::fixtures();
    let read = |d: &str| -> Value {
        let p = layout.join("blobs/sha256").join(hex_part(d));
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
    };
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let multi = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "multi")
        .expect("multi in the fixture layout");
    let idx = read(multi["digest"].as_str().unwrap());
    let arm = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "arm64")
        .expect("an arm64 entry in multi");
    let mdigest = arm["digest"].as_str().unwrap().to_string();
    let manifest = read(&mdigest);
    (mdigest, manifest["config"]["digest"].as_str().unwrap().to_string())
}

#[test]
fn platform_arm64_v8_pulls_the_arm64_image_of_multi() {
    let reg = common::shared_registry();
    let (manifest_digest, config_digest) = fixture_multi_arm64();
    let h = husk();
    let r = format!("{}/multi:latest", reg.host());
    let out = h.run(&["pull", "-q", "--platform", "linux/arm64/v8", &r]);
    out.assert_ok();
    assert_eq!(out.stdout.trim(), hex_part(&config_digest), "pull -q prints the arm64 image id\n{out:?}");
    assert_no_leftover_processes(&h, "husk pull --platform linux/arm64/v8");

    let ins = h.run(&["image", "inspect", &r]);
    ins.assert_ok();
    let v: Value =
        serde_json::from_str(&ins.stdout).unwrap_or_else(|e| panic!("inspect output is not JSON: {e}\n{ins:?}"));
    let img = &v[0];
    assert_eq!(img["Architecture"], "arm64", "{ins:?}");
    assert_eq!(img["Os"], "linux", "{ins:?}");
    assert_eq!(img["Variant"], "v8", "{ins:?}");
    assert_eq!(img["Id"], config_digest.as_str(), "{ins:?}");
    assert_eq!(img["Manifest"]["Digest"], manifest_digest.as_str(), "{ins:?}");
    let st = store_state(&h.store());
    assert!(st.tmp.is_empty(), "tmp/ not empty after a successful pull: {:?}", st.tmp);
}

// ---------------------------------------------------------------------------
// 12. media types husk does not pull
// ---------------------------------------------------------------------------

/// A Docker schema 1 manifest (signed or not, whatever the Content-Type says).
#[test]
fn schema_1_manifest_is_refused() {
    let reg = FakeRegistry::start();
    let h = husk();
    let v1 = json!({
        "schemaVersion": 1, "name": "old/app", "tag": "v1", "architecture": host_arch(),
        "fsLayers": [{"blobSum": sha256(b"x")}],
        "history": [{"v1Compatibility": "{\"id\":\"x\"}"}],
    });
    for (tag, ct) in [
        ("signed", "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        ("plain", "application/vnd.docker.distribution.manifest.v1+json"),
        ("json", "application/json"),
    ] {
        reg.manifest("old/app", tag, ct, serde_json::to_vec(&v1).unwrap());
        let r = reg.reference("old/app", tag);
        expect_pull_error(&h, &[&r], &[&r], &["schema 1"]);
    }
    assert!(!reg.requests().iter().any(|r| r.contains("/blobs/")), "{:#?}", reg.requests());
}

/// A layer whose media type husk cannot unpack is refused before any blob is fetched.
#[test]
fn unknown_layer_media_type_is_refused() {
    let reg = FakeRegistry::start();
    let mut img = Image::simple();
    let odd = "application/vnd.example.layer.v1.tar+lz4";
    img.manifest["layers"][0]["mediaType"] = json!(odd);
    reg.serve("odd/app", "v1", &img);
    let h = husk();
    let r = reg.reference("odd/app", "v1");
    expect_pull_error(&h, &[&r], &[&r, odd], &["unsupported layer media type"]);
    assert!(!reg.requests().iter().any(|r| r.contains("/blobs/")), "{:#?}", reg.requests());
}

/// A manifest whose config is not an image config (an OCI artifact such as a Helm
/// chart) is refused before any blob is fetched.
#[test]
fn config_that_is_not_an_image_config_is_refused() {
    let reg = FakeRegistry::start();
    let h = husk();
    for (tag, mt) in
        [("helm", "application/vnd.cncf.helm.config.v1+json"), ("empty", "application/vnd.oci.empty.v1+json")]
    {
        let mut img = Image::simple();
        img.manifest["config"]["mediaType"] = json!(mt);
        reg.serve("artifact/app", tag, &img);
        let r = reg.reference("artifact/app", tag);
        expect_pull_error(&h, &[&r], &[&r, mt], &["config media type"]);
    }
    assert!(!reg.requests().iter().any(|r| r.contains("/blobs/")), "{:#?}", reg.requests());
}
