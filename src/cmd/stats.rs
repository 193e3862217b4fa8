//! `husk stats`: CPU, memory and process counts of containers, from their cgroup when
//! they have one, otherwise summed over their processes in /proc.
use super::top::{clock_ticks, status_field, ProcStat};
use super::{Ctx, Format};
use crate::cgroup::ContainerCgroup;
use crate::container::process::namespace_procs;
use crate::container::{self, Container};
use anyhow::Result;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Container names, ids or unique id prefixes (default: all running containers)
    pub containers: Vec<String>,
    /// Print one sample and exit. This is also what happens without it: continuous
    /// updates are not supported yet
    #[arg(long)]
    pub no_stream: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// How long CPU usage is measured.
const SAMPLE: Duration = Duration::from_millis(100);

/// One reading of a running container.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu_usec: u64,
    memory: u64,
    limit: u64,
    pids: u64,
}

pub fn run(ctx: &Ctx, args: StatsArgs) -> Result<i32> {
    let store = ctx.store()?;
    let targets: Vec<Container> = if args.containers.is_empty() {
        let mut states = container::list(&store)?;
        states.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        states
            .iter()
            .filter_map(|s| Container::load(&store, &s.id).ok())
            .filter(|c| c.is_up() && c.live_pid().is_some())
            .collect()
    } else {
        args.containers.iter().map(|n| Container::find(&store, n)).collect::<Result<_>>()?
    };
    let first: Vec<Option<Usage>> = targets.iter().map(usage).collect();
    let t0 = Instant::now();
    if !targets.is_empty() {
        std::thread::sleep(SAMPLE);
    }
    let second: Vec<Option<Usage>> = targets.iter().map(usage).collect();
    let wall_usec = t0.elapsed().as_micros().max(1) as f64;

    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "NAME".into(),
        "CPU %".into(),
        "MEM USAGE / LIMIT".into(),
        "MEM %".into(),
        "PIDS".into(),
    ]];
    let mut json_rows = Vec::new();
    for ((c, a), b) in targets.iter().zip(&first).zip(&second) {
        let (cpu, mem, limit, pids) = match (a, b) {
            (Some(a), Some(b)) => {
                (b.cpu_usec.saturating_sub(a.cpu_usec) as f64 * 100.0 / wall_usec, b.memory, b.limit, b.pids)
            }
            _ => (0.0, 0, 0, 0),
        };
        let mem_perc = if limit > 0 { mem as f64 * 100.0 / limit as f64 } else { 0.0 };
        json_rows.push(json!({
            "ID": c.state.id,
            "Name": c.state.name,
            "CPUPerc": round2(cpu),
            "MemUsage": mem,
            "MemLimit": limit,
            "MemPerc": round2(mem_perc),
            "PIDs": pids,
        }));
        rows.push([
            c.short_id().to_string(),
            c.state.name.clone(),
            format!("{:.2}%", cpu),
            format!("{} / {}", binary_size(mem), binary_size(limit)),
            format!("{:.2}%", mem_perc),
            pids.to_string(),
        ]);
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json_rows)?);
    } else {
        super::images::print_table(&rows);
    }
    Ok(0)
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The container's usage now, `None` when it does not run.
fn usage(c: &Container) -> Option<Usage> {
    let pid = c.live_pid().filter(|_| c.is_up())?;
    let cg = c.state.cgroup.as_deref().and_then(|p| ContainerCgroup::open(p).ok());
    let (stats, procs) = match &cg {
        Some(cg) => (cg.stats().unwrap_or_default(), cg.procs().unwrap_or_default()),
        None => (Default::default(), namespace_procs(pid).ok()?),
    };
    let hz = clock_ticks();
    let cpu_usec = stats.cpu_usage_usec.unwrap_or_else(|| {
        procs.iter().filter_map(|p| ProcStat::read(*p)).map(|s| s.total_cpu_ticks() * 1_000_000 / hz).sum()
    });
    let memory = stats.memory_current.unwrap_or_else(|| procs.iter().filter_map(|p| kib(*p, "VmRSS:")).sum());
    let limit = stats.memory_max.or_else(mem_total).unwrap_or(0);
    let pids = stats.pids_current.unwrap_or(procs.len() as u64);
    Some(Usage { cpu_usec, memory, limit, pids })
}

/// A "Key:   1234 kB" line of /proc/PID/status, in bytes.
fn kib(pid: i32, key: &str) -> Option<u64> {
    status_field(pid, key)?.split_whitespace().next()?.parse::<u64>().ok().map(|k| k * 1024)
}

fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let v = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    v.split_whitespace().next()?.parse::<u64>().ok().map(|k| k * 1024)
}

/// Size as Docker's stats prints it (base 1024): "1.52MiB", "7.67GiB".
fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{}B", bytes)
    } else {
        format!("{:.2}{}", v, UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1536), "1.50KiB");
        assert_eq!(binary_size(8 * 1024 * 1024 * 1024), "8.00GiB");
    }
}
