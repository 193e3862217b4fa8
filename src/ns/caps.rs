//! Capabilities: Docker's default set, --cap-add/--cap-drop, and applying them.
use anyhow::{bail, Context, Result};
use caps::{CapSet, Capability, CapsHashSet};

/// The 14 capabilities Docker grants by default.
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

fn parse_cap(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{}", upper) };
    full.parse::<Capability>().map_err(|_| anyhow::anyhow!("unknown capability {:?}", name))
}

/// The default set with `add` and `drop` applied (`ALL` allowed in both), as names.
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let mut set: CapsHashSet = DOCKER_DEFAULT.iter().copied().collect();
    if drop.iter().any(|d| d.eq_ignore_ascii_case("all")) {
        set.clear();
    }
    for d in drop.iter().filter(|d| !d.eq_ignore_ascii_case("all")) {
        set.remove(&parse_cap(d)?);
    }
    if add.iter().any(|a| a.eq_ignore_ascii_case("all")) {
        set.extend(caps::all());
    }
    for a in add.iter().filter(|a| !a.eq_ignore_ascii_case("all")) {
        set.insert(parse_cap(a)?);
    }
    let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    names.sort();
    Ok(names)
}

/// --privileged: every capability this kernel has (the user namespace grants them all
/// within it), less `drop`.
pub fn privileged(drop: &[String]) -> Result<Vec<String>> {
    let mut set = caps::runtime::thread_all_supported();
    if drop.iter().any(|d| d.eq_ignore_ascii_case("all")) {
        set.clear();
    }
    for d in drop.iter().filter(|d| !d.eq_ignore_ascii_case("all")) {
        set.remove(&parse_cap(d)?);
    }
    let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    names.sort();
    Ok(names)
}

/// Limits the bounding set to `names`; the other sets are set by `apply_after_setuid`.
pub fn limit_bounding(names: &[String]) -> Result<CapsHashSet> {
    let mut keep = CapsHashSet::new();
    for n in names {
        keep.insert(parse_cap(n)?);
    }
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {} from the bounding set", cap))?;
        }
    }
    Ok(keep)
}

/// Root keeps `keep` as effective and permitted; everyone gets empty inheritable and
/// ambient sets. (A non-root uid lost its capabilities in setresuid already.)
pub fn apply_after_setuid(keep: &CapsHashSet, is_root: bool) -> Result<()> {
    caps::clear(None, CapSet::Ambient).context("clearing ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clearing inheritable capabilities")?;
    if is_root {
        caps::set(None, CapSet::Effective, keep).context("setting effective capabilities")?;
        caps::set(None, CapSet::Permitted, keep).context("setting permitted capabilities")?;
    } else if !caps::read(None, CapSet::Permitted)?.is_empty() {
        bail!("capabilities survived the switch to a non-root user");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn add_and_drop_apply_to_dockers_defaults() {
        let d = resolve(&[], &[]).unwrap();
        assert_eq!(d.len(), 14);
        let v = resolve(&["sys_admin".into()], &["NET_RAW".into(), "CAP_MKNOD".into()]).unwrap();
        assert!(v.contains(&"CAP_SYS_ADMIN".to_string()) && !v.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(v.len(), 13);
        assert_eq!(resolve(&["CHOWN".into()], &["ALL".into()]).unwrap(), vec!["CAP_CHOWN".to_string()]);
        assert!(resolve(&["NOPE".into()], &[]).is_err());
    }
}
