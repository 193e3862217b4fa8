//! oci-archive: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) in
//! a tar. Each `index.json` entry names its image with the
//! `org.opencontainers.image.ref.name` annotation (the full name, as podman and skopeo
//! write it); Docker's `io.containerd.image.name` is written and read as well.
//!
//! husk writes `oci-layout` and `index.json` first, then each blob once: manifests,
//! configs, then layers as the store keeps them (compressed).
use super::contents::{Contents, Spooled};
use super::load::{diff_ids, image_name, ImagePlan, LayerPlan};
use super::oci_layer_type;
use super::save::{add_bytes, add_dir, add_file, SaveImage};
use crate::fetch::manifest::{self, check_config_media_type, choose_platform, Parsed, PlatformSpec, OCI_MANIFEST};
use crate::fetch::registry::MAX_DOCUMENT;
use crate::layers::images::ImageRecord;
use crate::layers::ingest::Compression;
use crate::layers::store::{hex_of, sha256_digest, Store, REF_NAME};
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, Digest, ImageIndexBuilder, ImageManifest, MediaType};
use std::collections::HashMap;
use std::io::Write;

pub const INDEX: &str = "index.json";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The images `index.json` lists (an image index among them: this platform's image),
/// each blob checked against its digest and size.
pub fn plan(contents: &Contents) -> Result<Vec<ImagePlan<'_>>> {
    let bytes = contents.read_small(INDEX, MAX_DOCUMENT)?;
    let index = match manifest::parse(&bytes, "", INDEX)? {
        Parsed::Index(i) => i,
        Parsed::Manifest(_) => bail!("index.json is an image manifest, not an index"),
    };
    if index.manifests().is_empty() {
        bail!("index.json lists no image");
    }
    let mut plans: Vec<(String, ImagePlan)> = Vec::new();
    for desc in index.manifests() {
        let name = annotation_name(desc)?;
        let (bytes, manifest) = image_manifest(contents, desc)?;
        let digest = sha256_digest(&bytes);
        if let Some((_, p)) = plans.iter_mut().find(|(d, _)| *d == digest) {
            p.names.extend(name);
            continue;
        }
        let mut plan = plan_one(contents, bytes, &manifest, &digest)?;
        plan.names.extend(name);
        plans.push((digest, plan));
    }
    Ok(plans.into_iter().map(|(_, p)| p).collect())
}

fn annotation_name(desc: &Descriptor) -> Result<Option<String>> {
    let annotations = desc.annotations().clone().unwrap_or_default();
    match annotations.get(CONTAINERD_NAME).or_else(|| annotations.get(REF_NAME)) {
        Some(n) => Ok(Some(image_name(n, INDEX)?)),
        None => Ok(None),
    }
}

/// The image manifest an `index.json` entry stands for, through an image index.
fn image_manifest(contents: &Contents, desc: &Descriptor) -> Result<(Vec<u8>, ImageManifest)> {
    let what = format!("manifest {}", desc.digest());
    let bytes = blob_bytes(contents, desc)?;
    match manifest::parse(&bytes, desc.media_type().as_ref(), &what)? {
        Parsed::Manifest(m) => Ok((bytes, *m)),
        Parsed::Index(index) => {
            let entry = choose_platform(&index, &PlatformSpec::host(), &what)?;
            let what = format!("manifest {}", entry.digest());
            let bytes = blob_bytes(contents, entry)?;
            match manifest::parse(&bytes, entry.media_type().as_ref(), &what)? {
                Parsed::Manifest(m) => Ok((bytes, *m)),
                Parsed::Index(_) => bail!("{}: an index inside an index; refused", what),
            }
        }
    }
}

fn plan_one<'a>(contents: &'a Contents, bytes: Vec<u8>, m: &ImageManifest, digest: &str) -> Result<ImagePlan<'a>> {
    let what = format!("image {}", digest);
    check_config_media_type(m, &what)?;
    let config = blob_bytes(contents, m.config())?;
    let diff_ids = diff_ids(&config, m.layers().len(), &what)?;
    let mut layers = Vec::with_capacity(m.layers().len());
    for l in m.layers() {
        let compression = Compression::from_media_type(l.media_type().as_ref())
            .with_context(|| format!("{}: layer {}", what, l.digest()))?;
        layers.push(LayerPlan { file: blob_file(contents, l)?, compression });
    }
    let media_type = m.media_type().as_ref().map(|t| t.to_string()).unwrap_or_else(|| OCI_MANIFEST.to_string());
    let config_digest = m.config().digest().to_string();
    Ok(ImagePlan { names: Vec::new(), config, config_digest, diff_ids, layers, manifest: Some((bytes, media_type)) })
}

/// The archive's file for a descriptor, after checking its digest and size.
fn blob_file<'a>(contents: &'a Contents, desc: &Descriptor) -> Result<&'a Spooled> {
    let digest = desc.digest().to_string();
    let hex = hex_of(&digest).context("index.json or a manifest names a blob")?;
    let file = contents.file(&format!("blobs/sha256/{}", hex))?;
    if file.digest != digest {
        bail!("blob {} in the archive does not match its digest (it is {}); refused", digest, file.digest);
    }
    if file.size != desc.size() {
        bail!("blob {} in the archive has {} bytes, its descriptor says {}; refused", digest, file.size, desc.size());
    }
    Ok(file)
}

fn blob_bytes(contents: &Contents, desc: &Descriptor) -> Result<Vec<u8>> {
    let file = blob_file(contents, desc)?;
    contents.read_small(&format!("blobs/sha256/{}", &file.digest[7..]), MAX_DOCUMENT)
}

/// Writes `images` as an oci-archive.
pub fn write<W: Write>(store: &Store, images: &[SaveImage], tar: &mut tar::Builder<W>) -> Result<()> {
    let mut entries = Vec::new();
    let mut documents: Vec<(String, Vec<u8>)> = Vec::new();
    let mut layers: Vec<&Descriptor> = Vec::new();
    for img in images {
        let rec = &img.record;
        let manifest = oci_manifest(rec, store.read_blob(&rec.manifest_digest)?)?;
        let digest = sha256_digest(&manifest);
        let desc = Descriptor::new(MediaType::ImageManifest, manifest.len() as u64, digest.parse::<Digest>()?);
        if img.names.is_empty() {
            entries.push(desc.clone());
        }
        for name in &img.names {
            let mut named = desc.clone();
            named.set_annotations(Some(HashMap::from([
                (REF_NAME.to_string(), name.clone()),
                (CONTAINERD_NAME.to_string(), name.clone()),
            ])));
            entries.push(named);
        }
        for (d, bytes) in [(digest, manifest), (rec.id().to_string(), store.read_blob(rec.id())?)] {
            if !documents.iter().any(|(seen, _)| *seen == d) {
                documents.push((d, bytes));
            }
        }
        for l in rec.manifest.layers() {
            if !layers.iter().any(|seen| seen.digest() == l.digest()) {
                layers.push(l);
            }
        }
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()?;
    add_bytes(tar, "oci-layout", LAYOUT)?;
    // Through a Value, whose maps are sorted: the annotations come out in one order,
    // and the same images make the same archive.
    add_bytes(tar, INDEX, &serde_json::to_vec(&serde_json::to_value(&index)?)?)?;
    add_dir(tar, "blobs/")?;
    add_dir(tar, "blobs/sha256/")?;
    for (digest, bytes) in &documents {
        add_bytes(tar, &format!("blobs/sha256/{}", &digest[7..]), bytes)?;
    }
    for l in layers {
        let digest = l.digest().to_string();
        let path = store.blob_path(&digest)?;
        add_file(tar, &format!("blobs/sha256/{}", &digest[7..]), &path, l.size(), Some(&digest))
            .with_context(|| format!("layer {}", digest))?;
    }
    Ok(())
}

/// The stored manifest, or for a Docker one its OCI equivalent (same config, same
/// layer blobs): an OCI layout holds OCI manifests.
fn oci_manifest(rec: &ImageRecord, stored: Vec<u8>) -> Result<Vec<u8>> {
    if rec.manifest_media_type == OCI_MANIFEST {
        return Ok(stored);
    }
    let mut m = rec.manifest.clone();
    m.set_media_type(Some(MediaType::ImageManifest));
    let mut config = m.config().clone();
    config.set_media_type(MediaType::ImageConfig);
    m.set_config(config);
    let mut layers = m.layers().clone();
    for l in layers.iter_mut() {
        l.set_media_type(oci_layer_type(Compression::from_media_type(l.media_type().as_ref())?));
    }
    m.set_layers(layers);
    Ok(serde_json::to_vec(&m)?)
}
