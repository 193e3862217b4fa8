//! Fake OCI registries for integration tests: a tiny HTTP/1.1 server in a thread of the
//! test process, and the images it serves.
//!
//! * `Server` answers every request with a handler closure `Fn(&Request) -> Resp`, and
//!   records each `Request` (method, path and query, headers) before answering it (after
//!   reading its body, which is not kept).
//! * `FakeRegistry` is a `Server` answering from a table of canned responses (`Routes`)
//!   that the test may change at any time.
//! * `Resp` is a response; besides status, headers and body it can leave out the
//!   Content-Length (`Length::Omit`) or declare any (`Length::Declared`), close the
//!   connection part-way (`cut_after`) or reset it (`reset_after`), honour `Range:`
//!   requests with 206 (`ranges`), wait before answering (`delay`), trickle its body
//!   (`trickle`) or follow it with zeros forever (`endless`).
//! * `FakeRegistry::once` queues one-shot answers for a path (503 then 200, …);
//!   `Server::sent` tells how many body bytes each answer carried.
//! * `Layer` and `Image` build gzip (any level) or uncompressed layers and a
//!   single-platform image around them.
//! * `sha256()`, `hex_part()` and `host_arch()` give digests and platform names.
#![allow(dead_code)]

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// "sha256:<hex>" of `b`.
pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// The hex of a "sha256:<hex>" digest.
pub fn hex_part(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The host architecture in OCI terms (what husk picks from an index by default).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Percent-decoding of a query component (`+` is a space).
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// requests and responses
// ---------------------------------------------------------------------------

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// path and query, as sent
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// when its head had arrived
    pub at: Instant,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }
    /// A query parameter, percent-decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (url_decode(k) == key).then(|| url_decode(v))
        })
    }
}

/// What to put in the Content-Length header.
#[derive(Clone, Debug)]
pub enum Length {
    /// the length of the body
    Exact,
    /// no header: the body ends when the connection closes
    Omit,
    /// this Content-Length, whatever the body is
    Declared(u64),
}

/// One response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    /// sent after Content-Length, in this order
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub length: Length,
    /// Send only this many body bytes, then close the connection.
    pub cut_after: Option<usize>,
    /// Send only this many body bytes, then reset the connection (RST).
    pub reset_after: Option<usize>,
    /// Answer `Range: bytes=N-` / `bytes=N-M` with 206 and that part of the body (416
    /// when N is past its end).
    pub ranges: bool,
    /// Wait this long before sending anything.
    pub delay: Option<Duration>,
    /// Send the body one byte at a time, this far apart.
    pub trickle: Option<Duration>,
    /// After the body, send zeros until the client goes away.
    pub endless: bool,
}

impl Resp {
    pub fn ok(content_type: &str, body: Vec<u8>) -> Resp {
        Resp {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            length: Length::Exact,
            cut_after: None,
            reset_after: None,
            ranges: false,
            delay: None,
            trickle: None,
            endless: false,
        }
    }
    pub fn blob(body: Vec<u8>) -> Resp {
        Resp::ok("application/octet-stream", body)
    }
    pub fn json(status: u16, v: Value) -> Resp {
        Resp { status, ..Resp::ok("application/json", v.to_string().into_bytes()) }
    }
    /// A registry-style error: `{"errors": [{"code": .., "message": ..}]}`.
    pub fn error(status: u16, code: &str, message: &str) -> Resp {
        Resp::json(status, json!({"errors": [{"code": code, "message": message}]}))
    }
    /// 401 with this `WWW-Authenticate` challenge.
    pub fn challenge(www_authenticate: &str) -> Resp {
        Resp::error(401, "UNAUTHORIZED", "authentication required").header("WWW-Authenticate", www_authenticate)
    }
    pub fn redirect(status: u16, location: &str) -> Resp {
        Resp { status, headers: Vec::new(), ..Resp::blob(Vec::new()) }.header("Location", location)
    }
    pub fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn length(mut self, l: Length) -> Resp {
        self.length = l;
        self
    }
    pub fn cut_after(mut self, n: usize) -> Resp {
        self.cut_after = Some(n);
        self
    }
    pub fn reset_after(mut self, n: usize) -> Resp {
        self.reset_after = Some(n);
        self
    }
    pub fn ranges(mut self) -> Resp {
        self.ranges = true;
        self
    }
    pub fn delay(mut self, d: Duration) -> Resp {
        self.delay = Some(d);
        self
    }
    pub fn trickle(mut self, gap: Duration) -> Resp {
        self.trickle = Some(gap);
        self
    }
    pub fn endless(mut self) -> Resp {
        self.endless = true;
        self
    }

    /// This response as the answer to `req`: with `ranges`, a satisfiable `Range:` gives
    /// 206 and that part of the body, one past the end 416.
    fn for_request(mut self, req: &Request) -> Resp {
        let Some(range) = req.header("range").filter(|_| self.ranges && self.status == 200) else {
            return self;
        };
        let len = self.body.len() as u64;
        let parsed = range.strip_prefix("bytes=").and_then(|r| r.split_once('-')).and_then(|(a, b)| {
            let start: u64 = a.parse().ok()?;
            let end: u64 = if b.is_empty() { len.saturating_sub(1) } else { b.parse::<u64>().ok()?.min(len - 1) };
            Some((start, end))
        });
        match parsed {
            Some((start, end)) if start < len && start <= end => {
                self.status = 206;
                self.body = self.body[start as usize..=end as usize].to_vec();
                self.headers.push(("Content-Range".into(), format!("bytes {start}-{end}/{len}")));
            }
            _ => {
                self.status = 416;
                self.body = Vec::new();
                self.headers.push(("Content-Range".into(), format!("bytes */{len}")));
            }
        }
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

// ---------------------------------------------------------------------------
// the server
// ---------------------------------------------------------------------------

type Handler = Box<dyn Fn(&Request) -> Resp + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1:<random port>; one request per connection; every
/// request is recorded before the handler answers it.
pub struct Server {
    pub port: u16,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<Request>>>,
    sent: Arc<Sent>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// What the server sent: body bytes per answer, and in all (while they go out).
#[derive(Default)]
struct Sent {
    answers: Mutex<Vec<(String, u64)>>,
    total: AtomicU64,
}

impl Server {
    pub fn start(handler: impl Fn(&Request) -> Resp + Send + Sync + 'static) -> Server {
        Server::start_with_port(move |_| handler)
    }

    /// `make` gets the server's own port (for absolute self-redirects).
    pub fn start_with_port<F>(make: impl FnOnce(u16) -> F) -> Server
    where
        F: Fn(&Request) -> Resp + Send + Sync + 'static,
    {
        Server::start_on(TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"), make)
    }

    /// Like `start_with_port`, on a listener the test bound itself: another loopback
    /// address (127.0.0.2), or a port chosen to match another server's.
    pub fn start_on<F>(listener: TcpListener, make: impl FnOnce(u16) -> F) -> Server
    where
        F: Fn(&Request) -> Resp + Send + Sync + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let port = addr.port();
        let handler: Arc<Handler> = Arc::new(Box::new(make(port)));
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let sent: Arc<Sent> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (log, sent, stop) = (log.clone(), sent.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("fake-server-{port}"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        let (log, sent, stop, handler) = (log.clone(), sent.clone(), stop.clone(), handler.clone());
                        std::thread::spawn(move || serve_connection(stream, &**handler, &log, &sent, &stop));
                    }
                })
                .expect("spawn a fake server")
        };
        Server { port, addr, log, sent, stop, accept: Some(accept) }
    }

    /// "127.0.0.1:PORT" (the address it listens on)
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// Body bytes of each finished answer: ("METHOD target", bytes), in the order the
    /// answers ended.
    pub fn sent(&self) -> Vec<(String, u64)> {
        self.sent.answers.lock().unwrap().clone()
    }

    /// Body bytes sent so far in all, counted as they go out.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.total.load(Ordering::SeqCst)
    }

    /// Every request, one per line, for failure messages.
    pub fn dump(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("  {} {}  Authorization: {:?}", r.method, r.target, r.authorization()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve_connection(
    mut s: TcpStream,
    handler: &(dyn Fn(&Request) -> Resp + Send + Sync),
    log: &Mutex<Vec<Request>>,
    sent: &Sent,
    stop: &AtomicBool,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 << 10 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let req = Request { method, target, headers, at: Instant::now() };
    // A body (an upload) is read before the answer, as a registry does: a client may
    // give up sending once it sees an answer.
    let body_len: usize = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").map_or(head.len(), |p| p + 4);
    let mut left = body_len.saturating_sub(head.len() - end);
    while left > 0 {
        match s.read(&mut buf[..left.min(4096)]) {
            Ok(0) | Err(_) => return,
            Ok(n) => left -= n,
        }
    }
    log.lock().unwrap().push(req.clone());
    let resp = handler(&req).for_request(&req);
    if let Some(d) = resp.delay {
        sleep_unless(stop, d);
    }

    let mut h = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    h.push_str("Docker-Distribution-API-Version: registry/2.0\r\n");
    match resp.length {
        Length::Exact => h.push_str(&format!("Content-Length: {}\r\n", resp.body.len())),
        Length::Declared(n) => h.push_str(&format!("Content-Length: {n}\r\n")),
        Length::Omit => {}
    }
    for (k, v) in &resp.headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    if s.write_all(h.as_bytes()).is_err() {
        return;
    }
    let mut count = 0u64;
    if req.method != "HEAD" {
        let limit = resp.cut_after.or(resp.reset_after).unwrap_or(usize::MAX);
        let body = &resp.body[..limit.min(resp.body.len())];
        let mut send = |chunk: &[u8]| -> bool {
            let ok = s.write_all(chunk).is_ok();
            if ok {
                count += chunk.len() as u64;
                sent.total.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            ok
        };
        let mut ok = true;
        match resp.trickle {
            Some(gap) => {
                for b in body.chunks(1) {
                    if stop.load(Ordering::SeqCst) || !send(b) {
                        ok = false;
                        break;
                    }
                    sleep_unless(stop, gap);
                }
            }
            None => ok = send(body),
        }
        if ok && resp.endless && resp.cut_after.is_none() && resp.reset_after.is_none() {
            let zeros = vec![0u8; 64 << 10];
            while !stop.load(Ordering::SeqCst) && send(&zeros) {}
        }
    }
    sent.answers.lock().unwrap().push((format!("{} {}", req.method, req.target), count));
    if resp.reset_after.is_some() {
        // SO_LINGER with a zero timeout: close() sends RST instead of FIN.
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt on our own socket with a properly sized linger struct.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        return;
    }
    let _ = s.flush();
    let _ = s.shutdown(Shutdown::Write);
    // Wait for the client to close, so that the kernel never resets the connection
    // under data the client has not read yet.
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Sleeps `d`, or less when the server is stopping.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
    }
}

// ---------------------------------------------------------------------------
// registry content
// ---------------------------------------------------------------------------

/// The paths of a registry that serves images: `/v2/`, manifests by tag and digest, blobs;
/// anything else gets a registry-style 404.
#[derive(Clone, Debug, Default)]
pub struct Routes(HashMap<String, Resp>);

impl Routes {
    /// The routes serving one image (see `add`).
    pub fn with(repo: &str, tag: &str, img: &Image) -> Routes {
        let mut r = Routes::default();
        r.add(repo, tag, img);
        r
    }

    /// Answers `path` (without query) with `resp`.
    pub fn insert(&mut self, path: &str, resp: Resp) {
        self.0.insert(path.to_string(), resp);
    }

    /// Serves `body` as a manifest under `tag` and under its digest.
    pub fn manifest(&mut self, repo: &str, tag: &str, content_type: &str, body: Vec<u8>) {
        let digest = sha256(&body);
        let resp = Resp::ok(content_type, body).header("Docker-Content-Digest", &digest);
        self.insert(&format!("/v2/{repo}/manifests/{tag}"), resp.clone());
        self.insert(&format!("/v2/{repo}/manifests/{digest}"), resp);
    }

    pub fn blob(&mut self, repo: &str, digest: &str, resp: Resp) {
        let resp = resp.header("Docker-Content-Digest", digest);
        self.insert(&format!("/v2/{repo}/blobs/{digest}"), resp);
    }

    /// Serves an image completely: manifest (by tag and digest), config and layers.
    pub fn add(&mut self, repo: &str, tag: &str, img: &Image) {
        self.manifest(repo, tag, MT_MANIFEST, img.manifest_bytes());
        self.blob(repo, &img.config_digest(), Resp::blob(img.config.clone()));
        for l in &img.layers {
            self.blob(repo, &l.digest(), Resp::blob(l.blob.clone()));
        }
    }

    pub fn answer(&self, req: &Request) -> Resp {
        let path = req.path();
        if path == "/v2/" || path == "/v2" {
            return Resp::json(200, json!({}));
        }
        match self.0.get(path) {
            Some(r) => r.clone(),
            None if path.contains("/manifests/") => Resp::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
            None if path.contains("/blobs/") => Resp::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            None => Resp::error(404, "NOT_FOUND", "not found"),
        }
    }
}

/// A registry answering from a table of canned responses that the test may change at any
/// time (a `Server` whose handler answers from `Routes` behind a mutex).
pub struct FakeRegistry {
    server: Server,
    routes: Arc<Mutex<Routes>>,
    once: Arc<Mutex<HashMap<String, VecDeque<Resp>>>>,
}

impl FakeRegistry {
    pub fn start() -> FakeRegistry {
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let once: Arc<Mutex<HashMap<String, VecDeque<Resp>>>> = Arc::default();
        let server = {
            let (routes, once) = (routes.clone(), once.clone());
            Server::start(move |req| {
                let queued = once.lock().unwrap().get_mut(req.path()).and_then(VecDeque::pop_front);
                queued.unwrap_or_else(|| routes.lock().unwrap().answer(req))
            })
        };
        FakeRegistry { server, routes, once }
    }

    /// Answers the next request for `path` (without query) with `resp`, once; answers
    /// queued for a path go out in order, before its route answers again.
    pub fn once(&self, path: &str, resp: Resp) {
        self.once.lock().unwrap().entry(path.to_string()).or_default().push_back(resp);
    }

    /// `/v2/<repo>/blobs/<digest>`
    pub fn blob_path(repo: &str, digest: &str) -> String {
        format!("/v2/{repo}/blobs/{digest}")
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        self.server.host()
    }

    /// "127.0.0.1:PORT/repo:tag"
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{}:{}", self.host(), repo, tag)
    }

    /// See `Routes::insert`.
    pub fn route(&self, path: &str, resp: Resp) {
        self.routes.lock().unwrap().insert(path, resp);
    }

    /// See `Routes::manifest`.
    pub fn manifest(&self, repo: &str, tag: &str, content_type: &str, body: Vec<u8>) {
        self.routes.lock().unwrap().manifest(repo, tag, content_type, body);
    }

    /// See `Routes::blob`.
    pub fn blob(&self, repo: &str, digest: &str, resp: Resp) {
        self.routes.lock().unwrap().blob(repo, digest, resp);
    }

    /// See `Routes::add`.
    pub fn serve(&self, repo: &str, tag: &str, img: &Image) {
        self.routes.lock().unwrap().add(repo, tag, img);
    }

    /// Every request so far, as "METHOD target".
    pub fn requests(&self) -> Vec<String> {
        self.server.requests().iter().map(|r| format!("{} {}", r.method, r.target)).collect()
    }

    /// The server underneath, for the full requests.
    pub fn server(&self) -> &Server {
        &self.server
    }
}

// ---------------------------------------------------------------------------
// images to serve
// ---------------------------------------------------------------------------

/// One layer: its tar and the blob as served (gzip of the tar, or the tar itself).
pub struct Layer {
    pub tar: Vec<u8>,
    pub blob: Vec<u8>,
    pub media_type: &'static str,
}

impl Layer {
    /// A tar with regular files (path, content), mode 0644, owned by root.
    pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_704_067_200);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Those files, compressed with gzip (default level 6).
    pub fn gzip(files: &[(&str, &[u8])]) -> Layer {
        Layer::gzip_level(files, 6)
    }

    /// Same, with this gzip level (0: stored blocks).
    pub fn gzip_level(files: &[(&str, &[u8])], level: u32) -> Layer {
        let tar = Layer::tar_of(files);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        gz.write_all(&tar).unwrap();
        Layer { blob: gz.finish().unwrap(), tar, media_type: MT_GZIP }
    }

    /// Those files as an uncompressed layer (`application/vnd.oci.image.layer.v1.tar`).
    pub fn uncompressed(files: &[(&str, &[u8])]) -> Layer {
        let tar = Layer::tar_of(files);
        Layer { blob: tar.clone(), tar, media_type: MT_TAR }
    }

    pub fn diff_id(&self) -> String {
        sha256(&self.tar)
    }

    pub fn digest(&self) -> String {
        sha256(&self.blob)
    }
}

/// A single-platform image: config, layers, and a manifest (as JSON, to be tampered with).
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Layer>,
    pub manifest: Value,
}

impl Image {
    pub fn new(arch: &str, layers: Vec<Layer>) -> Image {
        let diff_ids: Vec<String> = layers.iter().map(Layer::diff_id).collect();
        let config = config_json(arch, &diff_ids).to_string().into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": sha256(&config), "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest(), "size": l.blob.len()
            })).collect::<Vec<_>>(),
        });
        Image { config, layers, manifest }
    }

    /// A one-layer (gzip) image for the host with a few small files.
    pub fn simple() -> Image {
        Image::new(
            host_arch(),
            vec![Layer::gzip(&[
                ("hello.txt", b"hello from the fake registry\n"),
                ("etc/motd", &b"husk pull error tests\n".repeat(200)),
            ])],
        )
    }

    pub fn manifest_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.manifest).unwrap()
    }

    pub fn manifest_digest(&self) -> String {
        sha256(&self.manifest_bytes())
    }

    pub fn config_digest(&self) -> String {
        sha256(&self.config)
    }
}

/// An image config for linux/`arch` with these layers. `history` is optional in the OCI
/// spec, but present here so that tests test only what they mean to.
pub fn config_json(arch: &str, diff_ids: &[String]) -> Value {
    json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| json!({
            "created": "2024-01-01T00:00:00Z", "created_by": "husk tests/common/fake_registry.rs"
        })).collect::<Vec<_>>(),
    })
}
