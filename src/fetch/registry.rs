//! A client for one repository of a registry speaking the OCI distribution protocol.
//!
//! Redirects are followed by hand so that credentials only ever go to the registry's
//! own scheme, host and port; a blob store on another host gets a bare request.
use super::auth::{self, parse_challenge, Credentials};
use super::config::is_insecure;
use super::reference::{is_valid_digest, Reference};
use super::retry::{self, is_transient, Retry, SlowGuard, Transient};
use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::{Body, Client, Response};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Manifests and configs larger than this are refused.
pub const MAX_DOCUMENT: u64 = 4 << 20;
const MAX_REDIRECTS: usize = 10;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

pub struct RegistryClient {
    /// For requests without a body: an answer, and then each read of its body, must
    /// come within `retry::io_timeout()`.
    http: Client,
    /// For requests with a body (uploads), which may take as long as the upload does.
    http_upload: Client,
    /// `https://host:port` or `http://host:port`
    base: Url,
    /// The registry as named in references, for messages and credentials.
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    /// Access asked for in every token request besides what a challenge names
    /// (`repository:NAME:ACTIONS`), so that one token serves a whole push.
    scopes: Vec<String>,
    authorization: Mutex<Option<String>>,
}

/// How to speak TLS to the registry (`--tls-verify`). `Default`: plain HTTP for loopback
/// and insecure-listed registries, verified HTTPS otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    #[default]
    Default,
    /// HTTPS with the certificate verified, even for loopback or listed registries.
    Verify,
    /// HTTPS without verifying the certificate, falling back to plain HTTP when the
    /// registry does not speak TLS (as podman's `--tls-verify=false`).
    NoVerify,
}

/// A request body that can be made again from the start: answering an auth challenge
/// or following a redirect sends the request a second time.
pub type BodyFn<'a> = &'a dyn Fn() -> Result<Body>;

/// A fetched manifest or index, with its media type and digest.
pub struct Document {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl RegistryClient {
    pub fn new(reference: &Reference) -> Result<RegistryClient> {
        Self::with_credentials(&reference.registry, &reference.repository, auth::lookup(&reference.registry))
    }

    pub fn with_credentials(registry: &str, repository: &str, creds: Option<Credentials>) -> Result<RegistryClient> {
        Self::with_options(registry, repository, creds, Tls::Default, Vec::new())
    }

    pub fn with_options(
        registry: &str,
        repository: &str,
        creds: Option<Credentials>,
        tls: Tls,
        scopes: Vec<String>,
    ) -> Result<RegistryClient> {
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let scheme = if tls == Tls::Default && is_insecure(registry) { "http" } else { "https" };
        let base = Url::parse(&format!("{}://{}", scheme, host))
            .with_context(|| format!("invalid registry address {:?}", registry))?;
        let build = |timeout: Option<Duration>| {
            Client::builder()
                .danger_accept_invalid_certs(tls == Tls::NoVerify)
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(std::sync::Arc::new(super::resolve::GetentResolver::default()))
                .connect_timeout(Duration::from_secs(20))
                .timeout(timeout)
                .user_agent(concat!("husk/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("creating the HTTP client")
        };
        let mut client = RegistryClient {
            http: build(Some(retry::io_timeout()))?,
            http_upload: build(None)?,
            base,
            registry: registry.to_string(),
            repository: repository.to_string(),
            creds,
            scopes,
            authorization: Mutex::new(None),
        };
        // Only a failure to connect over TLS means plain http: any answer, even a 401, is
        // the registry speaking https.
        if tls == Tls::NoVerify
            && client.send_following(Method::GET, client.url("/v2/")?, &HeaderMap::new(), None).is_err()
        {
            client.base.set_scheme("http").map_err(|_| anyhow!("invalid registry address {:?}", registry))?;
        }
        Ok(client)
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// A URL on the registry: `path` is absolute (`/v2/...`).
    pub fn url(&self, path: &str) -> Result<Url> {
        Ok(self.base.join(path)?)
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Checks that the registry answers and that the credentials (if any) are accepted.
    pub fn ping(&self) -> Result<()> {
        let resp = self.send(reqwest::Method::GET, self.url("/v2/")?, None)?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.status_error(resp, "registry"))
    }

    /// GETs a manifest or index by tag or digest, refusing oversized bodies.
    pub fn get_manifest(&self, tag_or_digest: &str) -> Result<Document> {
        let url = self.url(&format!("/v2/{}/manifests/{}", self.repository, tag_or_digest))?;
        let sep = if tag_or_digest.starts_with("sha256:") { '@' } else { ':' };
        let what = format!("manifest {}/{}{}{}", self.registry, self.repository, sep, tag_or_digest);
        let (bytes, headers) =
            self.get_document(url, Some(MANIFEST_ACCEPT), MAX_DOCUMENT, &what, &format!("manifest {}", tag_or_digest))?;
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let digest = crate::layers::store::sha256_digest(&bytes);
        if tag_or_digest.starts_with("sha256:") && digest != tag_or_digest {
            bail!(
                "registry {} sent a manifest that does not match its digest {} (got {})",
                self.registry,
                tag_or_digest,
                digest
            );
        }
        Ok(Document { bytes, media_type, digest })
    }

    /// GETs a small blob (a config) whole, refusing more than `limit` bytes; the caller
    /// checks its digest.
    pub fn get_small_blob(&self, digest: &str, limit: u64, what: &str) -> Result<Vec<u8>> {
        let url = self.blob_url_checked(digest)?;
        Ok(self.get_document(url, None, limit, what, &format!("blob {}", digest))?.0)
    }

    /// GETs a document of at most `limit` bytes, trying again (the whole request) when
    /// the transfer fails on the way. `what` names it in size errors, `status_what` in
    /// status errors.
    fn get_document(
        &self,
        url: Url,
        accept: Option<&str>,
        limit: u64,
        what: &str,
        status_what: &str,
    ) -> Result<(Vec<u8>, HeaderMap)> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT, HeaderValue::from_str(a)?);
        }
        let mut retry = Retry::new();
        loop {
            let (resp, _) = self.request_retrying(Method::GET, url.clone(), &headers, &mut retry)?;
            if !resp.status().is_success() {
                return Err(self.status_error(resp, status_what));
            }
            let headers = resp.headers().clone();
            match read_limited(resp, limit, what) {
                Ok(bytes) => return Ok((bytes, headers)),
                Err(e) if is_transient(&e) => match retry.next_delay(None) {
                    Some(delay) => std::thread::sleep(delay),
                    None => bail!("{}; gave up after {} attempts", e, retry.tries()),
                },
                Err(e) => return Err(e),
            }
        }
    }

    fn blob_url_checked(&self, digest: &str) -> Result<Url> {
        if !is_valid_digest(digest) {
            bail!("registry {} named an invalid blob digest {:?}", self.registry, digest);
        }
        self.url(&format!("/v2/{}/blobs/{}", self.repository, digest))
    }

    /// A blob download of `size` bytes as a reader that resumes where a broken transfer
    /// stopped (see [`BlobStream`]); the caller verifies size and digest.
    pub fn blob_stream(&self, digest: &str, size: u64) -> Result<BlobStream<'_>> {
        let url = self.blob_url_checked(digest)?;
        let mut stream = BlobStream {
            client: self,
            url,
            digest: digest.to_string(),
            size,
            body: None,
            offset: 0,
            retry: Retry::new(),
            resumes: 0,
            on_retry: None,
        };
        stream.open().map_err(|e| e.error)?;
        Ok(stream)
    }

    /// Sends a request, answering one auth challenge and following redirects. Only a
    /// challenge from the registry's own origin is answered: a 401 from a blob store
    /// elsewhere must not learn the registry's credentials.
    fn send(&self, method: Method, url: Url, accept: Option<&str>) -> Result<Response> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT, HeaderValue::from_str(a)?);
        }
        Ok(self.request(method, url, &headers, None)?.0)
    }

    /// `send` with headers and a body; also returns the URL that answered (after
    /// redirects), against which a relative `Location` in the answer is resolved. A GET
    /// or HEAD is tried again on a transient failure (see `retry`); a request with a
    /// body is sent once.
    pub fn request(
        &self,
        method: Method,
        url: Url,
        headers: &HeaderMap,
        body: Option<BodyFn>,
    ) -> Result<(Response, Url)> {
        if body.is_none() && (method == Method::GET || method == Method::HEAD) {
            return self.request_retrying(method, url, headers, &mut Retry::new());
        }
        self.request_once(method, url, headers, body)
    }

    /// A GET or HEAD tried until it gets an answer that is not a transient failure, or
    /// `retry` has no try left: then the last answer (a status) or error is returned.
    fn request_retrying(
        &self,
        method: Method,
        url: Url,
        headers: &HeaderMap,
        retry: &mut Retry,
    ) -> Result<(Response, Url)> {
        loop {
            let hint = match self.request_once(method.clone(), url.clone(), headers, None) {
                Ok((resp, at)) if retry::transient_status(resp.status()) => {
                    let hint = retry::retry_after(resp.headers(), SystemTime::now());
                    if retry.clone().next_delay(hint).is_none() {
                        return Ok((resp, at));
                    }
                    hint
                }
                Err(e) if is_transient(&e) => {
                    if retry.clone().next_delay(None).is_none() {
                        bail!("{}; gave up after {} attempts", e, retry.tries());
                    }
                    None
                }
                other => return other,
            };
            if let Some(delay) = retry.next_delay(hint) {
                std::thread::sleep(delay);
            }
        }
    }

    fn request_once(
        &self,
        method: Method,
        url: Url,
        headers: &HeaderMap,
        body: Option<BodyFn>,
    ) -> Result<(Response, Url)> {
        let (resp, final_url) = self.send_following(method.clone(), url.clone(), headers, body)?;
        if resp.status() == StatusCode::UNAUTHORIZED && self.same_origin(&final_url) {
            let challenge =
                resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
            if let Some(ch) = challenge {
                let header = self.answer_challenge(&ch)?;
                *self.authorization.lock().unwrap() = Some(header);
                return self.send_following(method, url, headers, body);
            }
        }
        Ok((resp, final_url))
    }

    fn send_following(
        &self,
        method: Method,
        mut url: Url,
        headers: &HeaderMap,
        body: Option<BodyFn>,
    ) -> Result<(Response, Url)> {
        let http = if body.is_some() { &self.http_upload } else { &self.http };
        for _ in 0..=MAX_REDIRECTS {
            let mut req = http.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(make) = body {
                req = req.body(make()?);
            }
            if self.same_origin(&url) {
                if let Some(h) = self.authorization.lock().unwrap().clone() {
                    req = req.header(AUTHORIZATION, h);
                }
            }
            let resp = req.send().map_err(|e| self.transport_error(e))?;
            if !resp.status().is_redirection() {
                return Ok((resp, url));
            }
            url = resolve_location(&resp, &url)
                .with_context(|| format!("registry {} sent a bad redirect", self.registry))?;
            if url.scheme() != "https" && url.scheme() != "http" {
                bail!("registry {} redirected to an unsupported scheme {}", self.registry, url.scheme());
            }
        }
        bail!("registry {}: too many redirects", self.registry)
    }

    fn answer_challenge(&self, ch: &auth::Challenge) -> Result<String> {
        if ch.scheme.eq_ignore_ascii_case("basic") {
            let creds = self.creds.as_ref().with_context(|| {
                format!("registry {} requires a login (husk login {})", self.registry, self.registry)
            })?;
            return Ok(creds.basic_header());
        }
        if !ch.scheme.eq_ignore_ascii_case("bearer") {
            bail!("registry {} asks for unsupported authentication {:?}", self.registry, ch.scheme);
        }
        let realm = ch
            .param("realm")
            .with_context(|| format!("registry {} sent a bearer challenge without a realm", self.registry))?;
        let mut realm = Url::parse(realm)
            .with_context(|| format!("registry {} sent a bad token realm {:?}", self.registry, realm))?;
        if realm.scheme() != "https" && !(realm.scheme() == "http" && self.base.scheme() == "http") {
            bail!("registry {} sent a token realm that is not https: {}", self.registry, realm);
        }
        {
            let mut q = realm.query_pairs_mut();
            if let Some(s) = ch.param("service") {
                q.append_pair("service", s);
            }
            let mut scopes: Vec<&str> = ch.param("scope").unwrap_or("").split_whitespace().collect();
            let own = format!("repository:{}:pull", self.repository);
            if scopes.is_empty() && !self.repository.is_empty() {
                scopes.push(&own);
            }
            scopes.extend(self.scopes.iter().map(String::as_str));
            for scope in merge_scopes(&scopes) {
                q.append_pair("scope", &scope);
            }
        }
        let mut req = self.http.get(realm.clone());
        if let Some(c) = &self.creds {
            req = req.header(AUTHORIZATION, c.basic_header());
        }
        let resp = req.send().map_err(|e| self.transport_error(e))?;
        if !resp.status().is_success() {
            let what =
                if self.creds.is_some() { "the credentials were refused" } else { "anonymous access was refused" };
            let authority = format!(
                "{}{}",
                realm.host_str().unwrap_or(""),
                realm.port().map(|p| format!(":{}", p)).unwrap_or_default()
            );
            bail!(
                "registry {}: getting a token from {} failed ({}): {}",
                self.registry,
                authority,
                resp.status(),
                what
            );
        }
        let body = read_limited(resp, 1 << 20, "token")?;
        let v: serde_json::Value = serde_json::from_slice(&body).context("token response is not JSON")?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .with_context(|| format!("registry {}: token response has no token", self.registry))?;
        Ok(format!("Bearer {}", token))
    }

    /// A failed request as one line. Failing to connect at all (refused, unknown host) is
    /// permanent; a connection that broke or stalled after it was made is transient.
    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let msg = format!("cannot reach registry {}: {}", self.registry, retry::root_cause(&e));
        if e.is_connect() || e.is_builder() || e.is_redirect() {
            anyhow!(msg)
        } else {
            anyhow::Error::new(Transient(msg))
        }
    }

    pub fn status_error(&self, resp: Response, what: &str) -> anyhow::Error {
        let status = resp.status();
        let retry_after = retry::retry_after(resp.headers(), SystemTime::now()).filter(|d| *d > retry::MAX_RETRY_AFTER);
        let body = read_limited(resp, 64 << 10, "error").unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?.clone();
                Some(format!(
                    "{}: {}",
                    e.get("code")?.as_str().unwrap_or(""),
                    e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                ))
            })
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        let place = if self.repository.is_empty() {
            self.registry.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        match status {
            StatusCode::NOT_FOUND => anyhow!("{} not found in {} ({})", what, place, detail),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if self.repository.is_empty() => {
                anyhow!("{} refused the credentials ({})", place, detail)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                anyhow!(
                    "access to {} in {} denied ({}); does the repository exist, and are you logged in?",
                    what,
                    place,
                    detail
                )
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE if retry_after.is_some() => anyhow!(
                "registry {} answered {} for {} ({}; it asks to wait {} s, more than husk waits)",
                self.registry,
                status.as_u16(),
                what,
                detail,
                retry_after.unwrap_or_default().as_secs()
            ),
            _ => anyhow!("registry {} answered {} for {} ({})", self.registry, status.as_u16(), what, detail),
        }
    }
}

/// The absolute URL a response's `Location` names: an absolute URL, an absolute path or
/// a relative one, resolved against the URL that answered; its query is kept as sent.
pub fn resolve_location(resp: &Response, answered: &Url) -> Result<Url> {
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("answer {} without a Location", resp.status().as_u16()))?;
    answered.join(location).with_context(|| format!("bad Location {:?}", location))
}

/// Scopes (`type:name:actions`) with the actions on one resource merged, in order:
/// `repository:a:pull` and `repository:a:pull,push` become `repository:a:pull,push`.
fn merge_scopes(scopes: &[&str]) -> Vec<String> {
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for scope in scopes {
        let Some((resource, actions)) = scope.rsplit_once(':') else {
            merged.push((scope.to_string(), Vec::new()));
            continue;
        };
        let i = merged.iter().position(|(r, _)| r == resource).unwrap_or_else(|| {
            merged.push((resource.to_string(), Vec::new()));
            merged.len() - 1
        });
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            if !merged[i].1.iter().any(|x| x == a) {
                merged[i].1.push(a.to_string());
            }
        }
    }
    merged.into_iter().map(|(r, a)| if a.is_empty() { r } else { format!("{}:{}", r, a.join(",")) }).collect()
}

/// Reads a body, refusing more than `limit` bytes whatever Content-Length says. A
/// transfer that breaks or stalls on the way is a `Transient` error.
pub fn read_limited(resp: Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    if let Some(len) = resp.content_length() {
        if len > limit {
            bail!("{}: {} bytes refused (limit {})", what, len, limit);
        }
    }
    let mut buf = Vec::new();
    if let Err(e) = SlowGuard::new(resp, retry::io_timeout()).take(limit + 1).read_to_end(&mut buf) {
        return Err(anyhow::Error::new(Transient(format!("reading {}: {}", what, retry::root_cause(&e)))));
    }
    if buf.len() as u64 > limit {
        bail!("{}: larger than {} bytes, refused", what, limit);
    }
    Ok(buf)
}

/// Why opening or reading a blob stream failed, and whether trying again may help.
struct StreamError {
    error: anyhow::Error,
    transient: bool,
}

impl StreamError {
    fn permanent(error: anyhow::Error) -> StreamError {
        StreamError { error, transient: false }
    }
}

/// Told what failed and what happens next, before a blob download is tried again.
type RetryNote<'a> = Box<dyn Fn(&str) + Send + Sync + 'a>;

/// A blob download that survives a broken or stalled transfer: the bytes read so far
/// stay counted (and hashed, and kept, by whoever reads this stream), and the rest is
/// asked for with `Range: bytes=<offset>-`. A registry answering 206 sends only the
/// rest; one answering 200 (no ranges) sends the whole blob again, whose first `offset`
/// bytes are skipped. Failures share one [`Retry`] budget per blob, so a download is
/// tried at most `retry::ATTEMPTS` times in all.
pub struct BlobStream<'a> {
    client: &'a RegistryClient,
    url: Url,
    digest: String,
    size: u64,
    body: Option<SlowGuard<Response>>,
    /// bytes handed out so far
    offset: u64,
    retry: Retry,
    resumes: u32,
    on_retry: Option<RetryNote<'a>>,
}

impl<'a> BlobStream<'a> {
    /// Called with a line saying what failed and what happens next, before each retry.
    pub fn on_retry(mut self, f: impl Fn(&str) + Send + Sync + 'a) -> Self {
        self.on_retry = Some(Box::new(f));
        self
    }

    /// How often the download was resumed at a nonzero offset.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// Sends the GET for the bytes from `offset` on and leaves the body ready to read
    /// from exactly there.
    fn open(&mut self) -> std::result::Result<(), StreamError> {
        let c = self.client;
        let mut headers = HeaderMap::new();
        if self.offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={}-", self.offset))
                .map_err(|e| StreamError::permanent(e.into()))?;
            headers.insert(RANGE, range);
            self.resumes += 1;
        }
        // A transport error comes back only when no try is left.
        let (resp, _) = c
            .request_retrying(Method::GET, self.url.clone(), &headers, &mut self.retry)
            .map_err(StreamError::permanent)?;
        let what = format!("blob {}", self.digest);
        let status = resp.status();
        let skip = match status {
            StatusCode::PARTIAL_CONTENT if self.offset > 0 => {
                let range = resp.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
                match parse_content_range(range) {
                    Some((start, _)) if start == self.offset => 0,
                    _ => {
                        return Err(StreamError::permanent(anyhow!(
                            "registry {} answered a request for {} from byte {} with the range {:?}",
                            c.registry,
                            what,
                            self.offset,
                            range
                        )))
                    }
                }
            }
            StatusCode::OK => self.offset,
            s if s.is_success() => {
                return Err(StreamError::permanent(anyhow!(
                    "registry {} answered {} for {}, expected 200 or 206",
                    c.registry,
                    s.as_u16(),
                    what
                )))
            }
            _ => return Err(StreamError::permanent(c.status_error(resp, &what))),
        };
        let mut body = SlowGuard::new(resp, retry::io_timeout());
        if skip > 0 {
            let skipped = std::io::copy(&mut (&mut body).take(skip), &mut std::io::sink()).map_err(|e| {
                StreamError { error: anyhow!("connection lost ({})", retry::root_cause(&e)), transient: true }
            })?;
            if skipped < skip {
                return Err(StreamError {
                    error: anyhow!("the registry sent only {} of {} bytes again", skipped, skip),
                    transient: true,
                });
            }
        }
        self.body = Some(body);
        Ok(())
    }

    /// A failed try: wait and go on, or the error to give up with.
    fn failed(&mut self, e: StreamError) -> std::io::Result<()> {
        self.body = None;
        let done = format!("at byte {} of {}", self.offset, self.size);
        if !e.transient {
            return Err(std::io::Error::other(format!("{:#}", e.error)));
        }
        match self.retry.next_delay(None) {
            Some(delay) => {
                if let Some(f) = &self.on_retry {
                    f(&format!("{:#} {}; resuming in {:.1?}", e.error, done, delay));
                }
                std::thread::sleep(delay);
                Ok(())
            }
            None => Err(std::io::Error::other(format!(
                "{:#} {}; gave up after {} attempts",
                e.error,
                done,
                self.retry.tries()
            ))),
        }
    }
}

impl Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.body.is_none() {
                if let Err(e) = self.open() {
                    self.failed(e)?;
                    continue;
                }
            }
            let Some(body) = self.body.as_mut() else { continue };
            match body.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                // Everything declared is here: the caller's digest check decides.
                Err(_) if self.offset >= self.size => return Ok(0),
                Err(e) => {
                    let error = match e.kind() {
                        std::io::ErrorKind::TimedOut => anyhow!("{}", retry::root_cause(&e)),
                        _ => anyhow!("connection lost ({})", retry::root_cause(&e)),
                    };
                    self.failed(StreamError { error, transient: true })?;
                }
            }
        }
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`): START and END.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let range = v.trim().strip_prefix("bytes ")?.split('/').next()?;
    let (start, end) = range.split_once('-')?;
    let digits = |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?;
    let (start, end): (u64, u64) = (digits(start)?, digits(end)?);
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn scopes_on_one_repository_merge() {
        assert_eq!(
            merge_scopes(&["repository:a:pull", "repository:a:pull,push", "repository:b/c:pull", "registry:catalog:*"]),
            vec!["repository:a:pull,push", "repository:b/c:pull", "registry:catalog:*"]
        );
        assert_eq!(merge_scopes(&["repository:a:pull"]), vec!["repository:a:pull"]);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0)));
        for bad in ["", "bytes */200", "bytes 5-4/10", "bytes -4/10", "items 1-2/3", "bytes 1-x/3", "bytes +1-2/3"] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }
}
