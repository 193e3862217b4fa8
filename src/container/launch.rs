//! Starting a container that exists on disk: in the foreground (husk waits, its own
//! stdio is the container's), or detached under its own monitor (see `monitor`).
use super::network::{
    find_tool, host_default_routes, host_loopback_address, needs_dns_forward, resolv_conf, NetworkMode, Tool,
};
use super::{process, Container};
use crate::layers::store::Store;
use crate::ns::channel::{Channel, StartOutcome};
use crate::ns::net::NetPlan;
use crate::ns::rootfs::RootfsPlan;
use crate::ns::run::{run as run_container, Exit, RunOptions};
use crate::ns::userns::PendingUserNamespace;
use crate::util::rfc3339;
use anyhow::{bail, Context, Result};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::Spec;
use std::path::PathBuf;

/// The run options of a container from what is stored about it.
pub fn run_options(store: &Store, c: &Container, spec: &Spec, detached: bool) -> Result<RunOptions> {
    let lowerdirs: Vec<PathBuf> = c.state.layers.iter().map(|l| store.layer_diff(l)).collect::<Result<_>>()?;
    let top_first: Vec<PathBuf> = lowerdirs.iter().rev().cloned().collect();
    let hostname = spec.hostname().clone().unwrap_or_else(|| c.short_id().to_string());
    let s = &c.state.settings;
    let mode = settings_mode(s)?;
    let net = match &mode {
        NetworkMode::Tool { tool, host_loopback } => Some(NetPlan {
            tool: *tool,
            program: find_tool(*tool)?,
            host_loopback: *host_loopback,
            ports: s.ports.clone(),
            dns_forward: *tool == Tool::Pasta && needs_dns_forward(&host_resolv_conf()),
            default_routes: host_default_routes(),
            dir: c.dir.clone(),
        }),
        _ => None,
    };
    Ok(RunOptions {
        rootfs: RootfsPlan {
            scaffold: crate::ns::mountpoints::missing(&top_first),
            lowerdirs,
            upper: c.dir.join("upper"),
            work: c.dir.join("work"),
            target: super::rootfs_mount_point(store)?,
            etc_files: etc_files(&hostname, &mode),
            volatile: s.auto_remove,
        },
        seccomp: crate::ns::seccomp::Filter::of(spec)?,
        stdin: s.interactive,
        own_network: s.own_network,
        net,
        network: None,
        init: s.init,
        tty: s.tty,
        detached,
        cgroup: None,
    })
}

/// The network mode recorded for the container.
pub fn settings_mode(s: &super::Settings) -> Result<NetworkMode> {
    match s.network.as_str() {
        "" if s.own_network => Ok(NetworkMode::None),
        other => NetworkMode::parse(other),
    }
}

/// The mode's name as inspect and ps show it.
pub fn network_name(s: &super::Settings) -> String {
    settings_mode(s).map(|m| m.name().to_string()).unwrap_or_else(|_| "host".into())
}

fn host_resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

fn etc_files(hostname: &str, mode: &NetworkMode) -> Vec<(String, String)> {
    let mut hosts =
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n", hostname);
    if let Some(addr) = host_loopback_address(mode) {
        // Podman's name for the host (its loopback, with allow_host_loopback=true).
        hosts.push_str(&format!("{}\thost.containers.internal host.docker.internal\n", addr));
    }
    let resolv = resolv_conf(mode, &host_resolv_conf());
    let mut files = vec![
        ("/etc/hostname".into(), format!("{}\n", hostname)),
        ("/etc/hosts".into(), hosts),
        ("/etc/resolv.conf".into(), resolv),
    ];
    if let NetworkMode::Named(_) = mode {
        files.retain(|(f, _)| f != "/etc/hosts"); // the network's holder writes it (usernet)
    }
    files
}

/// Makes the container's cgroup for this start and records it (in memory: the state
/// is written when the process runs).
fn join_cgroup(c: &mut Container) -> Result<Option<PathBuf>> {
    let s = &c.state.settings;
    let cg = super::limits::prepare(&c.state.id, &s.limits, s.cgroup_parent.as_deref())?;
    c.state.cgroup = cg.clone();
    Ok(cg)
}

/// Waits for the user namespace begun before (if any).
fn enter_user_namespace(userns: Option<PendingUserNamespace>) -> Result<()> {
    userns.map_or(Ok(()), |u| u.finish().map(drop))
}

/// Records that the container's process runs, watched by `monitor`.
pub(super) fn record_started(c: &mut Container, pid: Pid, monitor: Pid) -> Result<()> {
    let cgroup = c.state.cgroup.clone();
    let _l = c.lock()?;
    c.reload()?;
    c.state.status = "running".into();
    c.state.starter = None;
    c.state.pid = process::identify(pid.as_raw());
    c.state.monitor = process::identify(monitor.as_raw());
    c.state.started_at = Some(rfc3339(std::time::SystemTime::now()));
    c.state.cgroup = cgroup;
    c.state.exit_code = None;
    c.state.finished_at = None;
    c.save()
}

/// Records the end (or removes the container, with --rm).
pub(super) fn record_exit(store: &Store, mut c: Container, code: i32) -> Result<()> {
    if let Some(cg) = c.state.cgroup.take() {
        let _ = crate::cgroup::ContainerCgroup::open(&cg).and_then(|cg| cg.remove());
    }
    let lock = c.lock()?;
    c.reload()?;
    c.state.cgroup = None;
    if c.state.settings.auto_remove {
        drop(lock);
        // As Docker's --rm: the container's anonymous volumes go with it.
        let volumes = c.state.volumes.clone();
        c.remove(store)?;
        super::volume::remove_anonymous(store, &volumes, &mut true);
        return Ok(());
    }
    c.set_exited(code)
}

/// Runs the container with husk's own stdio and returns its exit status.
pub fn foreground(store: &Store, mut c: Container, spec: &Spec, userns: Option<PendingUserNamespace>) -> Result<i32> {
    let mut opts = run_options(store, &c, spec, false)?;
    crate::util::trace("spec and files written");
    // The container's process is forked while the map tools still run (it waits for
    // them before it makes files), except with a network tool, which needs the maps, and
    // on a user-defined network, whose join makes the container's network namespace in
    // the network's user namespace. Root also waits: it makes its cgroup under a
    // root-owned directory with capabilities that hold in the new namespace only once
    // its maps exist (a user's own delegated cgroup needs none).
    let userns = match userns {
        Some(u)
            if opts.net.is_some()
                || super::usernet::network_of(&c).is_some()
                || u.is_ready()
                || u.mapping().host_uid(0) == Some(0) =>
        {
            enter_user_namespace(Some(u))?;
            None
        }
        other => other,
    };
    opts.network = match super::usernet::join(store, &mut c, spec) {
        Ok(m) => m,
        Err(e) => return record_exit(store, c, 125).and(Err(e)),
    };
    // After the join, which reloads the state (the cgroup is recorded in memory only).
    opts.cgroup = join_cgroup(&mut c)?;
    let spec = &*super::usernet::spec_for(spec, &c)?;
    let me = nix::unistd::getpid();
    let result = run_container(spec, &opts, userns, &mut |pid| record_started(&mut c, pid, me));
    let code = match &result {
        Ok(Exit::Status(c)) => *c,
        Ok(Exit::NotStarted { code, .. }) => *code,
        Err(_) => 125,
    };
    crate::util::trace("container exited");
    record_exit(store, c, code)?;
    crate::util::trace("cleaned up");
    match result.with_context(|| format!("starting container {}", spec.hostname().clone().unwrap_or_default()))? {
        Exit::Status(c) => Ok(c),
        Exit::NotStarted { code, message } => {
            eprintln!("Error: {}", message);
            Ok(code)
        }
    }
}

/// Starts the container under its own monitor and returns once its command runs.
/// Errors before that (a missing command: 126/127) come back as `Err`/the code.
pub fn detached(store: &Store, c: Container, spec: &Spec, userns: Option<PendingUserNamespace>) -> Result<i32> {
    let mut opts = run_options(store, &c, spec, true)?;
    let mut c = c;
    // Before the cgroup: root's cgroup work needs the maps (see `foreground`).
    enter_user_namespace(userns)?;
    opts.network = match super::usernet::join(store, &mut c, spec) {
        Ok(m) => m,
        Err(e) => return record_exit(store, c, 125).and(Err(e)),
    };
    // After the join, which reloads the state (the cgroup is recorded in memory only).
    opts.cgroup = join_cgroup(&mut c)?;
    let spec = &*super::usernet::spec_for(spec, &c)?;
    let (mut cli_end, mut monitor_end) = Channel::pair()?;
    // SAFETY: husk is single-threaded here (a pull's threads have ended and no lock is
    // held); the monitor runs ordinary code and leaves with process::exit.
    match unsafe { fork() }.context("forking the container's monitor")? {
        ForkResult::Child => {
            drop(cli_end);
            let code = super::monitor::run(store, c, spec, &opts, &mut monitor_end);
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(monitor_end);
            let outcome = cli_end.wait_for_monitor();
            // The monitor has left our session and lives on; the kernel's init (or a
            // subreaper) reaps it, not us.
            let _ = child;
            match outcome? {
                StartOutcome::Started => Ok(0),
                StartOutcome::Failed { code: 125, message } => bail!("{}", message),
                StartOutcome::Failed { code, message } => {
                    eprintln!("Error: {}", message);
                    Ok(code)
                }
            }
        }
    }
}
