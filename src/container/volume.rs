//! Volumes: `volumes/<name>/_data` is what containers see (bound in as the mount
//! source itself), `volumes/<name>/volume.json` its metadata. A volume appears complete
//! or not at all (assembled in `volumes/.new-*`, then renamed) and goes by a rename to
//! `volumes/.rm-*` before its files are deleted.
//!
//! Locking: `locks/volumes.lock` is held shared by every husk that creates volumes or
//! makes a container using them (until the container's state, which records its
//! volumes, is in place), and exclusively by whoever removes volumes (after checking
//! that no container uses them). So a volume is never removed under a container being
//! created with it.
use crate::layers::merge::{is_opaque, merge_into};
use crate::layers::store::Store;
use crate::util::{
    atomic_replace, half_done_entries, locked_half_done_entries, remove_tree, rfc3339, unique_suffix, FileLock,
};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{renameat2, OFlag, RenameFlags};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// A volume a container mounts, as recorded in its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub name: String,
    pub destination: String,
    /// Made for this container (image VOLUME, `-v /path`): `rm -v` and `--rm` remove it.
    pub anonymous: bool,
}

/// `volume.json`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub anonymous: bool,
}

pub struct Volume {
    pub name: String,
    pub dir: PathBuf,
    pub meta: Meta,
}

impl Volume {
    /// The directory containers see.
    pub fn data(&self) -> PathBuf {
        self.dir.join(DATA)
    }
}

const DATA: &str = "_data";
const META: &str = "volume.json";
const CREATING: &str = ".new-";
const REMOVING: &str = ".rm-";

pub fn volumes_dir(store: &Store) -> PathBuf {
    store.root().join("volumes")
}

fn lock_path(store: &Store) -> PathBuf {
    store.root().join("locks/volumes.lock")
}

/// Held while creating volumes or containers that use them.
pub fn lock_shared(store: &Store) -> Result<FileLock> {
    FileLock::shared(&lock_path(store))
}

/// The shared lock when a new container will use volumes (asked for, or the image's).
pub fn lock_if_used(store: &Store, requests: &[MountRequest], image_volumes: &[String]) -> Result<Option<FileLock>> {
    let used = !image_volumes.is_empty() || requests.iter().any(|r| matches!(r, MountRequest::Volume { .. }));
    used.then(|| lock_shared(store)).transpose()
}

/// Held while removing volumes.
pub fn lock_exclusive(store: &Store) -> Result<FileLock> {
    FileLock::exclusive(&lock_path(store))
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name.chars().next().map(|c| c.is_ascii_alphanumeric()).unwrap_or(false)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("invalid volume name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at least 2 characters)", name);
    }
    Ok(())
}

/// A name for an anonymous volume: 64 random hex digits, as Docker's.
pub fn random_name() -> Result<String> {
    let mut buf = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

/// The volume `name`, if it exists.
pub fn load(store: &Store, name: &str) -> Result<Volume> {
    validate_name(name)?;
    let dir = volumes_dir(store).join(name);
    let data = fs::read(dir.join(META)).with_context(|| format!("no such volume: {}", name))?;
    let meta = serde_json::from_slice(&data).with_context(|| format!("reading the metadata of volume {}", name))?;
    Ok(Volume { name: name.to_string(), dir, meta })
}

/// Every volume, sorted by name.
pub fn list(store: &Store) -> Result<Vec<Volume>> {
    Ok(crate::util::visible_entries(&volumes_dir(store)).iter().filter_map(|n| load(store, n).ok()).collect())
}

/// Creates volume `name` unless it exists (call with a volumes lock held). Returns it
/// and whether this call made it.
pub fn create(store: &Store, name: &str, anonymous: bool) -> Result<(Volume, bool)> {
    validate_name(name)?;
    if let Ok(v) = load(store, name) {
        return Ok((v, false));
    }
    let dir = volumes_dir(store);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let temp = dir.join(format!("{}{}", CREATING, unique_suffix()));
    let made = (|| -> Result<bool> {
        fs::create_dir(&temp)?;
        fs::create_dir(temp.join(DATA))?;
        fs::set_permissions(temp.join(DATA), fs::Permissions::from_mode(0o755))?;
        let meta = Meta { created: rfc3339(std::time::SystemTime::now()), labels: BTreeMap::new(), anonymous };
        atomic_replace(&temp.join(META), &serde_json::to_vec_pretty(&meta)?)?;
        match fs::rename(&temp, dir.join(name)) {
            Ok(()) => Ok(true),
            // Made meanwhile by another husk.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    })()
    .with_context(|| format!("creating volume {}", name));
    if !matches!(made, Ok(true)) {
        let _ = remove_tree(&temp);
    }
    let made = made?;
    Ok((load(store, name)?, made))
}

/// Which containers use which volume (by volume name: container names).
pub fn users(store: &Store) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for c in super::all(store)? {
        for v in &c.state.volumes {
            out.entry(v.name.clone()).or_default().push(c.state.name.clone());
        }
    }
    Ok(out)
}

/// A volume out of sight whose files wait to be deleted.
pub struct RemovedVolume {
    pub name: String,
    path: PathBuf,
}

impl RemovedVolume {
    /// Deletes the files (those of the container's users need the user namespace).
    pub fn delete_files(&self) -> Result<()> {
        remove_tree(&self.path)
    }
}

/// Takes volume `name` out of sight (call with the exclusive lock held), unless a
/// container uses it and `force` is not given.
pub fn take_out(store: &Store, name: &str, users: &HashMap<String, Vec<String>>, force: bool) -> Result<RemovedVolume> {
    let v = load(store, name)?;
    if let Some(by) = users.get(name).filter(|u| !u.is_empty()) {
        if !force {
            bail!("volume {} is in use by container {}: remove the container first or use -f", name, by.join(", "));
        }
    }
    let aside = volumes_dir(store).join(format!("{}{}", REMOVING, unique_suffix()));
    fs::rename(&v.dir, &aside).with_context(|| format!("removing volume {}", name))?;
    Ok(RemovedVolume { name: name.to_string(), path: aside })
}

/// Deletes removed volumes' files; when husk cannot, it does so as root of its user
/// namespace (entered once, recorded in `in_user_namespace`).
pub fn delete_all(removed: &[RemovedVolume], in_user_namespace: &mut bool) -> Result<()> {
    for r in removed {
        match r.delete_files() {
            Ok(()) => {}
            Err(e) if *in_user_namespace => return Err(e),
            Err(_) => {
                crate::ns::userns::enter_user_namespace()?;
                *in_user_namespace = true;
                r.delete_files()?;
            }
        }
    }
    Ok(())
}

/// Volumes half-made or half-removed by killed husks (call with the exclusive lock).
pub fn remove_leftovers(store: &Store) {
    for path in half_done_entries(&volumes_dir(store)) {
        let _ = remove_tree(&path);
    }
}

/// Those volumes, with the lock that keeps them leftovers (see `locked_half_done_entries`).
pub fn leftovers(store: &Store) -> Result<Option<(FileLock, Vec<PathBuf>)>> {
    locked_half_done_entries(&lock_path(store), &volumes_dir(store))
}

/// Removes the anonymous volumes among `mounts` that no container uses any more (after
/// their container is gone). Failures are reported, not fatal.
pub fn remove_anonymous(store: &Store, mounts: &[VolumeMount], in_user_namespace: &mut bool) {
    let anonymous: Vec<&VolumeMount> = mounts.iter().filter(|m| m.anonymous).collect();
    if anonymous.is_empty() {
        return;
    }
    let result = (|| -> Result<()> {
        let _l = lock_exclusive(store)?;
        let users = users(store)?;
        let mut removed = Vec::new();
        for m in anonymous {
            if users.contains_key(&m.name) {
                eprintln!("Warning: volume {} is in use by another container; not removed", m.name);
                continue;
            }
            match take_out(store, &m.name, &users, false) {
                Ok(r) => removed.push(r),
                Err(e) if load(store, &m.name).is_err() => drop(e), // already gone
                Err(e) => eprintln!("Warning: {:#}", e),
            }
        }
        delete_all(&removed, in_user_namespace)
    })();
    if let Err(e) = result {
        eprintln!("Warning: removing anonymous volumes: {:#}", e);
    }
}

/// Bytes of the files in a volume (apparent sizes).
pub fn size(v: &Volume) -> u64 {
    let mut total = 0;
    let mut stack = vec![v.data()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------
// Mounts of a new container
// ---------------------------------------------------------------------------

/// A mount asked for on the command line (`-v`, `--mount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// A host path (absolute, canonical).
    Bind {
        source: String,
        target: String,
        readonly: bool,
    },
    /// A named volume, or an anonymous one (`name: None`).
    Volume {
        name: Option<String>,
        target: String,
        readonly: bool,
        nocopy: bool,
    },
    Tmpfs {
        target: String,
        options: String,
    },
}

impl MountRequest {
    pub fn target(&self) -> &str {
        match self {
            MountRequest::Bind { target, .. }
            | MountRequest::Volume { target, .. }
            | MountRequest::Tmpfs { target, .. } => target,
        }
    }
}

/// A path without `.`, `..` (clamped at /) or repeated slashes: how destinations compare.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// The container's mounts once volumes are resolved.
pub struct Prepared {
    /// (host source, destination, read-only), parents before children.
    pub binds: Vec<(String, String, bool)>,
    pub tmpfs: Vec<(String, String)>,
    pub volumes: Vec<VolumeMount>,
    /// New (empty) volumes to fill from the image: (volume, destination).
    fills: Vec<(Volume, String)>,
}

impl Prepared {
    /// Whether filling volumes from the image will write files (then husk must be in its
    /// user namespace, so that the image's owners are kept).
    pub fn needs_fill(&self) -> bool {
        !self.fills.is_empty()
    }

    /// Copies the image's content at each new (empty) volume's destination into it.
    pub fn fill(&self, layers_top_first: &[PathBuf]) -> Result<()> {
        for (v, dest) in &self.fills {
            fill(v, dest, layers_top_first).with_context(|| format!("copying {} into volume {}", dest, v.name))?;
        }
        Ok(())
    }
}

/// Resolves the requested mounts and the image's VOLUME entries (those where nothing
/// else, `--tmpfs` included, is mounted): creates the volumes (call with the shared
/// volumes lock held until the container is created).
pub fn prepare(
    store: &Store,
    requests: Vec<MountRequest>,
    tmpfs: &[(String, String)],
    image_volumes: &[String],
    layers_top_first: &[PathBuf],
) -> Result<Prepared> {
    let mut requests = requests;
    for iv in image_volumes {
        let clean = clean_path(iv);
        let taken = requests.iter().map(MountRequest::target).chain(tmpfs.iter().map(|t| t.0.as_str()));
        if clean != "/" && !taken.map(clean_path).any(|t| t == clean) {
            requests.push(MountRequest::Volume { name: None, target: clean, readonly: false, nocopy: false });
        }
    }
    let mut p = Prepared { binds: Vec::new(), tmpfs: Vec::new(), volumes: Vec::new(), fills: Vec::new() };
    for r in requests {
        match r {
            MountRequest::Bind { source, target, readonly } => p.binds.push((source, target, readonly)),
            MountRequest::Tmpfs { target, options } => p.tmpfs.push((target, options)),
            MountRequest::Volume { name, target, readonly, nocopy } => {
                let anonymous = name.is_none();
                let name = match name {
                    Some(n) => n,
                    None => random_name()?,
                };
                let (v, _) = create(store, &name, anonymous)?;
                let data = v.data();
                // The mount source is the store's own directory, never a link.
                if !fs::symlink_metadata(&data).map(|m| m.is_dir()).unwrap_or(false) {
                    bail!("volume {}: {} is not a directory", name, data.display());
                }
                p.binds.push((data.to_string_lossy().into_owned(), target.clone(), readonly));
                p.volumes.push(VolumeMount { name: name.clone(), destination: target.clone(), anonymous });
                let empty = fs::read_dir(&data).map(|mut rd| rd.next().is_none()).unwrap_or(false);
                if !nocopy && empty && image_dir(layers_top_first, &target).is_some() {
                    p.fills.push((v, target));
                }
            }
        }
    }
    // Parents before children, as Docker sorts them.
    p.binds.sort_by_key(|(_, dst, _)| Path::new(&clean_path(dst)).components().count());
    Ok(p)
}

/// What the image holds at `path` (absolute): the layer directories, top first, that
/// make up that directory, following symlinks inside the image (never above its root).
fn image_dir(layers_top_first: &[PathBuf], path: &str) -> Option<Vec<PathBuf>> {
    let mut stack: Vec<Vec<PathBuf>> = vec![layers_top_first.to_vec()];
    let mut todo: std::collections::VecDeque<String> = components(path).into();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let here = stack.last().expect("the root stays");
        match lookup(here, &c) {
            Entry::Missing | Entry::Other => return None,
            Entry::Dir(dirs) => stack.push(dirs),
            Entry::Symlink(target) => {
                links += 1;
                if links > 40 {
                    return None;
                }
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                for (i, t) in components(&target).into_iter().enumerate() {
                    todo.insert(i, t);
                }
            }
        }
    }
    if stack.len() == 1 {
        return None; // the root itself is never a volume
    }
    stack.pop()
}

fn components(p: &str) -> Vec<String> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".").map(String::from).collect()
}

enum Entry {
    Missing,
    Dir(Vec<PathBuf>),
    Symlink(String),
    Other,
}

/// Looks `name` up in a directory made of `dirs` (top first), with overlay's rules.
fn lookup(dirs: &[PathBuf], name: &str) -> Entry {
    let mut layers = Vec::new();
    for dir in dirs {
        let path = dir.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            break; // a whiteout hides everything below
        }
        if !ft.is_dir() {
            if !layers.is_empty() {
                break; // hidden by the directory above
            }
            if ft.is_symlink() {
                return match fs::read_link(&path) {
                    Ok(t) => Entry::Symlink(t.to_string_lossy().into_owned()),
                    Err(_) => Entry::Other,
                };
            }
            return Entry::Other;
        }
        let opaque = is_opaque(&path);
        layers.push(path);
        if opaque {
            break;
        }
    }
    if layers.is_empty() {
        Entry::Missing
    } else {
        Entry::Dir(layers)
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    crate::sys::openat_owned(
        libc::AT_FDCWD,
        path.to_string_lossy().as_bytes(),
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", path.display()))
}

/// Copies the image's directory at `dest` into the volume: merged into a private
/// directory beside `_data` (no container sees it), then each entry is moved into
/// `_data` by a rename that replaces nothing, through directory descriptors, so a
/// container already using the volume cannot redirect the copy with a symlink.
fn fill(v: &Volume, dest: &str, layers_top_first: &[PathBuf]) -> Result<()> {
    let Some(dirs) = image_dir(layers_top_first, dest) else { return Ok(()) };
    let temp = v.dir.join(format!(".fill-{}", unique_suffix()));
    fs::create_dir(&temp).with_context(|| format!("creating {}", temp.display()))?;
    let result = (|| -> Result<()> {
        let bottom_first: Vec<&PathBuf> = dirs.iter().rev().collect();
        merge_into(&bottom_first, &temp)?;
        let data = open_dir(&v.data())?;
        let from = open_dir(&temp)?;
        for e in fs::read_dir(&temp)?.flatten() {
            let name = e.file_name();
            match renameat2(
                Some(from.as_raw_fd()),
                name.as_os_str(),
                Some(data.as_raw_fd()),
                name.as_os_str(),
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("moving {:?} into the volume", name)),
            }
        }
        // The volume's directory takes the owner and mode of the image's, as in Docker.
        let top = fs::symlink_metadata(&dirs[0])?;
        let _ = nix::unistd::fchown(
            data.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(top.uid())),
            Some(nix::unistd::Gid::from_raw(top.gid())),
        );
        nix::sys::stat::fchmod(data.as_raw_fd(), Mode::from_bits_truncate(top.mode() & 0o7777))?;
        Ok(())
    })();
    let _ = remove_tree(&temp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "data", "my_vol.1-x", "0a"] {
            assert!(validate_name(ok).is_ok(), "{}", ok);
        }
        for bad in ["a", "", "_x", ".x", "-x", "a/b", "a:b", "a b", "../x"] {
            assert!(validate_name(bad).is_err(), "{}", bad);
        }
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("/a//b/./c/"), "/a/b/c");
        assert_eq!(clean_path("/a/../../b"), "/b");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn image_lookup_follows_links_inside_the_image() {
        let base = std::env::temp_dir().join(format!("husk-vol-{}", std::process::id()));
        let (top, bottom) = (base.join("top"), base.join("bottom"));
        fs::create_dir_all(bottom.join("real/sub")).unwrap();
        fs::create_dir_all(top.join("real")).unwrap();
        fs::write(top.join("real/f"), "x").unwrap();
        std::os::unix::fs::symlink("/real", top.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../real", top.join("rel")).unwrap();
        std::os::unix::fs::symlink("nowhere", top.join("dangling")).unwrap();
        let layers = vec![top.clone(), bottom.clone()];
        let want = Some(vec![top.join("real"), bottom.join("real")]);
        assert_eq!(image_dir(&layers, "/real"), want);
        assert_eq!(image_dir(&layers, "/abs"), want);
        assert_eq!(image_dir(&layers, "/rel"), want, "`..` stops at the image's root");
        assert_eq!(image_dir(&layers, "/abs/sub"), Some(vec![bottom.join("real/sub")]));
        assert_eq!(image_dir(&layers, "/dangling"), None);
        assert_eq!(image_dir(&layers, "/real/f"), None, "a file is not a directory to copy");
        assert_eq!(image_dir(&layers, "/"), None);
        remove_tree(&base).unwrap();
    }
}
