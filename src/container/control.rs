//! Acting on running containers from another husk process: signals, waiting for the
//! end, stopping.
use super::{process, Container};
use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Parses a signal as Docker accepts it: `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("invalid signal: {}", s));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{}", upper) };
    name.parse::<Signal>().map_err(|_| anyhow::anyhow!("invalid signal: {}", s))
}

/// Sends `sig` to the container's first process.
pub fn signal(c: &Container, sig: Signal) -> Result<()> {
    let Some(pid) = c.live_pid().filter(|_| c.is_up()) else { bail!("container {} is not running", c.state.name) };
    kill(Pid::from_raw(pid), sig).map_err(|e| anyhow::anyhow!("signalling container {}: {}", c.state.name, e))
}

/// Waits until the container is no longer up (its monitor recorded the exit), or the
/// timeout passes; true when it ended. Orphans (monitor gone) are reaped on the way.
/// The monitor exits right after recording the end, so its exit is what is waited
/// for, through a pidfd: woken at once, no polling.
pub fn wait_until_down(c: &mut Container, timeout: Option<Duration>) -> Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if c.reload().is_err() {
            return Ok(true); // removed (--rm)
        }
        if !c.is_up() {
            return Ok(true);
        }
        let monitor = c.state.monitor.and_then(|m| Some((process::pidfd(m.pid)?, m)));
        let Some((pidfd, _)) = monitor.filter(|(_, m)| process::is_alive(m)) else {
            c.reap_if_orphaned()?;
            return Ok(true);
        };
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(false);
        }
        process::wait_for_exit(&pidfd, left)?;
    }
}

/// Waits while another husk starts the container (until it runs, or its start failed),
/// so that it can be stopped or removed as it is then.
pub fn wait_while_starting(c: &mut Container) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.is_starting() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        c.reload()?;
    }
    Ok(())
}

/// Docker's stop: the stop signal, then SIGKILL after `grace`.
pub fn stop(c: &mut Container, grace: Duration) -> Result<()> {
    if !c.is_up() {
        return Ok(());
    }
    let sig = match &c.state.settings.stop_signal {
        Some(s) => parse_signal(s)?,
        None => Signal::SIGTERM,
    };
    if c.state.status == "paused" {
        let _ = thaw(c);
    }
    let _ = signal(c, sig);
    if !wait_until_down(c, Some(grace))? {
        let _ = signal(c, Signal::SIGKILL);
        wait_until_down(c, Some(Duration::from_secs(10)))?;
    }
    Ok(())
}

/// Lets a paused container run again so that it can receive its stop signal.
fn thaw(c: &Container) -> Result<()> {
    if let Some(cg) = &c.state.cgroup {
        return crate::cgroup::ContainerCgroup::open(cg)?.thaw();
    }
    if let Some(pid) = c.live_pid() {
        for p in super::process::namespace_procs(pid)? {
            let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
        }
    }
    Ok(())
}
