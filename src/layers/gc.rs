//! Garbage collection: removes blobs and layers that no image in `index.json` uses.
//! Runs under the exclusive gc lock, so no pull is writing at the same time.
use super::images;
use super::store::{Store, TmpArea};
use anyhow::Result;
use std::collections::HashSet;

#[derive(Default, Debug)]
pub struct GcStats {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// Call with `store.lock_gc()` held.
pub fn collect(store: &Store, tmp: &TmpArea) -> Result<GcStats> {
    let mut keep_blobs = HashSet::new();
    let mut keep_layers = HashSet::new();
    for img in images::list(store)? {
        keep_blobs.insert(img.manifest_digest.clone());
        keep_blobs.insert(img.config_digest.clone());
        for l in img.manifest.layers() {
            keep_blobs.insert(l.digest().to_string());
        }
        keep_layers.extend(img.chain_ids.iter().cloned());
    }
    let mut stats = GcStats::default();
    for layer in store.layers()? {
        if !keep_layers.contains(&layer.chain_id) {
            store.remove_layer(&layer.chain_id, tmp)?;
            stats.layers += 1;
            stats.bytes += layer.size;
        }
    }
    for (digest, size) in store.blobs()? {
        if !keep_blobs.contains(&digest) {
            store.remove_blob(&digest)?;
            stats.blobs += 1;
            stats.bytes += size;
        }
    }
    Ok(stats)
}
