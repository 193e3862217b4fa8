//! User configuration for registries: which ones may be spoken to without TLS.
//!
//! Plain HTTP is used for `localhost`, `127.0.0.0/8` and `::1`, and for registries listed
//! in `$XDG_CONFIG_HOME/husk/config.json` (`{"insecure-registries": ["host:port"]}`) or in
//! `HUSK_INSECURE_REGISTRIES` (comma separated).
use crate::util::xdg_dir;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
struct UserConfig {
    #[serde(rename = "insecure-registries", default)]
    insecure_registries: Vec<String>,
}

pub fn config_dir() -> anyhow::Result<PathBuf> {
    Ok(xdg_dir("XDG_CONFIG_HOME", ".config")?.join("husk"))
}

/// True when `registry` (host or host:port) may be spoken to over plain HTTP.
pub fn is_insecure(registry: &str) -> bool {
    if is_loopback(registry) {
        return true;
    }
    let mut listed: Vec<String> = std::env::var("HUSK_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Ok(dir) = config_dir() {
        if let Ok(data) = std::fs::read(dir.join("config.json")) {
            if let Ok(cfg) = serde_json::from_slice::<UserConfig>(&data) {
                listed.extend(cfg.insecure_registries);
            }
        }
    }
    listed.iter().any(|r| r == registry)
}

pub fn is_loopback(registry: &str) -> bool {
    let host = host_part(registry);
    if host == "localhost" || host == "::1" {
        return true;
    }
    host.parse::<std::net::Ipv4Addr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// The host of `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.8.9.1"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
