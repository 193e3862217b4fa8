//! Containers on disk: `containers/<id>/` holds the OCI runtime config, the state, the
//! writable layer (`upper/`, `work/`), the rootfs mount point and generated /etc files.
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
    /// created, running, exited
    pub status: String,
    pub exit_code: Option<i32>,
    pub finished_at: Option<String>,
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
    let dir = containers_dir(store);
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        if let Ok(data) = fs::read(e.path().join("state.json")) {
            if let Ok(s) = serde_json::from_slice::<State>(&data) {
                out.push(s);
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
    pub fn create(
        store: &Store,
        name: Option<&str>,
        image: &str,
        image_id: &str,
        layers: Vec<String>,
        command: Vec<String>,
        status: &str,
    ) -> Result<Container> {
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
}
