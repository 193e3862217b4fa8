//! Host processes of containers: identity beyond the pid, liveness.
use super::Process;
use anyhow::{bail, Context, Result};
use std::fs;

/// The start time of `pid` (clock ticks after boot, field 22 of /proc/PID/stat).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// `pid` with its start time, as it is now.
pub fn identify(pid: i32) -> Option<Process> {
    start_time(pid).map(|start_time| Process { pid, start_time })
}

/// Whether the process still runs (and is not a zombie) and is the same one.
pub fn is_alive(p: &Process) -> bool {
    if start_time(p.pid) != Some(p.start_time) {
        return false;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
    !status.lines().any(|l| l.starts_with("State:") && (l.contains("Z (zombie)") || l.contains("X (dead)")))
}

/// The host pids of every process in the pid namespace of `pid` (the container's first
/// process), found by comparing /proc/PID/ns/pid links. Refuses a process in husk's own
/// pid namespace: that would be every process of the host.
pub fn namespace_procs(pid: i32) -> Result<Vec<i32>> {
    let link = |p: &str| fs::read_link(format!("/proc/{}/ns/pid", p));
    let target = link(&pid.to_string())
        .with_context(|| format!("reading the pid namespace of the container's process {}", pid))?;
    if link("self").map(|own| own == target).unwrap_or(false) {
        bail!("process {} is not in a pid namespace of its own", pid);
    }
    let mut out: Vec<i32> = fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| link(&p.to_string()).map(|l| l == target).unwrap_or(false))
        .collect();
    if !out.contains(&pid) {
        out.push(pid);
    }
    out.sort_unstable();
    Ok(out)
}

/// A pidfd for `pid`: it stays bound to that process (check its identity after
/// opening), and polls readable once the process has exited.
pub fn pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a descriptor nothing else owns.
    (fd >= 0).then(|| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// Waits until the process of `pidfd` exits or `timeout` passes.
pub fn wait_for_exit(pidfd: &std::os::fd::OwnedFd, timeout: Option<std::time::Duration>) -> anyhow::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().clamp(1, i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX),
    };
    match poll(&mut [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)], timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = identify(std::process::id() as i32).expect("own stat");
        assert!(is_alive(&me));
        assert!(!is_alive(&Process { pid: me.pid, start_time: me.start_time + 1 }));
    }

    #[test]
    fn own_pid_namespace_is_refused() {
        let e = namespace_procs(std::process::id() as i32).unwrap_err();
        assert!(e.to_string().contains("not in a pid namespace of its own"), "{}", e);
    }
}
