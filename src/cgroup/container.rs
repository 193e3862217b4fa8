//! One container's cgroup v2 directory: created under a parent, limits written, processes
//! moved in, frozen and thawed, read for statistics, removed.
use super::discover::parse_v1_controllers;
use super::limits::Limits;
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long freeze/thaw wait for the kernel to report the new state.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `remove` retries while the last processes are still exiting.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerCgroup {
    pub path: PathBuf,
}

/// Usage figures; each is `None` where the cgroup has no such file (controller not
/// enabled) and, for `memory_max`, when there is no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub memory_current: Option<u64>,
    pub memory_max: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    pub pids_current: Option<u64>,
}

/// Fails with one line naming what is missing unless `parent` can hand down every
/// controller that `limits` need.
pub fn check_delegated(parent: &Path, limits: &Limits) -> Result<()> {
    if !parent.join("cgroup.controllers").exists() {
        bail!("{} is not a cgroup v2 directory", parent.display());
    }
    let required = limits.required_controllers();
    let available = read(&parent.join("cgroup.controllers"))?;
    let missing = missing(&required, &available);
    if !missing.is_empty() {
        bail!("{}", not_delegated(&missing, parent, &available));
    }
    Ok(())
}

impl ContainerCgroup {
    /// Creates `<parent>/husk-<id>` with `limits` written. When the limits need a
    /// controller that `parent` cannot hand down, fails with one line naming it and
    /// creates nothing; controllers available but not yet enabled for the parent's
    /// children are enabled first.
    pub fn create(parent: &Path, id: &str, limits: &Limits) -> Result<ContainerCgroup> {
        if id.is_empty() || id.starts_with('.') || !id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            bail!("invalid container id {:?} for a cgroup name", id);
        }
        check_delegated(parent, limits)?;
        enable_for_children(parent, &limits.required_controllers())?;
        let path = parent.join(format!("husk-{}", id));
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                bail!("cgroup {} already exists", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("creating cgroup {}", path.display())),
        }
        let cg = ContainerCgroup { path };
        if let Err(e) = cg.apply(limits) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// An existing cgroup directory.
    pub fn open(path: &Path) -> Result<ContainerCgroup> {
        if !path.join("cgroup.procs").exists() {
            bail!("{} is not a cgroup v2 directory (it may have been removed)", path.display());
        }
        Ok(ContainerCgroup { path: path.to_path_buf() })
    }

    /// Writes the limits' cgroup files (also to change them on a running container).
    pub fn apply(&self, limits: &Limits) -> Result<()> {
        let enabled = read(&self.path.join("cgroup.controllers"))?;
        let missing = missing(&limits.required_controllers(), &enabled);
        if !missing.is_empty() {
            let parent = self.path.parent().unwrap_or(&self.path);
            bail!(
                "the {} not enabled for {}: enable {} in {}",
                controllers_are(&missing),
                self.path.display(),
                plus_list(&missing),
                parent.join("cgroup.subtree_control").display()
            );
        }
        for (name, value) in limits.files() {
            let file = self.path.join(name);
            // Without swap accounting there is no memory.swap.max; only an explicit
            // --memory-swap needs it.
            if name == "memory.swap.max" && limits.memory_swap.is_none() && !file.exists() {
                continue;
            }
            write(&file, &value)
                .with_context(|| format!("setting {} to {} in {}", name, value, self.path.display()))?;
        }
        Ok(())
    }

    /// Moves process `pid` (and later its children) into this cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        write(&self.path.join("cgroup.procs"), &pid.to_string())
            .with_context(|| format!("moving process {} into cgroup {}", pid, self.path.display()))
    }

    pub fn procs(&self) -> Result<Vec<i32>> {
        let text = read(&self.path.join("cgroup.procs"))?;
        text.split_whitespace()
            .map(|p| p.parse().with_context(|| format!("bad pid {:?} in {}/cgroup.procs", p, self.path.display())))
            .collect()
    }

    /// Freezes every process in the cgroup and waits until the kernel reports it frozen;
    /// on time-out the cgroup is thawed again and an error returned.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    pub fn is_frozen(&self) -> Result<bool> {
        let events = read(&self.path.join("cgroup.events"))?;
        Ok(keyed(&events, "frozen") == Some("1"))
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let verb = if frozen { "freezing" } else { "thawing" };
        write(&self.path.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            .with_context(|| format!("{} cgroup {}", verb, self.path.display()))?;
        let start = Instant::now();
        while self.is_frozen()? != frozen {
            if start.elapsed() > STATE_TIMEOUT {
                if frozen {
                    let _ = write(&self.path.join("cgroup.freeze"), "0");
                }
                bail!("{} cgroup {}: not done after {} s", verb, self.path.display(), STATE_TIMEOUT.as_secs());
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<Stats> {
        if !self.path.is_dir() {
            bail!("cgroup {} does not exist", self.path.display());
        }
        let number = |name: &str| fs::read_to_string(self.path.join(name)).ok()?.trim().parse::<u64>().ok();
        let cpu_stat = fs::read_to_string(self.path.join("cpu.stat")).unwrap_or_default();
        Ok(Stats {
            memory_current: number("memory.current"),
            memory_max: number("memory.max"),
            cpu_usage_usec: keyed(&cpu_stat, "usage_usec").and_then(|v| v.parse().ok()),
            pids_current: number("pids.current"),
        })
    }

    /// Removes the cgroup and any cgroups made inside it, waiting briefly for exiting
    /// processes to leave. Already gone is fine.
    pub fn remove(&self) -> Result<()> {
        remove_tree(&self.path, Instant::now() + REMOVE_TIMEOUT)
    }
}

fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading cgroup {}", dir.display())),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path(), deadline)?;
        }
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => std::thread::sleep(POLL),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                let procs: Vec<&str> = procs.split_whitespace().collect();
                bail!("removing cgroup {}: still in use by process(es) {}", dir.display(), procs.join(" "));
            }
            Err(e) => return Err(e).with_context(|| format!("removing cgroup {}", dir.display())),
        }
    }
}

/// Enables `controllers` in `parent`'s cgroup.subtree_control where they are not yet.
fn enable_for_children(parent: &Path, controllers: &[&str]) -> Result<()> {
    let file = parent.join("cgroup.subtree_control");
    let todo = missing(controllers, &read(&file)?);
    if todo.is_empty() {
        return Ok(());
    }
    let what = format!("cannot enable the {} for cgroups under {}", controllers_word(&todo), parent.display());
    match write(&file, &plus_list(&todo)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => bail!(
            "{}: it holds processes itself, and cgroup v2 lets only a cgroup without processes pass controllers down (the no-internal-processes rule); choose an empty cgroup with --cgroup-parent",
            what
        ),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)) => {
            bail!("{}: {} is not writable by you", what, file.display())
        }
        Err(e) => bail!("{}: writing {:?} to {}: {}", what, plus_list(&todo), file.display(), e),
    }
}

/// The one-line error for controllers the parent's cgroup.controllers lacks.
fn not_delegated(missing: &[&str], parent: &Path, available: &str) -> String {
    let mut msg = format!(
        "the {} not delegated to {} (it has: {}): enable {} in the cgroup.subtree_control of the cgroup above it, or run husk under a systemd user session with Delegate=yes",
        controllers_are(missing),
        parent.display(),
        if available.trim().is_empty() { "none" } else { available.trim() },
        if missing.len() == 1 { "it" } else { "them" },
    );
    let v1 = parse_v1_controllers(&fs::read_to_string("/proc/cgroups").unwrap_or_default());
    let on_v1: Vec<&str> = missing.iter().copied().filter(|c| v1.iter().any(|v| v == c)).collect();
    if !on_v1.is_empty() {
        msg.push_str(&format!(
            "; on this host the {} {} bound to cgroup v1, which husk does not use",
            words_and(&on_v1),
            if on_v1.len() == 1 { "controller is" } else { "controllers are" }
        ));
    }
    msg
}

/// The entries of `wanted` not among the space-separated words of `have`.
fn missing<'a>(wanted: &[&'a str], have: &str) -> Vec<&'a str> {
    let have: Vec<&str> = have.split_whitespace().collect();
    wanted.iter().copied().filter(|w| !have.contains(w)).collect()
}

fn words_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

/// "memory controller" / "memory and pids controllers".
fn controllers_word(items: &[&str]) -> String {
    format!("{} controller{}", words_and(items), if items.len() == 1 { "" } else { "s" })
}

/// "memory controller is" / "memory and pids controllers are".
fn controllers_are(items: &[&str]) -> String {
    format!("{} {}", controllers_word(items), if items.len() == 1 { "is" } else { "are" })
}

/// "+memory +pids", as cgroup.subtree_control takes them.
fn plus_list(items: &[&str]) -> String {
    items.iter().map(|c| format!("+{}", c)).collect::<Vec<_>>().join(" ")
}

/// The value of `key` in a flat-keyed cgroup file ("frozen 1\n", "usage_usec 42\n").
fn keyed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')).map(str::trim)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// One write(2) of `value` to an existing cgroup file (never created).
fn write(path: &Path, value: &str) -> std::io::Result<()> {
    fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_controllers() {
        assert_eq!(missing(&["memory", "pids"], "cpuset cpu memory\n"), vec!["pids"]);
        assert_eq!(missing(&["memory"], "hugetlb\n"), vec!["memory"]);
        assert!(missing(&[], "").is_empty());
        assert_eq!(missing(&["cpu"], "cpuset"), vec!["cpu"], "whole words only");
    }

    #[test]
    fn delegation_error_is_one_line_naming_the_controllers() {
        let one = not_delegated(&["memory"], Path::new("/cg/x"), "hugetlb\n");
        assert!(
            one.starts_with("the memory controller is not delegated to /cg/x (it has: hugetlb): enable it"),
            "{}",
            one
        );
        assert!(!one.contains('\n'));
        let two = not_delegated(&["memory", "pids"], Path::new("/cg/x"), "");
        assert!(
            two.starts_with("the memory and pids controllers are not delegated to /cg/x (it has: none): enable them"),
            "{}",
            two
        );
        assert_eq!(words_and(&["memory", "cpu", "pids"]), "memory, cpu and pids");
        assert_eq!(plus_list(&["memory", "pids"]), "+memory +pids");
    }

    #[test]
    fn keyed_values() {
        assert_eq!(keyed("populated 1\nfrozen 0\n", "frozen"), Some("0"));
        assert_eq!(keyed("usage_usec 1234\nuser_usec 1000\n", "usage_usec"), Some("1234"));
        assert_eq!(keyed("usage_usec_x 1\n", "usage_usec"), None);
        assert_eq!(keyed("", "frozen"), None);
    }

    #[test]
    fn bad_ids_are_refused_before_anything_is_touched() {
        for id in ["", "../x", "a/b", ".hidden", "a b"] {
            let e = ContainerCgroup::create(Path::new("/nonexistent"), id, &Limits::default()).unwrap_err();
            assert!(e.to_string().starts_with("invalid container id"), "{}", e);
        }
    }

    #[test]
    fn remove_of_a_missing_cgroup_is_fine() {
        let cg = ContainerCgroup { path: PathBuf::from("/nonexistent/husk-x") };
        cg.remove().unwrap();
        assert!(ContainerCgroup::open(&cg.path).is_err());
    }
}
