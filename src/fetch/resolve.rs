//! Host names of registries, resolved by the system's own `getent ahosts`.
//!
//! husk is a static binary (see .cargo/config.toml): glibc's getaddrinfo in it would
//! dlopen the name-service modules nsswitch.conf names (mdns, resolve, myhostname,
//! ...), and a module loaded into a static program can crash it. getent is the
//! system's dynamically linked front end to the same lookup, with every module the
//! system configures. One lookup per name and process; pulls are network-bound, so
//! the ~1 ms of starting getent does not show.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Default)]
pub struct GetentResolver {
    known: Mutex<HashMap<String, Vec<IpAddr>>>,
}

impl Resolve for GetentResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self.lookup(name.as_str());
        Box::pin(async move {
            let addrs: Addrs = Box::new(found?.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

impl GetentResolver {
    fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(ips) = self.known.lock().unwrap().get(name) {
            return Ok(ips.clone());
        }
        let ips = getent_ahosts(name)?;
        self.known.lock().unwrap().insert(name.to_string(), ips.clone());
        Ok(ips)
    }
}

fn getent_ahosts(name: &str) -> Result<Vec<IpAddr>> {
    // a name starting with '-' would be read as an option
    if name.starts_with('-') {
        bail!("invalid host name {name:?}");
    }
    let out = Command::new("getent")
        .args(["ahosts", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("running getent to resolve the registry's name (it comes with glibc: Debian package libc-bin)")?;
    let ips = parse_ahosts(&String::from_utf8_lossy(&out.stdout));
    if ips.is_empty() {
        bail!("Name or service not known");
    }
    Ok(ips)
}

/// The distinct addresses, in getent's (getaddrinfo's) order of preference.
fn parse_ahosts(text: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in text.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahosts_output_gives_distinct_addresses_in_order() {
        let text = "2001:db8::1     STREAM registry.example\n2001:db8::1     DGRAM\n\
                    192.0.2.7       STREAM\n192.0.2.7       DGRAM\n192.0.2.7       RAW\n";
        let want: Vec<IpAddr> = vec!["2001:db8::1".parse().unwrap(), "192.0.2.7".parse().unwrap()];
        assert_eq!(parse_ahosts(text), want);
        assert!(parse_ahosts("").is_empty());
    }

    #[test]
    fn localhost_resolves_through_the_system() {
        let ips = getent_ahosts("localhost").unwrap();
        assert!(ips.iter().all(|ip| ip.is_loopback()) && !ips.is_empty(), "{ips:?}");
        assert!(getent_ahosts("no-such-host.invalid").is_err());
        assert!(getent_ahosts("-s").is_err());
    }
}
