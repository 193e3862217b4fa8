//! Host processes of containers: identity beyond the pid, liveness.
use super::Process;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = identify(std::process::id() as i32).expect("own stat");
        assert!(is_alive(&me));
        assert!(!is_alive(&Process { pid: me.pid, start_time: me.start_time + 1 }));
    }
}

/// Host pids of every process in the pid namespace of `pid` (itself included).
pub fn in_same_pid_namespace(pid: i32) -> Vec<i32> {
    let ns = |p: i32| std::fs::read_link(format!("/proc/{}/ns/pid", p)).ok();
    let Some(target) = ns(pid) else { return Vec::new() };
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| ns(*p).as_ref() == Some(&target))
        .collect()
}
