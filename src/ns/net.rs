//! Network namespace setup: lo up (--network none), and for --network pasta|slirp4netns
//! a namespace made before the container and the tool that connects it.
use anyhow::{Context, Result};
use std::os::fd::AsRawFd;

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

use crate::container::network::{PortMapping, Tool, PASTA_DNS_FORWARD};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The user-mode network tool to start for a container (--network pasta|slirp4netns).
#[derive(Debug, Clone)]
pub struct NetPlan {
    pub tool: Tool,
    pub program: PathBuf,
    pub host_loopback: bool,
    pub ports: Vec<PortMapping>,
    /// pasta answers DNS on PASTA_DNS_FORWARD (the host's resolvers are on loopback).
    pub dns_forward: bool,
    /// The container's directory: the tool's log, pid file and API socket go there.
    pub dir: PathBuf,
}

/// The running tool; killed (and reaped) when dropped. It also gets SIGKILL if husk
/// dies (parent-death signal) and slirp4netns exits when its exit pipe closes.
pub struct NetHelper {
    child: std::process::Child,
    _exit_pipe: Option<OwnedFd>,
}

impl Drop for NetHelper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new network namespace with lo up, which this process does not enter (it could
/// not return to the host's, owned by the initial user namespace): a short-lived fork
/// makes it, and its descriptor is taken from /proc/CHILD/ns/net.
pub fn new_namespace() -> Result<OwnedFd> {
    use nix::unistd::{fork, read, write, ForkResult};
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    let (hold_r, hold_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    // SAFETY: husk is single-threaded here; the child only makes system calls and exits.
    match unsafe { fork() }.context("forking to make the network namespace")? {
        ForkResult::Child => {
            drop((ready_r, hold_w));
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok() && loopback_up().is_ok();
            let _ = write(&ready_w, if ok { b"1" } else { b"0" });
            let mut b = [0u8; 1];
            let _ = read(hold_r.as_raw_fd(), &mut b);
            // SAFETY: ends the forked child without running husk's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop((ready_w, hold_r));
            let mut b = [0u8; 1];
            let got = read(ready_r.as_raw_fd(), &mut b);
            let made = match got {
                Ok(1) if b[0] == b'1' => std::fs::File::open(format!("/proc/{}/ns/net", child))
                    .context("opening the container's network namespace"),
                _ => Err(anyhow::anyhow!("creating the container's network namespace failed")),
            };
            drop(hold_w);
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(made?.into())
        }
    }
}

/// Fails with one line when /dev/net/tun cannot be opened (the tools need it).
fn check_tun() -> Result<()> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => anyhow::bail!(
            "cannot open /dev/net/tun (permission denied): pasta and slirp4netns need it; udev-based distributions make it mode 0666, here run as root: chmod 0666 /dev/net/tun"
        ),
        Err(e) => Err(e).context("cannot open /dev/net/tun (pasta and slirp4netns need it)"),
    }
}

const NETNS_FD: i32 = 100;
const READY_FD: i32 = 101;
const EXIT_FD: i32 = 102;

/// Starts the tool for the namespace `netns` and returns once the namespace is
/// configured and the ports are forwarded.
pub fn start(plan: &NetPlan, netns: &OwnedFd) -> Result<NetHelper> {
    use std::os::unix::process::CommandExt;
    check_tun()?;
    let log_path = plan.dir.join("network.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let pid_file = plan.dir.join("pasta.pid");
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(log);
    cmd.current_dir(&plan.dir).process_group(0);
    let (mut ready_r, mut exit_w) = (None, None);
    let mut fds = vec![(netns.as_raw_fd(), NETNS_FD)];
    match plan.tool {
        Tool::Pasta => {
            let _ = std::fs::remove_file(&pid_file);
            cmd.args(["-f", "-q", "--config-net", "--netns", &format!("/proc/self/fd/{}", NETNS_FD), "-P"]);
            cmd.arg(&pid_file);
            if nix::unistd::geteuid().is_root() {
                // Started as root, pasta would become nobody, which may not enter the
                // namespace (owned by husk's user namespace): it stays husk's root.
                cmd.args(["--runas", "0:0"]);
            }
            cmd.args(["-T", "none", "-U", "none"]);
            if !plan.host_loopback {
                cmd.arg("--no-map-gw");
            }
            if plan.dns_forward {
                cmd.args(["--dns-forward", PASTA_DNS_FORWARD]);
            }
            for proto in ["tcp", "udp"] {
                let flag = if proto == "tcp" { "-t" } else { "-u" };
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
        Tool::Slirp4netns => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
            let (er, ew) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
            let _ = std::fs::remove_file(plan.dir.join("slirp.sock"));
            cmd.args(["--configure", "--mtu=65520", "--netns-type=path", "--api-socket", "slirp.sock"]);
            cmd.arg(format!("--ready-fd={}", READY_FD)).arg(format!("--exit-fd={}", EXIT_FD));
            if !plan.host_loopback {
                cmd.arg("--disable-host-loopback");
            }
            cmd.args([&format!("/proc/self/fd/{}", NETNS_FD), "tap0"]);
            fds.push((w.as_raw_fd(), READY_FD));
            fds.push((er.as_raw_fd(), EXIT_FD));
            ready_r = Some((r, w, er));
            exit_w = Some(ew);
        }
    }
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
    let child = cmd.spawn().with_context(|| format!("starting {}", plan.program.display()))?;
    let mut helper = NetHelper { child, _exit_pipe: exit_w };
    let failed = |helper: &mut NetHelper| {
        let _ = helper.child.kill();
        let status = helper.child.wait().map(|s| s.to_string()).unwrap_or_default();
        let msg = std::fs::read_to_string(&log_path).unwrap_or_default();
        let msg = msg.lines().rfind(|l| !l.contains("syslog")).unwrap_or("").trim().to_string();
        anyhow::anyhow!("{} failed ({}){}{}", plan.tool.program(), status, if msg.is_empty() { "" } else { ": " }, msg)
    };
    match ready_r {
        None => {
            // pasta writes its pid file once the namespace is configured.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if std::fs::metadata(&pid_file).map(|m| m.len() > 0).unwrap_or(false) {
                    break;
                }
                if !matches!(helper.child.try_wait(), Ok(None)) || std::time::Instant::now() > deadline {
                    return Err(failed(&mut helper));
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        Some((r, w, er)) => {
            drop((w, er));
            let mut b = [0u8; 1];
            let n = loop {
                match nix::unistd::read(r.as_raw_fd(), &mut b) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            if !matches!(n, Ok(1)) {
                return Err(failed(&mut helper));
            }
            for p in &plan.ports {
                if let Err(e) = slirp_hostfwd(&plan.dir, p) {
                    drop(helper);
                    return Err(e);
                }
            }
        }
    }
    Ok(helper)
}

/// Asks slirp4netns (its API socket in `dir`) to forward one port.
fn slirp_hostfwd(dir: &std::path::Path, p: &PortMapping) -> Result<()> {
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
        anyhow::bail!("publishing {} on {}: slirp4netns: {}", p.private(), p.public(), why);
    }
    Ok(())
}
