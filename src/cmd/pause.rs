//! `husk pause` / `husk unpause`: with the container's cgroup, the cgroup v2 freezer;
//! without one, SIGSTOP / SIGCONT to every process of the container's pid namespace
//! (sent from the host, so its pid 1 stops too).
use super::top::ProcStat;
use super::Ctx;
use crate::cgroup::ContainerCgroup;
use crate::container::process::namespace_procs;
use crate::container::Container;
use crate::layers::store::Store;
use anyhow::{bail, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[derive(clap::Args, Debug)]
pub struct PauseArgs {
    /// Container names, ids or unique id prefixes
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct UnpauseArgs {
    /// Container names, ids or unique id prefixes
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// How pause works on this host, for `husk info`.
pub fn pause_method() -> &'static str {
    if crate::cgroup::probe().can_freeze {
        "cgroup freezer"
    } else {
        "SIGSTOP/SIGCONT"
    }
}

pub fn pause(ctx: &Ctx, args: PauseArgs) -> Result<i32> {
    let store = ctx.store()?;
    super::each(&args.containers, |name| set_paused(&store, name, true))
}

pub fn unpause(ctx: &Ctx, args: UnpauseArgs) -> Result<i32> {
    let store = ctx.store()?;
    super::each(&args.containers, |name| set_paused(&store, name, false))
}

pub(crate) fn set_paused(store: &Store, name: &str, pause: bool) -> Result<()> {
    let mut c = Container::find(store, name)?;
    let _l = c.lock()?;
    c.reload()?;
    c.reap_orphan()?;
    let (want, next) = if pause { ("running", "paused") } else { ("paused", "running") };
    if c.state.status != want {
        bail!("container {} is {}", name, if pause { "not running" } else { "not paused" });
    }
    let Some(pid) = c.live_pid() else {
        bail!("container {} is not running", name);
    };
    match &c.state.cgroup {
        Some(path) => {
            let cg = ContainerCgroup::open(path)?;
            if pause {
                cg.freeze()?
            } else {
                cg.thaw()?
            }
        }
        None if pause => stop_all(pid)?,
        None => {
            for p in namespace_procs(pid)? {
                let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
            }
        }
    }
    c.state.status = next.into();
    c.save()
}

/// SIGSTOPs every process of the pid namespace of `pid`, again until no process is
/// left running (one forked meanwhile would otherwise escape).
fn stop_all(pid: i32) -> Result<()> {
    let stopped = |p: i32| ProcStat::read(p).map(|s| matches!(s.state, 'T' | 't' | 'Z' | 'X')).unwrap_or(true);
    for _ in 0..50 {
        let running: Vec<i32> = namespace_procs(pid)?.into_iter().filter(|p| !stopped(*p)).collect();
        if running.is_empty() {
            return Ok(());
        }
        for p in running {
            let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Leave nothing half stopped.
    for p in namespace_procs(pid)? {
        let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
    }
    bail!("could not stop every process of the container (it keeps starting new ones)")
}
