//! Garbage collection: removes blobs and layers that no image in `index.json` uses.
//! Runs under the exclusive gc lock, so no pull is writing at the same time.
use super::images::{self, ImageRecord};
use super::store::{LayerInfo, Store, TmpArea};
use anyhow::Result;
use oci_spec::image::ImageManifest;
use std::collections::{HashMap, HashSet};

#[derive(Default, Debug)]
pub struct GcStats {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// The blobs and layers that images (and containers) use.
#[derive(Default)]
pub(crate) struct InUse {
    pub blobs: HashSet<String>,
    pub layers: HashSet<String>,
    /// Chain id -> the blob the first image added has it from.
    pub layer_blobs: HashMap<String, String>,
}

impl InUse {
    fn add(&mut self, img: &ImageRecord) {
        self.image(&img.manifest_digest, &img.manifest, &img.chain_ids);
    }

    /// An image's manifest, config and layer blobs, and its layers (`chains`, one per
    /// layer of `manifest`).
    pub fn image(&mut self, manifest_digest: &str, manifest: &ImageManifest, chains: &[String]) {
        self.blobs.extend(manifest_blobs(manifest_digest, manifest));
        for (layer, chain) in manifest.layers().iter().zip(chains) {
            self.layer_blobs.entry(chain.clone()).or_insert_with(|| layer.digest().to_string());
        }
        self.layers.extend(chains.iter().cloned());
    }
}

/// The manifest, config and layer blobs of an image.
fn manifest_blobs<'a>(manifest_digest: &str, manifest: &'a ImageManifest) -> impl Iterator<Item = String> + 'a {
    [manifest_digest.to_string(), manifest.config().digest().to_string()]
        .into_iter()
        .chain(manifest.layers().iter().map(|l| l.digest().to_string()))
}

fn in_use(store: &Store) -> Result<InUse> {
    let mut used = InUse::default();
    for img in images::list(store)? {
        used.add(&img);
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

/// Removes what the unnamed images `gone` (step images the build cache named before a
/// rebuild replaced them) hold that nothing else uses: no image in the index, no
/// container, none of `kept` (the images the cache still names). Call with
/// `store.lock_gc()` held.
pub fn remove_unnamed_images(store: &Store, tmp: &TmpArea, gone: &[ImageRecord], kept: &[ImageRecord]) -> Result<()> {
    let mut used = in_use(store)?;
    for img in kept {
        used.add(img);
    }
    for img in gone {
        for digest in manifest_blobs(&img.manifest_digest, &img.manifest).filter(|d| !used.blobs.contains(d)) {
            store.remove_blob(&digest)?;
        }
        for chain in img.chain_ids.iter().filter(|c| !used.layers.contains(*c)) {
            store.remove_layer(chain, tmp)?;
        }
    }
    store.remove_stale_layer_locks()
}
