//! docker-archive, the layout of `docker save`: `manifest.json` lists each image's
//! config file, its tags and its layer files; the config's `rootfs.diff_ids` are the
//! digests of those layer files. Docker and podman write the layers uncompressed and
//! read compressed ones too; husk does the same.
//!
//! husk writes `manifest.json` first, then `<config hex>.json` per image and
//! `<diff id hex>/layer.tar` per layer (each once, however many images share it).
use super::contents::{sniff_file, Contents};
use super::load::{diff_ids, image_name, ImagePlan, LayerPlan};
use super::save::{add_bytes, add_dir, add_file, SaveImage};
use super::uncompress;
use crate::fetch::registry::MAX_DOCUMENT;
use crate::layers::ingest::Compression;
use crate::layers::store::{sha256_digest, Store, TmpArea};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};

pub const MANIFEST: &str = "manifest.json";

/// One image in `manifest.json`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// The images `manifest.json` lists, with every uncompressed layer checked against
/// its diff id (compressed ones are checked as they are extracted).
pub fn plan(contents: &Contents) -> Result<Vec<ImagePlan<'_>>> {
    let bytes = contents.read_small(MANIFEST, MAX_DOCUMENT)?;
    let entries: Vec<ManifestEntry> = serde_json::from_slice(&bytes).context("manifest.json is malformed")?;
    if entries.is_empty() {
        bail!("manifest.json lists no image");
    }
    entries.iter().map(|e| plan_one(contents, e)).collect()
}

fn plan_one<'a>(contents: &'a Contents, entry: &ManifestEntry) -> Result<ImagePlan<'a>> {
    let what = format!("image {:?} of manifest.json", entry.config);
    let config = contents.read_small(&entry.config, MAX_DOCUMENT).with_context(|| what.clone())?;
    let diff_ids = diff_ids(&config, entry.layers.len(), &what)?;
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (path, diff_id) in entry.layers.iter().zip(&diff_ids) {
        let file = contents.file(path).with_context(|| what.clone())?;
        let compression = sniff_file(file).with_context(|| format!("layer {:?}", path))?;
        if compression == Compression::None && file.digest != *diff_id {
            bail!("layer {:?} is {}, but its image config says {}; refused", path, file.digest, diff_id);
        }
        layers.push(LayerPlan { file, compression });
    }
    let names = entry.repo_tags.iter().flatten().map(|t| image_name(t, "manifest.json")).collect::<Result<_>>()?;
    Ok(ImagePlan { names, config_digest: sha256_digest(&config), config, diff_ids, layers, manifest: None })
}

/// Writes `images` as a docker-archive.
pub fn write<W: Write>(store: &Store, tmp: &TmpArea, images: &[SaveImage], tar: &mut tar::Builder<W>) -> Result<()> {
    let mut entries = Vec::new();
    let mut layers: Vec<(String, &oci_spec::image::Descriptor)> = Vec::new();
    for img in images {
        let rec = &img.record;
        let ids = rec.config.rootfs().diff_ids();
        if ids.len() != rec.manifest.layers().len() {
            bail!("image {}: its manifest and config disagree on the number of layers", rec.short_id());
        }
        entries.push(ManifestEntry {
            config: format!("{}.json", &rec.id()[7..]),
            repo_tags: (!img.names.is_empty()).then(|| img.names.clone()),
            layers: ids.iter().map(|d| layer_path(d)).collect(),
        });
        for (d, desc) in ids.iter().zip(rec.manifest.layers()) {
            if !layers.iter().any(|(seen, _)| seen == d) {
                layers.push((d.clone(), desc));
            }
        }
    }
    add_bytes(tar, MANIFEST, &serde_json::to_vec(&entries)?)?;
    for img in images {
        let id = img.record.id();
        add_bytes(tar, &format!("{}.json", &id[7..]), &store.read_blob(id)?)?;
    }
    for (diff_id, desc) in layers {
        add_dir(tar, &format!("{}/", &diff_id[7..]))?;
        write_layer(store, tmp, tar, &diff_id, desc).with_context(|| format!("layer {}", desc.digest()))?;
    }
    Ok(())
}

fn layer_path(diff_id: &str) -> String {
    format!("{}/layer.tar", &diff_id[7..])
}

/// One layer, uncompressed: a compressed blob is decompressed into a temp file first,
/// as a tar entry needs its size before its content.
fn write_layer<W: Write>(
    store: &Store,
    tmp: &TmpArea,
    tar: &mut tar::Builder<W>,
    diff_id: &str,
    desc: &oci_spec::image::Descriptor,
) -> Result<()> {
    let digest = desc.digest().to_string();
    let blob = store.blob_path(&digest)?;
    let compression = Compression::from_media_type(desc.media_type().as_ref())?;
    if compression == Compression::None {
        return add_file(tar, &layer_path(diff_id), &blob, desc.size(), Some(diff_id));
    }
    let source = File::open(&blob).context("the blob is missing from the store")?;
    let spool = tmp.path("layer.tar");
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&spool).context("creating a temp file")?);
    let (got, size) = uncompress(source, compression, &mut out)?;
    out.flush()?;
    drop(out);
    if got != diff_id {
        bail!("the stored blob uncompresses to {}, not {} (run `husk system prune` and pull again)", got, diff_id);
    }
    add_file(tar, &layer_path(diff_id), &spool, size, None)?;
    std::fs::remove_file(&spool)?;
    Ok(())
}
