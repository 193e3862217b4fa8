//! The push side of the distribution protocol on a `RegistryClient`: blob existence
//! checks, cross-repository mounts, monolithic and chunked uploads that follow each
//! `Location` the registry hands out, and the manifest put.
use super::reference::is_valid_digest;
use super::registry::{resolve_location, RegistryClient};
use anyhow::{bail, Context, Result};
use reqwest::blocking::{Body, Response};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode, Url};

const OCTET_STREAM: &str = "application/octet-stream";
/// Chunks in a row the registry may refuse to count before the upload is given up.
const MAX_STALLS: u32 = 3;

/// An upload in progress: where its next part goes.
pub struct Session {
    url: Url,
    /// The smallest chunk the registry takes (`OCI-Chunk-Min-Length`), when it says.
    pub min_chunk: Option<u64>,
}

pub enum Started {
    /// The registry linked the blob from the other repository: nothing to send.
    Mounted,
    Session(Session),
}

/// The bytes `offset..offset + len` of the blob being sent, as a fresh body each call.
pub type Part<'a> = &'a dyn Fn(u64, u64) -> Result<Body>;

fn header(v: &str) -> Result<HeaderValue> {
    Ok(HeaderValue::from_str(v)?)
}

fn octet_stream() -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, header(OCTET_STREAM)?);
    Ok(h)
}

fn empty_body() -> Result<Body> {
    Ok(Body::from(Vec::new()))
}

/// The end of `Range: 0-N` as the count of bytes the registry holds (N + 1).
fn received(resp: &Response) -> Option<u64> {
    let range = resp.headers().get(RANGE)?.to_str().ok()?;
    let (start, end) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    if start != "0" {
        return None;
    }
    end.parse::<u64>().ok().map(|e| e + 1)
}

impl RegistryClient {
    fn blob_url(&self, digest: &str) -> Result<Url> {
        if !is_valid_digest(digest) {
            bail!("invalid blob digest {:?}", digest);
        }
        self.url(&format!("/v2/{}/blobs/{}", self.repository(), digest))
    }

    /// Whether the repository holds the blob (HEAD).
    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        let (resp, _) = self.request(Method::HEAD, self.blob_url(digest)?, &HeaderMap::new(), None)?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(resp, &format!("blob {}", digest))),
        }
    }

    /// Opens an upload (POST); with `mount = (digest, repository)` it asks the registry
    /// to link the blob from that repository instead, which it may decline by opening
    /// an upload all the same.
    pub fn start_upload(&self, mount: Option<(&str, &str)>) -> Result<Started> {
        let mut url = self.url(&format!("/v2/{}/blobs/uploads/", self.repository()))?;
        if let Some((digest, from)) = mount {
            url.query_pairs_mut().append_pair("mount", digest).append_pair("from", from);
        }
        let (resp, at) = self.request(Method::POST, url, &HeaderMap::new(), Some(&empty_body))?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(Started::Mounted),
            StatusCode::ACCEPTED => {
                let min_chunk = resp
                    .headers()
                    .get("OCI-Chunk-Min-Length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                let url = resolve_location(&resp, &at).with_context(|| self.protocol("upload start"))?;
                Ok(Started::Session(Session { url, min_chunk }))
            }
            _ => Err(self.status_error(resp, "blob upload")),
        }
    }

    /// Abandons an upload (DELETE); failures are of no consequence.
    pub fn cancel_upload(&self, session: Session) {
        let _ = self.request(Method::DELETE, session.url, &HeaderMap::new(), None);
    }

    /// Sends the whole blob in the closing PUT.
    pub fn upload_whole(&self, session: Session, digest: &str, len: u64, part: Part) -> Result<()> {
        let body = || part(0, len);
        let (resp, _) = self.request(Method::PUT, with_digest(session.url, digest), &octet_stream()?, Some(&body))?;
        self.expect_created(resp, digest)
    }

    /// Sends the blob in PATCHes of `chunk` bytes with their Content-Range, each to the
    /// Location the previous answer gave, resuming from what the registry says it holds,
    /// then closes the upload with an empty PUT.
    pub fn upload_chunked(&self, session: Session, digest: &str, len: u64, chunk: u64, part: Part) -> Result<()> {
        let chunk = chunk.max(1);
        let mut url = session.url;
        let mut offset = 0;
        let mut stalls = 0;
        while offset < len {
            let n = chunk.min(len - offset);
            let mut headers = octet_stream()?;
            headers.insert(CONTENT_RANGE, header(&format!("{}-{}", offset, offset + n - 1))?);
            let body = || part(offset, n);
            let (resp, at) = self.request(Method::PATCH, url.clone(), &headers, Some(&body))?;
            let held = match resp.status() {
                StatusCode::ACCEPTED | StatusCode::NO_CONTENT => {
                    url = resolve_location(&resp, &at).with_context(|| self.protocol("chunk upload"))?;
                    received(&resp).filter(|h| *h <= offset + n).unwrap_or(offset + n)
                }
                // The registry holds something else than we thought: ask what.
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    let (status, at) = self.request(Method::GET, url.clone(), &HeaderMap::new(), None)?;
                    if status.status() != StatusCode::NO_CONTENT {
                        return Err(self.status_error(status, &format!("upload of blob {}", digest)));
                    }
                    let held = received(&status).filter(|h| *h <= len).unwrap_or(0);
                    url = resolve_location(&status, &at).with_context(|| self.protocol("upload status"))?;
                    held
                }
                _ => return Err(self.status_error(resp, &format!("upload of blob {}", digest))),
            };
            if held <= offset {
                stalls += 1;
                if stalls >= MAX_STALLS {
                    bail!("registry {} does not take the chunks of blob {}", self.registry(), digest);
                }
            } else {
                stalls = 0;
            }
            offset = held;
        }
        let (resp, _) = self.request(Method::PUT, with_digest(url, digest), &octet_stream()?, Some(&empty_body))?;
        self.expect_created(resp, digest)
    }

    /// PUTs a manifest under a tag or its digest; returns the digest the registry gives it.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Option<String>> {
        let url = self.url(&format!("/v2/{}/manifests/{}", self.repository(), reference))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, header(media_type)?);
        let body = || Ok(Body::from(bytes.to_vec()));
        let (resp, _) = self.request(Method::PUT, url, &headers, Some(&body))?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp, &format!("manifest {}", reference)));
        }
        Ok(resp.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(str::to_string))
    }

    fn expect_created(&self, resp: Response, digest: &str) -> Result<()> {
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.status_error(resp, &format!("upload of blob {}", digest)))
    }

    fn protocol(&self, what: &str) -> String {
        format!("registry {}: {}", self.registry(), what)
    }
}

/// The upload URL with `digest=` added; the registry's own query (its upload state) is kept.
fn with_digest(mut url: Url, digest: &str) -> Url {
    url.query_pairs_mut().append_pair("digest", digest);
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_digest_joins_the_registrys_query() {
        let u = Url::parse("http://r:5000/v2/a/blobs/uploads/u1?_state=abc%3D").unwrap();
        assert_eq!(
            with_digest(u, "sha256:00").as_str(),
            "http://r:5000/v2/a/blobs/uploads/u1?_state=abc%3D&digest=sha256%3A00"
        );
    }
}
