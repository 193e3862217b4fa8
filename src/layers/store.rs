//! The content-addressed store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) plus extracted layers under `layers/<chain id>/diff`.
//!
//! Visibility rules, so that a crash at any point leaves the store usable:
//! - a blob appears in `blobs/` only by rename, after its digest was checked;
//! - a layer appears in `layers/` only by rename of a fully extracted temp dir;
//! - an image exists only once `index.json` (replaced atomically) names it.
//!
//! Leftovers of a killed process stay under `tmp/` and are removed by the next writer.
use crate::fetch::reference::is_valid_digest;
use crate::util::{atomic_write, remove_tree, unique_suffix, FileLock, LockProbe};
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What a layer directory records about itself, written before the layer becomes visible.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerInfo {
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    /// Digest of the compressed blob it came from.
    pub blob: String,
    /// Sum of the sizes of its regular files.
    pub size: u64,
    pub entries: u64,
    /// How file owners were written: "mapped" (image ids kept) or "user" (all the user's).
    pub ownership: String,
}

pub struct Store {
    root: PathBuf,
}

/// A per-process scratch directory under `tmp/`, locked while the process lives.
pub struct TmpArea {
    pub dir: PathBuf,
    _lock: FileLock,
}

impl Store {
    /// Opens the store, creating its skeleton on first use.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store { root: root.to_path_buf() };
        let mkdir = |d: &str| {
            let p = root.join(d);
            fs::create_dir_all(&p).with_context(|| format!("creating store directory {}", p.display()))
        };
        // The layout files come before the content directories, so a process killed
        // part-way never leaves blobs without an index beside them.
        mkdir("locks")?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            atomic_write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !root.join("index.json").exists() {
            let _l = store.lock_index()?;
            if !root.join("index.json").exists() {
                store.write_index(&empty_index()?)?;
            }
        }
        for d in ["blobs/sha256", "layers", "tmp"] {
            mkdir(d)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(name)
    }

    /// Held shared by every writer of blobs and layers, exclusively by garbage collection.
    pub fn lock_writers(&self) -> Result<FileLock> {
        FileLock::shared(&self.lock_path("gc.lock"))
    }

    pub fn lock_gc(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.lock_path("gc.lock"))
    }

    pub fn lock_index(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.lock_path("index.lock"))
    }

    /// Serialises the fetch and extraction of one layer among concurrent pulls.
    pub fn lock_layer(&self, chain_id: &str) -> Result<FileLock> {
        FileLock::exclusive(&self.lock_path(&format!("layer-{}.lock", hex_of(chain_id)?)))
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Reads a small blob (manifest, config), checking it against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let data = fs::read(&path).with_context(|| format!("reading blob {}", digest))?;
        if sha256_digest(&data) != digest {
            bail!("blob {} in the store does not match its digest (run `husk system prune` and pull again)", digest);
        }
        Ok(data)
    }

    /// Stores a small blob after checking its digest.
    pub fn write_blob(&self, digest: &str, data: &[u8]) -> Result<()> {
        if sha256_digest(data) != digest {
            bail!("refusing to store blob {}: content does not match the digest", digest);
        }
        let path = self.blob_path(digest)?;
        if !path.exists() {
            atomic_write(&path, data)?;
        }
        Ok(())
    }

    /// Moves a verified temp file into `blobs/`.
    pub fn commit_blob_file(&self, digest: &str, tmp: &Path) -> Result<()> {
        let path = self.blob_path(digest)?;
        fs::rename(tmp, &path).with_context(|| format!("storing blob {}", digest))
    }

    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(hex_of(chain_id)?))
    }

    /// The directory to use as an overlay lower dir.
    pub fn layer_diff(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.layer_dir(chain_id)?.join("diff"))
    }

    pub fn layer_info(&self, chain_id: &str) -> Option<LayerInfo> {
        let p = self.layer_dir(chain_id).ok()?.join("layer.json");
        serde_json::from_slice(&fs::read(p).ok()?).ok()
    }

    pub fn has_layer(&self, chain_id: &str) -> bool {
        self.layer_info(chain_id).is_some()
    }

    /// Makes a fully extracted layer (a temp dir holding `diff/`) visible.
    pub fn commit_layer(&self, tmp_dir: &Path, info: &LayerInfo) -> Result<()> {
        atomic_write(&tmp_dir.join("layer.json"), &serde_json::to_vec_pretty(info)?)?;
        let dest = self.layer_dir(&info.chain_id)?;
        match fs::rename(tmp_dir, &dest) {
            Ok(()) => Ok(()),
            // Another process committed the same layer first: keep theirs.
            Err(_) if dest.join("layer.json").exists() => remove_tree(tmp_dir),
            Err(e) => Err(e).with_context(|| format!("storing layer {}", info.chain_id)),
        }
    }

    /// Every stored layer, by chain id.
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("layers"))? {
            let e = e?;
            if let Ok(info) =
                serde_json::from_slice::<LayerInfo>(&fs::read(e.path().join("layer.json")).unwrap_or_default())
            {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Every stored blob digest.
    pub fn blobs(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("blobs/sha256"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{}", name);
            if is_valid_digest(&digest) {
                out.push((digest, e.metadata()?.len()));
            }
        }
        Ok(out)
    }

    /// Removes a layer: renamed away first so that it is never seen half-deleted.
    pub fn remove_layer(&self, chain_id: &str, tmp: &TmpArea) -> Result<()> {
        let dir = self.layer_dir(chain_id)?;
        let grave = tmp.dir.join(format!("del-{}", hex_of(chain_id)?));
        match fs::rename(&dir, &grave) {
            Ok(()) => remove_tree(&grave),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing layer {}", chain_id)),
        }
    }

    /// Deletes lock files of layers that do not exist. Only safe while holding the
    /// exclusive gc lock: no writer can be waiting on them then.
    pub fn remove_stale_layer_locks(&self) -> Result<()> {
        for e in fs::read_dir(self.root.join("locks"))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_prefix("layer-").and_then(|n| n.strip_suffix(".lock")) {
                if !self.has_layer(&format!("sha256:{}", hex)) {
                    let _ = fs::remove_file(self.root.join("locks").join(&name));
                }
            }
        }
        Ok(())
    }

    pub fn remove_blob(&self, digest: &str) -> Result<()> {
        super::sources::forget(self, digest);
        match fs::remove_file(self.blob_path(digest)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing blob"),
            _ => Ok(()),
        }
    }

    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        atomic_write(&self.root.join("index.json"), index.to_string_pretty()?.as_bytes())
    }

    /// Read-modify-write of `index.json` under its lock.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>) -> Result<T> {
        let _l = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests)?;
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(out)
    }

    /// Creates this process's scratch dir, after removing those of dead processes.
    pub fn tmp_area(&self) -> Result<TmpArea> {
        self.clean_tmp()?;
        self.scratch_area()
    }

    /// Creates this process's scratch dir and leaves whatever else is in `tmp/` alone
    /// (`husk system check` reports leftovers rather than removing them).
    pub fn scratch_area(&self) -> Result<TmpArea> {
        let tmp = self.root.join("tmp");
        let name = unique_suffix();
        // The lock file appears locked: it is taken under a temp name (to cleaners, a
        // temp file of a live process) and renamed. Made and locked in place, a cleaner
        // could find it free in between and remove it.
        let pending = tmp.join(format!(".{}.lock.tmp-{}", name, unique_suffix()));
        let lock = FileLock::exclusive(&pending)?;
        let path = tmp.join(format!("{}.lock", name));
        fs::rename(&pending, &path).with_context(|| format!("creating {}", path.display()))?;
        let dir = tmp.join(&name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TmpArea { dir, _lock: lock })
    }

    /// Removes scratch dirs whose owning process is gone (its lock is free), and
    /// temp files of `atomic_write` whose writer is gone.
    pub fn clean_tmp(&self) -> Result<usize> {
        let stale = self.stale_temp_paths()?;
        for path in &stale {
            remove_path(path)?;
        }
        Ok(stale.len())
    }

    /// What `clean_tmp` removes, in the order to remove it: each scratch dir before its
    /// lock file (created first and removed last: a dir without one is what a cleaner
    /// killed half-way left behind).
    pub fn stale_temp_paths(&self) -> Result<Vec<PathBuf>> {
        let mut stale = stray_temp_files(&self.root)?;
        stale.extend(stray_temp_files(&self.root.join("blobs/sha256"))?);
        for dir in ["sources", "build-cache"] {
            if self.root.join(dir).is_dir() {
                stale.extend(stray_temp_files(&self.root.join(dir))?);
            }
        }
        stale.extend(stray_temp_files(&self.root.join("tmp"))?);
        for e in fs::read_dir(self.root.join("tmp"))? {
            let path = e?.path();
            if path.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(b".")) {
                continue; // a lock being made (see scratch_area)
            }
            let is_lock = path.extension().map(|x| x == "lock").unwrap_or(false);
            if is_lock {
                // its owner may remove both (dir, then lock) while this looks
                if let LockProbe::Free(_) = FileLock::probe(&path)? {
                    stale.push(path.with_extension(""));
                    stale.push(path);
                }
            } else if !path.with_extension("lock").exists() && fs::symlink_metadata(&path).is_ok() {
                // the lock is made before the dir and removed after it: a dir still
                // there once its lock is gone has no owner
                stale.push(path);
            }
        }
        Ok(stale)
    }
}

/// Removes a file or a tree; gone already is no error.
pub fn remove_path(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// `.NAME.tmp-PID-…` files in `dir` left by a writer (`atomic_write`) killed between
/// write and rename: their process is gone.
pub fn stray_temp_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) =
            name.strip_prefix('.').and_then(|n| n.split_once(".tmp-")).and_then(|(_, rest)| rest.split('-').next())
        else {
            continue;
        };
        // still there once its writer is known gone: not renamed into place just before
        if !Path::new("/proc").join(pid).exists() && fs::symlink_metadata(e.path()).is_ok() {
            out.push(e.path());
        }
    }
    Ok(out)
}

impl TmpArea {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TmpArea {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
        let _ = fs::remove_file(self.dir.with_extension("lock"));
    }
}

fn empty_index() -> Result<ImageIndex> {
    Ok(ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()?)
}

/// The hex part of a `sha256:` digest, refusing anything else so that no
/// string from outside ever becomes a path component unchecked.
pub fn hex_of(digest: &str) -> Result<&str> {
    if !is_valid_digest(digest) {
        bail!("invalid digest {:?}", digest);
    }
    Ok(&digest[7..])
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Chain ids per the OCI image spec: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{} {}", prev, d).as_bytes()),
        };
        out.push(id);
    }
    out
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    /// `limit`: reading past this many bytes is an error (a body longer than declared).
    pub fn new(inner: R, limit: u64) -> Self {
        HashingReader { inner, hasher: Sha256::new(), count: 0, limit }
    }

    /// Reads to the end, then returns the digest and byte count.
    pub fn finish(mut self) -> std::io::Result<(String, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((format!("sha256:{}", hex::encode(self.hasher.finalize())), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "more data than the declared size"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A store in a temp dir of its own, removed on drop (for unit tests).
#[cfg(test)]
pub(crate) struct TempStore(pub PathBuf, pub Store);

#[cfg(test)]
impl TempStore {
    pub fn new(label: &str) -> TempStore {
        let p = std::env::temp_dir().join(format!("husk-{}-{}", label, unique_suffix()));
        let store = Store::open(&p).unwrap();
        TempStore(p, store)
    }
}

#[cfg(test)]
impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{} {}", a, b).as_bytes()));
    }

    #[test]
    fn scratch_areas_of_live_processes_are_never_stale() {
        let s = TempStore::new("store-tmp");
        let area = s.1.tmp_area().unwrap();
        let tmp = s.1.root().join("tmp");
        // a lock being made by this process, one by a process that is gone (pid_max is
        // at most 2^22), and a scratch dir whose lock is gone
        fs::write(tmp.join(format!(".x.lock.tmp-{}-0-0", std::process::id())), b"").unwrap();
        fs::write(tmp.join(".y.lock.tmp-4194305-0-0"), b"").unwrap();
        fs::create_dir(tmp.join("4194305-1-1")).unwrap();
        let stale = s.1.stale_temp_paths().unwrap();
        assert_eq!(stale, [tmp.join(".y.lock.tmp-4194305-0-0"), tmp.join("4194305-1-1")]);
        assert_eq!(s.1.clean_tmp().unwrap(), 2);
        assert!(area.dir.is_dir() && area.dir.with_extension("lock").is_file());
        drop(area);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 1); // this process's pending lock
    }

    #[test]
    fn digests_never_become_odd_paths() {
        assert!(hex_of("sha256:../../etc/passwd").is_err());
        assert!(hex_of("sha512:00").is_err());
        assert!(hex_of(&sha256_digest(b"x")).is_ok());
    }
}
