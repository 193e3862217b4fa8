//! The holder of a user-defined network: one process per network (and user) while
//! containers are on it, a fork of husk (never an exec of a binary on disk, so nothing
//! a container can reach is ever run by it). It owns a user namespace with the user's
//! id mapping and, in it, the network's namespace with its bridge; unless the network
//! is `--internal`, pasta connects that namespace to the outside (see `masquerade`).
//!
//! A container on the network makes its user namespace inside the holder's, so the
//! holder keeps every capability over the container's network namespace (a process
//! outside could not even join it), and asks the holder, over `holder.sock` in the
//! network's directory, to connect it: a veth pair from the bridge to the container's
//! eth0, an address of the subnet, a default route via the gateway, and an /etc/hosts
//! naming every container on the network. That connection stays open for the
//! container's life (its foreground husk or its monitor holds it): when it closes, the
//! address is free again and the other containers' /etc/hosts lose the name.
//!
//! Lifetime: the holder exits when no connection is left; the next container starts a
//! new one. Clients connect (and start a holder) only under `holder.lock` in the
//! network's directory; the holder decides to exit only under the same lock, after
//! removing its socket and finding no connection waiting. So a client never reaches a
//! holder that is on its way out.
mod link;
mod members;

pub use link::JoinRequest;
use link::{Link, Listener};
use members::{Addresses, Member};

use super::bridge;
use super::channel::Channel;
use crate::container::netdef::{Endpoint, Network};
use crate::util::FileLock;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::unistd::{fork, ForkResult};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

const LOCK: &str = "holder.lock";
/// How often an idle holder that could not take the lock (a client holds it) tries again.
const IDLE_RETRY: u16 = 100;

/// A connection to a network's holder.
pub struct Holder {
    link: Link,
    /// Tells holders apart: a new one has a new user namespace.
    pub instance: String,
    userns: OwnedFd,
}

impl Holder {
    /// The holder's user namespace, which a container's user namespace must be made in.
    pub fn user_namespace(&self) -> &OwnedFd {
        &self.userns
    }

    /// Connects the container whose network namespace is `netns` and whose /etc/hosts
    /// is `hosts`; the connection then keeps it on the network until it is dropped.
    pub fn join(self, request: &JoinRequest, netns: OwnedFd, hosts: BorrowedFd) -> Result<Membership> {
        let endpoint = self.link.join(request, netns.as_fd(), hosts)?;
        Ok(Membership { _link: self.link, netns, endpoint })
    }
}

/// A container's place on its network, kept while this lives (in the husk that waits
/// for the container, or its monitor).
pub struct Membership {
    _link: Link,
    netns: OwnedFd,
    pub endpoint: Endpoint,
}

impl Membership {
    /// The container's network namespace, connected to the network.
    pub fn netns(&self) -> &OwnedFd {
        &self.netns
    }
}

/// Connects to the network's holder, starting one when none runs. The calling process
/// must be single-threaded and still in the host's user namespace.
pub fn connect_or_start(network: &Network, dir: &Path) -> Result<Holder> {
    let _lock = FileLock::exclusive(&dir.join(LOCK))?;
    let link = match Link::connect(dir) {
        Ok(link) => link,
        Err(Errno::ENOENT | Errno::ECONNREFUSED) => {
            start(network, dir)?;
            Link::connect(dir).with_context(|| format!("connecting to the holder of network {}", network.name))?
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to the holder of network {}", network.name)),
    };
    welcomed(link)
}

/// Connects to the network's running holder.
pub fn connect(network: &Network, dir: &Path) -> Result<Holder> {
    let _lock = FileLock::exclusive(&dir.join(LOCK))?;
    let link = Link::connect(dir).with_context(|| format!("connecting to the holder of network {}", network.name))?;
    welcomed(link)
}

fn welcomed(link: Link) -> Result<Holder> {
    let (instance, userns) = link.wait_for_welcome()?;
    Ok(Holder { link, instance, userns })
}

/// Forks the holder (twice, so that it is nobody's child here) and waits until it
/// listens or has failed.
fn start(network: &Network, dir: &Path) -> Result<()> {
    let (mut parent_end, mut holder_end) = Channel::pair()?;
    // SAFETY: the caller is single-threaded; the child only forks again and exits.
    match unsafe { fork() }.context("forking the network's holder")? {
        ForkResult::Child => {
            drop(parent_end);
            // SAFETY: still single-threaded; the grandchild becomes the holder and never
            // returns into the caller's code (it leaves with process::exit).
            if let Ok(ForkResult::Child) = unsafe { fork() } {
                let code = match become_holder(network, dir, &mut holder_end) {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = holder_end.report_container_failure(125, &format!("{:#}", e));
                        1
                    }
                };
                std::process::exit(code);
            }
            // SAFETY: ends the intermediate child without running husk's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(holder_end);
            let _ = nix::sys::wait::waitpid(child, None);
            match parent_end.wait_until_done()? {
                Ok(()) => Ok(()),
                Err(message) => bail!("starting network {}: {}", network.name, message),
            }
        }
    }
}

/// The holder's life: it leaves the caller's session and descriptors, makes its
/// namespaces and the bridge, tells the caller it listens (by closing the channel),
/// then serves until no connection is left.
fn become_holder(network: &Network, dir: &Path, channel: &mut Channel) -> Result<()> {
    let _ = nix::unistd::setsid();
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    close_inherited(channel)?;
    let _ = nix::sys::prctl::set_name(c"husk-network");
    nix::unistd::chdir(dir).with_context(|| format!("entering {}", dir.display()))?;
    super::userns::enter_user_namespace()?;
    // pasta works from the host's network namespace: started before the holder leaves it.
    let (home, outbound) = match network.internal {
        false => {
            let (home, mut pasta) = super::net::start(&outbound_plan(network, dir)?)?;
            pasta.wait_until_ready()?;
            (home, Some(pasta))
        }
        true => (super::net::new_namespace()?, None),
    };
    let host_gateway = crate::container::network::host_gateway().filter(|_| network.host_loopback);
    setns(&home, CloneFlags::CLONE_NEWNET).context("entering the network's namespace")?;
    bridge::create_bridge(network.gateway, network.subnet.prefix)?;
    if outbound.is_some() {
        super::masquerade::enable(super::netlink::index_of(bridge::BRIDGE)?)?;
    }
    let listener = Listener::bind_here()?;
    let userns: OwnedFd = std::fs::File::open("/proc/self/ns/user").context("opening the user namespace")?.into();
    let mut holder = Serving {
        network: network.clone(),
        instance: instance_id()?,
        userns,
        home,
        listener,
        waiting: Vec::new(),
        members: Vec::new(),
        addresses: Addresses::new(network.subnet, network.gateway),
        ports: 0,
        host_gateway,
        _outbound: outbound,
    };
    channel.close_in_this_process();
    holder.serve()
}

/// The holder keeps nothing of the husk it was forked from: stdio go to /dev/null (a
/// pipe husk's caller reads must not wait for the holder), every other descriptor
/// but the channel is closed (a lock husk held must not stay held).
fn close_inherited(channel: &Channel) -> Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
    for fd in 0..=2 {
        nix::unistd::dup2(null.as_raw_fd(), fd).context("redirecting the holder's stdio")?;
    }
    drop(null);
    let keep = channel.as_raw_fd() as u32;
    for (first, last) in [(3, keep.saturating_sub(1)), (keep + 1, u32::MAX)] {
        if first <= last {
            // SAFETY: close_range closes descriptors only; none of them is used by the
            // holder, which never returns into the code that owned them.
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        }
    }
    Ok(())
}

/// pasta for the network's namespace, its files in the network's directory.
fn outbound_plan(network: &Network, dir: &Path) -> Result<super::net::NetPlan> {
    use crate::container::network::{needs_dns_forward, Tool};
    let Some(program) = super::idmap::find_in_path("pasta") else {
        bail!("outbound connectivity needs pasta: install the Debian package passt, or create the network with --internal");
    };
    Ok(super::net::NetPlan {
        tool: Tool::Pasta,
        program,
        host_loopback: network.host_loopback,
        ports: Vec::new(),
        dns_forward: needs_dns_forward(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        default_routes: crate::container::network::host_default_routes(),
        dir: dir.to_path_buf(),
    })
}

fn instance_id() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

/// The running holder.
struct Serving {
    network: Network,
    instance: String,
    userns: OwnedFd,
    /// The network's namespace, which the holder is in (and returns to).
    home: OwnedFd,
    listener: Listener,
    /// Connections that have not joined (yet): they keep the holder alive too. (None
    /// only while a round of polling is being served.)
    waiting: Vec<Option<Link>>,
    /// Containers on the network, each with the link that keeps it there.
    members: Vec<(Link, Member)>,
    addresses: Addresses,
    /// Veth pairs made so far, for unique names.
    ports: u64,
    /// With allow_host_loopback: the address that reaches the host's loopback.
    host_gateway: Option<std::net::Ipv4Addr>,
    /// pasta, unless the network is internal (it dies with the holder).
    _outbound: Option<Box<super::net::NetHelper>>,
}

/// What a poll entry stands for.
#[derive(Clone, Copy)]
enum Source {
    Listener,
    Waiting(usize),
    Member(usize),
}

impl Serving {
    fn serve(&mut self) -> Result<()> {
        loop {
            let idle = self.waiting.is_empty() && self.members.is_empty();
            if idle && self.may_exit() {
                return Ok(());
            }
            let mut sources = vec![Source::Listener];
            let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            for (i, l) in self.waiting.iter().flatten().enumerate() {
                sources.push(Source::Waiting(i));
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            }
            for (i, (link, _)) in self.members.iter().enumerate() {
                sources.push(Source::Member(i));
                fds.push(PollFd::new(link.as_fd(), PollFlags::POLLIN));
            }
            let timeout = if idle { PollTimeout::from(IDLE_RETRY) } else { PollTimeout::NONE };
            match poll(&mut fds, timeout) {
                Err(Errno::EINTR) | Ok(0) => continue,
                Err(e) => return Err(e).context("waiting for containers"),
                Ok(_) => {}
            }
            let ready: Vec<Source> = sources
                .into_iter()
                .zip(fds.iter().map(|f| f.revents().map(|r| !r.is_empty()).unwrap_or(false)))
                .filter_map(|(s, r)| r.then_some(s))
                .collect();
            drop(fds);
            let mut gone_members = Vec::new();
            for source in ready {
                match source {
                    Source::Listener => self.accept_all(),
                    Source::Waiting(i) => self.serve_waiting(i),
                    // A member says nothing more: anything readable is its end.
                    Source::Member(i) => gone_members.push(i),
                }
            }
            self.waiting.retain(Option::is_some);
            self.remove_members(gone_members);
        }
    }

    /// New connections go to the end of `waiting` (the indexes polled stay valid).
    fn accept_all(&mut self) {
        while let Some(link) = self.listener.accept() {
            if link.welcome(&self.instance, self.userns.as_fd()).is_ok() {
                self.waiting.push(Some(link));
            }
        }
    }

    /// A request on a waiting link: a container joins (the link moves to the members)
    /// or is told why it cannot (the link stays); or the link has closed.
    fn serve_waiting(&mut self, i: usize) {
        let Some(link) = self.waiting[i].take() else { return };
        let (request, netns, hosts) = match link.next_request() {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let connected = self.add_port(&netns);
        drop(netns); // held beyond this, it would keep a dead container's namespace alive
        match connected {
            Ok((address, endpoint)) => {
                let member = Member { who: request, address, hosts };
                // Every /etc/hosts is right before the container learns it is connected.
                let everyone: Vec<&Member> = self.members.iter().map(|(_, m)| m).chain([&member]).collect();
                members::rewrite_hosts(&everyone, self.host_gateway);
                if link.answer_joined(&endpoint).is_ok() {
                    self.members.push((link, member));
                } else {
                    self.addresses.release(address);
                    self.rewrite_all_hosts();
                }
            }
            Err(e) => {
                let _ = link.answer_refused(&format!("network {}: {:#}", self.network.name, e));
                self.waiting[i] = Some(link);
            }
        }
    }

    /// An address and a veth pair for the container's namespace.
    fn add_port(&mut self, netns: &OwnedFd) -> Result<(std::net::Ipv4Addr, Endpoint)> {
        let address =
            self.addresses.take().with_context(|| format!("no free address left in {}", self.network.subnet))?;
        self.ports += 1;
        let port = bridge::Port {
            name: format!("veth{}", self.ports),
            address,
            prefix: self.network.subnet.prefix,
            gateway: self.network.gateway,
        };
        if let Err(e) = bridge::connect(&self.home, netns.as_fd(), &port) {
            self.addresses.release(address);
            return Err(e);
        }
        let endpoint = Endpoint {
            network: self.network.name.clone(),
            address,
            prefix: port.prefix,
            gateway: port.gateway,
            mac: bridge::mac_text(bridge::mac_for(address)),
        };
        Ok((address, endpoint))
    }

    /// Containers whose links closed: their addresses are free, their names gone.
    fn remove_members(&mut self, mut gone: Vec<usize>) {
        if gone.is_empty() {
            return;
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            let (_, m) = self.members.remove(i);
            self.addresses.release(m.address);
        }
        self.rewrite_all_hosts();
    }

    fn rewrite_all_hosts(&self) {
        members::rewrite_hosts(&self.members.iter().map(|(_, m)| m).collect::<Vec<_>>(), self.host_gateway);
    }

    /// With no connection left: exits if no client holds the lock (one may be about to
    /// connect) and none waits to be accepted. The socket goes first, under the lock.
    fn may_exit(&self) -> bool {
        match FileLock::try_exclusive(Path::new(LOCK)) {
            Ok(Some(_lock)) => {
                if self.listener.has_pending() {
                    return false;
                }
                let _ = std::fs::remove_file(link::SOCKET);
                true
            }
            Ok(None) => false,
            // The network's directory is gone (network rm -f): nobody can reach us.
            Err(_) => true,
        }
    }
}
