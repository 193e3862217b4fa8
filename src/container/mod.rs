//! Containers on disk: `containers/<id>/` holds the OCI runtime config (`config.json`),
//! the state (`state.json`), the log (`log.json`), the writable layer (`upper/`,
//! `work/`); its root filesystem is mounted on the store's one `rootfs-mount/`, in the
//! container's own mount namespace. Changes of state happen under the container's lock
//! (an flock of its directory). A removed container's emptied directory may wait as
//! `containers/.spare-<n>` for the next one (`spare`).
pub mod attach;
pub mod check;
pub mod control;
pub mod copy;
pub mod launch;
pub mod limits;
pub mod log;
pub mod monitor;
pub mod netdef;
pub mod network;
pub mod process;
pub mod security;
pub mod snapshot;
pub mod spare;
pub mod spec;
pub mod user;
pub mod usernet;
pub mod volume;

use crate::layers::store::Store;
use crate::util::{atomic_replace, remove_tree, rfc3339, FileLock, LockProbe};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// The volumes the container mounts (kept from removal while it exists).
    #[serde(default)]
    pub volumes: Vec<volume::VolumeMount>,
    /// While it runs on a user-defined network: its address there.
    #[serde(default)]
    pub endpoint: Option<netdef::Endpoint>,
    /// The husk starting the container, from before its process is made until it runs
    /// (or its start failed): `rm` and `start` leave it alone meanwhile.
    #[serde(default)]
    pub starter: Option<Process>,
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
    /// Its own network namespace (every --network but host)
    pub own_network: bool,
    /// --network as given (empty in containers made before it was recorded: host or
    /// none, as own_network says)
    #[serde(default)]
    pub network: String,
    /// -p mappings, host ports chosen
    #[serde(default)]
    pub ports: Vec<network::PortMapping>,
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
    pub volumes: Vec<volume::VolumeMount>,
    /// This husk starts it right away (see `State::starter`).
    pub starting: bool,
}

pub struct Container {
    pub dir: PathBuf,
    pub state: State,
}

fn containers_dir(store: &Store) -> PathBuf {
    store.root().join("containers")
}

pub const ROOTFS_MOUNT_POINT: &str = "rootfs-mount";

/// Where every container's process mounts its root filesystem before pivot_root. Each
/// mounts it in its own mount namespace, so one empty directory serves them all and a
/// container's start and removal make one directory fewer on the disk.
pub fn rootfs_mount_point(store: &Store) -> Result<PathBuf> {
    let dir = store.root().join(ROOTFS_MOUNT_POINT);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
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
        if e.file_name().as_encoded_bytes().starts_with(b".") {
            continue; // being created or removed: not a container (yet, or any more)
        }
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

/// Reserves `name` for `id` (whose directory, being created, must already exist). A
/// reservation whose container neither exists nor is being created was left by a
/// killed husk and is taken over.
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
                    if !owner.is_empty() && name_in_use_by(store, &owner)? {
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

/// Whether container `owner` exists or is being created. The creating directory is
/// looked at first: a creation moves it to its final place, never back.
fn name_in_use_by(store: &Store, owner: &str) -> Result<bool> {
    let creating = containers_dir(store).join(format!("{}{}", CREATING, owner));
    if creating.is_dir() && creator_alive(store, owner)? {
        return Ok(true);
    }
    Ok(containers_dir(store).join(owner).is_dir())
}

/// A container is put together in `containers/.new-<id>` and appears with a rename; it
/// goes by a rename to `containers/.rm-<id>`. So a killed husk never leaves a half-made
/// or half-removed container in sight. The creating husk holds `locks/new-<id>.lock`
/// from before the directory exists until it has its final name.
const CREATING: &str = ".new-";
const REMOVING: &str = ".rm-";

fn creation_lock(store: &Store, id: &str) -> PathBuf {
    store.root().join("locks").join(format!("new-{}.lock", id))
}

/// Whether the husk creating container `id` still runs (holds its creation lock, made
/// before anything else of the container: without one there is no creator).
fn creator_alive(store: &Store, id: &str) -> Result<bool> {
    Ok(matches!(FileLock::probe(&creation_lock(store, id))?, LockProbe::Held))
}

/// Removes what killed husks left: containers half-made (their creator is gone: the
/// lock is free) and, with `removed`, half-removed ones when no husk is deleting any
/// (their files may belong to the container's users: best from inside the user
/// namespace; what cannot be deleted stays for the next time).
pub fn remove_leftovers(store: &Store, removed: bool) {
    let Ok(rd) = fs::read_dir(containers_dir(store)) else { return };
    let mut cleaner = None;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let stale = if let Some(id) = name.strip_prefix(CREATING) {
            let stale = matches!(creator_alive(store, id), Ok(false));
            if stale {
                let _ = fs::remove_file(creation_lock(store, id));
            }
            stale
        } else if removed && name.starts_with(REMOVING) {
            if cleaner.is_none() {
                cleaner = FileLock::try_exclusive(&removal_lock(store)).ok().flatten();
            }
            cleaner.is_some()
        } else {
            false
        };
        if stale {
            let _ = delete_container_files(&e.path());
        }
    }
}

/// Where a spare directory goes that is not used: among removed containers' files, which
/// the next cleaner deletes.
fn spare_aside(store: &Store) -> PathBuf {
    containers_dir(store).join(format!("{}spare-{}", REMOVING, crate::util::unique_suffix()))
}

/// Deletes the spare directories (`system prune`): each is taken as a new container
/// would take it, so no creation gets one half-deleted, and deleted as a removed
/// container's files are (one that cannot be stays for the next cleaner).
pub fn remove_spares(store: &Store) {
    let Ok(_deleting) = FileLock::shared(&removal_lock(store)) else { return };
    loop {
        let aside = spare_aside(store);
        if !spare::claim(&containers_dir(store), &aside, || spare_aside(store)) {
            return;
        }
        let _ = delete_container_files(&aside);
    }
}

/// A removed container's files, until deleted.
pub struct Removed {
    files: PathBuf,
    _deleting: FileLock,
}

impl Removed {
    /// Deletes the files (those of the container's users need the user namespace); the
    /// emptied directory may wait as a spare for the next container.
    pub fn delete_files(&self) -> Result<()> {
        let containers = self.files.parent().context("a container directory has a parent")?;
        match spare::keep(containers, &self.files) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => delete_container_files(&self.files),
        }
    }
}

/// overlayfs leaves `work/work` with mode 000: removed first so that the general tree
/// removal does not have to fail and retry.
fn delete_container_files(dir: &Path) -> Result<()> {
    let _ = fs::remove_dir(dir.join("work/work"));
    remove_tree(dir)
}

/// Shared by every husk deleting a removed container's files, exclusive for a cleaner.
fn removal_lock(store: &Store) -> PathBuf {
    store.root().join("locks/container-removal.lock")
}

fn release_name(store: &Store, name: &str, id: &str) {
    let path = names_dir(store).join(name);
    if fs::read_to_string(&path).map(|o| o == id).unwrap_or(false) {
        let _ = fs::remove_file(path);
    }
}

impl Container {
    /// Creates the container: its directory, a unique name, the files `write_files`
    /// writes (the runtime config) and the state, with `status`. It appears in the store
    /// only once complete. The caller holds the store's writers lock, so garbage
    /// collection sees the state (and keeps the layers) from the start.
    pub fn create<T>(
        store: &Store,
        new: NewContainer,
        write_files: impl FnOnce(&Container) -> Result<T>,
    ) -> Result<(Container, T)> {
        let NewContainer { name, image, image_id, layers, command, status, settings, volumes, starting } = new;
        fs::create_dir_all(names_dir(store))?;
        fs::create_dir_all(containers_dir(store))?;
        remove_leftovers(store, false);
        let id = random_id()?;
        let creating = FileLock::exclusive(&creation_lock(store, &id))?;
        let dir = containers_dir(store).join(format!("{}{}", CREATING, id));
        if !spare::claim(&containers_dir(store), &dir, || spare_aside(store)) {
            fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut c = Container { dir, state: State::default() };
        let result = (|| {
            for sub in ["upper", "work"] {
                fs::create_dir(c.dir.join(sub)).with_context(|| format!("creating {}", c.dir.join(sub).display()))?;
            }
            let name = match name {
                Some(n) => {
                    validate_name(n)?;
                    if !reserve_name(store, n, &id)? {
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
            c.state = State {
                id: id.clone(),
                name,
                image: image.to_string(),
                image_id: image_id.to_string(),
                layers,
                command,
                created: rfc3339(std::time::SystemTime::now()),
                status: status.into(),
                settings,
                volumes,
                starter: starting.then(|| process::identify(std::process::id() as i32)).flatten(),
                ..State::default()
            };
            let written = write_files(&c)?;
            c.save()?;
            let visible = containers_dir(store).join(&id);
            fs::rename(&c.dir, &visible).with_context(|| format!("creating {}", visible.display()))?;
            c.dir = visible;
            Ok(written)
        })();
        let _ = fs::remove_file(creation_lock(store, &id));
        drop(creating);
        match result {
            Ok(written) => Ok((c, written)),
            Err(e) => {
                if !c.state.name.is_empty() {
                    release_name(store, &c.state.name, &id);
                }
                let _ = remove_tree(&c.dir);
                Err(e)
            }
        }
    }

    pub fn save(&self) -> Result<()> {
        atomic_replace(&self.dir.join("state.json"), &serde_json::to_vec_pretty(&self.state)?)
    }

    pub fn short_id(&self) -> &str {
        &self.state.id[..12]
    }

    pub fn set_exited(&mut self, code: i32) -> Result<()> {
        self.state.status = "exited".into();
        self.state.starter = None;
        self.state.pid = None;
        self.state.monitor = None;
        self.state.endpoint = None;
        self.state.exit_code = Some(code);
        self.state.finished_at = Some(rfc3339(std::time::SystemTime::now()));
        self.save()
    }

    /// Removes everything of the container (call from inside the user namespace). It
    /// is gone at once (a rename); then its name is free and its files are deleted.
    /// overlayfs leaves `work/work` with mode 000: remove it first so that the general
    /// tree removal does not have to fail and retry.
    pub fn remove(self, store: &Store) -> Result<()> {
        self.remove_from_sight(store)?.delete_files()
    }

    /// The first half of `remove`: the container is gone and its name free; its files
    /// wait in the returned place for `delete_files`.
    pub fn remove_from_sight(self, store: &Store) -> Result<Removed> {
        // Held until the files are deleted, so that no cleaner takes them for leftovers.
        let deleting = FileLock::shared(&removal_lock(store))?;
        let aside = containers_dir(store).join(format!("{}{}", REMOVING, self.state.id));
        fs::rename(&self.dir, &aside).with_context(|| format!("no such container: {}", self.state.id))?;
        release_name(store, &self.state.name, &self.state.id);
        Ok(Removed { files: aside, _deleting: deleting })
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

    /// The container's lock (on its directory, which removal renames away); every
    /// change of its state happens under it.
    pub fn lock(&self) -> Result<FileLock> {
        if !self.dir.is_dir() {
            bail!("no such container: {}", self.state.id);
        }
        FileLock::directory(&self.dir).with_context(|| format!("no such container: {}", self.state.id))
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

    /// Whether a live husk is starting it (it does not run yet).
    pub fn is_starting(&self) -> bool {
        !self.is_up() && self.state.starter.is_some_and(|p| process::is_alive(&p))
    }

    /// Makes this husk the one that starts the container, under its lock; false when
    /// it runs already or another husk is starting it.
    pub fn claim_start(&mut self) -> Result<bool> {
        let _l = self.lock()?;
        self.reload()?;
        if (self.is_up() && self.live_pid().is_some()) || self.is_starting() {
            return Ok(false);
        }
        self.state.starter = process::identify(std::process::id() as i32);
        self.save()?;
        Ok(true)
    }

    /// `reap_orphan` under the container's lock, for a container found up without its
    /// monitor by a husk that lists containers: false also when another husk removed it
    /// meanwhile (a foreground `run --rm` that ended, say).
    pub fn reap_if_orphaned(&mut self) -> Result<bool> {
        let gone = |c: &Container| !c.dir.join("state.json").exists();
        let _l = match self.lock() {
            Err(_) if gone(self) => return Ok(false),
            l => l?,
        };
        match self.reload() {
            Err(_) if gone(self) => Ok(false),
            r => r.and_then(|()| self.reap_orphan()),
        }
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
