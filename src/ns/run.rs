//! The fork sequence of a container, top to bottom.
//!
//! Parent (husk, already root of its user namespace):
//!   1. blocks the signals it forwards, so none is lost before it waits;
//!   2. unshare(CLONE_NEWPID), fork: the child is pid 1 of the new pid namespace;
//!   3. waits on the channel until the child has exec'd (channel closed) or failed;
//!   4. forwards signals to the child until it exits, and returns its status.
//! Child:
//!   a. new mount, UTS and IPC namespaces (and network, for --network none);
//!   b. rootfs: overlay, /proc, /dev, /sys, mounts, pivot_root, masked paths;
//!   c. hostname, stdin, capabilities bounding set, user and groups, capabilities;
//!   d. working directory, descriptors above 2 closed on exec, exec the command.
use super::caps;
use super::channel::{Channel, StartOutcome};
use super::exec;
use super::rootfs::{self, RootfsPlan};
use anyhow::{Context, Result};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::Spec;

const SETUP_FAILED: i32 = 125;

/// Options of one run that are not part of the OCI spec.
pub struct RunOptions {
    pub rootfs: RootfsPlan,
    /// Keep the caller's stdin (-i); otherwise the container reads /dev/null.
    pub stdin: bool,
    /// A new network namespace with only lo (--network none).
    pub own_network: bool,
}

/// How the container ended.
pub enum Exit {
    /// Exit status as a shell reports it (128+N for signal N).
    Status(i32),
    /// The command could not be started: 126 or 127, and why.
    NotStarted { code: i32, message: String },
}

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

pub fn run(spec: &Spec, opts: &RunOptions) -> Result<Exit> {
    let mut waited = SigSet::empty();
    for s in FORWARDED {
        waited.add(s);
    }
    waited.add(Signal::SIGCHLD);
    waited.thread_block().context("blocking signals")?;

    let (mut parent_end, mut child_end) = Channel::pair()?;
    unshare(CloneFlags::CLONE_NEWPID).context("creating a pid namespace")?;
    // SAFETY: husk is single-threaded here (pull's threads have ended), so the child
    // may allocate and run ordinary code until it execs or exits.
    match unsafe { fork() }.context("forking the container process")? {
        ForkResult::Child => {
            drop(parent_end);
            let _ = SigSet::empty().thread_set_mask();
            let failure = match child(spec, opts) {
                Ok(never) => match never {},
                Err(f) => f,
            };
            let _ = child_end.report_container_failure(failure.0, &failure.1);
            std::process::exit(failure.0);
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            let outcome = parent_end.wait_for_exec()?;
            crate::util::trace("container process exec'd");
            match outcome {
                StartOutcome::Started => Ok(Exit::Status(forward_until_exit(child, &waited)?)),
                StartOutcome::Failed { code, message } => {
                    let _ = waitpid(child, None);
                    if code == SETUP_FAILED {
                        anyhow::bail!("{}", message);
                    }
                    Ok(Exit::NotStarted { code, message })
                }
            }
        }
    }
}

fn forward_until_exit(child: Pid, waited: &SigSet) -> Result<i32> {
    loop {
        let sig = waited.wait().context("waiting for signals")?;
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("waiting for the container"),
            }
        }
    }
}

type Failure = (i32, String);

fn setup<T>(r: Result<T>) -> std::result::Result<T, Failure> {
    r.map_err(|e| (SETUP_FAILED, format!("{:#}", e)))
}

enum Never {}

fn child(spec: &Spec, opts: &RunOptions) -> std::result::Result<Never, Failure> {
    // a. namespaces
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if opts.own_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    setup(unshare(flags).context("creating the container's namespaces"))?;
    if opts.own_network {
        setup(super::net::loopback_up())?;
    }

    // b. rootfs
    setup(rootfs::enter(spec, &opts.rootfs))?;

    // c. identity and privileges (the working directory is created first, as root, like Docker)
    let process = setup(spec.process().as_ref().context("the spec has no process"))?;
    let cwd = process.cwd();
    setup(std::fs::create_dir_all(cwd).with_context(|| format!("creating the working directory {}", cwd.display())))?;
    if let Some(h) = spec.hostname() {
        setup(nix::unistd::sethostname(h).context("setting the hostname"))?;
    }
    if !opts.stdin {
        setup(redirect_stdin_from_null())?;
    }
    let cap_names: Vec<String> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().as_ref())
        .map(|set| set.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default();
    let keep = setup(caps::limit_bounding(&cap_names))?;
    let user = process.user();
    let gids: Vec<Gid> = user.additional_gids().clone().unwrap_or_default().into_iter().map(Gid::from_raw).collect();
    setup(nix::unistd::setgroups(&gids).context("setting supplementary groups"))?;
    let (uid, gid) = (Uid::from_raw(user.uid()), Gid::from_raw(user.gid()));
    setup(nix::unistd::setresgid(gid, gid, gid).with_context(|| format!("switching to gid {} (is it mapped? see husk info)", gid)))?;
    setup(nix::unistd::setresuid(uid, uid, uid).with_context(|| format!("switching to uid {} (is it mapped? see husk info)", uid)))?;
    setup(caps::apply_after_setuid(&keep, uid.is_root()))?;

    // d. the command
    setup(nix::unistd::chdir(cwd.as_path()).with_context(|| format!("working directory {}", cwd.display())))?;
    setup(close_other_fds_on_exec())?;
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let path = exec::find(args.first().map(String::as_str).unwrap_or(""), &env).map_err(|e| (e.code, e.message))?;
    let err = exec::exec(&path, &args, &env);
    Err((err.code, err.message))
}

fn redirect_stdin_from_null() -> Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0).context("redirecting stdin")?;
    Ok(())
}

/// Marks every descriptor above 2 close-on-exec: nothing of husk's leaks into the
/// container (CVE-2024-21626 class).
fn close_other_fds_on_exec() -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context("listing descriptors")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}
