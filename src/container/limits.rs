//! Resource limits of a container: checked when it is created, applied in its own
//! cgroup v2 directory each time it starts.
use crate::cgroup::{self, ContainerCgroup, Limits};
use anyhow::Result;
use std::path::PathBuf;

/// The limits from the flags as stored in the container's settings.
pub fn parse(flags: &[(String, String)]) -> Result<Limits> {
    let get = |k: &str| flags.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    let num = |k: &str| -> Result<Option<i64>> {
        get(k).map(|v| v.parse::<i64>().map_err(|_| anyhow::anyhow!("--{} {:?}: not a number", k, v))).transpose()
    };
    let shares = num("cpu-shares")?.map(|v| v.max(0) as u64);
    Limits::parse(get("memory"), get("memory-swap"), get("cpus"), shares, num("pids-limit")?)
}

/// Refuses limits that cannot be applied here (bad values, or a controller that is
/// not delegated to the user), before anything is created.
pub fn check(flags: &[(String, String)], cgroup_parent: Option<&str>) -> Result<()> {
    let limits = parse(flags)?;
    if limits.is_empty() {
        return Ok(());
    }
    let parent = cgroup::probe().parent_dir(cgroup_parent)?;
    cgroup::container::check_delegated(&parent, &limits)
}

/// The container's cgroup for this start: required with limits, otherwise made when
/// the user's cgroup is delegated (for the freezer) and skipped when it is not.
pub fn prepare(id: &str, flags: &[(String, String)], cgroup_parent: Option<&str>) -> Result<Option<PathBuf>> {
    let limits = parse(flags)?;
    let probe = cgroup::probe();
    // Without limits or an explicit parent, a cgroup is only a convenience (the freezer).
    let optional = limits.is_empty() && cgroup_parent.is_none();
    if optional && !probe.can_freeze {
        return Ok(None);
    }
    let parent = match probe.parent_dir(cgroup_parent) {
        Ok(p) => p,
        Err(_) if optional => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Ok(old) = ContainerCgroup::open(&parent.join(format!("husk-{}", id))) {
        let _ = old.remove();
    }
    match ContainerCgroup::create(&parent, id, &limits) {
        Ok(cg) => Ok(Some(cg.path)),
        Err(_) if optional => Ok(None),
        Err(e) => Err(e),
    }
}
