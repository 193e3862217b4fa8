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
