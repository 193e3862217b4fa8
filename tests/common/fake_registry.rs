//! Fake OCI registries for integration tests: a tiny HTTP/1.1 server in a thread of the
//! test process, and the images it serves.
//!
//! * `Server` answers every request with a handler closure `Fn(&Request) -> Resp`, and
//!   records each `Request` (method, path and query, headers) before answering it (after
//!   reading its body, which is not kept).
//! * `FakeRegistry` is a `Server` answering from a table of canned responses (`Routes`)
//!   that the test may change at any time.
//! * `Resp` is a response; besides status, headers and body it can leave out the
//!   Content-Length (`Length::Omit`) or close the connection part-way (`cut_after`).
//! * `Layer` and `Image` build gzip (any level) or uncompressed layers and a
//!   single-platform image around them.
//! * `sha256()`, `hex_part()` and `host_arch()` give digests and platform names.
#![allow(dead_code)]

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
}

impl Resp {
    pub fn ok(content_type: &str, body: Vec<u8>) -> Resp {
        Resp {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            length: Length::Exact,
            cut_after: None,
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
        Resp { status, headers: Vec::new(), body: Vec::new(), length: Length::Exact, cut_after: None }
            .header("Location", location)
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
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
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
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("fake-server-{port}"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        let (log, handler) = (log.clone(), handler.clone());
                        std::thread::spawn(move || serve_connection(stream, &**handler, &log));
                    }
                })
                .expect("spawn a fake server")
        };
        Server { port, addr, log, stop, accept: Some(accept) }
    }

    /// "127.0.0.1:PORT" (the address it listens on)
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
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

fn serve_connection(mut s: TcpStream, handler: &(dyn Fn(&Request) -> Resp + Send + Sync), log: &Mutex<Vec<Request>>) {
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
    let req = Request { method, target, headers };
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
    let resp = handler(&req);

    let mut h = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    h.push_str("Docker-Distribution-API-Version: registry/2.0\r\n");
    match resp.length {
        Length::Exact => h.push_str(&format!("Content-Length: {}\r\n", resp.body.len())),
        Length::Omit => {}
    }
    for (k, v) in &resp.headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("Connection: close\r\n\r\n");
    if s.write_all(h.as_bytes()).is_err() {
        return;
    }
    if req.method != "HEAD" {
        let body = match resp.cut_after {
            Some(n) => &resp.body[..n.min(resp.body.len())],
            None => &resp.body[..],
        };
        let _ = s.write_all(body);
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
}

impl FakeRegistry {
    pub fn start() -> FakeRegistry {
        let routes: Arc<Mutex<Routes>> = Arc::default();
        let server = {
            let routes = routes.clone();
            Server::start(move |req| routes.lock().unwrap().answer(req))
        };
        FakeRegistry { server, routes }
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
