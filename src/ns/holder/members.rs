//! What a holder knows of the containers on its network: their addresses, given out
//! round robin (an address just freed is not handed out again at once), and their
//! /etc/hosts, rewritten in place whenever a container comes or goes (the file is
//! bind-mounted into the container: a rename would not reach it).
use super::link::JoinRequest;
use crate::container::netdef::Subnet;
use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;

/// The free and taken addresses of the subnet.
pub struct Addresses {
    subnet: Subnet,
    /// Host numbers in use, the gateway's included.
    taken: BTreeSet<u32>,
    /// Where the search for a free one starts.
    next: u32,
}

impl Addresses {
    pub fn new(subnet: Subnet, gateway: Ipv4Addr) -> Addresses {
        let gw = subnet.host_number(gateway);
        Addresses { subnet, taken: BTreeSet::from([gw]), next: 1 }
    }

    pub fn take(&mut self) -> Option<Ipv4Addr> {
        let count = self.subnet.host_count();
        let n = (0..count).map(|i| (self.next - 1 + i) % count + 1).find(|n| !self.taken.contains(n))?;
        self.taken.insert(n);
        self.next = n % count + 1;
        Some(self.subnet.host(n))
    }

    pub fn release(&mut self, address: Ipv4Addr) {
        self.taken.remove(&self.subnet.host_number(address));
    }
}

/// A container on the network (for as long as its link stays open).
pub struct Member {
    pub who: JoinRequest,
    pub address: Ipv4Addr,
    /// The container's /etc/hosts (passed by its husk: the holder opens no paths).
    pub hosts: File,
}

/// A container's /etc/hosts: localhost, itself (hostname first, as `hostname -i`
/// expects), every other container on the network by name and hostname, and the
/// host's loopback when the network may reach it (Podman's names for it).
pub fn hosts_file(
    own: &JoinRequest,
    own_address: Ipv4Addr,
    others: &[(&JoinRequest, Ipv4Addr)],
    host: Option<Ipv4Addr>,
) -> String {
    let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    text.push_str(&format!("{}\t{}\n", own_address, names(&own.hostname, &own.name)));
    for (who, address) in others {
        text.push_str(&format!("{}\t{}\n", address, names(&who.name, &who.hostname)));
    }
    if let Some(h) = host {
        text.push_str(&format!("{}\thost.containers.internal host.docker.internal\n", h));
    }
    text
}

fn names(first: &str, second: &str) -> String {
    if first == second || second.is_empty() {
        first.to_string()
    } else {
        format!("{} {}", first, second)
    }
}

/// Writes every member's /etc/hosts anew. The new content is written over the old
/// and the file then cut to length, so a reader never finds it empty.
pub fn rewrite_hosts(members: &[&Member], host: Option<Ipv4Addr>) {
    for m in members {
        let others: Vec<(&JoinRequest, Ipv4Addr)> =
            members.iter().filter(|o| o.address != m.address).map(|o| (&o.who, o.address)).collect();
        let text = hosts_file(&m.who, m.address, &others, host);
        // A container that is going away may have taken its file with it: no matter.
        if m.hosts.write_all_at(text.as_bytes(), 0).is_ok() {
            let _ = m.hosts.set_len(text.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_go_round_robin_around_the_gateway() {
        let subnet = Subnet::parse("10.89.0.0/29").unwrap(); // hosts 1..=6
        let mut a = Addresses::new(subnet, Ipv4Addr::new(10, 89, 0, 1));
        let got: Vec<Ipv4Addr> = (0..5).map(|_| a.take().unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 89, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 89, 0, 6));
        assert_eq!(a.take(), None);
        a.release(Ipv4Addr::new(10, 89, 0, 3));
        assert_eq!(a.take(), Some(Ipv4Addr::new(10, 89, 0, 3)));
        a.release(Ipv4Addr::new(10, 89, 0, 2));
        a.release(Ipv4Addr::new(10, 89, 0, 5));
        // after .3, the search goes on upwards before it wraps
        assert_eq!(a.take(), Some(Ipv4Addr::new(10, 89, 0, 5)));
        assert_eq!(a.take(), Some(Ipv4Addr::new(10, 89, 0, 2)));
    }

    #[test]
    fn hosts_name_everyone_once() {
        let me = JoinRequest { container: "a".into(), name: "web".into(), hostname: "0123456789ab".into() };
        let db = JoinRequest { container: "b".into(), name: "db".into(), hostname: "db".into() };
        let text = hosts_file(&me, Ipv4Addr::new(10, 89, 0, 2), &[(&db, Ipv4Addr::new(10, 89, 0, 3))], None);
        assert!(text.contains("10.89.0.2\t0123456789ab web\n"), "{}", text);
        assert!(text.contains("10.89.0.3\tdb\n"), "{}", text);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
    }
}
