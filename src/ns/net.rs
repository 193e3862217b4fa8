//! Network namespace setup: lo up (--network none), and for --network pasta|slirp4netns
//! a namespace made before the container and the tool that connects it.
//!
//! The tool starts while the container's process sets itself up, and the container
//! waits, just before its command, until the namespace carries traffic: slirp4netns says
//! so on its ready fd; pasta has no such signal before its pid file, which it writes
//! only after filling its socket and pipe pools (tens of milliseconds after it has
//! configured the namespace), so husk watches the namespace itself for the default
//! routes pasta copies from the host. Packets the container sends before pasta's loop
//! runs wait in the tap device's queue. The pid file, which pasta writes once its
//! published ports are bound, is a FIFO husk reads: its data is the signal.
use crate::container::network::{PortMapping, Tool, PASTA_DNS_FORWARD};
use crate::ns::channel::Channel;
use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Sets IFF_UP on `lo` in the current network namespace.
pub fn loopback_up() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("opening a socket to configure lo")?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value for every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own, on a live socket.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error()).context("reading lo's flags");
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error()).context("bringing lo up");
        }
    }
    Ok(())
}

/// The user-mode network tool to start for a container (--network pasta|slirp4netns).
#[derive(Debug, Clone)]
pub struct NetPlan {
    pub tool: Tool,
    pub program: PathBuf,
    pub host_loopback: bool,
    pub ports: Vec<PortMapping>,
    /// pasta answers DNS on PASTA_DNS_FORWARD (the host's resolvers are on loopback).
    pub dns_forward: bool,
    /// The default routes (IPv4, IPv6) pasta gives the namespace: the host's.
    pub default_routes: (bool, bool),
    /// The container's directory: the tool's log, pid file and API socket go there.
    pub dir: PathBuf,
}

/// The running tool; killed when dropped. It also gets SIGKILL if husk dies
/// (parent-death signal) and slirp4netns exits when its exit pipe closes.
pub struct NetHelper {
    child: std::process::Child,
    tool: Tool,
    log: PathBuf,
    dir: PathBuf,
    ports: Vec<PortMapping>,
    readiness: Readiness,
    _exit_pipe: Option<OwnedFd>,
}

impl Drop for NetHelper {
    /// Kills the tool. Its end takes tens of milliseconds (closing its tap device
    /// unregisters the device, which waits for RCU grace periods), so it is waited for
    /// only when it holds published ports, which must be free once the container is
    /// recorded as ended. Otherwise nothing depends on it: the process dropping this is
    /// about to exit (a foreground husk, a monitor) and leaves the dying tool to init.
    fn drop(&mut self) {
        let _ = self.child.kill();
        if !self.ports.is_empty() {
            let _ = self.child.wait();
        }
    }
}

/// How husk learns that the tool has done its part.
enum Readiness {
    /// slirp4netns writes one byte on this pipe once the namespace is configured (end
    /// of file if it dies first).
    Slirp4netns {
        ready: OwnedFd,
    },
    Pasta(PastaWatch),
}

/// What shows pasta's progress: the namespace's routes, its pid file (written once
/// the published ports are bound), and a pipe whose write end only pasta holds.
struct PastaWatch {
    /// A route netlink socket in the container's namespace, subscribed to changes.
    routes: OwnedFd,
    /// The read end of the FIFO pasta takes for its pid file.
    pid_file: OwnedFd,
    /// End of file when pasta exits.
    lifeline: OwnedFd,
    /// Default routes (IPv4, IPv6) still to appear.
    missing: (bool, bool),
    pid_file_written: bool,
}

const NETNS_FD: i32 = 100;
/// slirp4netns' ready fd, or the write end of pasta's lifeline.
const READY_FD: i32 = 101;
const EXIT_FD: i32 = 102;
const PID_FILE: &str = "pasta.pid";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the container's network namespace and starts the tool for it, without
/// waiting: `NetHelper::hand_over` waits, once the container's process exists.
pub fn start(plan: &NetPlan) -> Result<(OwnedFd, Box<NetHelper>)> {
    check_tun()?;
    let (netns, routes) = new_namespace_watching(plan.tool == Tool::Pasta)?;
    crate::util::trace("network namespace made");
    let log = plan.dir.join("network.log");
    let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = std::process::Command::new(executable(plan));
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(log_file);
    cmd.current_dir(&plan.dir).process_group(0);
    let mut fds = vec![(netns.as_raw_fd(), NETNS_FD)];
    let (readiness, ready_w, exit_pipe) = match routes {
        Some(routes) => {
            pasta_args(plan, &mut cmd);
            let (lifeline, w) = pipe()?;
            let pid_file = pid_file_fifo(&plan.dir)?;
            let missing = plan.default_routes;
            (Readiness::Pasta(PastaWatch { routes, pid_file, lifeline, missing, pid_file_written: false }), w, None)
        }
        None => {
            slirp4netns_args(plan, &mut cmd);
            let (ready, w) = pipe()?;
            let (exit_r, exit_w) = pipe()?;
            fds.push((exit_r.as_raw_fd(), EXIT_FD));
            (Readiness::Slirp4netns { ready }, w, Some((exit_r, exit_w)))
        }
    };
    fds.push((ready_w.as_raw_fd(), READY_FD));
    let child = spawn_with_fds(cmd, fds).with_context(|| format!("starting {}", plan.program.display()))?;
    let helper = Box::new(NetHelper {
        child,
        tool: plan.tool,
        log,
        dir: plan.dir.clone(),
        ports: plan.ports.clone(),
        readiness,
        _exit_pipe: exit_pipe.map(|(_, w)| w),
    });
    Ok((netns, helper))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")
}

/// pasta re-executes itself as `<program>.avx2` when the CPU has AVX2: start that one
/// directly and save an exec.
fn executable(plan: &NetPlan) -> PathBuf {
    #[cfg(target_arch = "x86_64")]
    if plan.tool == Tool::Pasta && std::is_x86_feature_detected!("avx2") {
        let mut name = plan.program.clone().into_os_string();
        name.push(".avx2");
        let avx2 = PathBuf::from(name);
        if nix::unistd::access(&avx2, nix::unistd::AccessFlags::X_OK).is_ok() {
            return avx2;
        }
    }
    plan.program.clone()
}

fn pasta_args(plan: &NetPlan, cmd: &mut std::process::Command) {
    cmd.args(["-f", "-q", "--config-net", "--netns", &format!("/proc/self/fd/{}", NETNS_FD), "-P"]);
    cmd.arg(plan.dir.join(PID_FILE));
    // Root of husk's user namespace, whose map is the identity when husk runs as root:
    // pasta would then take itself for the host's root and switch to nobody.
    cmd.args(["--runas", "0:0", "-T", "none", "-U", "none"]);
    if !plan.host_loopback {
        cmd.arg("--no-map-gw");
    }
    if plan.dns_forward {
        cmd.args(["--dns-forward", PASTA_DNS_FORWARD]);
    }
    for (proto, flag) in [("tcp", "-t"), ("udp", "-u")] {
        let mut any = false;
        for p in plan.ports.iter().filter(|p| p.proto == proto) {
            let addr = if p.host_ip == "0.0.0.0" { String::new() } else { format!("{}/", p.host_ip) };
            cmd.args([flag, &format!("{}{}:{}", addr, p.host_port, p.container_port)]);
            any = true;
        }
        if !any {
            cmd.args([flag, "none"]);
        }
    }
}

fn slirp4netns_args(plan: &NetPlan, cmd: &mut std::process::Command) {
    let _ = std::fs::remove_file(plan.dir.join("slirp.sock"));
    cmd.args(["--configure", "--mtu=65520", "--netns-type=path", "--api-socket", "slirp.sock"]);
    cmd.arg(format!("--ready-fd={}", READY_FD)).arg(format!("--exit-fd={}", EXIT_FD));
    if !plan.host_loopback {
        cmd.arg("--disable-host-loopback");
    }
    cmd.args([&format!("/proc/self/fd/{}", NETNS_FD), "tap0"]);
}

/// Starts `cmd` with each (descriptor, number) of `fds` at that number, signals
/// unblocked, and SIGKILL when husk dies.
fn spawn_with_fds(mut cmd: std::process::Command, fds: Vec<(i32, i32)>) -> std::io::Result<std::process::Child> {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in &fds {
                if libc::dup2(*from, *to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    cmd.spawn()
}

/// A new network namespace with lo up, which this process does not enter (it could
/// not return to the host's, owned by the initial user namespace): a thread makes it
/// and ends, its descriptor stays. With `watch_routes`, also a route netlink socket
/// opened in it and subscribed to route changes before any tool configures it.
fn new_namespace_watching(watch_routes: bool) -> Result<(OwnedFd, Option<OwnedFd>)> {
    let make = move || -> Result<(OwnedFd, Option<OwnedFd>)> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("creating the container's network namespace")?;
        loopback_up()?;
        let routes = if watch_routes { Some(subscribe_to_route_changes()?) } else { None };
        let ns =
            std::fs::File::open("/proc/thread-self/ns/net").context("opening the container's network namespace")?;
        Ok((ns.into(), routes))
    };
    std::thread::spawn(make).join().unwrap_or_else(|_| Err(anyhow!("making the network namespace failed")))
}

/// A new network namespace with lo up (see `new_namespace_watching`).
pub fn new_namespace() -> Result<OwnedFd> {
    Ok(new_namespace_watching(false)?.0)
}

fn subscribe_to_route_changes() -> Result<OwnedFd> {
    use nix::sys::socket::{bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        .context("opening a route netlink socket")?;
    let groups = (libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV6_ROUTE) as u32;
    bind(sock.as_raw_fd(), &NetlinkAddr::new(0, groups)).context("subscribing to route changes")?;
    Ok(sock)
}

/// A FIFO where pasta's pid file goes, open for reading (so that pasta's open for
/// writing does not block): it becomes readable when pasta writes its pid. (inotify
/// would do too, but closing an inotify instance waits for an RCU grace period.)
fn pid_file_fifo(dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(PID_FILE);
    let _ = std::fs::remove_file(&path);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .with_context(|| format!("creating {}", path.display()))?;
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(fifo.into())
}

/// The default routes of the main table (IPv4, IPv6) that a batch of route netlink
/// messages announces.
fn default_routes_announced(mut buf: &[u8]) -> (bool, bool) {
    const HEADER: usize = 16;
    const RTMSG: usize = 12;
    let mut found = (false, false);
    while buf.len() >= HEADER {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < HEADER || len > buf.len() {
            break;
        }
        if kind == libc::RTM_NEWROUTE && len >= HEADER + RTMSG {
            let rt = &buf[HEADER..HEADER + RTMSG];
            let (family, dst_len, table, kind) = (rt[0], rt[1], rt[4], rt[7]);
            if dst_len == 0 && table == libc::RT_TABLE_MAIN && kind == libc::RTN_UNICAST {
                found.0 |= i32::from(family) == libc::AF_INET;
                found.1 |= i32::from(family) == libc::AF_INET6;
            }
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    found
}

impl PastaWatch {
    fn routes_in_place(&self) -> bool {
        self.missing == (false, false)
    }

    /// Reads what is pending on each source that poll found ready; Err when pasta ended.
    fn take_news(&mut self, ready: [bool; 3]) -> Result<()> {
        if ready[0] {
            let mut buf = [0u8; 16384];
            while let Ok(n) =
                nix::sys::socket::recv(self.routes.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
            {
                let (v4, v6) = default_routes_announced(&buf[..n]);
                self.missing = (self.missing.0 && !v4, self.missing.1 && !v6);
            }
        }
        if ready[1] {
            let mut pid = [0u8; 32];
            self.pid_file_written |= matches!(nix::unistd::read(self.pid_file.as_raw_fd(), &mut pid), Ok(n) if n > 0);
        }
        if ready[2] {
            bail!("it ended");
        }
        Ok(())
    }

    /// Waits until `done` holds, pasta ends (Err) or the start timeout passes (Err).
    fn wait(&mut self, done: fn(&PastaWatch) -> bool) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("it was not ready after {} s", START_TIMEOUT.as_secs());
            }
            let mut fds = [
                PollFd::new(self.routes.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.pid_file.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.lifeline.as_fd(), PollFlags::POLLIN),
            ];
            let timeout = PollTimeout::try_from(left.as_millis().max(1) as i32).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) | Ok(0) => continue,
                Err(e) => return Err(e).context("waiting for pasta"),
                Ok(_) => {}
            }
            let ready = fds.map(|f| f.revents().map(|r| !r.is_empty()).unwrap_or(false));
            self.take_news(ready)?;
        }
        Ok(())
    }
}

impl NetHelper {
    /// In the parent, once the container's process exists: waits until the namespace
    /// carries traffic, tells the container so, then waits until the published ports
    /// are open (the command may already run).
    pub fn hand_over(&mut self, container: &mut Channel) -> Result<()> {
        self.wait_until_usable().map_err(|e| self.failure(e))?;
        crate::util::trace("network usable");
        // A container that failed meanwhile has closed its end: the caller reads why.
        let _ = container.report_network_ready();
        self.publish_ports().map_err(|e| self.failure(e))?;
        crate::util::trace("ports published");
        Ok(())
    }

    /// Waits until the namespace carries traffic and the published ports are open,
    /// for a namespace no container waits on (a user-defined network's).
    pub fn wait_until_ready(&mut self) -> Result<()> {
        self.wait_until_usable().map_err(|e| self.failure(e))?;
        self.publish_ports().map_err(|e| self.failure(e))
    }

    fn wait_until_usable(&mut self) -> Result<()> {
        match &mut self.readiness {
            Readiness::Slirp4netns { ready } => {
                let mut b = [0u8; 1];
                loop {
                    match nix::unistd::read(ready.as_raw_fd(), &mut b) {
                        Err(nix::errno::Errno::EINTR) => continue,
                        Ok(1) => return Ok(()),
                        _ => bail!("it ended"),
                    }
                }
            }
            // Its pid file also means the namespace is configured (an expected route
            // pasta did not add must not hold the container back).
            Readiness::Pasta(watch) => watch.wait(|w| w.routes_in_place() || w.pid_file_written),
        }
    }

    fn publish_ports(&mut self) -> Result<()> {
        if self.ports.is_empty() {
            return Ok(());
        }
        match &mut self.readiness {
            Readiness::Slirp4netns { .. } => self.ports.iter().try_for_each(|p| slirp_hostfwd(&self.dir, p)),
            Readiness::Pasta(watch) => watch.wait(|w| w.pid_file_written),
        }
    }

    /// The tool's failure, in one line with the last line of its log; the tool is
    /// killed (when it still runs) and reaped.
    fn failure(&mut self, e: anyhow::Error) -> anyhow::Error {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last = log.lines().rfind(|l| !l.contains("syslog")).unwrap_or("").trim().to_string();
        let why = if last.is_empty() { format!("{:#}", e) } else { last };
        anyhow!("{} failed ({}): {}", self.tool.program(), status, why)
    }
}

/// Fails with one line when /dev/net/tun cannot be opened (the tools need it).
pub fn check_tun() -> Result<()> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot open /dev/net/tun (permission denied): pasta and slirp4netns need it; udev-based distributions make it mode 0666, here run as root: chmod 0666 /dev/net/tun"
        ),
        Err(e) => Err(e).context("cannot open /dev/net/tun (pasta and slirp4netns need it)"),
    }
}

/// Asks slirp4netns (its API socket in `dir`) to forward one port.
fn slirp_hostfwd(dir: &Path, p: &PortMapping) -> Result<()> {
    use std::io::{Read, Write};
    // The socket's full path may exceed sun_path: reach it through a directory fd.
    let d = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let path = format!("/proc/self/fd/{}/slirp.sock", d.as_raw_fd());
    let mut s = std::os::unix::net::UnixStream::connect(&path).context("connecting to slirp4netns' API socket")?;
    let req = serde_json::json!({"execute": "add_hostfwd", "arguments": {
        "proto": p.proto, "host_addr": p.host_ip, "host_port": p.host_port, "guest_port": p.container_port}});
    s.write_all(req.to_string().as_bytes()).context("talking to slirp4netns")?;
    s.shutdown(std::net::Shutdown::Write).ok();
    let mut reply = String::new();
    s.read_to_string(&mut reply).context("reading slirp4netns' answer")?;
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
    if v.get("return").is_none() {
        let why = v.pointer("/error/desc").and_then(|d| d.as_str()).unwrap_or(reply.trim());
        bail!("publishing {} on {}: slirp4netns: {}", p.private(), p.public(), why);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One RTM_NEWROUTE message: family, destination prefix length, table, type.
    fn route(family: i32, dst_len: u8, table: u8, kind: u8) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&28u32.to_ne_bytes());
        m.extend_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&[family as u8, dst_len, 0, 0, table, 3, 0, kind, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn default_routes_are_recognised() {
        let main = libc::RT_TABLE_MAIN;
        let local_lo = route(libc::AF_INET, 8, libc::RT_TABLE_LOCAL, libc::RTN_LOCAL);
        let link_v6 = route(libc::AF_INET6, 64, main, libc::RTN_UNICAST);
        assert_eq!(default_routes_announced(&[local_lo.clone(), link_v6.clone()].concat()), (false, false));
        let v4 = route(libc::AF_INET, 0, main, libc::RTN_UNICAST);
        assert_eq!(default_routes_announced(&[local_lo, v4.clone()].concat()), (true, false));
        let v6 = route(libc::AF_INET6, 0, main, libc::RTN_UNICAST);
        assert_eq!(default_routes_announced(&[v6, link_v6, v4].concat()), (true, true));
        assert_eq!(default_routes_announced(&[1, 2, 3]), (false, false));
    }
}
