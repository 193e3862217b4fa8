//! The build cache: what a step made, found again by what went into it.
//!
//! A step's key is the sha256 of its parent's key (the base image's config digest for a
//! stage's first step), the instruction after variable substitution, the build args in
//! scope and, for COPY/ADD, a hash of the sources' content (never their mtimes). The
//! entry names the image the step produced: its manifest and config blobs are in the
//! store, unnamed, with layers registered by chain id. A hit is used only when all of
//! them are still there (a `husk system prune` may have taken them: then it is a miss).
//!
//! Entries live in `build-cache/<key>.json`, written by rename under the cache lock.
use crate::layers::images::{parse_config, ImageRecord};
use crate::layers::store::{chain_ids, hex_of, Store};
use crate::util::{atomic_replace, FileLock};
use anyhow::{Context, Result};
use oci_spec::image::ImageManifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::path::PathBuf;

/// Bumped when what a key stands for changes, so that old entries are never reused.
const VERSION: &str = "husk-build-cache-v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The image after the step (an unnamed manifest in the store).
    pub manifest: String,
    /// Whether a CMD had been set in the stage by then (ENTRYPOINT resets an inherited one).
    #[serde(default)]
    pub cmd_set: bool,
}

pub struct Cache<'a> {
    store: &'a Store,
    dir: PathBuf,
}

/// The key of a step.
pub fn key(parent: &str, instruction: &str, args: &[String], content: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [VERSION, parent, instruction] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(args.len().to_le_bytes());
    for a in args {
        h.update(a.len().to_le_bytes());
        h.update(a.as_bytes());
    }
    if let Some(c) = content {
        h.update(c.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl<'a> Cache<'a> {
    pub fn open(store: &'a Store) -> Result<Cache<'a>> {
        let dir = store.root().join("build-cache");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Cache { store, dir })
    }

    fn lock(&self, exclusive: bool) -> Result<FileLock> {
        let path = self.store.root().join("locks/build-cache.lock");
        if exclusive {
            FileLock::exclusive(&path)
        } else {
            FileLock::shared(&path)
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.dir.join(format!("{}.json", hex_of(key)?)))
    }

    /// The image a step with this key made, if it is still complete in the store.
    pub fn get(&self, key: &str) -> Option<(Entry, ImageRecord)> {
        let _l = self.lock(false).ok()?;
        let entry: Entry = serde_json::from_slice(&fs::read(self.path(key).ok()?).ok()?).ok()?;
        let image = load_unnamed(self.store, &entry.manifest).ok()?;
        let complete = image.chain_ids.iter().all(|c| self.store.has_layer(c))
            && image.manifest.layers().iter().all(|l| self.store.has_blob(l.digest().as_ref()));
        complete.then_some((entry, image))
    }

    /// Records the image a step made. Returns the manifest the entry named before, if
    /// another (a rebuild of the step, `--no-cache` or after a miss): nothing names
    /// that image any more, and the build collects it (`gc::remove_unnamed_images`).
    pub fn put(&self, key: &str, entry: &Entry) -> Result<Option<String>> {
        let _l = self.lock(true)?;
        let path = self.path(key)?;
        let before = fs::read(&path).ok().and_then(|d| serde_json::from_slice::<Entry>(&d).ok());
        atomic_replace(&path, &serde_json::to_vec(entry)?)?;
        Ok(before.map(|b| b.manifest).filter(|m| *m != entry.manifest))
    }

    /// The images the entries name, those that are still stored.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let _l = self.lock(false)?;
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let entry = fs::read(e?.path()).ok().and_then(|d| serde_json::from_slice::<Entry>(&d).ok());
            out.extend(entry.and_then(|e| load_unnamed(self.store, &e.manifest).ok()));
        }
        Ok(out)
    }

    /// Removes every entry (`husk system prune`); their images go with the next collection.
    pub fn clear(&self) -> Result<usize> {
        let _l = self.lock(true)?;
        let mut n = 0;
        for e in fs::read_dir(&self.dir)? {
            fs::remove_file(e?.path())?;
            n += 1;
        }
        Ok(n)
    }
}

/// An image known by its manifest digest alone (no `index.json` entry).
pub fn load_unnamed(store: &Store, manifest_digest: &str) -> Result<ImageRecord> {
    let manifest: ImageManifest = serde_json::from_slice(&store.read_blob(manifest_digest)?)
        .with_context(|| format!("parsing stored manifest {}", manifest_digest))?;
    let config_digest = manifest.config().digest().to_string();
    let config = parse_config(&store.read_blob(&config_digest)?)
        .with_context(|| format!("parsing stored config {}", config_digest))?;
    let chains = chain_ids(config.rootfs().diff_ids());
    Ok(ImageRecord {
        manifest_digest: manifest_digest.to_string(),
        manifest_media_type: crate::layers::author::MANIFEST_MEDIA_TYPE.to_string(),
        config_digest,
        names: Vec::new(),
        manifest,
        config,
        chain_ids: chains,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_a_key_counts() {
        let base = key("sha256:00", "RUN true", &["A=1".into()], None);
        assert_eq!(base, key("sha256:00", "RUN true", &["A=1".into()], None));
        assert_ne!(base, key("sha256:01", "RUN true", &["A=1".into()], None));
        assert_ne!(base, key("sha256:00", "RUN false", &["A=1".into()], None));
        assert_ne!(base, key("sha256:00", "RUN true", &["A=2".into()], None));
        assert_ne!(base, key("sha256:00", "RUN true", &[], None));
        assert_ne!(base, key("sha256:00", "RUN true", &["A=1".into()], Some("x")));
        // Parts cannot slide into each other.
        assert_ne!(key("ab", "c", &[], None), key("a", "bc", &[], None));
    }
}
