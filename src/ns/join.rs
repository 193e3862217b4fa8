//! `husk exec`: a new process in a running container, top to bottom.
//!
//! Parent (husk, single-threaded, in the host's namespaces):
//!
//!   1. blocks the signals it forwards, so none is lost before it waits;
//!   2. opens everything it needs while it still sees the host: the container's first
//!      process as /proc/PID (its start time checked, so a reused pid is never joined)
//!      and through that directory its namespaces, the container's cgroup.procs,
//!      /dev/null, and with -t a pty of the host's devpts (as `run -t`);
//!   3. joins the namespaces: user first (it grants the capabilities the others need),
//!      then mount (root and working directory become the container's), pid (for the
//!      children to come), UTS, IPC and network; one that already is husk's own (the
//!      host's network, without --network none) is left as it is;
//!   4. forks: the child is a member of the container's pid namespace;
//!   5. waits on the channel until the child has exec'd (channel closed) or failed; with
//!      -d it returns then, otherwise it forwards signals (and relays the pty) until the
//!      child exits, and returns its status.
//!
//! Child:
//!
//!   a. non-dumpable until exec (nothing in the container may ptrace this copy of husk
//!      or open its /proc files), the container's cgroup, stdio;
//!   b. user and groups (names from the container's /etc/passwd and /etc/group), the
//!      container's seccomp filter (as `run` installs it: see `seccomp::Filter`), the
//!      container's capabilities (bounding set, then effective and permitted for root);
//!   c. working directory, environment, descriptors above 2 closed on exec, no_new_privs
//!      if the spec says so, then exec with the container's PATH.
use super::channel::{Channel, StartOutcome};
use super::exec;
use super::run::{close_other_fds_on_exec, setup, supervise, switch_identity, Exit, Failure, Io, Never, SETUP_FAILED};
use super::tty;
use crate::container::spec::set_env;
use crate::container::user::resolve as resolve_user;
use crate::container::Process;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::stat::{fstat, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::Spec;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

/// What to run in the container, and how.
pub struct ExecOptions {
    /// The container's first process (pid 1 of its pid namespace) as the host sees it.
    pub target: Process,
    /// The container's cgroup, if it has one.
    pub cgroup: Option<PathBuf>,
    /// The container has resource limits: a process outside its cgroup would escape
    /// them, so failing to join it is an error (otherwise it is only the freezer's loss).
    pub cgroup_required: bool,
    pub args: Vec<String>,
    /// KEY=VALUE, set over the container's environment (-e).
    pub env: Vec<String>,
    /// -w; otherwise the container's working directory.
    pub workdir: Option<String>,
    /// -u user[:group], resolved inside the container; otherwise the container's user.
    pub user: Option<String>,
    /// -i: stdin is husk's (otherwise /dev/null).
    pub stdin: bool,
    /// -t: a pseudo-terminal as stdio.
    pub tty: bool,
    /// -d: return once the command runs; its stdio is /dev/null.
    pub detach: bool,
}

/// The container's namespaces in the order they are joined.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
];

const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Runs `opts.args` in the running container whose config is `spec` and returns how it
/// ended (with -d: 0 as soon as it runs).
pub fn exec(spec: &Spec, opts: &ExecOptions) -> Result<Exit> {
    // 1. signals
    let mut waited = SigSet::empty();
    for s in FORWARDED {
        waited.add(s);
    }
    waited.add(Signal::SIGCHLD);
    waited.thread_block().context("blocking signals")?;

    // 2. everything from the host, before any setns
    let namespaces = open_namespaces(&opts.target)?;
    let host = HostFiles::open(opts)?;
    let (mut parent_end, mut child_end) = Channel::pair()?;
    crate::util::trace("container's namespaces opened");

    // 3. join (the descriptors are closed right after: the child never holds them)
    for (name, flag, fd) in namespaces {
        setns(&fd, flag).with_context(|| format!("joining the container's {} namespace", name))?;
    }
    crate::util::trace("container's namespaces joined");

    // 4. fork into the pid namespace
    // SAFETY: husk is single-threaded here (setns of a user namespace demands it), so the
    // child may allocate and run ordinary code until it execs or exits.
    let forked = unsafe { fork() };
    let child = match forked {
        Err(Errno::ENOMEM) => bail!("the container is not running (its pid namespace has no init any more)"),
        Err(e) => return Err(e).context("forking the process to exec"),
        Ok(ForkResult::Child) => {
            drop(parent_end);
            let failure = match child(spec, opts, host) {
                Ok(never) => match never {},
                Err(f) => f,
            };
            let _ = child_end.report_container_failure(failure.0, &failure.1);
            std::process::exit(failure.0);
        }
        Ok(ForkResult::Parent { child }) => child,
    };

    // 5. wait for the exec, then for the end
    drop(child_end);
    let master = host.into_master();
    let _raw = master.as_ref().filter(|_| opts.stdin).map(|_| tty::RawMode::enter());
    let outcome = match parent_end.wait_for_exec() {
        Ok(o) => o,
        Err(e) => {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Err(e);
        }
    };
    crate::util::trace("command exec'd in the container");
    match outcome {
        // Detached: the command goes on alone (it is in its own session; when husk exits
        // it is reparented and reaped on the host, and dies with the container).
        StartOutcome::Started if opts.detach => Ok(Exit::Status(0)),
        StartOutcome::Started => {
            let io = Io { master: master.as_ref(), forward_stdin: opts.stdin };
            Ok(Exit::Status(supervise(child, &waited, io)?))
        }
        StartOutcome::Failed { code, message } => {
            let _ = waitpid(child, None);
            if code == SETUP_FAILED {
                bail!("{}", message);
            }
            Ok(Exit::NotStarted { code, message })
        }
    }
}

/// Makes the calling (single-threaded, forked) process see the running container's
/// files as the container does: it joins the container's user and mount namespaces,
/// which makes the container's root its root and working directory. It is made
/// non-dumpable before it joins, so nothing in the container can ptrace it or open its
/// /proc files.
pub fn enter_filesystem(target: &Process) -> Result<()> {
    let namespaces = open_namespaces(target)?;
    nix::sys::prctl::set_dumpable(false).context("making the process non-dumpable")?;
    for (name, flag, fd) in namespaces {
        if flag == CloneFlags::CLONE_NEWUSER || flag == CloneFlags::CLONE_NEWNS {
            setns(&fd, flag).with_context(|| format!("joining the container's {} namespace", name))?;
        }
    }
    nix::unistd::chdir("/").context("entering the container's root")
}

/// Opens the namespaces of the container's first process, through its /proc directory:
/// that directory stays bound to the process it was opened for (a later lookup in it
/// fails once the process is gone), so checking the start time once, through it, is
/// enough to know the namespaces are the container's.
fn open_namespaces(target: &Process) -> Result<Vec<(&'static str, CloneFlags, OwnedFd)>> {
    let not_running = || format!("the container is not running (its process {} has exited)", target.pid);
    let dir = File::open(format!("/proc/{}", target.pid)).with_context(not_running)?;
    if start_time_in(&dir) != Some(target.start_time) {
        bail!("{}", not_running());
    }
    // With --init, the first process is a non-dumpable copy of husk whose namespaces
    // only root may open: they are read through the command it runs, its first child.
    let child = match open_in(&dir, "ns/user", OFlag::O_RDONLY) {
        Err(Errno::EACCES | Errno::EPERM) => Some(first_child(&dir, target.pid).with_context(not_running)?),
        _ => None,
    };
    let source = child.as_ref().unwrap_or(&dir);
    let own = File::open("/proc/self/ns").context("opening /proc/self/ns")?;
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let fd = open_in(source, &format!("ns/{}", name), OFlag::O_RDONLY).map_err(|e| match e {
            Errno::ESRCH | Errno::ENOENT => anyhow::anyhow!("{}", not_running()),
            e => anyhow::Error::from(e).context(format!("opening the container's {} namespace", name)),
        })?;
        let mine = open_in(&own, name, OFlag::O_RDONLY).with_context(|| format!("opening /proc/self/ns/{}", name))?;
        if same_inode(&fd, &mine)? {
            continue;
        }
        out.push((name, flag, fd));
    }
    // The child's namespaces are the container's only if the first process still is.
    if child.is_some() && start_time_in(&dir) != Some(target.start_time) {
        bail!("{}", not_running());
    }
    Ok(out)
}

/// The /proc directory of the oldest child of the process whose directory is `dir`,
/// checked (through that directory) to be its child.
fn first_child(dir: &File, pid: i32) -> Result<File> {
    let mut list = String::new();
    File::from(open_in(dir, &format!("task/{}/children", pid), OFlag::O_RDONLY)?).read_to_string(&mut list)?;
    let first: i32 = list.split_whitespace().next().context("it has no child")?.parse()?;
    let child = File::open(format!("/proc/{}", first))?;
    if stat_field(&child, 1).and_then(|p| p.parse::<i32>().ok()) != Some(pid) {
        bail!("its child {} has gone", first);
    }
    Ok(child)
}

fn open_in(dir: &File, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let fd = openat(Some(dir.as_raw_fd()), path, flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY, Mode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn same_inode(a: &OwnedFd, b: &OwnedFd) -> Result<bool> {
    let (x, y) = (fstat(a.as_raw_fd())?, fstat(b.as_raw_fd())?);
    Ok((x.st_dev, x.st_ino) == (y.st_dev, y.st_ino))
}

/// Field 22 of the stat file in a /proc/PID directory.
fn start_time_in(dir: &File) -> Option<u64> {
    stat_field(dir, 19)?.parse().ok()
}

/// Field `n + 3` (0-based after the command name) of the stat file in a /proc/PID directory.
fn stat_field(dir: &File, n: usize) -> Option<String> {
    let mut stat = String::new();
    File::from(open_in(dir, "stat", OFlag::O_RDONLY).ok()?).read_to_string(&mut stat).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(n).map(str::to_string)
}

/// What the child needs from the host's mount namespace, opened before joining the
/// container's.
struct HostFiles {
    /// The container's cgroup.procs, open for writing.
    cgroup_procs: Option<File>,
    /// The host's /dev/null (the container's is its own to replace).
    null: File,
    pty: Option<nix::pty::OpenptyResult>,
}

impl HostFiles {
    fn open(opts: &ExecOptions) -> Result<HostFiles> {
        let cgroup_procs = match &opts.cgroup {
            None => None,
            Some(cg) => {
                let path = cg.join("cgroup.procs");
                match std::fs::OpenOptions::new().write(true).open(&path) {
                    Ok(f) => Some(f),
                    Err(e) if opts.cgroup_required => {
                        return Err(e).with_context(|| format!("opening the container's cgroup ({})", path.display()))
                    }
                    Err(_) => None,
                }
            }
        };
        let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
        let pty = if opts.tty { Some(tty::open()?) } else { None };
        Ok(HostFiles { cgroup_procs, null, pty })
    }

    /// In the parent once the child is forked: only the pty's master stays open.
    fn into_master(self) -> Option<OwnedFd> {
        self.pty.map(|p| p.master)
    }
}

fn child(spec: &Spec, opts: &ExecOptions, host: HostFiles) -> std::result::Result<Never, Failure> {
    // a. a private copy of husk until exec; cgroup; stdio
    setup(nix::sys::prctl::set_dumpable(false).context("making the process non-dumpable"))?;
    setup(SigSet::empty().thread_set_mask().context("unblocking signals"))?;
    let HostFiles { cgroup_procs, null, pty } = host;
    if let Some(mut procs) = cgroup_procs {
        let joined = procs.write_all(b"0").context("joining the container's cgroup");
        if opts.cgroup_required {
            setup(joined)?;
        }
    }
    if opts.detach {
        setup(nix::unistd::setsid().context("setsid"))?;
        for fd in 0..3 {
            setup(nix::unistd::dup2(null.as_raw_fd(), fd).context("redirecting stdio to /dev/null"))?;
        }
    } else if let Some(p) = pty {
        drop(p.master);
        setup(tty::become_controlling(&p.slave))?;
    } else if !opts.stdin {
        setup(nix::unistd::dup2(null.as_raw_fd(), 0).context("redirecting stdin"))?;
    }
    drop(null);

    // b. identity and privileges (setns put root and cwd at the container's root)
    let process = setup(spec.process().as_ref().context("the container's config has no process"))?;
    let user = process.user();
    let (uid, gid, gids, home) = match &opts.user {
        None => (user.uid(), user.gid(), user.additional_gids().clone().unwrap_or_default(), None),
        Some(u) => {
            let passwd = read_container_file("/etc/passwd");
            let group = read_container_file("/etc/group");
            let r = setup(resolve_user(u, passwd.as_deref(), group.as_deref()))?;
            let gid_map = read_container_file("/proc/self/gid_map").unwrap_or_default();
            let uid_map = read_container_file("/proc/self/uid_map").unwrap_or_default();
            if !is_mapped(&uid_map, r.uid) || !is_mapped(&gid_map, r.gid) {
                return Err((
                    SETUP_FAILED,
                    format!(
                        "user {} (uid {}, gid {}) is not mapped in the container's user namespace; add a range to /etc/subuid and /etc/subgid",
                        u, r.uid, r.gid
                    ),
                ));
            }
            let gids = r.additional_gids.into_iter().filter(|g| is_mapped(&gid_map, *g)).collect();
            (r.uid, r.gid, gids, Some(r.home))
        }
    };
    let filter = setup(super::seccomp::Filter::of(spec))?;
    // With a single-id map setgroups(2) is denied; there are no other groups to set then.
    let setgroups_allowed = read_container_file("/proc/self/setgroups").map(|s| s.trim() != "deny").unwrap_or(true);
    switch_identity(process, &filter, (uid, gid, &gids), setgroups_allowed)?;

    // c. the command
    let cwd = match &opts.workdir {
        Some(w) => PathBuf::from(w),
        None => process.cwd().clone(),
    };
    setup(nix::unistd::chdir(cwd.as_path()).map_err(|e| {
        anyhow::anyhow!("working directory {} in the container: {}", cwd.display(), e.desc().to_lowercase())
    }))?;
    let mut env = process.env().clone().unwrap_or_default();
    if let Some(home) = home {
        set_env(&mut env, &format!("HOME={}", home));
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    for e in &opts.env {
        set_env(&mut env, e);
    }
    setup(close_other_fds_on_exec())?;
    if !opts.detach {
        // The command dies with husk, as a container does (set after the id switch,
        // which clears it).
        setup(nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal"))?;
    }
    setup(filter.before_exec())?;
    let path =
        exec::find(opts.args.first().map(String::as_str).unwrap_or(""), &env).map_err(|e| (e.code, e.message))?;
    let err = exec::exec(&path, &opts.args, &env);
    Err((err.code, err.message))
}

/// A small file of the container, read as its root sees it: a regular file only (not
/// a fifo that would block husk), at most 4 MiB.
fn read_container_file(path: &str) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// Whether `id` is inside one of the ranges of a uid_map or gid_map.
fn is_mapped(map: &str, id: u32) -> bool {
    map.lines().any(|l| {
        let f: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        f.len() == 3 && (f[0]..f[0] + f[2]).contains(&(id as u64))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps() {
        let map = "         0     200000          1\n         1     300000      65536\n";
        assert!(is_mapped(map, 0) && is_mapped(map, 1000) && is_mapped(map, 65536));
        assert!(!is_mapped(map, 65537) && !is_mapped("", 0));
    }

    #[test]
    fn env_overrides_replace_by_key() {
        let mut env = vec!["PATH=/bin".to_string(), "FOO=1".into()];
        set_env(&mut env, "FOO=bar=baz");
        assert_eq!(env, ["PATH=/bin", "FOO=bar=baz"]);
    }

    #[test]
    fn a_process_is_joined_only_with_its_start_time() {
        let me = crate::container::process::identify(std::process::id() as i32).unwrap();
        // our own namespaces: nothing to join
        assert!(open_namespaces(&me).unwrap().is_empty());
        let reused = Process { pid: me.pid, start_time: me.start_time + 1 };
        let e = open_namespaces(&reused).unwrap_err().to_string();
        assert!(e.contains("not running"), "{}", e);
    }

    #[test]
    fn start_time_of_this_process() {
        let me = File::open("/proc/self").unwrap();
        let pid = std::process::id() as i32;
        assert_eq!(start_time_in(&me), crate::container::process::start_time(pid));
    }
}
