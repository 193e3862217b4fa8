//! Container image references (`[registry/]repository[:tag][@digest]`).
//!
//! Parsing follows Docker's `distribution/reference` grammar and the
//! normalization done by `ParseNormalizedNamed`:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [registry "/"] path
//! registry         := host [ ":" port ]
//! host             := domain-name | "[" ipv6 "]"
//! domain-name      := component ("." component)*      ; [a-zA-Z0-9] or [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! ipv6             := [a-fA-F0-9:]+                   ; no zone ids, no embedded IPv4
//! port             := [0-9]+
//! path             := path-component ("/" path-component)*
//! path-component   := [a-z0-9]+ ((  [._] | "__" | "-"+ ) [a-z0-9]+)*
//! tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest           := "sha256:" [a-f0-9]{64}          ; the only algorithm husk stores
//! ```
//!
//! The first `/`-separated component is a registry only if it contains `.`
//! or `:` or is exactly `localhost`; otherwise the whole name is a Docker Hub
//! repository.  `index.docker.io` is normalized to `docker.io`, and
//! single-component Docker Hub repositories get the `library/` prefix.
//!
//! Deliberate differences from the newest `distribution/reference`:
//! * an uppercase first component (`Foo/bar`) is *not* taken as a registry
//!   host; it is reported as an uppercase repository name;
//! * a first component that contains `.`/`:` but is not a valid host
//!   (`foo_bar.com/x`) is an error instead of silently becoming a path;
//! * only `sha256` digests are accepted (Docker also takes sha384/sha512);
//! * the 255-character limit counts the full normalized name
//!   (`registry/repository`), as older Docker releases did;
//! * a bare `sha256:<hex>` is refused instead of meaning `library/sha256:<hex>`.

use std::fmt;

use anyhow::{anyhow, Result};

const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;
const SHA256_PREFIX: &str = "sha256:";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, optionally with `:port` (e.g. `docker.io`, `localhost:5000`, `[::1]:5000`).
    pub registry: String,
    /// Repository path inside the registry (e.g. `library/alpine`).
    pub repository: String,
    /// Tag as written by the user, if any.
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>` if the reference pins a digest.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes an image reference.
    ///
    /// Errors are one line of the form `invalid reference "<input>": <cause>`.
    pub fn parse(s: &str) -> Result<Reference> {
        parse_reference(s).map_err(|cause| anyhow!("invalid reference {:?}: {}", s, cause))
    }

    /// The tag, or `latest` when none was given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// A copy of this reference with the tag replaced.
    ///
    /// Like Docker's `WithTag`, a digest already present is kept (and still
    /// wins when displaying or pulling).  The tag is not validated here; use
    /// [`validate_tag`] first for tags that come from outside.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_string()), ..self.clone() }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    /// Full normalized form: `registry/repo@digest` when a digest is present
    /// (the tag is dropped: the digest wins), else `registry/repo:tag`, with
    /// the tag defaulting to `latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.digest {
            Some(d) => write!(f, "{}/{}@{}", self.registry, self.repository, d),
            None => write!(f, "{}/{}:{}", self.registry, self.repository, self.tag_or_latest()),
        }
    }
}

/// True if `s` is exactly `sha256:` followed by 64 lowercase hex digits.
pub fn is_valid_digest(s: &str) -> bool {
    match s.strip_prefix(SHA256_PREFIX) {
        Some(hex) => hex.len() == 64 && hex.bytes().all(is_lower_hex),
        None => false,
    }
}

/// Checks a tag against `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(s: &str) -> Result<()> {
    check_tag(s).map_err(|cause| anyhow!("invalid tag {:?}: {}", s, cause))
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Characters that may appear anywhere in a reference (`+` only in a digest
/// algorithm, which we reject later with a precise message).
fn is_reference_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '[' | ']' | '+')
}

/// A 64-character lowercase hex string (an image ID).
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

fn parse_reference(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("reference is empty".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    if let Some(c) = s.chars().find(|c| !is_reference_char(*c)) {
        return Err(format!("invalid character {:?}", c));
    }
    if s.contains("://") {
        return Err("must not include a URL scheme (write host/repository, e.g. ghcr.io/owner/image)".into());
    }
    if is_identifier(s) {
        return Err(
            "cannot use a 64-character hexadecimal string as a repository name (it looks like an image ID)".into()
        );
    }
    if let Some(rest) = s.strip_prefix(SHA256_PREFIX) {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a bare digest is not an image name (use NAME@sha256:<digest>)".into());
        }
    }

    // Digest: everything after the '@' (neither name nor tag may contain '@').
    let (name_and_tag, digest) = match s.split_once('@') {
        Some((n, d)) => {
            if d.contains('@') {
                return Err("contains more than one '@'".into());
            }
            if d.is_empty() {
                return Err("digest after '@' is empty".into());
            }
            check_digest(d)?;
            (n, Some(d))
        }
        None => (s, None),
    };

    if name_and_tag.starts_with('[') && !name_and_tag.contains('/') {
        return Err("a registry must be followed by '/' and a repository path".into());
    }

    // Tag: after the last ':' provided no '/' follows it (a ':' before the
    // last '/' can only be a registry port).
    let (name, tag) = match name_and_tag.rfind(':') {
        Some(i) if !name_and_tag[i + 1..].contains('/') => (&name_and_tag[..i], Some(&name_and_tag[i + 1..])),
        _ => (name_and_tag, None),
    };
    if let Some(t) = tag {
        check_tag(t).map_err(|cause| format!("invalid tag {:?}: {}", t, cause))?;
    }

    if name.is_empty() {
        return Err("missing repository name".into());
    }
    if name.starts_with('/') {
        return Err("repository name must not start with '/'".into());
    }
    if name.ends_with('/') {
        return Err("repository name must not end with '/'".into());
    }
    if name.contains("//") {
        return Err("repository name must not contain empty path components ('//')".into());
    }

    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            check_registry(first)?;
            let registry = if first == LEGACY_DEFAULT_REGISTRY { DEFAULT_REGISTRY } else { first };
            (registry, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    };

    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    for component in path.split('/') {
        check_path_component(component)?;
    }

    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("{}{}", OFFICIAL_REPO_PREFIX, path)
    } else {
        path.to_string()
    };

    let total = registry.len() + 1 + repository.len();
    if total > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name must not be more than {} characters (the normalized name has {})",
            NAME_TOTAL_LENGTH_MAX, total
        ));
    }

    Ok(Reference {
        registry: registry.to_string(),
        repository,
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

fn check_tag(t: &str) -> Result<(), String> {
    let bytes = t.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err("tag is empty".into());
    };
    if t.len() > TAG_LENGTH_MAX {
        return Err(format!("tag is longer than {} characters", TAG_LENGTH_MAX));
    }
    if first == b'.' || first == b'-' {
        return Err("tag must not start with '.' or '-'".into());
    }
    if let Some(c) = t.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("tag contains invalid character {:?} (allowed: letters, digits, '_', '.', '-')", c));
    }
    Ok(())
}

fn check_digest(d: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(format!("digest {:?} has no algorithm (expected sha256:<64 hex digits>)", d));
    };
    if algorithm.is_empty() {
        return Err(format!("digest {:?} has no algorithm (expected sha256:<64 hex digits>)", d));
    }
    if algorithm != "sha256" {
        return Err(format!("unsupported digest algorithm {:?} (only sha256 is supported)", algorithm));
    }
    if hex.is_empty() {
        return Err(format!("digest {:?} has no hex value", d));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("digest {:?} is not hexadecimal", d));
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("digest {:?} must use lowercase hex", d));
    }
    if hex.len() != 64 {
        return Err(format!("digest {:?} must have 64 hex digits, not {}", d, hex.len()));
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "invalid repository path component {:?} (use lowercase letters and digits, \
             separated by one '.', one or two '_', or dashes, starting and ending with a letter or digit)",
            c
        )
    };
    if c.contains(':') {
        return Err(format!(
            "invalid repository path component {:?} (':' may only introduce the tag or a registry port)",
            c
        ));
    }
    let bytes = c.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&f), Some(&l)) if is_alnum(f) && is_alnum(l) => {}
        _ => return Err(invalid()),
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `host[:port]` where host is a domain name / IPv4 address or a bracketed IPv6 address.
fn check_registry(r: &str) -> Result<(), String> {
    let port = if let Some(rest) = r.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(format!("registry {:?} has an unterminated '['", r));
        };
        let addr = &rest[..end];
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("invalid IPv6 registry address {:?} (only hex digits and ':' are allowed)", addr));
        }
        let after = &rest[end + 1..];
        if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(p)
        } else {
            return Err(format!("unexpected {:?} after IPv6 registry address", after));
        }
    } else {
        let (host, port) = match r.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        };
        check_domain_name(host)?;
        port
    };
    if let Some(p) = port {
        if p.is_empty() {
            return Err(format!("registry {:?} has an empty port", r));
        }
        if !p.bytes().all(|b| b.is_ascii_digit()) {
            let hint = if p.contains(':') { " (IPv6 addresses must be in brackets)" } else { "" };
            return Err(format!("registry port {:?} is not numeric{}", p, hint));
        }
    }
    Ok(())
}

/// `component ('.' component)*`, component = `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn check_domain_name(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("registry host is empty".into());
    }
    for label in h.split('.') {
        let bytes = label.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-';
        if !ok {
            return Err(format!(
                "invalid registry host {:?} (labels must be letters, digits and inner '-', separated by single dots)",
                h
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

    fn dg() -> String {
        format!("sha256:{}", HEX)
    }

    enum Want {
        Ok {
            registry: String,
            repository: String,
            tag: Option<String>,
            digest: Option<String>,
        },
        /// The error must contain this fragment of the cause.
        Err(&'static str),
    }

    fn ok(
        input: impl Into<String>,
        registry: &str,
        repository: impl Into<String>,
        tag: Option<&str>,
        digest: Option<String>,
    ) -> (String, Want) {
        (
            input.into(),
            Want::Ok {
                registry: registry.to_string(),
                repository: repository.into(),
                tag: tag.map(str::to_string),
                digest,
            },
        )
    }

    fn bad(input: impl Into<String>, cause: &'static str) -> (String, Want) {
        (input.into(), Want::Err(cause))
    }

    fn cases() -> Vec<(String, Want)> {
        let d = dg;
        let t128 = "t".repeat(128);
        vec![
            // --- valid: Docker Hub normalization ---
            ok("alpine", "docker.io", "library/alpine", None, None),
            ok("alpine:3.19", "docker.io", "library/alpine", Some("3.19"), None),
            ok("user/app", "docker.io", "user/app", None, None),
            ok("library/debian", "docker.io", "library/debian", None, None),
            ok("docker.io/alpine", "docker.io", "library/alpine", None, None),
            ok("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, None),
            ok("index.docker.io/alpine", "docker.io", "library/alpine", None, None),
            ok("index.docker.io/docker/docker:edge", "docker.io", "docker/docker", Some("edge"), None),
            ok("store/foo/bar", "docker.io", "store/foo/bar", None, None),
            ok("test_com/foo", "docker.io", "test_com/foo", None, None),
            ok("foo_bar.com:8080", "docker.io", "library/foo_bar.com", Some("8080"), None),
            ok("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", Some("8080"), None),
            ok("lowercase:Uppercase", "docker.io", "library/lowercase", Some("Uppercase"), None),
            ok(
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                "docker.io",
                "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                None,
                None,
            ),
            ok(format!("docker.io/{}", HEX), "docker.io", format!("library/{}", HEX), None, None),
            ok("docker---rules/docker", "docker.io", "docker---rules/docker", None, None),
            ok("dock__er/d", "docker.io", "dock__er/d", None, None),
            ok("x9/a.b_c__d-e--f", "docker.io", "x9/a.b_c__d-e--f", None, None),
            ok("alpine:_private", "docker.io", "library/alpine", Some("_private"), None),
            // --- valid: localhost and bare hosts ---
            ok("localhost/foo", "localhost", "foo", None, None),
            ok("localhost", "docker.io", "library/localhost", None, None),
            ok("localhost:5000", "docker.io", "library/localhost", Some("5000"), None),
            ok("localhost:5000/a/b:tag", "localhost:5000", "a/b", Some("tag"), None),
            ok("host:5000/a/b:tag", "host:5000", "a/b", Some("tag"), None),
            ok("test-com:8080/foo", "test-com:8080", "foo", None, None),
            ok("Example.COM/foo", "Example.COM", "foo", None, None),
            ok("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", Some("xn--n3h.com"), None),
            ok(
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com",
                "bar/baz/quux",
                Some("some-long-tag"),
                None,
            ),
            ok(
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io",
                "test.example.com/my-app",
                Some("test.example.com"),
                None,
            ),
            // --- valid: IPv4 ---
            ok("192.168.1.1", "docker.io", "library/192.168.1.1", None, None),
            ok("192.168.1.1:5000", "docker.io", "library/192.168.1.1", Some("5000"), None),
            ok("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
            ok("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", Some("5050"), None),
            ok("127.0.0.1:5000/library/debian", "127.0.0.1:5000", "library/debian", None, None),
            // --- valid: IPv6 ---
            ok("[::1]:5000/x", "[::1]:5000", "x", None, None),
            ok("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
            ok("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", Some("tag"), None),
            ok("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", None, None),
            ok("[FC00:1:2:3:4:5:6:7]:5000/library/debian", "[FC00:1:2:3:4:5:6:7]:5000", "library/debian", None, None),
            ok(format!("[2001:db8::1]:5000/repo:tag@{}", d()), "[2001:db8::1]:5000", "repo", Some("tag"), Some(d())),
            // --- valid: digests ---
            ok(format!("redis@{}", d()), "docker.io", "library/redis", None, Some(d())),
            ok(format!("busybox:latest@{}", d()), "docker.io", "library/busybox", Some("latest"), Some(d())),
            ok(format!("test:5000/repo@{}", d()), "test:5000", "repo", None, Some(d())),
            ok(
                format!("registry.example.com:443/team/app:v1.2.3-rc_1@{}", d()),
                "registry.example.com:443",
                "team/app",
                Some("v1.2.3-rc_1"),
                Some(d()),
            ),
            // --- valid: length limits (full normalized name counts) ---
            ok(format!("alpine:{}", t128), "docker.io", "library/alpine", Some(t128.as_str()), None),
            ok(format!("example.com/{}", "a".repeat(243)), "example.com", "a".repeat(243), None, None),
            ok("a".repeat(237), "docker.io", format!("library/{}", "a".repeat(237)), None, None),
            // --- invalid ---
            bad("", "empty"),
            bad(" alpine", "whitespace"),
            bad("alpine ", "whitespace"),
            bad("alp ine:latest", "whitespace"),
            bad("alpine\n", "whitespace"),
            bad("Alpine", "repository name must be lowercase"),
            bad("Uppercase:tag", "must be lowercase"),
            bad("docker/Docker", "must be lowercase"),
            bad("Foo/bar", "must be lowercase"),
            bad("docker.io/docker/Docker", "must be lowercase"),
            bad("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
            bad(":justtag", "missing repository name"),
            bad(format!("@{}", d()), "missing repository name"),
            bad("alpine:", "tag is empty"),
            bad("alpine:.hidden", "must not start with '.' or '-'"),
            bad("alpine:-dash", "must not start with '.' or '-'"),
            bad(format!("alpine:{}", "t".repeat(129)), "longer than 128"),
            bad("alpine:ta+g", "invalid character '+'"),
            bad("alpine:tag:more", "invalid repository path component"),
            bad(format!("{}a:tag", "a/".repeat(128)), "more than 255"),
            bad(format!("example.com/{}", "a".repeat(244)), "more than 255"),
            bad("a".repeat(238), "more than 255"),
            bad("repo@sha256:ffffffffffffffffffffffffffffffffff", "64 hex digits"),
            bad(format!("repo@sha256:{}0", HEX), "64 hex digits"),
            bad(format!("validname@invaliddigest:{}", HEX), "unsupported digest algorithm"),
            bad(format!("alpine@sha512:{}{}", HEX, HEX), "unsupported digest algorithm"),
            bad(format!("alpine@SHA256:{}", HEX), "unsupported digest algorithm"),
            bad(format!("alpine@sha256:{}", HEX.to_uppercase()), "lowercase hex"),
            bad(format!("alpine@sha256:{}", "z".repeat(64)), "not hexadecimal"),
            bad(format!("alpine@{}", HEX), "no algorithm"),
            bad(format!("alpine@:{}", HEX), "no algorithm"),
            bad("alpine@sha256:", "no hex value"),
            bad("alpine@", "digest after '@' is empty"),
            bad("alpine:latest@", "digest after '@' is empty"),
            bad(format!("alpine@{}@{}", d(), d()), "more than one '@'"),
            bad(HEX, "64-character hexadecimal"),
            bad(d(), "bare digest"),
            bad("aa/asdf$$^/aa", "invalid character '$'"),
            bad("ümlaut", "invalid character"),
            bad("-docker", "invalid repository path component"),
            bad("-docker/docker", "invalid repository path component"),
            bad("docker-/docker", "invalid repository path component"),
            bad("-docker-/docker", "invalid repository path component"),
            bad("____/____", "invalid repository path component"),
            bad("_docker/_docker", "invalid repository path component"),
            // A '.' in the first component makes it a registry (as in Docker).
            bad("dock..er/docker", "invalid registry host"),
            bad("dock_.er/docker", "invalid registry host"),
            bad("dock-.er/docker", "invalid registry host"),
            bad("docker/dock..er", "invalid repository path component"),
            bad("docker/dock_.er", "invalid repository path component"),
            bad("docker/dock-.er", "invalid repository path component"),
            bad("dock___er/docker", "invalid repository path component"),
            bad("docker///docker", "empty path components"),
            bad("docker.io/docker///docker", "empty path components"),
            bad("docker/", "must not end with '/'"),
            bad("/docker", "must not start with '/'"),
            bad("https://github.com/docker/docker", "URL scheme"),
            bad("-docker.io/docker/docker", "invalid registry host"),
            bad("example-.com/x", "invalid registry host"),
            bad(".foo/bar", "invalid registry host"),
            bad("foo_bar.com/x", "invalid registry host"),
            bad("localhost:abc/x", "not numeric"),
            bad("example.com:5000:6000/x", "not numeric"),
            bad("localhost:/x", "empty port"),
            bad("fc00::1:5000/debian", "IPv6 addresses must be in brackets"),
            bad("[fc00::1]", "must be followed by '/'"),
            bad("[fc00::1]:5000", "must be followed by '/'"),
            bad("[2001:db8::1]:tag", "must be followed by '/'"),
            bad("[fe80::1%eth0]:5000/debian", "invalid character '%'"),
            bad("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid IPv6"),
            bad("[]:5000/x", "invalid IPv6"),
            bad("[::1/x", "unterminated '['"),
            bad("[::1]x/y", "after IPv6"),
        ]
    }

    #[test]
    fn table() {
        let all = cases();
        assert!(all.len() >= 45, "only {} cases", all.len());
        for (input, want) in all {
            let got = Reference::parse(&input);
            match want {
                Want::Ok { registry, repository, tag, digest } => {
                    let r = got.unwrap_or_else(|e| panic!("{:?} should parse, got: {:#}", input, e));
                    assert_eq!(r.registry, registry, "registry of {:?}", input);
                    assert_eq!(r.repository, repository, "repository of {:?}", input);
                    assert_eq!(r.tag, tag, "tag of {:?}", input);
                    assert_eq!(r.digest, digest, "digest of {:?}", input);
                    assert_eq!(r.name(), format!("{}/{}", registry, repository));

                    // Display round trip.
                    let shown = r.to_string();
                    let again = Reference::parse(&shown)
                        .unwrap_or_else(|e| panic!("display {:?} of {:?} should reparse: {:#}", shown, input, e));
                    assert_eq!(again.to_string(), shown, "display of {:?} is not a fixed point", input);
                    assert_eq!(again.registry, r.registry);
                    assert_eq!(again.repository, r.repository);
                    assert_eq!(again.digest, r.digest);
                    match &r.digest {
                        Some(dg) => {
                            assert_eq!(shown, format!("{}@{}", r.name(), dg));
                            assert_eq!(again.tag, None);
                        }
                        None => {
                            assert_eq!(shown, format!("{}:{}", r.name(), r.tag_or_latest()));
                            assert_eq!(again.tag.as_deref(), Some(r.tag_or_latest()));
                        }
                    }
                }
                Want::Err(cause) => {
                    let e = match got {
                        Ok(r) => panic!("{:?} should be rejected, parsed as {:?}", input, r),
                        Err(e) => format!("{:#}", e),
                    };
                    assert!(!e.contains('\n'), "error for {:?} is not one line: {}", input, e);
                    assert!(
                        e.starts_with(&format!("invalid reference {:?}: ", input)),
                        "error for {:?} does not name the input: {}",
                        input,
                        e
                    );
                    assert!(e.contains(cause), "error for {:?} lacks {:?}: {}", input, cause, e);
                }
            }
        }
    }

    #[test]
    fn error_message_format() {
        let e = Reference::parse("Alpine").unwrap_err().to_string();
        assert_eq!(e, "invalid reference \"Alpine\": repository name must be lowercase");
    }

    #[test]
    fn display_forms() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r.tag_or_latest(), "latest");
        assert_eq!(r.name(), "docker.io/library/alpine");

        let r = Reference::parse(&format!("alpine:3.19@{}", dg())).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.19"));
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{}", dg()));

        let r = Reference::parse("[::1]:5000/x:v1").unwrap();
        assert_eq!(r.to_string(), "[::1]:5000/x:v1");
    }

    #[test]
    fn with_tag_keeps_everything_else() {
        let r = Reference::parse("ghcr.io/o/img:old").unwrap();
        let t = r.with_tag("new");
        assert_eq!(t.tag.as_deref(), Some("new"));
        assert_eq!(t.name(), r.name());
        assert_eq!(t.to_string(), "ghcr.io/o/img:new");
        assert_eq!(r.tag.as_deref(), Some("old"));

        let pinned = Reference::parse(&format!("ghcr.io/o/img@{}", dg())).unwrap();
        let t = pinned.with_tag("v2");
        assert_eq!(t.tag.as_deref(), Some("v2"));
        assert_eq!(t.digest, pinned.digest);
        assert_eq!(t.to_string(), format!("ghcr.io/o/img@{}", dg()));
    }

    #[test]
    fn digest_validation() {
        assert!(is_valid_digest(&dg()));
        assert!(!is_valid_digest(HEX));
        assert!(!is_valid_digest(&format!("sha256:{}", HEX.to_uppercase())));
        assert!(!is_valid_digest(&format!("sha256:{}", &HEX[1..])));
        assert!(!is_valid_digest(&format!("sha256:{}0", HEX)));
        assert!(!is_valid_digest(&format!("sha512:{}{}", HEX, HEX)));
        assert!(!is_valid_digest(&format!("sha256:{}/", &HEX[1..])));
        assert!(!is_valid_digest(&format!("sha256:../{}", &HEX[3..])));
        assert!(!is_valid_digest(""));
        assert!(!is_valid_digest("sha256:"));
    }

    #[test]
    fn tag_validation() {
        for good in ["latest", "v1.0", "_", "A-b_c.d", "3", &"x".repeat(128)] {
            assert!(validate_tag(good).is_ok(), "{:?}", good);
        }
        for badt in ["", ".x", "-x", "a/b", "a:b", "a b", "é", &"x".repeat(129)] {
            let e = validate_tag(badt).unwrap_err().to_string();
            assert!(e.contains(&format!("{:?}", badt)), "{}", e);
        }
    }
}
