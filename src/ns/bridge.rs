//! The links of a user-defined network, made by its holder inside the network's own
//! namespace: one bridge holding the gateway address, and for each container a veth
//! pair whose near end is a port of the bridge and whose far end is the container's
//! `eth0`, with its address and a default route via the gateway.
use super::netlink::{index_of, Netlink};
use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};
use std::net::Ipv4Addr;
use std::os::fd::{BorrowedFd, OwnedFd};

pub const BRIDGE: &str = "husk0";
pub const CONTAINER_LINK: &str = "eth0";

/// The bridge, with the gateway's address, up (in the calling thread's namespace).
pub fn create_bridge(gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    let mut nl = Netlink::open()?;
    nl.create_bridge(BRIDGE, mac_for(gateway))?;
    let index = index_of(BRIDGE)?;
    nl.add_address(index, gateway, prefix)?;
    nl.set_up(index, None)
}

/// One container's connection to the bridge.
pub struct Port {
    /// The near end's name (unique in the network's namespace).
    pub name: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// Connects the container's network namespace to the bridge. The caller is in the
/// network's namespace, `home`, and is back in it when this returns.
pub fn connect(home: &OwnedFd, container: BorrowedFd, port: &Port) -> Result<()> {
    let mut nl = Netlink::open()?;
    nl.create_veth(&port.name, CONTAINER_LINK, container, mac_for(port.address))?;
    nl.set_up(index_of(&port.name)?, Some(index_of(BRIDGE)?))?;
    setns(container, CloneFlags::CLONE_NEWNET).context("entering the container's network namespace")?;
    let configured = configure_container_end(port);
    if let Err(e) = setns(home, CloneFlags::CLONE_NEWNET) {
        // Never possible in practice (it was there a moment ago); going on in the
        // container's namespace would configure the next one wrongly.
        eprintln!("returning to the network's namespace: {}", e);
        std::process::exit(1);
    }
    configured.context("configuring the container's eth0")
}

fn configure_container_end(port: &Port) -> Result<()> {
    let mut nl = Netlink::open()?;
    let index = index_of(CONTAINER_LINK)?;
    nl.add_address(index, port.address, port.prefix)?;
    nl.set_up(index, None)?;
    nl.add_default_route(port.gateway)
}

/// A locally administered MAC derived from the address, as Docker does (02:42 and the
/// four bytes): an address that comes back gets the same MAC, so no neighbour keeps a
/// stale one.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{:02x}", b)).collect::<Vec<_>>().join(":")
}
