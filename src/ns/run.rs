//! The fork sequence of a container, top to bottom.
//!
//! Parent (husk, in its user namespace: root there, or about to be when the setuid map
//! tools still write its id maps):
//!
//!   1. blocks the signals it forwards, so none is lost before it waits;
//!   2. unshare(CLONE_NEWPID), fork: the child is pid 1 of the new pid namespace;
//!   3. if the map tools still run: waits for them, then tells the child;
//!   4. with --network pasta|slirp4netns, waits until the tool (started before the
//!      fork, running meanwhile) has configured the namespace and tells the child so;
//!   5. waits on the channel until the child has exec'd (channel closed) or failed;
//!   6. forwards signals to the child until it exits, and returns its status.
//!
//! Child:
//!
//!   a. new mount, UTS and IPC namespaces (and network: new for --network none, the one
//!      made beforehand and connected by pasta/slirp4netns for those modes): this needs
//!      only the capabilities the user namespace gave, so it overlaps with the map tools;
//!      then, if they still ran, the parent's word that the ids are mapped;
//!   b. rootfs: overlay, /proc, /dev, /sys, mounts, pivot_root, masked paths;
//!   c. hostname, stdin, (pasta/slirp4netns) the parent's word that the network is
//!      usable, capabilities bounding set, groups, the seccomp filter (see
//!      `seccomp::Filter` for when), user, capabilities;
//!   d. working directory, descriptors above 2 closed on exec, then (with --init) fork
//!      again so that a minimal init stays pid 1, and exec the command.
use super::caps;
use super::channel::{Channel, StartOutcome};
use super::exec;
use super::rootfs::{self, RootfsPlan};
use super::tty;
use super::userns::PendingUserNamespace;
use anyhow::{Context, Result};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::Spec;
use std::os::fd::{AsRawFd, OwnedFd};

pub(super) const SETUP_FAILED: i32 = 125;

/// Options of one run that are not part of the OCI spec.
pub struct RunOptions {
    pub rootfs: RootfsPlan,
    /// -i: the container reads the caller's stdin (in the foreground) or a pipe its
    /// monitor feeds (detached); otherwise /dev/null.
    pub stdin: bool,
    /// A new network namespace with only lo (--network none).
    pub own_network: bool,
    /// --network pasta|slirp4netns: the namespace is made first and the tool started
    /// for it before the container's process (which joins it, and waits for it before
    /// its command).
    pub net: Option<super::net::NetPlan>,
    /// --network NAME: the namespace made and connected to the network beforehand,
    /// which the container's process joins.
    pub network: Option<super::holder::Membership>,
    /// A minimal init as pid 1 that reaps zombies and forwards signals (--init).
    pub init: bool,
    /// A pseudo-terminal as the container's stdio and /dev/console (-t).
    pub tty: bool,
    /// Detached: the container's stdio are pipes (or the pty) the monitor holds,
    /// instead of husk's own.
    pub detached: bool,
    /// The cgroup (v2 directory) the container's processes go into.
    pub cgroup: Option<std::path::PathBuf>,
    /// The spec's seccomp filter, compiled before the fork (while the id maps are
    /// written, off the container's start path).
    pub seccomp: super::seccomp::Filter,
}

/// How the container ended.
pub enum Exit {
    /// Exit status as a shell reports it (128+N for signal N).
    Status(i32),
    /// The command could not be started: 126 or 127, and why.
    NotStarted { code: i32, message: String },
}

/// What `spawn` made: a running container, or the reason its command did not start.
pub enum Spawned {
    Running(Running),
    NotStarted { code: i32, message: String },
}

/// A container whose command runs, and the parent's ends of its stdio.
pub struct Running {
    /// The container's first process, as the host sees it.
    pub child: Pid,
    /// The signals this process forwards (and SIGCHLD), blocked until it waits.
    pub waited: SigSet,
    /// -t: the pty's master side.
    pub master: Option<OwnedFd>,
    /// Detached without -t: the read ends of the container's stdout and stderr.
    pub outputs: Option<[OwnedFd; 2]>,
    /// Detached with -i and without -t: the write end of the container's stdin.
    pub stdin: Option<OwnedFd>,
    /// The network tool, ended when this is dropped (after the container).
    pub net: Option<Box<super::net::NetHelper>>,
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

/// Runs the container in the foreground, with husk's stdio, to its end. `started` is
/// called with the host pid of the container's first process once it has exec'd.
/// `userns`: the user namespace the caller is in, if its id maps are still being written.
pub fn run(
    spec: &Spec,
    opts: &RunOptions,
    userns: Option<PendingUserNamespace>,
    started: &mut dyn FnMut(Pid) -> Result<()>,
) -> Result<Exit> {
    let _raw = (opts.tty && opts.stdin).then(tty::RawMode::enter);
    let r = match spawn(spec, opts, userns)? {
        Spawned::Running(r) => r,
        Spawned::NotStarted { code, message } => return Ok(Exit::NotStarted { code, message }),
    };
    if let Err(e) = started(r.child) {
        let _ = kill(r.child, Signal::SIGKILL);
        let _ = waitpid(r.child, None);
        return Err(e);
    }
    let io = Io { master: r.master.as_ref(), forward_stdin: opts.stdin };
    let code = supervise(r.child, &r.waited, io);
    drop(r.net);
    Ok(Exit::Status(code?))
}

/// Forks the container's first process and returns once its command runs (or failed
/// to start: 126/127; a setup failure is an error). `userns` as for `run`; it must be
/// None with a network tool, which needs the maps before it starts.
pub fn spawn(spec: &Spec, opts: &RunOptions, userns: Option<PendingUserNamespace>) -> Result<Spawned> {
    let mut waited = SigSet::empty();
    for s in FORWARDED {
        waited.add(s);
    }
    waited.add(Signal::SIGCHLD);
    waited.thread_block().context("blocking signals")?;

    let (mut parent_end, mut child_end) = Channel::pair()?;
    let pty = if opts.tty { Some(tty::open()?) } else { None };
    let pipes = if opts.detached && pty.is_none() { Some(StdioPipes::new(opts.stdin)?) } else { None };
    // The tool is started before the pid namespace, so that it is not in the container's.
    let (netns, mut net) = match &opts.net {
        Some(plan) => {
            let (ns, helper) = super::net::start(plan)?;
            crate::util::trace("network tool started");
            (Some(ns), Some(helper))
        }
        None => (opts.network.as_ref().map(|m| m.netns().try_clone()).transpose().context("sharing the netns")?, None),
    };
    unshare(CloneFlags::CLONE_NEWPID).context("creating a pid namespace")?;
    // SAFETY: husk is single-threaded here (pull's threads have ended), so the child
    // may allocate and run ordinary code until it execs or exits.
    match unsafe { fork() }.context("forking the container process")? {
        ForkResult::Child => {
            drop(parent_end);
            let _ = SigSet::empty().thread_set_mask();
            let slave = pty.map(|p| p.slave);
            if let Some(p) = pipes {
                if let Err(e) = p.become_stdio() {
                    let _ = child_end.report_container_failure(SETUP_FAILED, &format!("{:#}", e));
                    std::process::exit(SETUP_FAILED);
                }
            }
            std::mem::forget(net);
            let maps_pending = userns.is_some();
            std::mem::forget(userns);
            let failure = match child(spec, opts, netns.as_ref(), maps_pending, slave.as_ref(), &waited, &mut child_end)
            {
                Ok(never) => match never {},
                Err(f) => f,
            };
            let _ = child_end.report_container_failure(failure.0, &failure.1);
            std::process::exit(failure.0);
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            if let Some(userns) = userns {
                if let Err(e) = userns.finish() {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(e);
                }
                crate::util::trace("id maps written");
                // A child that already failed has said why: wait_for_exec reads it.
                let _ = parent_end.report_id_maps_written();
            }
            if let Some(Err(e)) = net.as_mut().map(|n| n.hand_over(&mut parent_end)) {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(e);
            }
            let (outputs, stdin) = match pipes.map(StdioPipes::into_parent_ends) {
                Some((outputs, stdin)) => (Some(outputs), stdin),
                None => (None, None),
            };
            let outcome = parent_end.wait_for_exec()?;
            crate::util::trace("container process exec'd");
            match outcome {
                StartOutcome::Started => {
                    drop(netns);
                    Ok(Spawned::Running(Running { child, waited, master: pty.map(|p| p.master), outputs, stdin, net }))
                }
                StartOutcome::Failed { code, message } => {
                    let _ = waitpid(child, None);
                    if code == SETUP_FAILED {
                        anyhow::bail!("{}", message);
                    }
                    Ok(Spawned::NotStarted { code, message })
                }
            }
        }
    }
}

/// What the foreground parent relays while it supervises.
pub(super) struct Io<'a> {
    /// The pty master (-t), copied to husk's stdout.
    pub master: Option<&'a OwnedFd>,
    /// -i: husk's stdin goes to the pty (without -t the container reads it directly).
    pub forward_stdin: bool,
}

/// The foreground parent's loop, single-threaded (a process that unshared its pid
/// namespace may not start threads): forwards signals, relays the pty, and returns the
/// exit status.
pub(super) fn supervise(child: Pid, waited: &SigSet, io: Io) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use std::os::fd::AsFd;
    let signals = SignalFd::with_flags(waited, SfdFlags::SFD_CLOEXEC).context("creating a signalfd")?;
    let stdin = std::io::stdin();
    let master = io.master;
    let mut master_open = master.is_some();
    let mut stdin_open = master.is_some() && io.forward_stdin;
    if let Some(m) = master {
        tty::sync_window_size(m);
    }
    loop {
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let (Some(m), true) = (master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for the container"),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().map(|r| !r.is_empty()).unwrap_or(false)).collect();
        drop(fds);
        let mut next = 1;
        if let (Some(m), true) = (master, master_open) {
            if ready[next] {
                master_open = tty::pump(m.as_fd(), std::io::stdout().as_fd());
            }
            next += 1;
        }
        if stdin_open && ready[next] {
            if let Some(m) = master {
                stdin_open = tty::pump(stdin.as_fd(), m.as_fd());
            }
        }
        if !ready[0] {
            continue;
        }
        let Some(info) = signals.read_signal().context("reading a signal")? else { continue };
        let sig = Signal::try_from(info.ssi_signo as i32).context("unknown signal")?;
        if let (Signal::SIGWINCH, Some(m)) = (sig, master) {
            // The kernel tells the container's foreground process group itself.
            tty::sync_window_size(m);
            continue;
        }
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        if let Some(code) = reap(child)? {
            if let (Some(m), true) = (master, master_open) {
                set_nonblocking(m);
                while tty::pump(m.as_fd(), std::io::stdout().as_fd()) {}
            }
            return Ok(code);
        }
    }
}

/// The exit status of `child` if it has ended (128+N for signal N), reaping it.
pub fn reap(child: Pid) -> Result<Option<i32>> {
    loop {
        return match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, s, _)) => Ok(Some(128 + s as i32)),
            Ok(WaitStatus::StillAlive) => Ok(None),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => Err(e).context("waiting for the container"),
        };
    }
}

/// After the end, what is left in a pipe or pty is read without waiting for more.
pub fn set_nonblocking(fd: &OwnedFd) {
    let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
}

/// A detached container's stdio without a pty: pipes for stdout and stderr, and for
/// stdin with -i.
struct StdioPipes {
    /// Read ends of stdout and stderr, write ends of stdout and stderr.
    out: [(OwnedFd, OwnedFd); 2],
    /// Read end, write end.
    stdin: Option<(OwnedFd, OwnedFd)>,
}

impl StdioPipes {
    fn new(stdin: bool) -> Result<StdioPipes> {
        let pipe = |what: &str| {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).with_context(|| format!("creating the {} pipe", what))
        };
        let out = [pipe("stdout")?, pipe("stderr")?];
        let stdin = if stdin { Some(pipe("stdin")?) } else { None };
        Ok(StdioPipes { out, stdin })
    }

    /// In the child: the container's ends become fds 0 (with -i), 1 and 2 (dup2 clears
    /// close-on-exec); every other end is closed.
    fn become_stdio(self) -> Result<()> {
        if let Some((r, _)) = &self.stdin {
            nix::unistd::dup2(r.as_raw_fd(), 0).context("redirecting stdin")?;
        }
        nix::unistd::dup2(self.out[0].1.as_raw_fd(), 1).context("redirecting stdout")?;
        nix::unistd::dup2(self.out[1].1.as_raw_fd(), 2).context("redirecting stderr")?;
        Ok(())
    }

    fn into_parent_ends(self) -> ([OwnedFd; 2], Option<OwnedFd>) {
        let [(out_r, _), (err_r, _)] = self.out;
        (([out_r, err_r]), self.stdin.map(|(_, w)| w))
    }
}

pub(super) type Failure = (i32, String);

/// Becomes the command's user, with its groups and its capabilities, and puts the
/// seccomp filter in at the step `seccomp::Filter` says (run and exec alike).
/// `ids` is (uid, gid, supplementary gids).
pub(super) fn switch_identity(
    process: &oci_spec::runtime::Process,
    filter: &super::seccomp::Filter,
    ids: (u32, u32, &[u32]),
    setgroups_allowed: bool,
) -> std::result::Result<(), Failure> {
    let cap_names: Vec<String> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().as_ref())
        .map(|set| set.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default();
    let keep = setup(caps::limit_bounding(&cap_names))?;
    let gids: Vec<Gid> = ids.2.iter().copied().map(Gid::from_raw).collect();
    if setgroups_allowed || !gids.is_empty() {
        setup(nix::unistd::setgroups(&gids).context("setting supplementary groups"))?;
    }
    let (uid, gid) = (Uid::from_raw(ids.0), Gid::from_raw(ids.1));
    setup(filter.before_id_switch())?;
    setup(
        nix::unistd::setresgid(gid, gid, gid)
            .with_context(|| format!("switching to gid {} (is it mapped? see husk info)", gid)),
    )?;
    setup(
        nix::unistd::setresuid(uid, uid, uid)
            .with_context(|| format!("switching to uid {} (is it mapped? see husk info)", uid)),
    )?;
    setup(caps::apply_after_setuid(&keep, uid.is_root()))
}

pub(super) fn setup<T>(r: Result<T>) -> std::result::Result<T, Failure> {
    r.map_err(|e| (SETUP_FAILED, format!("{:#}", e)))
}

pub(super) enum Never {}

fn child(
    spec: &Spec,
    opts: &RunOptions,
    netns: Option<&OwnedFd>,
    maps_pending: bool,
    pty_slave: Option<&std::os::fd::OwnedFd>,
    waited: &SigSet,
    channel: &mut Channel,
) -> std::result::Result<Never, Failure> {
    // a. cgroup (while the path still names the host's hierarchy), namespaces
    if let Some(cg) = &opts.cgroup {
        setup(
            std::fs::write(cg.join("cgroup.procs"), "0").with_context(|| format!("joining cgroup {}", cg.display())),
        )?;
    }
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if let Some(ns) = netns {
        setup(nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).context("joining the container's network namespace"))?;
    } else if opts.own_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    setup(unshare(flags).context("creating the container's namespaces"))?;
    if opts.own_network && netns.is_none() {
        setup(super::net::loopback_up())?;
    }
    crate::util::trace("child: namespaces");
    if maps_pending {
        setup(channel.wait_for_id_maps())?;
        // As the parent does once mapped: the host's supplementary groups are unmapped here.
        let _ = nix::unistd::setgroups(&[]);
    }

    // b. rootfs (with -t, /dev/console is the pty). The bind source must be the slave's
    // path: its descriptor points into the parent's mount namespace, which a bind refuses.
    let console = match pty_slave {
        Some(s) => Some(setup(tty::slave_path(s))?),
        None => None,
    };
    setup(rootfs::enter(spec, &opts.rootfs, console.as_deref()))?;
    crate::util::trace("child: rootfs entered");

    // c. identity and privileges
    let process = setup(spec.process().as_ref().context("the spec has no process"))?;
    if let Some(h) = spec.hostname() {
        setup(nix::unistd::sethostname(h).context("setting the hostname"))?;
    }
    match pty_slave {
        Some(slave) => setup(tty::become_controlling(slave))?,
        None if !opts.stdin => setup(redirect_stdin_from_null())?,
        None => {}
    }
    // (A user-defined network's namespace, also joined above, was connected before.)
    if opts.net.is_some() {
        setup(channel.wait_for_network())?;
    }
    let user = process.user();
    let gids = user.additional_gids().clone().unwrap_or_default();
    // With a single-id map setgroups(2) is denied; there are no other groups to set then.
    let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() != "deny").unwrap_or(true);
    switch_identity(process, &opts.seccomp, (user.uid(), user.gid(), &gids), setgroups_allowed)?;

    // d. the command (the working directory was created by rootfs::enter)
    let cwd = process.cwd();
    setup(nix::unistd::chdir(cwd.as_path()).with_context(|| format!("working directory {}", cwd.display())))?;
    setup(close_other_fds_on_exec())?;
    // The container dies with husk (or its monitor), even if that is killed with -9.
    // Set after the id switch, which would clear it.
    setup(nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal"))?;
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    crate::util::trace("child: identity switched");
    setup(opts.seccomp.before_exec())?;
    if opts.init {
        become_init(waited, channel)?;
    }
    let path = exec::find(args.first().map(String::as_str).unwrap_or(""), &env).map_err(|e| (e.code, e.message))?;
    let err = exec::exec(&path, &args, &env);
    Err((err.code, err.message))
}

/// --init: this process stays pid 1, forwards signals to the command (which the forked
/// process goes on to exec) and reaps every zombie; it exits with the command's status.
/// It returns only in the forked process.
fn become_init(waited: &SigSet, channel: &mut Channel) -> std::result::Result<(), Failure> {
    // Signals stay blocked across the fork so none reaches the init unhandled.
    setup(waited.thread_block().context("blocking signals in init"))?;
    // SAFETY: the container child is single-threaded; the forked process only execs
    // the command (or reports why it cannot and exits).
    match setup(unsafe { fork() }.context("forking the command under --init"))? {
        ForkResult::Child => {
            setup(SigSet::empty().thread_set_mask().context("unblocking signals"))?;
            Ok(())
        }
        ForkResult::Parent { child } => {
            // The init is a copy of husk: make /proc/1/exe and /proc/1/mem unreachable
            // from the container (CVE-2019-5736 class).
            let _ = nix::sys::prctl::set_dumpable(false);
            // Only the command's exec (or failure) may close or answer the channel.
            channel.close_in_this_process();
            let code = forward_until_exit_reaping(child, waited);
            std::process::exit(code);
        }
    }
}

/// The init's loop: like `forward_until_exit`, but it also reaps orphans.
fn forward_until_exit_reaping(child: Pid, waited: &SigSet) -> i32 {
    loop {
        let Ok(sig) = waited.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => return 128 + s as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn redirect_stdin_from_null() -> Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0).context("redirecting stdin")?;
    Ok(())
}

/// Marks every descriptor above 2 close-on-exec, so nothing of husk's reaches the
/// command (CVE-2024-21626 class). close_range(2) needs no /proc, which is the
/// container's to tamper with; /proc/self/fd is only the fallback for old kernels.
pub(super) fn close_other_fds_on_exec() -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
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
