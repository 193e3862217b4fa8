//! Garbage collection: removes blobs and layers that no image in `index.json` uses.
//! Runs under the exclusive gc lock, so no pull is writing at the same time.
use super::images;
use super::store::{LayerInfo, Store, TmpArea};
use anyhow::Result;
use std::collections::HashSet;

#[derive(Default, Debug)]
pub struct GcStats {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// What the images in the index use.
struct InUse {
    blobs: HashSet<String>,
    layers: HashSet<String>,
}

fn in_use(store: &Store) -> Result<InUse> {
    let mut used = InUse { blobs: HashSet::new(), layers: HashSet::new() };
    for img in images::list(store)? {
        used.blobs.insert(img.manifest_digest.clone());
        used.blobs.insert(img.config_digest.clone());
        for l in img.manifest.layers() {
            used.blobs.insert(l.digest().to_string());
        }
        used.layers.extend(img.chain_ids.iter().cloned());
    }
    // A container keeps the layers it runs on, even when its image is removed.
    for c in crate::container::list(store)? {
        used.layers.extend(c.layers);
    }
    Ok(used)
}

/// Removes everything unused. Call with `store.lock_gc()` held.
pub fn collect(store: &Store, tmp: &TmpArea) -> Result<GcStats> {
    let used = in_use(store)?;
    let mut stats = GcStats::default();
    for layer in store.layers()? {
        if !used.layers.contains(&layer.chain_id) {
            store.remove_layer(&layer.chain_id, tmp)?;
            stats.layers += 1;
            stats.bytes += layer.size;
        }
    }
    for (digest, size) in store.blobs()? {
        if !used.blobs.contains(&digest) {
            store.remove_blob(&digest)?;
            stats.blobs += 1;
            stats.bytes += size;
        }
    }
    store.remove_stale_layer_locks()?;
    Ok(stats)
}

/// Removes the given layers (and the blobs they came from, when named) if no image
/// uses them. Call with `store.lock_gc()` held.
pub fn remove_unreferenced(store: &Store, tmp: &TmpArea, layers: &[LayerInfo]) -> Result<()> {
    let used = in_use(store)?;
    for layer in layers {
        if !used.layers.contains(&layer.chain_id) {
            store.remove_layer(&layer.chain_id, tmp)?;
        }
        if !layer.blob.is_empty() && !used.blobs.contains(&layer.blob) {
            store.remove_blob(&layer.blob)?;
        }
    }
    Ok(())
}

/// Removes the given blobs if no image uses them. Call with `store.lock_gc()` held.
pub fn remove_unreferenced_blobs(store: &Store, blobs: &[String]) -> Result<()> {
    let used = in_use(store)?;
    for digest in blobs.iter().filter(|d| !used.blobs.contains(*d)) {
        store.remove_blob(digest)?;
    }
    Ok(())
}
