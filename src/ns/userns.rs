//! Entering a user namespace in which husk is root over the store's files, so that
//! extraction can keep image owners (mapped into the user's subordinate range),
//! create overlay whiteouts, and later remove what it created.
//!
//! Sequence (the calling process must still be single-threaded):
//! 1. fork one helper per map (uid, gid), which stay in the parent namespace;
//! 2. unshare(CLONE_NEWUSER) in the caller and tell the helpers;
//! 3. each helper becomes its setuid map tool (newuidmap/newgidmap: an exec, no further
//!    fork, so both run at once) or, as root, writes its map itself;
//! 4. the caller reaps the helpers: their exit status says whether the maps are written.
//!    `run` does its own file work between 2 and 4.
use super::channel::Channel;
use super::idmap::{find_in_path, IdMapping};
use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getpid, ForkResult, Pid};
use std::ffi::CString;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

/// Moves the calling process into a new user namespace with the user's id mapping.
pub fn enter_user_namespace() -> Result<IdMapping> {
    begin_user_namespace()?.finish()
}

/// A user namespace whose id maps are being written by helpers. Until `finish`
/// returns, the caller's ids are unmapped in it; it may still read and create files
/// (owned by the user, as before), which is how `run` overlaps its own preparation
/// with the setuid map tools.
pub struct PendingUserNamespace {
    mapping: IdMapping,
    helpers: Vec<MapHelper>,
}

/// A forked process that writes one map: it waits on its channel for the namespace to
/// exist, then execs the map tool; its stderr comes back through a pipe.
struct MapHelper {
    tool: &'static str,
    pid: Pid,
    channel: Channel,
    stderr: File,
}

/// Unshares the user namespace and starts writing its maps.
pub fn begin_user_namespace() -> Result<PendingUserNamespace> {
    let mapping = IdMapping::detect();
    ensure_single_threaded()?;
    if let IdMapping::Single { uid, gid } = mapping {
        unshare(CloneFlags::CLONE_NEWUSER)
            .context("creating a user namespace (are unprivileged user namespaces allowed?)")?;
        fs::write("/proc/self/setgroups", "deny").context("writing /proc/self/setgroups")?;
        fs::write("/proc/self/uid_map", format!("0 {} 1\n", uid)).context("writing uid_map")?;
        fs::write("/proc/self/gid_map", format!("0 {} 1\n", gid)).context("writing gid_map")?;
        return Ok(PendingUserNamespace { mapping, helpers: Vec::new() });
    }
    let target = getpid();
    let mut writers = Vec::new();
    for (tool, map, lines) in
        [("newuidmap", "uid_map", mapping.uid_lines()), ("newgidmap", "gid_map", mapping.gid_lines())]
    {
        let how = if nix::unistd::geteuid().is_root() {
            WriteMap::Directly(format!("/proc/{}/{}", target, map), lines)
        } else {
            let path = find_in_path(tool)
                .with_context(|| format!("{} not found (install the Debian package uidmap)", tool))?;
            let mut argv = vec![CString::new(path.as_os_str().as_bytes())?, CString::new(target.to_string())?];
            for (c, h, n) in lines {
                argv.extend([c, h, n].map(|v| CString::new(v.to_string()).expect("digits")));
            }
            WriteMap::Tool(argv)
        };
        writers.push((tool, how));
    }
    unshare_with_helpers(mapping, writers)
}

/// Joins `parent`, a user namespace of this user's with the user's mapping (a network
/// holder's), and unshares one nested in it with the same ids: the ids inside are
/// what they would be in husk's own namespace, and root of `parent` keeps every
/// capability over what is made inside (the container's network namespace). Root of
/// `parent` after the join, the helpers write the maps themselves.
pub fn begin_nested_user_namespace(parent: &std::os::fd::OwnedFd) -> Result<PendingUserNamespace> {
    let mapping = IdMapping::detect();
    ensure_single_threaded()?;
    nix::sched::setns(parent, CloneFlags::CLONE_NEWUSER).context("joining the network's user namespace")?;
    let target = getpid();
    let same_ids = |lines: Vec<(u32, u32, u32)>| lines.into_iter().map(|(c, _, n)| (c, c, n)).collect();
    let writers = vec![
        ("uid map", WriteMap::Directly(format!("/proc/{}/uid_map", target), same_ids(mapping.uid_lines()))),
        ("gid map", WriteMap::Directly(format!("/proc/{}/gid_map", target), same_ids(mapping.gid_lines()))),
    ];
    unshare_with_helpers(mapping, writers)
}

/// Forks one helper per map, unshares the user namespace and tells the helpers.
fn unshare_with_helpers(mapping: IdMapping, writers: Vec<(&'static str, WriteMap)>) -> Result<PendingUserNamespace> {
    let mut pending = PendingUserNamespace { mapping, helpers: Vec::new() };
    for (tool, how) in writers {
        pending.helpers.push(MapHelper::fork(tool, how)?);
    }
    unshare(CloneFlags::CLONE_NEWUSER)
        .context("creating a user namespace (are unprivileged user namespaces allowed?)")?;
    for h in &mut pending.helpers {
        h.channel.request_id_maps()?;
    }
    crate::util::trace("id-map helpers asked");
    Ok(pending)
}

/// How a helper writes its map.
enum WriteMap {
    /// Exec the setuid tool with these arguments.
    Tool(Vec<CString>),
    /// As root: write the lines to this /proc file.
    Directly(String, Vec<(u32, u32, u32)>),
}

impl MapHelper {
    fn fork(tool: &'static str, how: WriteMap) -> Result<MapHelper> {
        let (parent_end, mut helper_end) = Channel::pair()?;
        let (err_read, err_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating a pipe")?;
        // SAFETY: the process is single-threaded (checked by the caller), so the child
        // may run arbitrary code; it waits on its channel, then execs or writes and exits.
        match unsafe { fork() }.context("forking an id-map helper")? {
            ForkResult::Child => {
                drop(parent_end);
                drop(err_read);
                let _ = nix::unistd::dup2(err_write.as_raw_fd(), 2);
                if helper_end.wait_for_id_map_request().is_err() {
                    std::process::exit(1);
                }
                let error = match how {
                    WriteMap::Tool(argv) => match nix::unistd::execv(&argv[0], &argv) {
                        Err(e) => format!("running {}: {}", tool, e),
                        Ok(never) => match never {},
                    },
                    WriteMap::Directly(path, lines) => {
                        let text: String = lines.iter().map(|(c, h, n)| format!("{} {} {}\n", c, h, n)).collect();
                        match fs::write(&path, text) {
                            Ok(()) => std::process::exit(0),
                            Err(e) => format!("writing {}: {}", path, e),
                        }
                    }
                };
                eprintln!("{}", error);
                std::process::exit(1);
            }
            ForkResult::Parent { child } => {
                drop(helper_end);
                Ok(MapHelper { tool, pid: child, channel: parent_end, stderr: File::from(err_read) })
            }
        }
    }

    /// Reaps the helper; an error carries what the tool said.
    fn finish(mut self) -> Result<()> {
        drop(self.channel);
        let status = waitpid(self.pid, None).with_context(|| format!("waiting for {}", self.tool))?;
        if status == WaitStatus::Exited(self.pid, 0) {
            return Ok(());
        }
        let mut said = String::new();
        let _ = self.stderr.read_to_string(&mut said);
        bail!("{} failed: {}", self.tool, said.trim())
    }
}

impl PendingUserNamespace {
    /// The mapping being installed.
    pub fn mapping(&self) -> &IdMapping {
        &self.mapping
    }

    /// True when the maps are already written (no map tool was needed).
    pub fn is_ready(&self) -> bool {
        self.helpers.is_empty()
    }

    /// Waits until the maps are written; afterwards the caller is root in the namespace.
    pub fn finish(mut self) -> Result<IdMapping> {
        let helpers = std::mem::take(&mut self.helpers);
        if helpers.is_empty() {
            return Ok(self.mapping.clone());
        }
        let results: Vec<Result<()>> = helpers.into_iter().map(MapHelper::finish).collect();
        results.into_iter().collect::<Result<()>>()?;
        // Host supplementary groups are unmapped here; drop them so no file gets them.
        let _ = nix::unistd::setgroups(&[]);
        Ok(self.mapping.clone())
    }
}

impl Drop for PendingUserNamespace {
    fn drop(&mut self) {
        // Closing the channels first lets a helper still waiting for the request give up.
        for h in std::mem::take(&mut self.helpers) {
            drop(h.channel);
            let _ = waitpid(h.pid, None);
        }
    }
}

fn ensure_single_threaded() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let threads =
        status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse::<u32>().ok()).unwrap_or(1);
    if threads != 1 {
        bail!("internal error: entering a user namespace needs a single-threaded process ({} threads)", threads);
    }
    Ok(())
}
