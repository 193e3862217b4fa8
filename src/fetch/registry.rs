//! A client for one repository of a registry speaking the OCI distribution protocol.
//!
//! Redirects are followed by hand so that credentials only ever go to the registry's
//! own scheme, host and port; a blob store on another host gets a bare request.
use super::auth::{self, parse_challenge, Credentials};
use super::config::is_insecure;
use super::reference::{is_valid_digest, Reference};
use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::{Body, Client, Response};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
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
        let http = Client::builder()
            .danger_accept_invalid_certs(tls == Tls::NoVerify)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(super::resolve::GetentResolver::default()))
            .connect_timeout(Duration::from_secs(20))
            .timeout(None)
            .user_agent(concat!("husk/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("creating the HTTP client")?;
        let mut client = RegistryClient {
            http,
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
    fn send(&self, method: Method, url: Url, accept: Option<&str>) -> Result<Response> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(ACCEPT, HeaderValue::from_str(a)?);
        }
        Ok(self.request(method, url, &headers, None)?.0)
    }

    /// `send` with headers and a body; also returns the URL that answered (after
    /// redirects), against which a relative `Location` in the answer is resolved.
    pub fn request(
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
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.http.request(method.clone(), url.clone()).headers(headers.clone());
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

    pub fn status_error(&self, resp: Response, what: &str) -> anyhow::Error {
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
}
