//! Containers on disk: `containers/<id>/` holds the OCI runtime config (`config.json`),
//! the state (`state.json`), the log (`log.json`), the writable layer (`upper/`,
//! `work/`) and the rootfs mount point. Changes of state happen under the container's
//! lock (`.lock` in its directory).
pub mod attach;
pub mod control;
pub mod launch;
pub mod limits;
pub mod log;
pub mod monitor;
pub mod process;
pub mod spec;
pub mod user;

use crate::layers::store::Store;
use crate::util::{atomic_replace, remove_tree, rfc3339, FileLock};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and its id.
    pub image: String,
    pub image_id: String,
    /// Chain ids of the layers the container runs on (kept from garbage collection).
    pub layers: Vec<String>,
    pub command: Vec<String>,
    pub created: String,
    /// created, running, paused, exited
    pub status: String,
    pub exit_code: Option<i32>,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    /// The container's first process as the host sees it, with its start time (from
    /// /proc/PID/stat) so that a reused pid is never taken for the container.
    #[serde(default)]
    pub pid: Option<Process>,
    /// The husk process that watches a detached container (or the foreground husk).
    #[serde(default)]
    pub monitor: Option<Process>,
    #[serde(default)]
    pub settings: Settings,
    /// The container's cgroup directory, when husk made one.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
}

/// A process identified beyond its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: i32,
    pub start_time: u64,
}

/// How the container runs, beyond its OCI config: what `start` needs again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    /// --rm
    pub auto_remove: bool,
    pub tty: bool,
    pub interactive: bool,
    pub init: bool,
    /// --network none
    pub own_network: bool,
    /// The image's STOPSIGNAL, if any.
    pub stop_signal: Option<String>,
    /// --cgroup-parent, relative to the cgroup2 mount.
    pub cgroup_parent: Option<String>,
    /// Resource limits as given on the command line (parsed again at each start).
    pub limits: Vec<(String, String)>,
}

/// What a new container is made of.
pub struct NewContainer<'a> {
    pub name: Option<&'a str>,
    pub image: &'a str,
    pub image_id: &'a str,
    pub layers: Vec<String>,
    pub command: Vec<String>,
    pub status: &'a str,
    pub settings: Settings,
}

pub struct Container {
    pub dir: PathBuf,
    pub state: State,
}

fn containers_dir(store: &Store) -> PathBuf {
    store.root().join("containers")
}

fn random_id() -> Result<String> {
    let mut buf = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nimble", "proud", "quiet", "sharp",
    "swift", "tidy", "witty",
];
const NOUNS: [&str; 16] = [
    "badger", "crane", "dingo", "egret", "falcon", "gecko", "heron", "ibis", "jackal", "koala", "lemur", "marten",
    "newt", "otter", "puffin", "quail",
];

fn readable_name(id: &str) -> String {
    let b = hex::decode(&id[..8]).unwrap_or_default();
    format!(
        "{}_{}{}",
        ADJECTIVES[b[0] as usize % 16],
        NOUNS[b[1] as usize % 16],
        u16::from_be_bytes([b[2], b[3]]) % 1000
    )
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name.chars().next().map(|c| c.is_ascii_alphanumeric()).unwrap_or(false)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("invalid container name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name);
    }
    Ok(())
}

/// Every container's state.
pub fn list(store: &Store) -> Result<Vec<State>> {
    Ok(all(store)?.into_iter().map(|c| c.state).collect())
}

/// Every container, each state read once.
pub fn all(store: &Store) -> Result<Vec<Container>> {
    let dir = containers_dir(store);
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        if let Ok(data) = fs::read(e.path().join("state.json")) {
            if let Ok(state) = serde_json::from_slice::<State>(&data) {
                out.push(Container { dir: e.path(), state });
            }
        }
    }
    Ok(out)
}

/// Where names are reserved: `container-names/<name>` holds the id of its container.
fn names_dir(store: &Store) -> PathBuf {
    store.root().join("container-names")
}

/// Reserves `name` for `id` (whose directory must already exist). A reservation whose
/// container directory is gone was left by a killed husk and is taken over.
fn reserve_name(store: &Store, name: &str, id: &str) -> Result<bool> {
    let path = names_dir(store).join(name);
    // The reservation appears complete or not at all: written aside, then hard-linked
    // (which fails if the name exists).
    let temp = names_dir(store).join(format!(".{}.tmp", id));
    fs::write(&temp, id).with_context(|| format!("writing {}", temp.display()))?;
    let result = (|| {
        for _ in 0..2 {
            match fs::hard_link(&temp, &path) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&path).unwrap_or_default();
                    if !owner.is_empty() && containers_dir(store).join(&owner).is_dir() {
                        return Ok(false);
                    }
                    // Left by a killed husk: only one process may judge and remove it.
                    let _l = FileLock::exclusive(&store.root().join("locks/containers.lock"))?;
                    if fs::read_to_string(&path).unwrap_or_default() == owner {
                        let _ = fs::remove_file(&path);
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("reserving the container name in {}", path.display())),
            }
        }
        Ok(false)
    })();
    let _ = fs::remove_file(&temp);
    result
}

fn release_name(store: &Store, name: &str, id: &str) {
    let path = names_dir(store).join(name);
    if fs::read_to_string(&path).map(|o| o == id).unwrap_or(false) {
        let _ = fs::remove_file(path);
    }
}

impl Container {
    /// Creates the container's directory, reserves a unique name and writes the state
    /// once, with `status`. The caller holds the store's writers lock, so garbage
    /// collection sees the state (and keeps the layers) from the start.
    pub fn create(store: &Store, new: NewContainer) -> Result<Container> {
        let NewContainer { name, image, image_id, layers, command, status, settings } = new;
        fs::create_dir_all(names_dir(store))?;
        fs::create_dir_all(containers_dir(store))?;
        let id = random_id()?;
        let dir = containers_dir(store).join(&id);
        for sub in ["upper", "work", "rootfs"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let name = match name {
            Some(n) => {
                validate_name(n)?;
                if !reserve_name(store, n, &id)? {
                    let _ = remove_tree(&dir);
                    bail!("the container name {:?} is already in use", n);
                }
                n.to_string()
            }
            None => {
                let mut n = readable_name(&id);
                while !reserve_name(store, &n, &id)? {
                    n.push('x');
                }
                n
            }
        };
        let state = State {
            id,
            name,
            image: image.to_string(),
            image_id: image_id.to_string(),
            layers,
            command,
            created: rfc3339(std::time::SystemTime::now()),
            status: status.into(),
            exit_code: None,
            finished_at: None,
            started_at: None,
            pid: None,
            monitor: None,
            settings,
            cgroup: None,
        };
        let c = Container { dir, state };
        c.save()?;
        Ok(c)
    }

    pub fn save(&self) -> Result<()> {
        atomic_replace(&self.dir.join("state.json"), &serde_json::to_vec_pretty(&self.state)?)
    }

    pub fn short_id(&self) -> &str {
        &self.state.id[..12]
    }

    pub fn set_exited(&mut self, code: i32) -> Result<()> {
        self.state.status = "exited".into();
        self.state.pid = None;
        self.state.monitor = None;
        self.state.exit_code = Some(code);
        self.state.finished_at = Some(rfc3339(std::time::SystemTime::now()));
        self.save()
    }

    /// Removes everything of the container (call from inside the user namespace).
    /// overlayfs leaves `work/work` with mode 000: remove it first so that the
    /// general tree removal does not have to fail and retry.
    pub fn remove(self, store: &Store) -> Result<()> {
        release_name(store, &self.state.name, &self.state.id);
        let _ = fs::remove_dir(self.dir.join("work/work"));
        remove_tree(&self.dir)
    }

    /// The container named by a name, a full id or a unique id prefix.
    pub fn find(store: &Store, what: &str) -> Result<Container> {
        let dir = containers_dir(store);
        let by_name = fs::read_to_string(names_dir(store).join(what)).ok().filter(|_| validate_name(what).is_ok());
        if let Some(id) = by_name.filter(|id| dir.join(id).join("state.json").is_file()) {
            return Container::load(store, &id);
        }
        if !what.is_empty() && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<String> = fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(what))
                        .collect()
                })
                .unwrap_or_default();
            match matches.len() {
                1 => return Container::load(store, &matches[0]),
                0 => {}
                _ => bail!("container id prefix {:?} is ambiguous ({} containers match)", what, matches.len()),
            }
        }
        bail!("no such container: {}", what)
    }

    pub fn load(store: &Store, id: &str) -> Result<Container> {
        let dir = containers_dir(store).join(id);
        let data = fs::read(dir.join("state.json")).with_context(|| format!("no such container: {}", id))?;
        let state = serde_json::from_slice(&data).with_context(|| format!("reading the state of container {}", id))?;
        Ok(Container { dir, state })
    }

    /// Reads the state again (another process may have changed it).
    pub fn reload(&mut self) -> Result<()> {
        let data =
            fs::read(self.dir.join("state.json")).with_context(|| format!("no such container: {}", self.state.id))?;
        self.state = serde_json::from_slice(&data)?;
        Ok(())
    }

    /// The container's lock; every change of its state happens under it.
    pub fn lock(&self) -> Result<FileLock> {
        if !self.dir.is_dir() {
            bail!("no such container: {}", self.state.id);
        }
        FileLock::exclusive(&self.dir.join(".lock"))
    }

    pub fn spec(&self) -> Result<oci_spec::runtime::Spec> {
        let data = fs::read(self.dir.join("config.json")).context("reading the container's config.json")?;
        serde_json::from_slice(&data).context("parsing the container's config.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log.json")
    }

    /// The container's first process, if it is still the one husk started.
    pub fn live_pid(&self) -> Option<i32> {
        self.state.pid.filter(process::is_alive).map(|p| p.pid)
    }

    /// Whether the status says running or paused.
    pub fn is_up(&self) -> bool {
        matches!(self.state.status.as_str(), "running" | "paused")
    }

    /// A container marked up whose monitor died (killed with -9, say) is not left
    /// "running" forever: its process is killed and it is recorded as exited (137).
    /// Call under the lock.
    pub fn reap_orphan(&mut self) -> Result<bool> {
        if !self.is_up() || self.state.monitor.map(|m| process::is_alive(&m)).unwrap_or(false) {
            return Ok(false);
        }
        if let Some(pid) = self.live_pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        self.set_exited(137)?;
        Ok(true)
    }
}
