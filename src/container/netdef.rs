//! User-defined networks on disk: `networks/<name>/network.json` (id, subnet, gateway,
//! options). The same directory holds the socket and lock of the network's holder
//! while one runs (see `ns::holder`). A network appears complete or not at all
//! (written in `networks/.new-*`, then renamed) and goes by a rename to `.rm-*`.
//!
//! Locking: `locks/networks.lock`, exclusive to create or remove networks, shared by
//! whoever makes a container on one until its state records the network. So a network
//! is never removed under a container being made with it, and two creations never
//! get the same name or subnet.
use crate::layers::store::Store;
use crate::util::{
    atomic_replace, half_done_entries, locked_half_done_entries, remove_tree, rfc3339, unique_suffix, FileLock,
};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// An IPv4 subnet: `10.89.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    base: u32,
    pub prefix: u8,
}

impl Subnet {
    /// `A.B.C.D/N` with N from 8 to 30 and no host bits set.
    pub fn parse(s: &str) -> Result<Subnet> {
        let bad = || format!("invalid subnet {:?}: expected an IPv4 network such as 10.89.5.0/24", s);
        let (addr, prefix) = s.split_once('/').with_context(bad)?;
        let addr: Ipv4Addr = addr.parse().ok().with_context(bad)?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p)).with_context(bad)?;
        let subnet = Subnet { base: u32::from(addr), prefix };
        if subnet.base & !subnet.mask() != 0 {
            bail!("invalid subnet {}: host bits are set (the network is {})", s, Subnet::containing(addr, prefix));
        }
        Ok(subnet)
    }

    /// The subnet of `prefix` bits that holds `addr`.
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Subnet { base: u32::from(addr) & mask, prefix }
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == self.base
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = self.mask() & other.mask();
        self.base & mask == other.base & mask
    }

    /// Host number `n` (1 is the first address after the network's own).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n)
    }

    /// How many host numbers there are (network and broadcast addresses excluded).
    pub fn host_count(&self) -> u32 {
        (!self.mask()) - 1
    }

    /// The host number of `addr` (which must be in the subnet).
    pub fn host_number(&self, addr: Ipv4Addr) -> u32 {
        u32::from(addr) - self.base
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl TryFrom<String> for Subnet {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Subnet> {
        Subnet::parse(&s)
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// `network.json`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// 64 hex digits, as Docker's network ids.
    pub id: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub created: String,
    /// No outbound connectivity (`--internal`): only the network's containers are reachable.
    #[serde(default)]
    pub internal: bool,
    /// The host's loopback is reachable as host.containers.internal (`-o
    /// allow_host_loopback=true`, as with `--network pasta:allow_host_loopback=true`).
    #[serde(default)]
    pub host_loopback: bool,
}

/// A running container's place on its network, recorded in its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
}

/// What `network create` asks for.
pub struct NewNetwork<'a> {
    pub name: &'a str,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub host_loopback: bool,
}

const META: &str = "network.json";
const CREATING: &str = ".new-";
const REMOVING: &str = ".rm-";
/// Default subnets are the /24s of this /16, as Podman's.
const DEFAULT_POOL: [u8; 2] = [10, 89];
/// Names that already mean a network mode.
const RESERVED: [&str; 4] = ["host", "none", "pasta", "slirp4netns"];

pub fn networks_dir(store: &Store) -> PathBuf {
    store.root().join("networks")
}

/// The network's directory (its record, and its holder's socket and lock).
pub fn dir(store: &Store, name: &str) -> PathBuf {
    networks_dir(store).join(name)
}

fn lock_path(store: &Store) -> PathBuf {
    store.root().join("locks/networks.lock")
}

/// Held while a container is made on a network.
pub fn lock_shared(store: &Store) -> Result<FileLock> {
    FileLock::shared(&lock_path(store))
}

fn lock_exclusive(store: &Store) -> Result<FileLock> {
    FileLock::exclusive(&lock_path(store))
}

/// Docker's rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`), and not the name of a network mode.
pub fn validate_name(name: &str) -> Result<()> {
    if super::volume::validate_name(name).is_err() {
        bail!("invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at least 2 characters)", name);
    }
    if RESERVED.contains(&name) {
        bail!("network name {:?} is reserved (it is a --network mode)", name);
    }
    Ok(())
}

/// The network `name`.
pub fn load(store: &Store, name: &str) -> Result<Network> {
    let Some(data) = validate_name(name).ok().and_then(|()| fs::read(dir(store, name).join(META)).ok()) else {
        bail!("network {} not found", name);
    };
    serde_json::from_slice(&data).with_context(|| format!("reading the record of network {}", name))
}

/// The network named `what`, or whose id starts with `what`.
pub fn find(store: &Store, what: &str) -> Result<Network> {
    if let Ok(n) = load(store, what) {
        return Ok(n);
    }
    let matches: Vec<Network> =
        list(store)?.into_iter().filter(|n| !what.is_empty() && n.id.starts_with(what)).collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one")),
        0 => bail!("network {} not found", what),
        _ => bail!("network id prefix {:?} is ambiguous ({} networks match)", what, matches.len()),
    }
}

/// Every network, sorted by name.
pub fn list(store: &Store) -> Result<Vec<Network>> {
    Ok(crate::util::visible_entries(&networks_dir(store)).iter().filter_map(|n| load(store, n).ok()).collect())
}

/// Makes a network; its subnet, when not given, is the first free /24 of 10.89.0.0/16.
pub fn create(store: &Store, new: NewNetwork) -> Result<Network> {
    validate_name(new.name)?;
    let top = networks_dir(store);
    fs::create_dir_all(&top).with_context(|| format!("creating {}", top.display()))?;
    let _l = lock_exclusive(store)?;
    remove_leftovers(store);
    if load(store, new.name).is_ok() {
        bail!("network {} already exists", new.name);
    }
    let existing = list(store)?;
    let subnet = match new.subnet {
        Some(s) => {
            if let Some(other) = existing.iter().find(|n| n.subnet.overlaps(&s)) {
                bail!("subnet {} overlaps network {} ({})", s, other.name, other.subnet);
            }
            s
        }
        None => free_subnet(&existing)?,
    };
    if new.internal && new.host_loopback {
        bail!("an --internal network cannot reach the host's loopback (allow_host_loopback)");
    }
    let gateway = match new.gateway {
        Some(g) if !subnet.contains(g) => bail!("gateway {} is not in subnet {}", g, subnet),
        Some(g) if g == subnet.host(0) || g == subnet.host(subnet.host_count() + 1) => {
            bail!("gateway {} is the network or broadcast address of {}", g, subnet)
        }
        Some(g) => g,
        None => subnet.host(1),
    };
    let network = Network {
        name: new.name.to_string(),
        id: random_id()?,
        subnet,
        gateway,
        created: rfc3339(std::time::SystemTime::now()),
        internal: new.internal,
        host_loopback: new.host_loopback,
    };
    let temp = top.join(format!("{}{}", CREATING, unique_suffix()));
    let made = (|| -> Result<()> {
        fs::create_dir(&temp)?;
        atomic_replace(&temp.join(META), &serde_json::to_vec_pretty(&network)?)?;
        fs::rename(&temp, dir(store, new.name))?;
        Ok(())
    })()
    .with_context(|| format!("creating network {}", new.name));
    if made.is_err() {
        let _ = remove_tree(&temp);
    }
    made.map(|()| network)
}

/// The first /24 of the default pool that overlaps neither a network nor a route of
/// the host (a container must still reach the host's own networks through it).
fn free_subnet(existing: &[Network]) -> Result<Subnet> {
    let routes = host_routes();
    (0..=255u8)
        .map(|n| Subnet { base: u32::from(Ipv4Addr::new(DEFAULT_POOL[0], DEFAULT_POOL[1], n, 0)), prefix: 24 })
        .find(|s| !existing.iter().any(|n| n.subnet.overlaps(s)) && !routes.iter().any(|r| r.overlaps(s)))
        .with_context(|| {
            format!("no free subnet left in {}.{}.0.0/16: give one with --subnet", DEFAULT_POOL[0], DEFAULT_POOL[1])
        })
}

/// The destinations of the host's IPv4 routes, the default route left out.
fn host_routes() -> Vec<Subnet> {
    let table = fs::read_to_string("/proc/net/route").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_be(u32::from_str_radix(f.get(1)?, 16).ok()?);
            let mask = u32::from_be(u32::from_str_radix(f.get(7)?, 16).ok()?);
            (mask != 0).then(|| Subnet { base: dest & mask, prefix: mask.count_ones() as u8 })
        })
        .collect()
}

fn random_id() -> Result<String> {
    let mut buf = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Which containers (names) are on which network (by name).
pub fn users(store: &Store) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for c in super::all(store)? {
        if let Ok(super::network::NetworkMode::Named(n)) = super::launch::settings_mode(&c.state.settings) {
            out.entry(n).or_default().push(c.state.name.clone());
        }
    }
    Ok(out)
}

/// Removes network `name`, refused while a container (running or not) is on it unless
/// `force`. A running holder goes on serving its containers until they end.
pub fn remove(store: &Store, name: &str, force: bool) -> Result<()> {
    let _l = lock_exclusive(store)?;
    let network = load(store, name)?;
    if let Some(by) = users(store)?.get(&network.name).filter(|u| !u.is_empty()) {
        if !force {
            bail!("network {} is in use by container {}: remove the container first or use -f", name, by.join(", "));
        }
    }
    let aside = networks_dir(store).join(format!("{}{}", REMOVING, unique_suffix()));
    fs::rename(dir(store, name), &aside).with_context(|| format!("removing network {}", name))?;
    remove_tree(&aside)
}

/// Networks half-made or half-removed by killed husks (call with the exclusive lock).
fn remove_leftovers(store: &Store) {
    for path in half_done_entries(&networks_dir(store)) {
        let _ = remove_tree(&path);
    }
}

/// Those networks, with the lock that keeps them leftovers (see `locked_half_done_entries`).
pub fn leftovers(store: &Store) -> Result<Option<(FileLock, Vec<PathBuf>)>> {
    locked_half_done_entries(&lock_path(store), &networks_dir(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_compare() {
        let s = Subnet::parse("10.89.3.0/24").unwrap();
        assert_eq!(s.to_string(), "10.89.3.0/24");
        assert_eq!(s.host(1), Ipv4Addr::new(10, 89, 3, 1));
        assert_eq!(s.host_count(), 254);
        assert!(s.contains(Ipv4Addr::new(10, 89, 3, 200)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 4, 1)));
        assert!(s.overlaps(&Subnet::parse("10.89.0.0/16").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.89.4.0/24").unwrap()));
        for bad in ["10.89.3.1/24", "10.89.3.0", "10.89.3.0/31", "10.89.3.0/4", "x/24", "fd00::/64"] {
            assert!(Subnet::parse(bad).is_err(), "{}", bad);
        }
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"10.89.3.0/24\"");
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
    }

    #[test]
    fn default_subnets_skip_taken_ones() {
        let taken = |cidr: &str| Network {
            name: cidr.into(),
            id: String::new(),
            subnet: Subnet::parse(cidr).unwrap(),
            gateway: Ipv4Addr::UNSPECIFIED,
            created: String::new(),
            internal: false,
            host_loopback: false,
        };
        let free = free_subnet(&[taken("10.89.0.0/24"), taken("10.89.1.0/25")]).unwrap();
        assert!(free.to_string().starts_with("10.89.") && free.prefix == 24);
        assert!(!["10.89.0.0/24", "10.89.1.0/24"].contains(&free.to_string().as_str()));
    }
}
