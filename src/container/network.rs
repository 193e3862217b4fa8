//! `--network` modes and `-p` port mappings as given on the command line and stored in
//! the container's state.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// How the container reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace.
    Host,
    /// Its own network namespace with only lo.
    None,
    /// Its own network namespace, connected by a user-mode tool husk starts.
    Tool { tool: Tool, host_loopback: bool },
    /// Its own network namespace on a user-defined network (`husk network create`).
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Pasta,
    Slirp4netns,
}

impl Tool {
    pub fn program(self) -> &'static str {
        match self {
            Tool::Pasta => "pasta",
            Tool::Slirp4netns => "slirp4netns",
        }
    }

    /// The Debian package that installs it.
    pub fn package(self) -> &'static str {
        match self {
            Tool::Pasta => "passt",
            Tool::Slirp4netns => "slirp4netns",
        }
    }
}

impl NetworkMode {
    /// `host`, `none`, `pasta`, `slirp4netns`, the last two optionally followed by
    /// `:allow_host_loopback=true` (Podman's spelling).
    pub fn parse(s: &str) -> Result<NetworkMode> {
        let (name, opts) = s.split_once(':').unwrap_or((s, ""));
        let tool = match name {
            "host" | "none" if !opts.is_empty() => bail!("--network {}: takes no options", name),
            "" | "host" => return Ok(NetworkMode::Host),
            "none" => return Ok(NetworkMode::None),
            "pasta" => Tool::Pasta,
            "slirp4netns" => Tool::Slirp4netns,
            other if super::netdef::validate_name(other).is_ok() => {
                if !opts.is_empty() {
                    bail!("--network {}: a user-defined network takes no options", other);
                }
                return Ok(NetworkMode::Named(other.to_string()));
            }
            other => bail!("unknown network mode {:?} (host, none, pasta, slirp4netns or a network's name)", other),
        };
        let mut host_loopback = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "allow_host_loopback=true" => host_loopback = true,
                "allow_host_loopback=false" => host_loopback = false,
                _ => bail!("--network {}: unknown option {:?} (allow_host_loopback=true|false)", name, o),
            }
        }
        Ok(NetworkMode::Tool { tool, host_loopback })
    }

    pub fn own_namespace(&self) -> bool {
        *self != NetworkMode::Host
    }

    /// The name Docker's inspect shows (NetworkMode).
    pub fn name(&self) -> &str {
        match self {
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
            NetworkMode::Tool { tool, .. } => tool.program(),
            NetworkMode::Named(n) => n,
        }
    }
}

/// One `-p` mapping, with the host port chosen when it was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// tcp or udp
    pub proto: String,
}

impl PortMapping {
    /// `[hostip:][hostport:]ctrport[/tcp|/udp]`; an empty or missing host port gets a
    /// free one (on the host address given, 0.0.0.0 by default as in Docker).
    pub fn parse(spec: &str) -> Result<PortMapping> {
        let bad = || format!("invalid -p {:?}: expected [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp]", spec);
        let (ports, proto) = match spec.rsplit_once('/') {
            Some((p, proto @ ("tcp" | "udp"))) => (p, proto),
            Some(_) => bail!("{}", bad()),
            None => (spec, "tcp"),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, host, ctr) = match parts[..] {
            [c] => ("", "", c),
            [h, c] => ("", h, c),
            [ip, h, c] => (ip, h, c),
            _ => bail!("{}", bad()),
        };
        let port = |p: &str| -> Result<u16> { p.parse::<u16>().ok().filter(|p| *p != 0).with_context(bad) };
        let container_port = port(ctr)?;
        let host_ip = if ip.is_empty() { "0.0.0.0".to_string() } else { ip.to_string() };
        let addr: std::net::Ipv4Addr =
            host_ip.parse().with_context(|| format!("{}: host address {:?} is not IPv4", bad(), host_ip))?;
        let host_port = if host.is_empty() { free_port(addr, proto)? } else { port(host)? };
        Ok(PortMapping { host_ip, host_port, container_port, proto: proto.to_string() })
    }

    /// `80/tcp`
    pub fn private(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }

    /// `127.0.0.1:8080`
    pub fn public(&self) -> String {
        format!("{}:{}", self.host_ip, self.host_port)
    }
}

/// A port nothing listens on now (the kernel's choice).
fn free_port(addr: std::net::Ipv4Addr, proto: &str) -> Result<u16> {
    let what = || format!("choosing a free {} port on {}", proto, addr);
    let port = if proto == "udp" {
        std::net::UdpSocket::bind((addr, 0)).and_then(|s| s.local_addr()).with_context(what)?.port()
    } else {
        std::net::TcpListener::bind((addr, 0)).and_then(|s| s.local_addr()).with_context(what)?.port()
    };
    Ok(port)
}

/// ps's PORTS column: `127.0.0.1:8080->80/tcp, …`
pub fn ports_column(ports: &[PortMapping]) -> String {
    ports.iter().map(|p| format!("{}->{}", p.public(), p.private())).collect::<Vec<_>>().join(", ")
}

/// inspect's NetworkSettings.Ports
pub fn ports_json(ports: &[PortMapping]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for p in ports {
        let entry = m.entry(p.private()).or_insert_with(|| serde_json::json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(serde_json::json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
        }
    }
    serde_json::Value::Object(m)
}

/// The program's path in PATH, or one line naming the package to install.
pub fn find_tool(tool: Tool) -> Result<std::path::PathBuf> {
    search_path(tool.program()).with_context(|| {
        format!(
            "--network {} needs {}, which is not in PATH: install the Debian package {}",
            tool.program(),
            tool.program(),
            tool.package()
        )
    })
}

fn search_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
}

/// The network mode a new container gets, and why the default fell back to `none`
/// when it did.
#[derive(Debug)]
pub struct Choice {
    pub mode: NetworkMode,
    pub fallback: Option<String>,
}

impl Choice {
    /// The one line to print when the default fell back to `none`.
    pub fn warning(&self) -> Option<String> {
        self.fallback.as_ref().map(|why| format!("Warning: the container gets no network (--network none): {}", why))
    }
}

/// `--network` as given, or, without it, the default for a rootless container: its own
/// namespace connected by pasta when installed, else by slirp4netns, else `none` (also
/// when /dev/net/tun, which both tools need, cannot be opened).
pub fn choose(given: Option<&str>) -> Result<Choice> {
    if let Some(given) = given {
        return Ok(Choice { mode: NetworkMode::parse(given)?, fallback: None });
    }
    let Some(tool) = [Tool::Pasta, Tool::Slirp4netns].into_iter().find(|t| search_path(t.program()).is_some()) else {
        let why = "neither pasta (Debian package passt) nor slirp4netns (Debian package slirp4netns) is in PATH";
        return Ok(Choice { mode: NetworkMode::None, fallback: Some(why.into()) });
    };
    Ok(match crate::ns::net::check_tun() {
        Ok(()) => Choice { mode: NetworkMode::Tool { tool, host_loopback: false }, fallback: None },
        Err(e) => Choice { mode: NetworkMode::None, fallback: Some(format!("{:#}", e)) },
    })
}

/// The IPv4 address of the host's default gateway (what pasta gives the container as
/// its gateway, and maps to the host's loopback when allowed).
pub fn host_gateway() -> Option<std::net::Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 2 && f[1] == "00000000" {
            let gw = u32::from_str_radix(f[2], 16).ok()?;
            Some(std::net::Ipv4Addr::from(u32::from_be(gw)))
        } else {
            None
        }
    })
}

/// Which default routes the host has (IPv4, IPv6): pasta gives the container the same.
pub fn host_default_routes() -> (bool, bool) {
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").map(|t| has_ipv6_default_route(&t)).unwrap_or(false);
    (host_gateway().is_some(), v6)
}

/// A default route in /proc/net/ipv6_route that is not the kernel's unreachable one on lo.
fn has_ipv6_default_route(table: &str) -> bool {
    const RTF_REJECT: u32 = 0x200;
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let flags = f.get(8).and_then(|x| u32::from_str_radix(x, 16).ok()).unwrap_or(RTF_REJECT);
        f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && flags & RTF_REJECT == 0 && f[9] != "lo"
    })
}

/// The address inside the container that reaches the host's loopback, when the mode
/// allows it.
pub fn host_loopback_address(mode: &NetworkMode) -> Option<String> {
    match mode {
        NetworkMode::Tool { tool: Tool::Slirp4netns, host_loopback: true } => Some("10.0.2.2".into()),
        NetworkMode::Tool { tool: Tool::Pasta, host_loopback: true } => host_gateway().map(|g| g.to_string()),
        _ => None,
    }
}

/// The container's /etc/resolv.conf for the mode: slirp4netns' own forwarder; for pasta
/// the host's, unless it names only loopback resolvers (unreachable from the container),
/// in which case pasta forwards DNS_FORWARD to the host's first one.
pub fn resolv_conf(mode: &NetworkMode, host: &str) -> String {
    match mode {
        NetworkMode::Tool { tool: Tool::Slirp4netns, .. } => "nameserver 10.0.2.3\n".into(),
        NetworkMode::Tool { tool: Tool::Pasta, .. } | NetworkMode::Named(_) if needs_dns_forward(host) => {
            let kept: String = host
                .lines()
                .filter(|l| !l.trim_start().starts_with("nameserver"))
                .map(|l| format!("{}\n", l))
                .collect();
            format!("{}nameserver {}\n", kept, PASTA_DNS_FORWARD)
        }
        _ => host.to_string(),
    }
}

/// The address pasta answers DNS on when the host's resolvers are all on loopback.
pub const PASTA_DNS_FORWARD: &str = "169.254.1.1";

/// Whether every nameserver of the host's resolv.conf is a loopback address.
pub fn needs_dns_forward(host: &str) -> bool {
    let servers: Vec<&str> = host.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).map(str::trim).collect();
    !servers.is_empty() && servers.iter().all(|s| s.starts_with("127.") || *s == "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!(NetworkMode::parse("host").unwrap(), NetworkMode::Host);
        assert_eq!(NetworkMode::parse("none").unwrap(), NetworkMode::None);
        assert_eq!(
            NetworkMode::parse("slirp4netns:allow_host_loopback=true").unwrap(),
            NetworkMode::Tool { tool: Tool::Slirp4netns, host_loopback: true }
        );
        assert_eq!(NetworkMode::parse("backend").unwrap(), NetworkMode::Named("backend".into()));
        assert!(NetworkMode::parse("backend:x=y").is_err());
        assert!(NetworkMode::parse("-bad").is_err());
        assert!(NetworkMode::parse("pasta:bogus").is_err());
    }

    #[test]
    fn parses_ports() {
        let p = PortMapping::parse("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port, p.proto.as_str()),
            ("127.0.0.1", 8080, 80, "tcp")
        );
        let p = PortMapping::parse("53:53/udp").unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port, p.proto.as_str()), ("0.0.0.0", 53, "udp"));
        let p = PortMapping::parse("127.0.0.1::80").unwrap();
        assert!(p.host_port > 0);
        assert!(PortMapping::parse("80").unwrap().host_port > 0);
        for bad in ["", "x", "0", "1:2:3:4", "80/sctp", "70000", "host:1:2"] {
            assert!(PortMapping::parse(bad).is_err(), "{}", bad);
        }
        assert_eq!(ports_column(&[PortMapping::parse("127.0.0.1:8080:80").unwrap()]), "127.0.0.1:8080->80/tcp");
    }

    #[test]
    fn ipv6_default_route() {
        let unreachable = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        let routed = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0\n";
        let link = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0\n";
        assert!(!has_ipv6_default_route(&format!("{link}{unreachable}")));
        assert!(has_ipv6_default_route(&format!("{link}{routed}{unreachable}")));
    }

    #[test]
    fn explicit_mode_is_kept() {
        let c = choose(Some("none")).unwrap();
        assert_eq!((c.mode, c.fallback), (NetworkMode::None, None));
        assert!(choose(Some("pasta:no_such_option=1")).is_err());
    }

    #[test]
    fn dns() {
        assert!(needs_dns_forward("nameserver 127.0.0.53\n"));
        assert!(!needs_dns_forward("nameserver 10.0.0.1\nnameserver 127.0.0.1\n"));
        let pasta = NetworkMode::Tool { tool: Tool::Pasta, host_loopback: false };
        assert_eq!(resolv_conf(&pasta, "search x\nnameserver 127.0.0.53\n"), "search x\nnameserver 169.254.1.1\n");
    }
}
