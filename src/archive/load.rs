//! Loading an archive: read it into temp files, learn its images from manifest.json
//! (docker-archive) or index.json (oci-archive), check every file against its digest,
//! extract the layers the store lacks, and name the images last. A failure at any step
//! leaves nothing new visible: what was stored so far is removed again.
use super::contents::{decompressed, Contents, Spooled};
use super::{docker, oci, oci_layer_type, uncompress};
use crate::fetch::manifest::OCI_MANIFEST;
use crate::fetch::pull::extract_options;
use crate::fetch::reference::is_valid_digest;
use crate::layers::extract::ExtractOptions;
use crate::layers::gc::{remove_unreferenced, remove_unreferenced_blobs};
use crate::layers::images::{self, add_unnamed, parse_config, tag_manifest};
use crate::layers::ingest::{ingest_layer, Compression, LayerTarget};
use crate::layers::store::{chain_ids, sha256_digest, LayerInfo, Store, TmpArea};
use crate::ns::idmap::IdMapping;
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, Digest, ImageManifestBuilder, MediaType};
use std::collections::HashSet;
use std::fs::File;
use std::io::Read;

/// One image of the archive, checked as far as it can be without extracting.
pub struct ImagePlan<'a> {
    pub names: Vec<String>,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub diff_ids: Vec<String>,
    pub layers: Vec<LayerPlan<'a>>,
    /// The manifest and its media type as the archive has them; None for a
    /// docker-archive, whose images get an OCI manifest written by husk.
    pub manifest: Option<(Vec<u8>, String)>,
}

pub struct LayerPlan<'a> {
    pub file: &'a Spooled,
    pub compression: Compression,
}

pub struct Loaded {
    pub names: Vec<String>,
    pub id: String,
}

/// What this load stored, to take back if it fails.
#[derive(Default)]
struct Stored {
    layers: Vec<LayerInfo>,
    blobs: Vec<String>,
}

/// Loads every image of the archive read from `input` (tar, gzip or zstd).
pub fn load(store: &Store, ids: &IdMapping, input: impl Read + Send) -> Result<Vec<Loaded>> {
    let writers = store.lock_writers()?;
    let tmp = store.tmp_area()?;
    let contents = Contents::read(decompressed(input)?, &tmp.dir)?;
    let plans = if contents.has("manifest.json") {
        docker::plan(&contents)?
    } else if contents.has("index.json") {
        oci::plan(&contents)?
    } else {
        bail!("not an image archive: it has neither manifest.json (docker-archive) nor index.json (oci-archive)");
    };
    let mut stored = Stored::default();
    match store_all(store, &tmp, &plans, &extract_options(ids), &mut stored) {
        Ok(loaded) => Ok(loaded),
        Err(e) => {
            drop(writers);
            let _gc = store.lock_gc()?;
            remove_unreferenced(store, &tmp, &stored.layers)?;
            remove_unreferenced_blobs(store, &stored.blobs)?;
            Err(e)
        }
    }
}

fn store_all(
    store: &Store,
    tmp: &TmpArea,
    plans: &[ImagePlan],
    xopts: &ExtractOptions,
    stored: &mut Stored,
) -> Result<Vec<Loaded>> {
    // An image the store has already (the same id) is named, not stored again under a
    // second manifest: its id stays unambiguous, as in Docker.
    let existing = plans.iter().map(|p| stored_manifest(store, &p.config_digest)).collect::<Result<Vec<_>>>()?;
    let to_store: Vec<&ImagePlan> = plans.iter().zip(&existing).filter(|(_, e)| e.is_none()).map(|(p, _)| p).collect();
    let mut done = HashSet::new();
    for plan in &to_store {
        let chains = chain_ids(&plan.diff_ids);
        for (i, layer) in plan.layers.iter().enumerate() {
            if done.insert(chains[i].clone()) {
                let parent = i.checked_sub(1).map(|p| chains[p].as_str());
                store_layer(store, tmp, layer, &plan.diff_ids[i], &chains[i], parent, xopts, stored)?;
            }
        }
    }
    // Blobs last: a spooled file may back several layers, and it moves into the store.
    for layer in to_store.iter().flat_map(|p| &p.layers) {
        if !store.has_blob(&layer.file.digest) {
            store.commit_blob_file(&layer.file.digest, &layer.file.path)?;
            stored.blobs.push(layer.file.digest.clone());
        }
    }
    let mut loaded = Vec::new();
    for (plan, existing) in plans.iter().zip(existing) {
        let desc = match existing {
            Some(desc) => desc,
            None => store_manifest(store, plan, stored)?,
        };
        if plan.names.is_empty() {
            add_unnamed(store, desc.clone())?;
        }
        for name in &plan.names {
            tag_manifest(store, desc.clone(), name)?;
        }
        loaded.push(Loaded { names: plan.names.clone(), id: plan.config_digest.clone() });
    }
    Ok(loaded)
}

/// Stores the config and manifest of an image whose layers are stored.
fn store_manifest(store: &Store, plan: &ImagePlan, stored: &mut Stored) -> Result<Descriptor> {
    let (manifest, media_type) = match &plan.manifest {
        Some((bytes, t)) => (bytes.clone(), t.clone()),
        None => (oci_manifest(plan)?, OCI_MANIFEST.to_string()),
    };
    let digest = sha256_digest(&manifest);
    for (d, bytes) in [(&plan.config_digest, &plan.config), (&digest, &manifest)] {
        if !store.has_blob(d) {
            store.write_blob(d, bytes)?;
            stored.blobs.push(d.clone());
        }
    }
    Ok(Descriptor::new(media_type.as_str().into(), manifest.len() as u64, digest.parse::<Digest>()?))
}

/// The manifest of a stored image with this id (config digest), if there is one.
fn stored_manifest(store: &Store, id: &str) -> Result<Option<Descriptor>> {
    let Some(img) = images::list(store)?.into_iter().find(|i| i.config_digest == id) else {
        return Ok(None);
    };
    let size = store.read_blob(&img.manifest_digest)?.len() as u64;
    let digest = img.manifest_digest.parse::<Digest>()?;
    Ok(Some(Descriptor::new(img.manifest_media_type.as_str().into(), size, digest)))
}

#[allow(clippy::too_many_arguments)]
fn store_layer(
    store: &Store,
    tmp: &TmpArea,
    layer: &LayerPlan,
    diff_id: &str,
    chain: &str,
    parent: Option<&str>,
    xopts: &ExtractOptions,
    stored: &mut Stored,
) -> Result<()> {
    let file = layer.file;
    let _lock = store.lock_layer(chain)?;
    if store.has_layer(chain) {
        // The layer is there; the blob that will stand for it must still be its own.
        if layer.compression != Compression::None {
            let (got, _) = uncompress(File::open(&file.path)?, layer.compression, &mut std::io::sink())
                .with_context(|| format!("layer {}", file.digest))?;
            if got != diff_id {
                bail!("layer {} uncompresses to {}, but the image config says {}; refused", file.digest, got, diff_id);
            }
        }
        return Ok(());
    }
    let target = LayerTarget {
        blob_digest: &file.digest,
        blob_size: file.size,
        compression: layer.compression,
        diff_id,
        chain_id: chain,
        parent,
    };
    let mut info = ingest_layer(store, tmp, File::open(&file.path)?, &target, false, xopts)?;
    info.blob.clear(); // blobs are committed, and accounted for, separately
    stored.layers.push(info);
    Ok(())
}

/// An OCI manifest for an image that came without one (docker-archive).
fn oci_manifest(plan: &ImagePlan) -> Result<Vec<u8>> {
    let mut layers = Vec::with_capacity(plan.layers.len());
    for l in &plan.layers {
        layers.push(Descriptor::new(oci_layer_type(l.compression), l.file.size, l.file.digest.parse::<Digest>()?));
    }
    let config =
        Descriptor::new(MediaType::ImageConfig, plan.config.len() as u64, plan.config_digest.parse::<Digest>()?);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()?;
    Ok(serde_json::to_vec(&manifest)?)
}

/// The diff ids of an image config that must describe `layers` layers.
pub fn diff_ids(config: &[u8], layers: usize, what: &str) -> Result<Vec<String>> {
    let parsed = parse_config(config).with_context(|| format!("{}: malformed image config", what))?;
    let ids = parsed.rootfs().diff_ids().to_vec();
    if ids.len() != layers {
        bail!("{}: {} layers, but its config lists {} diff ids", what, layers, ids.len());
    }
    if let Some(bad) = ids.iter().find(|d| !is_valid_digest(d)) {
        bail!("{}: its config has an invalid diff id {:?}", what, bad);
    }
    Ok(ids)
}

/// A name from the archive, normalized; names carrying a digest are refused.
pub fn image_name(name: &str, what: &str) -> Result<String> {
    let r = crate::fetch::reference::Reference::parse(name)
        .with_context(|| format!("{}: invalid image name {:?}", what, name))?;
    if r.digest.is_some() {
        bail!("{}: image name {:?} carries a digest", what, name);
    }
    Ok(r.to_string())
}
