//! A small netlink client for the current network namespace: the rtnetlink link,
//! address and route requests a bridge network needs, and batches of nftables
//! requests (see `masquerade`); each request is sent with NLM_F_ACK and checked.
use anyhow::{bail, Context, Result};
use nix::sys::socket::{recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// From linux/veth.h (libc lacks it).
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLMSG_HEADER: usize = 16;

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// One request under construction: the netlink header, a fixed family header, then
/// attributes (nested ones remember where they start until closed).
pub(super) struct Request {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl Request {
    /// A request the kernel acknowledges.
    pub(super) fn new(kind: u16, flags: u16, family_header: &[u8]) -> Request {
        Request::unacknowledged(kind, flags | libc::NLM_F_ACK as u16, family_header)
    }

    /// A request without acknowledgement (the markers around an nftables batch).
    pub(super) fn unacknowledged(kind: u16, flags: u16, family_header: &[u8]) -> Request {
        let mut buf = vec![0u8; NLMSG_HEADER];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        let flags = flags | libc::NLM_F_REQUEST as u16;
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(family_header);
        let mut r = Request { buf, open: Vec::new() };
        r.pad();
        r
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub(super) fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Request {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub(super) fn attr_str(&mut self, kind: u16, s: &str) -> &mut Request {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    pub(super) fn begin(&mut self, kind: u16) -> &mut Request {
        self.open.push(self.buf.len());
        self.attr(kind | NLA_F_NESTED, &[])
    }

    /// A nested attribute that starts with a fixed header (VETH_INFO_PEER's ifinfomsg).
    fn begin_with(&mut self, kind: u16, header: &[u8]) -> &mut Request {
        self.open.push(self.buf.len());
        self.attr(kind | NLA_F_NESTED, header)
    }

    pub(super) fn end(&mut self) -> &mut Request {
        let start = self.open.pop().expect("an open nested attribute");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// A 32-bit attribute in network byte order (as nftables wants them).
    pub(super) fn attr_be32(&mut self, kind: u16, value: u32) -> &mut Request {
        self.attr(kind, &value.to_be_bytes())
    }

    fn acknowledged(&self) -> bool {
        u16::from_ne_bytes([self.buf[6], self.buf[7]]) & libc::NLM_F_ACK as u16 != 0
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        debug_assert!(self.open.is_empty());
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// struct ifinfomsg
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = libc::AF_UNSPEC as u8;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

const CREATE: u16 = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;

impl Netlink {
    /// A route netlink socket in the calling thread's network namespace (it stays bound
    /// to that namespace whatever the thread joins later).
    pub fn open() -> Result<Netlink> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
            .context("opening a netlink socket")?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// A netfilter netlink socket (nftables) in the calling thread's network namespace.
    pub fn open_netfilter() -> Result<Netlink> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .context("opening a netfilter netlink socket")?;
        Ok(Netlink { fd, seq: 0 })
    }

    fn call(&mut self, req: Request, what: &str) -> Result<()> {
        self.call_all(vec![req], what)
    }

    /// Sends the requests in one write and waits until each that asked for it is
    /// acknowledged; the first error fails the call.
    pub(super) fn call_all(&mut self, reqs: Vec<Request>, what: &str) -> Result<()> {
        let mut msg = Vec::new();
        let mut pending = std::collections::BTreeSet::new();
        for req in reqs {
            self.seq += 1;
            if req.acknowledged() {
                pending.insert(self.seq);
            }
            msg.extend(req.finish(self.seq));
        }
        sendto(self.fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty())
            .with_context(|| format!("{}: sending the netlink request", what))?;
        let mut buf = vec![0u8; 8192];
        while !pending.is_empty() {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .with_context(|| format!("{}: reading the netlink answer", what))?;
            let mut at = 0;
            while at + NLMSG_HEADER <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().expect("4 bytes"));
                if len < NLMSG_HEADER || at + len > n {
                    bail!("{}: malformed netlink answer", what);
                }
                if kind == libc::NLMSG_ERROR as u16 && pending.contains(&seq) && len >= NLMSG_HEADER + 4 {
                    let body = &buf[at + NLMSG_HEADER..at + NLMSG_HEADER + 4];
                    let code = i32::from_ne_bytes(body.try_into().expect("4 bytes"));
                    if code != 0 {
                        return Err(std::io::Error::from_raw_os_error(-code)).context(what.to_string());
                    }
                    pending.remove(&seq);
                }
                at += (len + 3) & !3;
            }
        }
        Ok(())
    }

    /// A bridge named `name` with a fixed MAC (otherwise it would take its lowest port's).
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut r = Request::new(libc::RTM_NEWLINK, CREATE, &ifinfomsg(0, 0, 0));
        r.attr_str(libc::IFLA_IFNAME, name).attr(libc::IFLA_ADDRESS, &mac);
        r.begin(libc::IFLA_LINKINFO).attr_str(libc::IFLA_INFO_KIND, "bridge").end();
        self.call(r, &format!("creating bridge {}", name))
    }

    /// A veth pair: `name` here, `peer` (with `peer_mac`) in the namespace `peer_netns`.
    pub fn create_veth(&mut self, name: &str, peer: &str, peer_netns: BorrowedFd, peer_mac: [u8; 6]) -> Result<()> {
        let mut r = Request::new(libc::RTM_NEWLINK, CREATE, &ifinfomsg(0, 0, 0));
        r.attr_str(libc::IFLA_IFNAME, name);
        r.begin(libc::IFLA_LINKINFO).attr_str(libc::IFLA_INFO_KIND, "veth").begin(libc::IFLA_INFO_DATA);
        r.begin_with(VETH_INFO_PEER, &ifinfomsg(0, 0, 0))
            .attr_str(libc::IFLA_IFNAME, peer)
            .attr(libc::IFLA_ADDRESS, &peer_mac)
            .attr(libc::IFLA_NET_NS_FD, &(peer_netns.as_raw_fd() as u32).to_ne_bytes());
        r.end().end().end();
        self.call(r, &format!("creating the veth pair {}/{}", name, peer))
    }

    /// Brings link `index` up, attached to `master` if given.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let up = libc::IFF_UP as u32;
        let mut r = Request::new(libc::RTM_NEWLINK, 0, &ifinfomsg(index, up, up));
        if let Some(m) = master {
            r.attr(libc::IFLA_MASTER, &m.to_ne_bytes());
        }
        self.call(r, &format!("bringing up link {}", index))
    }

    /// `address/prefix` on link `index`, with its broadcast address.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut h = [0u8; 8];
        h[0] = libc::AF_INET as u8;
        h[1] = prefix;
        h[3] = libc::RT_SCOPE_UNIVERSE;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let host_bits = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
        let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
        let mut r = Request::new(libc::RTM_NEWADDR, CREATE, &h);
        r.attr(libc::IFA_LOCAL, &address.octets())
            .attr(libc::IFA_ADDRESS, &address.octets())
            .attr(libc::IFA_BROADCAST, &broadcast.octets());
        self.call(r, &format!("adding address {}/{}", address, prefix))
    }

    /// The default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let h = [
            libc::AF_INET as u8,
            0, // dst_len
            0, // src_len
            0, // tos
            libc::RT_TABLE_MAIN,
            libc::RTPROT_BOOT,
            libc::RT_SCOPE_UNIVERSE,
            libc::RTN_UNICAST,
            0,
            0,
            0,
            0, // flags
        ];
        let mut r = Request::new(libc::RTM_NEWROUTE, CREATE, &h);
        r.attr(libc::RTA_GATEWAY, &gateway.octets());
        self.call(r, &format!("adding the default route via {}", gateway))
    }
}

/// The index of link `name` in the calling thread's network namespace.
pub fn index_of(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: if_nametoindex reads the NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("finding link {}", name));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_length() {
        let mut r = Request::new(libc::RTM_NEWLINK, CREATE, &ifinfomsg(0, 0, 0));
        r.begin(libc::IFLA_LINKINFO).attr_str(libc::IFLA_INFO_KIND, "veth").end();
        let msg = r.finish(7);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize, msg.len());
        assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 7);
        // header 16 + ifinfomsg 16, then LINKINFO (4) holding KIND (4 + "veth\0", padded to 12)
        let nest = &msg[32..];
        assert_eq!(u16::from_ne_bytes(nest[0..2].try_into().unwrap()), 16);
        assert_eq!(u16::from_ne_bytes(nest[2..4].try_into().unwrap()), libc::IFLA_LINKINFO | NLA_F_NESTED);
        assert_eq!(&nest[8..13], b"veth\0");
    }
}
