//! `husk top`: the processes of a running container, as `ps -ef` shows them. Also the
//! host-side view of a container's processes that pause and stats use.
use super::Ctx;
use crate::container::process::namespace_procs;
use crate::container::Container;
use anyhow::{bail, Result};
use std::fs;

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// Container name, id or unique id prefix
    pub container: String,
    /// ps options (accepted for compatibility and ignored: the columns are those of `ps -ef`)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_options: Vec<String>,
}

pub fn run(ctx: &Ctx, args: TopArgs) -> Result<i32> {
    let store = ctx.store()?;
    let c = Container::find(&store, &args.container)?;
    let Some(pid) = c.live_pid().filter(|_| c.is_up()) else {
        bail!("container {} is not running", args.container);
    };
    let hz = clock_ticks();
    let btime = boot_time();
    let uptime = uptime_secs();
    let mut rows = vec![[
        "UID".to_string(),
        "PID".into(),
        "PPID".into(),
        "C".into(),
        "STIME".into(),
        "TTY".into(),
        "TIME".into(),
        "CMD".into(),
    ]];
    for p in namespace_procs(pid)? {
        let Some(st) = ProcStat::read(p) else { continue };
        let uid = status_field(p, "Uid:").and_then(|v| v.split_whitespace().nth(1).map(str::to_string));
        let started = st.start_ticks as f64 / hz as f64;
        let elapsed = (uptime - started).max(0.0);
        let cpu = st.cpu_ticks() as f64 / hz as f64;
        let c = if elapsed > 0.0 { (cpu * 100.0 / elapsed) as u64 } else { 0 };
        rows.push([
            uid.unwrap_or_else(|| "?".into()),
            p.to_string(),
            st.ppid.to_string(),
            c.to_string(),
            stime(btime + st.start_ticks / hz),
            tty_name(st.tty_nr),
            cpu_time(st.cpu_ticks() / hz),
            command_line(p).unwrap_or_else(|| format!("[{}]", st.comm)),
        ]);
    }
    super::images::print_table(&rows);
    Ok(0)
}

/// The fields of /proc/PID/stat that husk uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub tty_nr: u32,
    pub utime: u64,
    pub stime: u64,
    /// CPU time of waited-for children (which no longer show up themselves).
    pub cutime: u64,
    pub cstime: u64,
    /// Clock ticks after boot.
    pub start_ticks: u64,
}

impl ProcStat {
    pub fn read(pid: i32) -> Option<ProcStat> {
        ProcStat::parse(&fs::read_to_string(format!("/proc/{}/stat", pid)).ok()?)
    }

    pub fn parse(stat: &str) -> Option<ProcStat> {
        // The command name may contain spaces and parentheses: it ends at the last ')'.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let f: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
        // f[0] is field 3 (state).
        Some(ProcStat {
            comm,
            state: f.first()?.chars().next()?,
            ppid: f.get(1)?.parse().ok()?,
            tty_nr: f.get(4)?.parse::<i64>().ok()? as u32,
            utime: f.get(11)?.parse().ok()?,
            stime: f.get(12)?.parse().ok()?,
            cutime: f.get(13)?.parse().ok()?,
            cstime: f.get(14)?.parse().ok()?,
            start_ticks: f.get(19)?.parse().ok()?,
        })
    }

    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }

    /// Own CPU time and that of the children it has waited for.
    pub fn total_cpu_ticks(&self) -> u64 {
        self.cpu_ticks() + self.cutime + self.cstime
    }
}

/// The value of a "Key:" line of /proc/PID/status.
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{}/status", pid)).ok()?;
    status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string())
}

pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn boot_time() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok()).unwrap_or(0)
}

fn uptime_secs() -> f64 {
    let up = fs::read_to_string("/proc/uptime").unwrap_or_default();
    up.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn command_line(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{}/cmdline", pid)).ok()?;
    let words: Vec<String> =
        raw.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    if words.is_empty() {
        None
    } else {
        Some(words.join(" "))
    }
}

/// "?" or "pts/N" (Unix98 ptys have majors 136-143), as ps shows the controlling tty.
fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{}", minor),
        _ => "?".into(),
    }
}

/// Cumulative CPU time as ps prints it: [DD-]HH:MM:SS.
fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{}-{:02}:{:02}:{:02}", d, h, m, s)
    } else {
        format!("{:02}:{:02}:{:02}", h, m, s)
    }
}

/// Start time as ps prints it: HH:MM today, "Mon DD" before.
fn stime(epoch: u64) -> String {
    let local = |t: libc::time_t| {
        // SAFETY: localtime_r writes only into the tm we pass.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        unsafe { libc::localtime_r(&t, &mut tm) };
        tm
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (then, today) = (local(epoch as libc::time_t), local(now as libc::time_t));
    if (then.tm_year, then.tm_yday) == (today.tm_year, today.tm_yday) {
        format!("{:02}:{:02}", then.tm_hour, then.tm_min)
    } else {
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        format!("{}{:02}", MONTHS[then.tm_mon.clamp(0, 11) as usize], then.tm_mday)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        let line =
            "42 (a (b) c) S 7 42 42 34816 42 4194560 100 0 0 0 15 5 3 4 20 0 1 0 12345 1000 10 18446744073709551615";
        let st = ProcStat::parse(line).unwrap();
        assert_eq!(st.comm, "a (b) c");
        assert_eq!((st.state, st.ppid, st.utime, st.stime, st.start_ticks), ('S', 7, 15, 5, 12345));
        assert_eq!(st.total_cpu_ticks(), 27);
        assert_eq!(tty_name(st.tty_nr), "pts/0");
        assert!(ProcStat::parse("garbage").is_none());
    }

    #[test]
    fn ps_formats() {
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3661), "01:01:01");
        assert_eq!(cpu_time(90061), "1-01:01:01");
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 5), "pts/5");
    }
}
