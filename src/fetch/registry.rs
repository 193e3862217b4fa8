//! A client for one repository of a registry speaking the OCI distribution protocol.
//!
//! Redirects are followed by hand so that credentials only ever go to the registry's
//! own scheme, host and port; a blob store on another host gets a bare request.
use super::auth::{self, parse_challenge, Credentials};
use super::config::is_insecure;
use super::reference::{is_valid_digest, Reference};
use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

/// Manifests and configs larger than this are refused.
pub const MAX_DOCUMENT: u64 = 4 << 20;
const MAX_REDIRECTS: usize = 10;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

pub struct RegistryClient {
    http: Client,
    /// `https://host:port` or `http://host:port`
    base: Url,
    /// The registry as named in references, for messages and credentials.
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    authorization: Mutex<Option<String>>,
}

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
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let scheme = if is_insecure(registry) { "http" } else { "https" };
        let base = Url::parse(&format!("{}://{}", scheme, host))
            .with_context(|| format!("invalid registry address {:?}", registry))?;
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(super::resolve::GetentResolver::default()))
            .connect_timeout(Duration::from_secs(20))
            .timeout(None)
            .user_agent(concat!("husk/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("creating the HTTP client")?;
        Ok(RegistryClient {
            http,
            base,
            registry: registry.to_string(),
            repository: repository.to_string(),
            creds,
            authorization: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
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
        let resp = self.send(reqwest::Method::GET, url, Some(MANIFEST_ACCEPT))?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, &format!("manifest {}", tag_or_digest)));
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let sep = if tag_or_digest.starts_with("sha256:") { '@' } else { ':' };
        let what = format!("manifest {}/{}{}{}", self.registry, self.repository, sep, tag_or_digest);
        let bytes = read_limited(resp, MAX_DOCUMENT, &what)?;
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

    /// Starts a blob download; the caller streams and verifies the body.
    pub fn get_blob(&self, digest: &str) -> Result<Response> {
        if !is_valid_digest(digest) {
            bail!("registry {} named an invalid blob digest {:?}", self.registry, digest);
        }
        let url = self.url(&format!("/v2/{}/blobs/{}", self.repository, digest))?;
        let resp = self.send(reqwest::Method::GET, url, None)?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, &format!("blob {}", digest)));
        }
        Ok(resp)
    }

    /// Sends a request, answering one auth challenge and following redirects. Only a
    /// challenge from the registry's own origin is answered: a 401 from a blob store
    /// elsewhere must not learn the registry's credentials.
    fn send(&self, method: reqwest::Method, url: Url, accept: Option<&str>) -> Result<Response> {
        let (mut resp, final_url) = self.send_following(method.clone(), url.clone(), accept)?;
        if resp.status() == StatusCode::UNAUTHORIZED && self.same_origin(&final_url) {
            let challenge =
                resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
            if let Some(ch) = challenge {
                let header = self.answer_challenge(&ch)?;
                *self.authorization.lock().unwrap() = Some(header);
                resp = self.send_following(method, url, accept)?.0;
            }
        }
        Ok(resp)
    }

    fn send_following(&self, method: reqwest::Method, mut url: Url, accept: Option<&str>) -> Result<(Response, Url)> {
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
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
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("registry {} sent a redirect without a location", self.registry))?;
            url = url.join(location).with_context(|| format!("registry {} sent a bad redirect", self.registry))?;
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
            let scope = ch
                .param("scope")
                .map(str::to_string)
                .or_else(|| (!self.repository.is_empty()).then(|| format!("repository:{}:pull", self.repository)));
            if let Some(scope) = scope {
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

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let mut cause = String::new();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        if cause.is_empty() {
            cause = e.to_string();
        }
        anyhow!("cannot reach registry {}: {}", self.registry, cause)
    }

    fn status_error(&self, resp: Response, what: &str) -> anyhow::Error {
        let status = resp.status();
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
            _ => anyhow!("registry {} answered {} for {} ({})", self.registry, status.as_u16(), what, detail),
        }
    }
}

/// Reads a body, refusing more than `limit` bytes whatever Content-Length says.
pub fn read_limited(resp: Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    if let Some(len) = resp.content_length() {
        if len > limit {
            bail!("{}: {} bytes refused (limit {})", what, len, limit);
        }
    }
    let mut buf = Vec::new();
    resp.take(limit + 1).read_to_end(&mut buf).with_context(|| format!("reading {}", what))?;
    if buf.len() as u64 > limit {
        bail!("{}: larger than {} bytes, refused", what, limit);
    }
    Ok(buf)
}
