//! Registry credentials: husk's own file (written by `husk login`, mode 0600) and
//! Docker's `~/.docker/config.json` `auths`, plus the `WWW-Authenticate` challenge parser.
use super::config::config_dir;
use crate::util::atomic_write_mode;
use anyhow::{Context, Result};
use base64::Engine;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

pub fn husk_auth_file() -> Result<PathBuf> {
    Ok(config_dir()?.join("auth.json"))
}

fn docker_config_file() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Keys under which a registry's credentials may be filed.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string(), format!("https://{}", registry), format!("http://{}", registry)];
    if registry == "docker.io" {
        keys.extend(["https://index.docker.io/v1/".into(), "index.docker.io".into(), "registry-1.docker.io".into()]);
    }
    keys
}

fn read_auths(path: &PathBuf) -> Map<String, Value> {
    std::fs::read(path)
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
        .and_then(|v| v.get("auths").and_then(|a| a.as_object().cloned()))
        .unwrap_or_default()
}

fn decode_entry(entry: &Value) -> Option<Credentials> {
    let auth = entry.get("auth")?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some(Credentials { username: u.into(), password: p.into() })
}

/// Credentials for exactly this registry (host[:port]), if any are stored.
pub fn lookup(registry: &str) -> Option<Credentials> {
    let files = [husk_auth_file().ok(), docker_config_file()];
    for file in files.into_iter().flatten() {
        let auths = read_auths(&file);
        for key in keys_for(registry) {
            if let Some(c) = auths.get(&key).and_then(decode_entry) {
                return Some(c);
            }
        }
    }
    None
}

fn write_auths(auths: Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let path = husk_auth_file()?;
    let dir = path.parent().context("auth file has no parent")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let doc = serde_json::json!({ "auths": auths });
    atomic_write_mode(&path, serde_json::to_string_pretty(&doc)?.as_bytes(), 0o600)
}

pub fn store(registry: &str, creds: &Credentials) -> Result<()> {
    let mut auths = read_auths(&husk_auth_file()?);
    let raw = format!("{}:{}", creds.username, creds.password);
    auths.insert(
        registry.to_string(),
        serde_json::json!({ "auth": base64::engine::general_purpose::STANDARD.encode(raw) }),
    );
    write_auths(auths)
}

/// Removes stored credentials; false when there were none.
pub fn remove(registry: &str) -> Result<bool> {
    let mut auths = read_auths(&husk_auth_file()?);
    let found = auths.remove(registry).is_some();
    if found {
        write_auths(auths)?;
    }
    Ok(found)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
}

/// Parses `Bearer realm="https://x/token",service="reg",scope="repository:a:pull"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.trim().chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.trim().is_empty() {
            break;
        }
        chars.next_if_eq(&'=');
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
        }
        params.push((key.trim().to_string(), value));
    }
    Some(Challenge { scheme: scheme.to_string(), params })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#).unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/alpine:pull"));
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "Basic");
        assert_eq!(b.param("realm"), Some("Registry Realm"));
    }
}
