//! cgroup v2 for rootless containers: where the hierarchy is and what this process may
//! do in it (`probe`), limits in Docker's syntax (`Limits`) and one cgroup per
//! container (`ContainerCgroup`) for limits, pause (freezer) and statistics.
//! cgroup v1 is never used; on a hybrid host only the cgroup2 mount counts.
pub mod container;
pub mod discover;
pub mod limits;

pub use container::{ContainerCgroup, Stats};
pub use limits::Limits;

use anyhow::{bail, Context, Result};
use nix::unistd::AccessFlags;
use std::path::{Component, Path, PathBuf};

/// What this process can do with cgroup v2 here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// Where cgroup2 is mounted (`None`: cgroup v1 only, or none at all).
    pub mount: Option<PathBuf>,
    /// Our own cgroup as /proc/self/cgroup names it ("/user.slice/...").
    pub own_cgroup: Option<String>,
    /// Its directory under `mount`, when the mount shows it.
    pub own_dir: Option<PathBuf>,
    /// The own cgroup directory and its cgroup.procs are writable by us, so we can make
    /// child cgroups and move our children into them.
    pub writable: bool,
    /// The controllers of the own cgroup (its cgroup.controllers).
    pub controllers: Vec<String>,
    /// A child cgroup we create would have cgroup.freeze.
    pub can_freeze: bool,
}

/// Looks at /proc/self/mountinfo, /proc/self/cgroup and the own cgroup directory.
pub fn probe() -> Probe {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let mount = discover::parse_mountinfo(&read(Path::new("/proc/self/mountinfo")));
    let own_cgroup = discover::parse_proc_cgroup(&read(Path::new("/proc/self/cgroup")));
    let own_dir = match (&mount, &own_cgroup) {
        (Some(m), Some(c)) => discover::cgroup_dir(m, c).filter(|d| d.join("cgroup.procs").exists()),
        _ => None,
    };
    let mut p = Probe { mount: mount.map(|m| m.mount_point), own_cgroup, own_dir, ..Probe::default() };
    if let Some(dir) = &p.own_dir {
        let w = |path: &Path| nix::unistd::access(path, AccessFlags::W_OK).is_ok();
        p.writable = w(dir) && w(&dir.join("cgroup.procs"));
        p.controllers = read(&dir.join("cgroup.controllers")).split_whitespace().map(str::to_string).collect();
        // Non-root cgroups have cgroup.freeze from Linux 5.2 on; the root never has one.
        let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned());
        let is_root = !dir.join("cgroup.type").exists();
        let freezer =
            dir.join("cgroup.freeze").exists() || (is_root && kernel_at_least(&release.unwrap_or_default(), 5, 2));
        p.can_freeze = p.writable && freezer;
    }
    p
}

impl Probe {
    /// One line for `husk info`.
    pub fn describe(&self) -> String {
        let pause = if self.can_freeze { "pause uses the freezer" } else { "pause uses SIGSTOP/SIGCONT" };
        let Some(mount) = &self.mount else {
            return format!("no cgroup v2 mount (limits unavailable); {}", pause);
        };
        let Some(own) = &self.own_cgroup else {
            return format!(
                "cgroup v2 at {}, own cgroup unknown (no 0:: line in /proc/self/cgroup); {}",
                mount.display(),
                pause
            );
        };
        if self.own_dir.is_none() {
            return format!(
                "cgroup v2 at {}, own cgroup {} (not visible under the mount); {}",
                mount.display(),
                own,
                pause
            );
        }
        let controllers = if self.controllers.is_empty() { "none".to_string() } else { self.controllers.join(" ") };
        format!(
            "cgroup v2 at {}, own cgroup {} ({}; controllers: {}); {}",
            mount.display(),
            own,
            if self.writable { "writable" } else { "not writable" },
            controllers,
            pause
        )
    }

    /// The directory container cgroups go under: `cgroup_parent` (a path inside the
    /// cgroup v2 hierarchy, as `--cgroup-parent` gives it) or our own cgroup.
    pub fn parent_dir(&self, cgroup_parent: Option<&str>) -> Result<PathBuf> {
        let mount = self.mount.as_ref().context("no cgroup v2 mount on this host (see /proc/self/mountinfo)")?;
        match cgroup_parent {
            Some(p) => {
                let rel = Path::new(p.trim_start_matches('/'));
                if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                    bail!(
                        "--cgroup-parent {:?}: expected a path inside the cgroup hierarchy such as /mine/containers",
                        p
                    );
                }
                let dir = mount.join(rel);
                if !dir.join("cgroup.procs").exists() {
                    bail!("--cgroup-parent {:?}: {} is not a cgroup v2 directory", p, dir.display());
                }
                Ok(dir)
            }
            None => self
                .own_dir
                .clone()
                .with_context(|| format!("husk's own cgroup is not visible under {}", mount.display())),
        }
    }
}

/// Whether a kernel release string ("6.18.0-1-amd64") is at least `major.minor`.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(kernel_at_least("6.18.0-1-amd64", 5, 2));
        assert!(kernel_at_least("5.2.0", 5, 2));
        assert!(!kernel_at_least("5.1.21", 5, 2));
        assert!(!kernel_at_least("4.19.0-26-amd64", 5, 2));
        assert!(!kernel_at_least("", 5, 2));
    }

    fn sample() -> Probe {
        Probe {
            mount: Some("/sys/fs/cgroup/unified".into()),
            own_cgroup: Some("/x".into()),
            own_dir: Some("/sys/fs/cgroup/unified/x".into()),
            writable: true,
            controllers: vec![],
            can_freeze: true,
        }
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            sample().describe(),
            "cgroup v2 at /sys/fs/cgroup/unified, own cgroup /x (writable; controllers: none); pause uses the freezer"
        );
        let ro =
            Probe { writable: false, can_freeze: false, controllers: vec!["memory".into(), "pids".into()], ..sample() };
        assert_eq!(ro.describe(), "cgroup v2 at /sys/fs/cgroup/unified, own cgroup /x (not writable; controllers: memory pids); pause uses SIGSTOP/SIGCONT");
        assert_eq!(Probe::default().describe(), "no cgroup v2 mount (limits unavailable); pause uses SIGSTOP/SIGCONT");
    }

    #[test]
    fn parent_dirs() {
        let p = sample();
        assert_eq!(p.parent_dir(None).unwrap(), PathBuf::from("/sys/fs/cgroup/unified/x"));
        for bad in ["../etc", "/a/../../b", "./a"] {
            let e = p.parent_dir(Some(bad)).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--cgroup-parent {:?}:", bad)), "{}", e);
        }
        assert!(Probe::default().parent_dir(None).is_err());
    }

    #[test]
    fn probe_of_this_machine_is_consistent() {
        let p = probe();
        if p.own_dir.is_some() {
            assert!(p.mount.is_some());
        }
        if p.can_freeze {
            assert!(p.writable);
        }
        assert!(!p.describe().contains('\n'));
    }
}
