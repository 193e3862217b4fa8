//! `husk pull` against registries that fail for a moment or for good, and registries
//! that try to exhaust it: a broken blob download resumes with a `Range:` request (the
//! bytes already received are not sent again), transient failures (connection reset,
//! 5xx, 429 with `Retry-After`) are retried with backoff a bounded number of times,
//! permanent ones fail at once with one line and exit status 125, nothing unverified
//! ever lands in the store, husk's memory stays bounded whatever a registry sends, and
//! a registry that stalls or trickles is given up on.
//!
//! The registries are `FakeRegistry` servers in this test process
//! (tests/common/fake_registry.rs), which record every request and the body bytes of
//! every answer.

mod common;

use common::fake_registry::{
    config_json, hex_part, host_arch, sha256, FakeRegistry, Image, Layer, Length, Resp, MT_TAR,
};
use common::{Husk, Output, TempDir, TestUser};
use serde_json::json;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// src/fetch/retry.rs: tries of one request or blob, and the waits between them.
const ATTEMPTS: usize = 5;
const BACKOFF_TOTAL: Duration = Duration::from_millis(500 + 1000 + 2000 + 4000);
/// The bound on husk's peak resident memory asserted below.
const RSS_LIMIT_KIB: u64 = 100 * 1024;

fn husk() -> Husk {
    common::ensure_prereqs();
    Husk::new(TestUser::Sub)
}

/// Bytes that gzip cannot shrink (an xorshift stream), so that a level-0 gzip layer is
/// about as big as its content.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A one-layer image whose layer blob is about 1 MiB.
fn big_image(seed: u64) -> Image {
    let data = noise(1 << 20, seed);
    Image::new(host_arch(), vec![Layer::gzip_level(&[("big.bin", &data), ("hello.txt", b"hello\n")], 0)])
}

fn blob_path(repo: &str, img: &Image) -> String {
    FakeRegistry::blob_path(repo, &img.layers[0].digest())
}

/// A registry serving `app:v1`, a `big_image(seed)`; the path and bytes of its layer blob.
fn serve_big(seed: u64) -> (FakeRegistry, Image, String, Vec<u8>) {
    let reg = FakeRegistry::start();
    let img = big_image(seed);
    reg.serve("app", "v1", &img);
    let (path, blob) = (blob_path("app", &img), img.layers[0].blob.clone());
    (reg, img, path, blob)
}

/// The requests for `path` (query ignored), in order.
fn requests_for(reg: &FakeRegistry, path: &str) -> Vec<common::fake_registry::Request> {
    reg.server().requests().into_iter().filter(|r| r.path() == path).collect()
}

/// Body bytes sent for `path` (one entry per answer, in the order they ended).
fn sent_for(reg: &FakeRegistry, path: &str) -> Vec<u64> {
    reg.server()
        .sent()
        .into_iter()
        .filter(|(t, _)| t.split(' ').nth(1).and_then(|t| t.split('?').next()) == Some(path))
        .map(|(_, n)| n)
        .collect()
}

/// Blobs, layers and temp entries of a store: what a failed pull must not add to.
fn store_contents(store: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["blobs/sha256", "layers", "tmp"] {
        if let Ok(rd) = fs::read_dir(store.join(sub)) {
            out.extend(rd.flatten().map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())));
        }
    }
    out
}

/// A successful pull: the image id on stdout, the layer blob stored and verified, the
/// layer's files extracted, nothing left in tmp/.
#[track_caller]
fn assert_pulled(h: &Husk, out: &Output, img: &Image) {
    out.assert_ok();
    assert_eq!(out.stdout.trim(), hex_part(&img.config_digest()), "pull -q prints the image id\n{out:?}");
    let layer = &img.layers[0];
    let blob = fs::read(h.store().join("blobs/sha256").join(hex_part(&layer.digest()))).expect("the layer blob");
    assert_eq!(sha256(&blob), layer.digest(), "the stored blob does not match its digest");
    let contents = store_contents(&h.store());
    assert!(!contents.iter().any(|c| c.starts_with("tmp/")), "tmp/ not empty: {contents:?}");
    let layers: Vec<_> = contents.iter().filter(|c| c.starts_with("layers/")).collect();
    assert_eq!(layers.len(), 1, "{contents:?}");
    let diff = h.store().join(layers[0]).join("diff");
    assert_eq!(fs::read(diff.join("hello.txt")).unwrap(), b"hello\n");
    assert_eq!(fs::metadata(diff.join("big.bin")).unwrap().len(), 1 << 20);
}

/// A failed pull: exit 125, one line naming all of `names`, nothing new in the store,
/// within `max` seconds.
#[track_caller]
fn expect_failure(h: &Husk, env: &[(&str, &str)], reference: &str, names: &[&str], max: Duration) -> String {
    let before = store_contents(&h.store());
    let t = Instant::now();
    let out = h.run_env(env, &["pull", "-q", reference]);
    let took = t.elapsed();
    let what = format!("husk pull -q {reference}");
    let line = out.error_line(&what).to_string();
    eprintln!("{what}\n  -> {line} ({took:.1?})");
    for n in names {
        assert!(line.to_lowercase().contains(&n.to_lowercase()), "{what}: the error does not say {n:?}:\n  {line}");
    }
    assert!(took < max, "{what}: took {took:?} to fail (at most {max:?} expected)");
    assert_eq!(store_contents(&h.store()), before, "{what}: the failed pull left something in the store");
    assert!(h.leftover_processes().is_empty(), "{what}: processes left behind");
    line
}

// ---------------------------------------------------------------------------
// 1. resuming a broken download
// ---------------------------------------------------------------------------

/// The connection closes after a third of the blob; the registry honours `Range:`.
#[test]
fn cut_download_resumes_with_a_range_request() {
    let (reg, img, path, blob) = serve_big(1);
    let cut = blob.len() / 3;
    reg.blob("app", &img.layers[0].digest(), Resp::blob(blob.clone()).ranges());
    reg.once(&path, Resp::blob(blob.clone()).cut_after(cut));

    let h = husk();
    let out = h.run(&["pull", &reg.reference("app", "v1")]);
    out.assert_ok();
    assert!(out.stderr.contains("resuming"), "pull says it resumes\n{out:?}");
    assert_resumed(&reg, &path, cut, blob.len(), true);
    // the same pull again, quietly, into a fresh store, now checked in full
    let h = husk();
    reg.once(&path, Resp::blob(blob.clone()).cut_after(cut));
    let out = h.run(&["pull", "-q", &reg.reference("app", "v1")]);
    assert_pulled(&h, &out, &img);
}

/// The connection is reset (RST) part-way; the registry honours `Range:`.
#[test]
fn reset_download_resumes_with_a_range_request() {
    let (reg, img, path, blob) = serve_big(2);
    let cut = blob.len() / 2 + 12345;
    reg.blob("app", &img.layers[0].digest(), Resp::blob(blob.clone()).ranges());
    reg.once(&path, Resp::blob(blob.clone()).reset_after(cut));
    let h = husk();
    let out = h.run(&["pull", "-q", &reg.reference("app", "v1")]);
    assert_pulled(&h, &out, &img);
    assert_resumed(&reg, &path, cut, blob.len(), false);
}

/// Two GETs of the blob: the second asks for `bytes=<offset>-`, where `offset` is what
/// husk received of the first answer (with `exact`, all `cut` bytes sent: a connection
/// closed with FIN delivers them; a reset may drop some in flight), and the second
/// answer carries the rest and nothing more.
#[track_caller]
fn assert_resumed(reg: &FakeRegistry, path: &str, cut: usize, len: usize, exact: bool) {
    let gets = requests_for(reg, path);
    assert_eq!(gets.len(), 2, "two requests for the blob expected:\n{}", reg.server().dump());
    assert_eq!(gets[0].header("range"), None, "the first request asks for the whole blob");
    let range = gets[1].header("range").expect("the second request has a Range header");
    let offset: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("Range: {range}"));
    eprintln!("resumed at byte {offset} of {len} (the first answer was cut after {cut})");
    assert!(offset > 0 && offset <= cut, "Range: {range}");
    if exact {
        assert_eq!(offset, cut, "Range: {range}");
    }
    let sent = sent_for(reg, path);
    assert_eq!(sent, [cut as u64, (len - offset) as u64], "bytes sent per answer: the rest, and only the rest");
}

/// A registry that ignores `Range:` answers 200 with the whole blob: husk skips what it
/// has, and the pull still verifies.
#[test]
fn registry_without_ranges_sends_the_blob_again_and_the_pull_verifies() {
    let (reg, img, path, blob) = serve_big(3);
    let cut = blob.len() / 4;
    reg.once(&path, Resp::blob(blob.clone()).cut_after(cut));
    let h = husk();
    let out = h.run(&["pull", "-q", &reg.reference("app", "v1")]);
    assert_pulled(&h, &out, &img);
    let gets = requests_for(&reg, &path);
    assert_eq!(gets.len(), 2, "{}", reg.server().dump());
    assert_eq!(gets[1].header("range"), Some(format!("bytes={cut}-").as_str()));
    assert_eq!(sent_for(&reg, &path), [cut as u64, blob.len() as u64]);
}

/// The resumed part is not what the first part promised: the digest check refuses the
/// whole blob, once, and nothing of it is stored.
#[test]
fn a_resume_that_brings_other_bytes_stores_nothing() {
    let (reg, img, path, blob) = serve_big(4);
    let cut = blob.len() / 2;
    let mut other = blob.clone();
    let i = other.len() * 3 / 4;
    other[i] ^= 0x20;
    reg.blob("app", &img.layers[0].digest(), Resp::blob(other).ranges());
    reg.once(&path, Resp::blob(blob.clone()).cut_after(cut));
    let h = husk();
    let digest = img.layers[0].digest();
    expect_failure(&h, &[], &reg.reference("app", "v1"), &[&digest, "does not match"], Duration::from_secs(30));
    assert_eq!(requests_for(&reg, &path).len(), 2, "a digest mismatch is not retried:\n{}", reg.server().dump());
}

/// Every answer is reset part-way: husk resumes until its tries are spent, then fails
/// with one line, leaving nothing behind.
#[test]
fn a_connection_reset_every_time_gives_up_after_the_last_try() {
    let (reg, img, path, blob) = serve_big(5);
    reg.blob("app", &img.layers[0].digest(), Resp::blob(blob.clone()).ranges().reset_after(100_000));
    let h = husk();
    let digest = img.layers[0].digest();
    let t = Instant::now();
    let line = expect_failure(
        &h,
        &[],
        &reg.reference("app", "v1"),
        &[&digest, "gave up after 5 attempts"],
        BACKOFF_TOTAL + Duration::from_secs(30),
    );
    assert!(t.elapsed() >= BACKOFF_TOTAL, "the retries waited {:?}, less than the backoff", t.elapsed());
    assert!(line.contains(&format!("at byte {} of {}", 5 * 100_000, blob.len())), "{line}");
    let gets = requests_for(&reg, &path);
    assert_eq!(gets.len(), ATTEMPTS, "{}", reg.server().dump());
    for (i, g) in gets.iter().enumerate().skip(1) {
        assert_eq!(g.header("range"), Some(format!("bytes={}-", i * 100_000).as_str()), "request {i}");
    }
}

// ---------------------------------------------------------------------------
// 2. transient statuses
// ---------------------------------------------------------------------------

/// 503 twice for the blob and once for the manifest, then 200: the pull succeeds, and
/// the waits between tries grow.
#[test]
fn service_unavailable_is_retried_with_backoff() {
    let (reg, img, path, _) = serve_big(6);
    let unavailable = || Resp::error(503, "UNAVAILABLE", "try again");
    reg.once("/v2/app/manifests/v1", unavailable());
    reg.once(&path, unavailable());
    reg.once(&path, unavailable());
    let h = husk();
    let out = h.run(&["pull", "-q", &reg.reference("app", "v1")]);
    assert_pulled(&h, &out, &img);
    assert_eq!(requests_for(&reg, "/v2/app/manifests/v1").len(), 2, "{}", reg.server().dump());
    let gets = requests_for(&reg, &path);
    assert_eq!(gets.len(), 3, "{}", reg.server().dump());
    let (first, second) = (gets[1].at - gets[0].at, gets[2].at - gets[1].at);
    eprintln!("waits between the blob's tries: {first:?}, {second:?}");
    assert!(first >= Duration::from_millis(500) && second >= Duration::from_millis(1000), "{first:?} {second:?}");
}

/// 429 with `Retry-After: 2` (and once with an HTTP-date): husk waits that long.
#[test]
fn too_many_requests_waits_for_retry_after() {
    let (reg, img, _, _) = serve_big(7);
    let manifest = "/v2/app/manifests/v1";
    reg.once(manifest, Resp::error(429, "TOOMANYREQUESTS", "slow down").header("Retry-After", "2"));
    let config = FakeRegistry::blob_path("app", &img.config_digest());
    // the date is absolute: under load the config's first request may come close to it
    // or after it, so the wait is judged against the date, not against that request
    let (t0, t0_wall) = (Instant::now(), SystemTime::now());
    let date_secs = t0_wall.duration_since(UNIX_EPOCH).unwrap().as_secs() + 3;
    let date_at = t0 + (UNIX_EPOCH + Duration::from_secs(date_secs)).duration_since(t0_wall).unwrap();
    let in_3s = httpdate(date_secs);
    reg.once(&config, Resp::error(429, "TOOMANYREQUESTS", "slow down").header("Retry-After", &in_3s));
    let h = husk();
    let out = h.run(&["pull", "-q", &reg.reference("app", "v1")]);
    assert_pulled(&h, &out, &img);
    let m = requests_for(&reg, manifest);
    assert_eq!(m.len(), 2, "{}", reg.server().dump());
    let waited = m[1].at - m[0].at;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "waited {waited:?} for Retry-After: 2"
    );
    let c = requests_for(&reg, &config);
    assert_eq!(c.len(), 2, "{}", reg.server().dump());
    let (asked, retried) = (c[0].at, c[1].at);
    assert!(retried + Duration::from_millis(20) >= date_at, "retried {:?} before {in_3s}", date_at - retried);
    let due = asked.max(date_at);
    assert!(retried < due + Duration::from_secs(2), "retried {:?} after {in_3s} was due", retried - due);
}

/// An IMF-fixdate.
fn httpdate(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%a, %d %b %Y %H:%M:%S GMT"])
        .env("LC_ALL", "C")
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A `Retry-After` longer than husk is willing to wait ends the pull at once.
#[test]
fn too_many_requests_with_a_long_retry_after_fails_at_once() {
    let (reg, _, _, _) = serve_big(8);
    reg.route(
        "/v2/app/manifests/v1",
        Resp::error(429, "TOOMANYREQUESTS", "rate limited").header("Retry-After", "3600"),
    );
    let h = husk();
    expect_failure(&h, &[], &reg.reference("app", "v1"), &["429", "3600 s"], Duration::from_secs(5));
    assert_eq!(requests_for(&reg, "/v2/app/manifests/v1").len(), 1, "{}", reg.server().dump());
}

/// A registry that stays unavailable: five tries with the backoff between them, then
/// one line.
#[test]
fn persistent_server_errors_give_up_after_the_last_try() {
    let (reg, img, path, _) = serve_big(9);
    reg.blob("app", &img.layers[0].digest(), Resp::error(503, "UNAVAILABLE", "down for maintenance"));
    let h = husk();
    let digest = img.layers[0].digest();
    let t = Instant::now();
    expect_failure(&h, &[], &reg.reference("app", "v1"), &[&digest, "503"], BACKOFF_TOTAL + Duration::from_secs(20));
    assert!(t.elapsed() >= BACKOFF_TOTAL, "{:?}", t.elapsed());
    assert_eq!(requests_for(&reg, &path).len(), ATTEMPTS, "{}", reg.server().dump());
}

// ---------------------------------------------------------------------------
// 3. permanent errors fail fast
// ---------------------------------------------------------------------------

#[test]
fn permanent_errors_are_not_retried() {
    let h = husk();
    for (status, code) in [(404, "BLOB_UNKNOWN"), (403, "DENIED"), (400, "BAD_REQUEST"), (501, "UNSUPPORTED")] {
        let (reg, img, path, _) = serve_big(10);
        reg.blob("app", &img.layers[0].digest(), Resp::error(status, code, "no"));
        let digest = img.layers[0].digest();
        expect_failure(&h, &[], &reg.reference("app", "v1"), &[&digest], Duration::from_secs(3));
        assert_eq!(requests_for(&reg, &path).len(), 1, "{status} is not retried:\n{}", reg.server().dump());
    }
    // content that does not match its digest
    let (reg, img, path, _) = serve_big(11);
    let mut bad = img.layers[0].blob.clone();
    bad[1000] ^= 1;
    reg.blob("app", &img.layers[0].digest(), Resp::blob(bad).ranges());
    let digest = img.layers[0].digest();
    expect_failure(&h, &[], &reg.reference("app", "v1"), &[&digest, "does not match"], Duration::from_secs(5));
    assert_eq!(requests_for(&reg, &path).len(), 1, "{}", reg.server().dump());
    // an unknown manifest
    let r = reg.reference("app", "nope");
    expect_failure(&h, &[], &r, &["not found"], Duration::from_secs(3));
    assert_eq!(requests_for(&reg, "/v2/app/manifests/nope").len(), 1);
}

// ---------------------------------------------------------------------------
// 4. registries that stall, trickle, or never stop sending
// ---------------------------------------------------------------------------

/// An answer that never comes: each try times out (`HUSK_REGISTRY_TIMEOUT`, here 1 s).
#[test]
fn a_registry_that_never_answers_times_out() {
    let (reg, _, _, _) = serve_big(12);
    let manifest = "/v2/app/manifests/v1";
    reg.route(manifest, Resp::json(200, json!({})).delay(Duration::from_secs(60)));
    let h = husk();
    let env = [("HUSK_REGISTRY_TIMEOUT", "1")];
    let max = BACKOFF_TOTAL + Duration::from_secs(ATTEMPTS as u64) + Duration::from_secs(15);
    expect_failure(&h, &env, &reg.reference("app", "v1"), &["timed out", "gave up after 5 attempts"], max);
    assert_eq!(requests_for(&reg, manifest).len(), ATTEMPTS);
}

/// A blob body that stops after its first byte, and one that trickles a byte every
/// 100 ms: both are given up on after the last try.
#[test]
fn a_stalled_or_trickling_blob_is_given_up_on() {
    let h = husk();
    let env = [("HUSK_REGISTRY_TIMEOUT", "1")];
    let max = BACKOFF_TOTAL + Duration::from_secs(2 * ATTEMPTS as u64) + Duration::from_secs(15);
    for (gap, cause) in [(Duration::from_secs(60), "timed out"), (Duration::from_millis(100), "too slowly")] {
        let (reg, img, path, blob) = serve_big(13);
        reg.blob("app", &img.layers[0].digest(), Resp::blob(blob).ranges().trickle(gap));
        let digest = img.layers[0].digest();
        expect_failure(&h, &env, &reg.reference("app", "v1"), &[&digest, cause, "gave up after 5 attempts"], max);
        assert_eq!(requests_for(&reg, &path).len(), ATTEMPTS, "{}", reg.server().dump());
    }
}

/// husk run in its own process group, watched: `watch(husk_pid)` is called every 20 ms
/// while it runs and kills it by returning true. Returns the exit status, stderr, the
/// last VmHWM seen in /proc (KiB) and the peak RSS of the process tree that wait4(2)
/// reports (KiB: husk's, as runuser waited for it).
fn run_watched(h: &Husk, args: &[&str], mut watch: impl FnMut(i32) -> bool) -> (i32, String, u64, u64) {
    let dir = TempDir::new("rss");
    let err_path = dir.path().join("stderr");
    let mut cmd = h.cmd(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(fs::File::create(&err_path).unwrap()).process_group(0);
    let child = cmd.spawn().expect("spawn husk");
    let pid = child.id() as i32;
    let mut hwm = 0;
    let mut husk_pid = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    let (status, maxrss) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; status and ru are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break (status, ru.ru_maxrss as u64);
        }
        assert!(Instant::now() < deadline, "husk {args:?} still running after 300 s");
        if husk_pid.is_none() {
            husk_pid = h
                .leftover_processes()
                .into_iter()
                .find(|p| fs::read_to_string(format!("/proc/{p}/comm")).map(|c| c.trim() == "husk").unwrap_or(false));
        }
        if let Some(p) = husk_pid {
            hwm = hwm.max(vm_hwm(p).unwrap_or(0));
            if watch(p) {
                // Only husk: runuser then reaps it, and wait4 reports husk's peak too.
                // SAFETY: kill(2) with a pid read from /proc touches no memory.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(child);
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    (code, fs::read_to_string(&err_path).unwrap_or_default(), hwm, maxrss)
}

/// VmHWM (peak resident set) of a process, in KiB.
fn vm_hwm(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A layer declared as 4 GiB whose body never ends: a tar header for a 4 GiB file,
/// then zeros. husk streams it to disk; after 256 MiB its peak RSS must still be small.
#[test]
fn an_endless_4_gib_layer_keeps_memory_bounded() {
    const FOUR_GIB: u64 = 4 << 30;
    let mut header = tar::Header::new_ustar();
    header.set_path("huge.bin").unwrap();
    header.set_size(FOUR_GIB);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let prefix = header.as_bytes().to_vec();
    let diff_id = sha256(b"whatever: the pull never gets that far");
    let config = config_json(host_arch(), &[diff_id]).to_string().into_bytes();
    let layer_digest = sha256(b"an endless layer");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": MT_TAR, "digest": layer_digest, "size": FOUR_GIB}],
    });
    let reg = FakeRegistry::start();
    reg.manifest("huge", "v1", "application/vnd.oci.image.manifest.v1+json", serde_json::to_vec(&manifest).unwrap());
    reg.blob("huge", &sha256(&config), Resp::blob(config.clone()));
    reg.blob("huge", &layer_digest, Resp::blob(prefix).length(Length::Declared(FOUR_GIB)).endless());
    let h = husk();
    const ENOUGH: u64 = 256 << 20;
    let t = Instant::now();
    let (status, stderr, hwm, maxrss) =
        run_watched(&h, &["pull", "-q", &reg.reference("huge", "v1")], |_| reg.server().bytes_sent() >= ENOUGH);
    let sent = reg.server().bytes_sent();
    eprintln!(
        "endless 4 GiB layer: husk took {} MiB in {:.1?}; peak RSS {} KiB (VmHWM), {} KiB (wait4 ru_maxrss)",
        sent >> 20,
        t.elapsed(),
        hwm,
        maxrss
    );
    assert_eq!(status, 128 + libc::SIGKILL, "husk should still have been pulling when killed; stderr:\n{stderr}");
    assert!(sent >= ENOUGH, "only {sent} bytes were sent");
    assert!(hwm > 0, "VmHWM of husk was never read");
    assert!(maxrss < RSS_LIMIT_KIB && hwm < RSS_LIMIT_KIB, "peak RSS {maxrss} KiB / {hwm} KiB over the bound");
}

/// A manifest and a config whose bodies never end (no Content-Length), and a manifest
/// declaring 4 GiB: husk stops at its 4 MiB document limit, with bounded memory.
#[test]
fn endless_documents_are_cut_at_the_limit_with_bounded_memory() {
    let (reg, img, _, _) = serve_big(14);
    let endless = || Resp::json(200, json!({})).length(Length::Omit).endless();
    reg.route("/v2/app/manifests/endless", endless());
    reg.route("/v2/app/manifests/declared", endless().length(Length::Declared(4 << 30)));
    reg.serve("cfg", "v1", &img);
    reg.blob("cfg", &img.config_digest(), endless());
    let h = husk();
    let cases = [
        (reg.reference("app", "endless"), "larger than 4194304 bytes"),
        (reg.reference("app", "declared"), "4294967296 bytes refused"),
        (reg.reference("cfg", "v1"), "larger than 4194304 bytes"),
    ];
    for (r, cause) in cases {
        let t = Instant::now();
        let (status, stderr, hwm, maxrss) = run_watched(&h, &["pull", "-q", &r], |_| false);
        eprintln!("{r}: failed in {:.1?}; peak RSS {hwm} KiB (VmHWM), {maxrss} KiB (wait4 ru_maxrss)", t.elapsed());
        assert_eq!(status, 125, "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected:\n{stderr}");
        assert!(stderr.contains(cause), "{r}: expected {cause:?} in\n{stderr}");
        assert!(t.elapsed() < Duration::from_secs(20), "{r}: took {:?}", t.elapsed());
        assert!(maxrss < RSS_LIMIT_KIB && hwm < RSS_LIMIT_KIB, "{r}: peak RSS {maxrss} KiB / {hwm} KiB");
    }
}
