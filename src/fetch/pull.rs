//! Pulling an image: resolve the manifest for this platform, fetch the config, then
//! fetch and extract the missing layers several at a time, and name the image last.
use super::manifest::{self, choose_platform, Parsed, PlatformSpec};
use super::parallel;
use super::progress::{Progress, ProgressReader};
use super::reference::{is_valid_digest, Reference};
use super::registry::{RegistryClient, MAX_DOCUMENT};
use crate::layers::extract::{ExtractOptions, Ownership};
use crate::layers::gc::remove_unreferenced;
use crate::layers::images::{parse_config, resolve, tag_manifest, ImageRecord};
use crate::layers::ingest::{ingest_layer, Compression, LayerTarget};
use crate::layers::store::{chain_ids, sha256_digest, LayerInfo, Store, TmpArea};
use crate::ns::idmap::IdMapping;
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageManifest};
use std::sync::Mutex;

const PARALLEL_LAYERS: usize = 3;

pub struct PullOptions {
    pub platform: Option<PlatformSpec>,
    pub quiet: bool,
}

pub fn extract_options(ids: &IdMapping) -> ExtractOptions {
    ExtractOptions {
        ownership: if ids.keeps_owners() { Ownership::Keep } else { Ownership::Ignore },
        // Files that would belong to the real root stay without setuid/setgid bits.
        strip_setid: ids.host_uid(0) == Some(0),
    }
}

/// Pulls the image into the store and returns it as stored.
pub fn pull(store: &Store, ids: &IdMapping, reference: &Reference, opts: &PullOptions) -> Result<ImageRecord> {
    let progress = Progress::new(opts.quiet);
    let name = reference.to_string();
    progress.message(&format!("Trying to pull {}...", name));
    let client = RegistryClient::new(reference)?;
    let want = opts.platform.clone().unwrap_or_else(PlatformSpec::host);

    let (manifest_bytes, manifest_type, manifest_digest) = resolve_manifest(&client, reference, &want)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).context("parsing the image manifest")?;
    // Everything the manifest says is checked before any blob is fetched.
    manifest::check_config_media_type(&manifest, &name)?;
    let mut compressions = Vec::with_capacity(manifest.layers().len());
    for layer in manifest.layers() {
        let digest = layer.digest().to_string();
        if !is_valid_digest(&digest) {
            bail!("{}: manifest names an invalid layer digest {:?}", name, digest);
        }
        compressions.push(
            Compression::from_media_type(layer.media_type().as_ref())
                .with_context(|| format!("{}: layer {}", name, digest))?,
        );
    }
    let config_desc = manifest.config();
    let config_digest = config_desc.digest().to_string();
    let config_bytes = match stored_document(store, config_desc) {
        Some(bytes) => bytes,
        None => fetch_document(&client, config_desc, &format!("config of {}", name))?,
    };
    let config = parse_config(&config_bytes).with_context(|| format!("{}: malformed image config", name))?;
    if let Some(p) = &opts.platform {
        let (os, arch) = (config.os().to_string(), config.architecture().to_string());
        if os != p.os || arch != p.arch {
            bail!("{} is for {}/{}, not the requested {}", name, os, arch, p);
        }
    }
    let diff_ids: Vec<String> = config.rootfs().diff_ids().to_vec();
    if diff_ids.len() != manifest.layers().len() {
        bail!("{}: manifest has {} layers but config lists {} diff ids", name, manifest.layers().len(), diff_ids.len());
    }
    for d in diff_ids.iter() {
        if !is_valid_digest(d) {
            bail!("{}: image config has an invalid diff id {:?}", name, d);
        }
    }
    let chains = chain_ids(&diff_ids);

    let _writers = store.lock_writers()?;
    let tmp = store.tmp_area()?;
    let mut jobs = Vec::new();
    for (i, (layer, &compression)) in manifest.layers().iter().zip(&compressions).enumerate() {
        let digest = layer.digest().to_string();
        if present(store, &chains[i], &digest) {
            progress.message(&format!("Layer {} already present", short(&digest)));
        } else {
            jobs.push(Job { index: i, layer: layer.clone(), compression });
        }
    }

    let xopts = extract_options(ids);
    let committed = Mutex::new(Vec::new());
    if let Err(e) = run_jobs(store, &tmp, &client, &progress, &jobs, &diff_ids, &chains, &xopts, &committed) {
        // A failed pull leaves nothing new behind. Layers it stored are removed unless an
        // image uses them by now; the gc lock waits for other pulls that may be about to.
        drop(_writers);
        let _gc = store.lock_gc()?;
        remove_unreferenced(store, &tmp, &committed.into_inner().unwrap())?;
        return Err(e);
    }

    store.write_blob(&config_digest, &config_bytes)?;
    store.write_blob(&manifest_digest, &manifest_bytes)?;
    let desc = Descriptor::new(
        manifest_type.as_str().into(),
        manifest_bytes.len() as u64,
        manifest_digest.parse::<oci_spec::image::Digest>()?,
    );
    tag_manifest(store, desc, &name)?;
    let mut blobs: Vec<String> = manifest.layers().iter().map(|l| l.digest().to_string()).collect();
    blobs.push(config_digest.clone());
    // Where the blobs came from, for a later push to mount them: a hint only.
    let _ = crate::layers::sources::record(store, &blobs, &reference.name());
    progress.message(&format!("Digest: {}", manifest_digest));
    // Read while the writers lock is still held: a concurrent rmi may remove the image
    // as soon as `pull` returns, and `run` and `build` then find its layers gone under
    // their own lock and say so.
    resolve(store, &manifest_digest)
}

struct Job {
    index: usize,
    layer: Descriptor,
    compression: Compression,
}

#[allow(clippy::too_many_arguments)]
fn run_jobs(
    store: &Store,
    tmp: &TmpArea,
    client: &RegistryClient,
    progress: &Progress,
    jobs: &[Job],
    diff_ids: &[String],
    chains: &[String],
    xopts: &ExtractOptions,
    committed: &Mutex<Vec<LayerInfo>>,
) -> Result<()> {
    parallel::each(jobs, PARALLEL_LAYERS, |_, job| {
        if let Some(info) = fetch_layer(store, tmp, client, progress, job, diff_ids, chains, xopts)? {
            committed.lock().unwrap().push(info);
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn fetch_layer(
    store: &Store,
    tmp: &TmpArea,
    client: &RegistryClient,
    progress: &Progress,
    job: &Job,
    diff_ids: &[String],
    chains: &[String],
    xopts: &ExtractOptions,
) -> Result<Option<LayerInfo>> {
    let digest = job.layer.digest().to_string();
    let chain = &chains[job.index];
    let _lock = store.lock_layer(chain)?;
    if present(store, chain, &digest) {
        progress.message(&format!("Layer {} already present", short(&digest)));
        return Ok(None);
    }
    let target = LayerTarget {
        blob_digest: &digest,
        blob_size: job.layer.size(),
        compression: job.compression,
        diff_id: &diff_ids[job.index],
        chain_id: chain,
        parent: job.index.checked_sub(1).map(|p| chains[p].as_str()),
    };
    let transfer = progress.transfer(&format!("Layer {}", short(&digest)), job.layer.size(), "downloading");
    let info = if store.has_blob(&digest) {
        let file = std::fs::File::open(store.blob_path(&digest)?)?;
        let mut info = ingest_layer(store, tmp, file, &target, false, xopts)?;
        transfer.finish("extracted from the stored blob");
        info.blob.clear(); // the blob was there before this pull
        info
    } else {
        let label = format!("Layer {}", short(&digest));
        let stream = client
            .blob_stream(&digest, job.layer.size())?
            .on_retry(move |line| progress.message(&format!("{}: {}", label, line)));
        let reader = ProgressReader { inner: stream, transfer: &transfer };
        let info = ingest_layer(store, tmp, reader, &target, true, xopts)?;
        transfer.finish("done");
        info
    };
    Ok(Some(info))
}

/// Whether a layer and the blob it comes from are both stored. A layer without its blob
/// (a container kept it when `rmi -f` removed its image) is fetched again as if new, so
/// that the image is complete (push and save need the blob); the extracted copy is
/// dropped for the one already stored.
fn present(store: &Store, chain: &str, blob: &str) -> bool {
    store.has_layer(chain) && store.has_blob(blob)
}

/// Fetches the manifest for `reference`, going through an index to this platform's entry.
fn resolve_manifest(
    client: &RegistryClient,
    reference: &Reference,
    want: &PlatformSpec,
) -> Result<(Vec<u8>, String, String)> {
    let name = reference.to_string();
    let top = client.get_manifest(reference.digest.as_deref().unwrap_or_else(|| reference.tag_or_latest()))?;
    match manifest::parse(&top.bytes, &top.media_type, &name)? {
        Parsed::Manifest(m) => Ok((top.bytes, media_type_of(&m, &top.media_type), top.digest)),
        Parsed::Index(index) => {
            let entry = choose_platform(&index, want, &name)?;
            let digest = entry.digest().to_string();
            if !is_valid_digest(&digest) {
                bail!("{}: index names an invalid manifest digest {:?}", name, digest);
            }
            let doc = client.get_manifest(&digest)?;
            if doc.bytes.len() as u64 != entry.size() {
                bail!("{}: manifest {} has {} bytes, the index says {}", name, digest, doc.bytes.len(), entry.size());
            }
            match manifest::parse(&doc.bytes, &doc.media_type, &name)? {
                Parsed::Manifest(m) => {
                    let mt = media_type_of(&m, &doc.media_type);
                    Ok((doc.bytes, mt, digest))
                }
                Parsed::Index(_) => {
                    bail!("{}: index entry {} is another index; refused", name, digest)
                }
            }
        }
    }
}

fn media_type_of(m: &ImageManifest, served: &str) -> String {
    m.media_type().as_ref().map(|t| t.to_string()).filter(|t| !t.is_empty()).unwrap_or_else(|| {
        if served.is_empty() {
            manifest::OCI_MANIFEST.to_string()
        } else {
            served.to_string()
        }
    })
}

/// A small blob (a config) the store already has, when it matches its descriptor. The
/// bytes are held from here on, so a garbage collection racing with this pull cannot
/// take them away (the pull writes them back when it names the image).
fn stored_document(store: &Store, desc: &Descriptor) -> Option<Vec<u8>> {
    let digest = desc.digest().to_string();
    if !is_valid_digest(&digest) || desc.size() > MAX_DOCUMENT || !store.has_blob(&digest) {
        return None;
    }
    let bytes = store.read_blob(&digest).ok()?; // checked against the digest
    (bytes.len() as u64 == desc.size()).then_some(bytes)
}

/// Fetches a small blob (a config), checking size and digest.
fn fetch_document(client: &RegistryClient, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let digest = desc.digest().to_string();
    if !is_valid_digest(&digest) {
        bail!("{}: invalid digest {:?}", what, digest);
    }
    if desc.size() > MAX_DOCUMENT {
        bail!("{}: {} bytes is over the {} byte limit", what, desc.size(), MAX_DOCUMENT);
    }
    let bytes = client.get_small_blob(&digest, MAX_DOCUMENT, what)?;
    if bytes.len() as u64 != desc.size() || sha256_digest(&bytes) != digest {
        bail!("{}: registry sent content that does not match {}", what, digest);
    }
    Ok(bytes)
}

pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}
