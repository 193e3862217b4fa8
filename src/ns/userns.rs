//! Entering a user namespace in which husk is root over the store's files, so that
//! extraction can keep image owners (mapped into the user's subordinate range),
//! create overlay whiteouts, and later remove what it created.
//!
//! Sequence (the calling process must still be single-threaded):
//! 1. fork a helper that stays in the parent namespace;
//! 2. unshare(CLONE_NEWUSER) in the caller and tell the helper;
//! 3. the helper writes the caller's uid/gid maps (newuidmap/newgidmap, or directly as root);
//! 4. the caller waits for the helper's answer and reaps it; `run` does its own file
//!    work between 2 and 4.
use super::channel::Channel;
use super::idmap::{find_in_path, IdMapping};
use anyhow::{bail, Context, Result};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getpid, ForkResult, Pid};
use std::fs;
use std::process::Command;

/// Moves the calling process into a new user namespace with the user's id mapping.
pub fn enter_user_namespace() -> Result<IdMapping> {
    begin_user_namespace()?.finish()
}

/// A user namespace whose id maps are being written by a helper. Until `finish`
/// returns, the caller's ids are unmapped in it; it may still read and create files
/// (owned by the user, as before), which is how `run` overlaps its own preparation
/// with the setuid map tools.
pub struct PendingUserNamespace {
    mapping: IdMapping,
    helper: Option<(Pid, Channel)>,
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
        return Ok(PendingUserNamespace { mapping, helper: None });
    }

    let target = getpid();
    let (parent_end, mut helper_end) = Channel::pair()?;
    // SAFETY: the process is single-threaded (checked above), so the child may run
    // arbitrary code; it only talks on its channel end, runs the map helpers and exits.
    match unsafe { fork() }.context("forking the id-map helper")? {
        ForkResult::Child => {
            drop(parent_end);
            let code = match run_id_map_helper(&mut helper_end, target, &mapping) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(helper_end);
            let mut pending = PendingUserNamespace { mapping, helper: Some((child, parent_end)) };
            let channel = &mut pending.helper.as_mut().expect("just set").1;
            unshare(CloneFlags::CLONE_NEWUSER)
                .context("creating a user namespace (are unprivileged user namespaces allowed?)")?;
            channel.request_id_maps()?;
            Ok(pending)
        }
    }
}

impl PendingUserNamespace {
    /// The mapping being installed.
    pub fn mapping(&self) -> &IdMapping {
        &self.mapping
    }

    /// Waits until the maps are written; afterwards the caller is root in the namespace.
    pub fn finish(mut self) -> Result<IdMapping> {
        if let Some((child, mut channel)) = self.helper.take() {
            let result = channel.wait_for_id_maps();
            drop(channel);
            let _ = waitpid(child, None);
            result?;
            // Host supplementary groups are unmapped here; drop them so no file gets them.
            let _ = nix::unistd::setgroups(&[]);
        }
        Ok(self.mapping.clone())
    }
}

impl Drop for PendingUserNamespace {
    fn drop(&mut self) {
        // Closing our end first lets a helper still waiting for the request give up.
        if let Some((child, channel)) = self.helper.take() {
            drop(channel);
            let _ = waitpid(child, None);
        }
    }
}

fn run_id_map_helper(channel: &mut Channel, target: Pid, mapping: &IdMapping) -> Result<()> {
    channel.wait_for_id_map_request()?;
    let result = write_maps(target, mapping).map_err(|e| format!("{:#}", e));
    channel.report_id_maps(result)
}

fn write_maps(target: Pid, mapping: &IdMapping) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        let fmt = |lines: Vec<(u32, u32, u32)>| {
            lines.iter().map(|(c, h, n)| format!("{} {} {}\n", c, h, n)).collect::<String>()
        };
        fs::write(format!("/proc/{}/uid_map", target), fmt(mapping.uid_lines())).context("writing uid_map")?;
        fs::write(format!("/proc/{}/gid_map", target), fmt(mapping.gid_lines())).context("writing gid_map")?;
        return Ok(());
    }
    // The two setuid helpers are independent: run them at the same time.
    let uid = spawn_map_tool("newuidmap", target, &mapping.uid_lines())?;
    let gid = spawn_map_tool("newgidmap", target, &mapping.gid_lines())?;
    let (u, g) = (finish_map_tool("newuidmap", uid), finish_map_tool("newgidmap", gid));
    u.and(g)
}

fn spawn_map_tool(tool: &str, target: Pid, lines: &[(u32, u32, u32)]) -> Result<std::process::Child> {
    let path = find_in_path(tool).with_context(|| format!("{} not found (install the Debian package uidmap)", tool))?;
    let mut cmd = Command::new(path);
    cmd.arg(target.to_string());
    for (c, h, n) in lines {
        cmd.args([c.to_string(), h.to_string(), n.to_string()]);
    }
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    cmd.spawn().with_context(|| format!("running {}", tool))
}

fn finish_map_tool(tool: &str, child: std::process::Child) -> Result<()> {
    let out = child.wait_with_output().with_context(|| format!("waiting for {}", tool))?;
    if !out.status.success() {
        bail!("{} failed: {}", tool, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
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
