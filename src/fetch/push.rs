//! Pushing an image: the config and layers the registry lacks go up first, several at a
//! time (mounted from another repository of the registry when the store knows one that
//! has them, else uploaded exactly as stored), the manifest last.
use super::auth;
use super::parallel;
use super::progress::{Progress, Transfer};
use super::pull::short;
use super::reference::{is_valid_digest, Reference};
use super::registry::{RegistryClient, Tls};
use super::upload::Started;
use crate::layers::images::{self, ImageRecord};
use crate::layers::sources;
use crate::layers::store::Store;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

const PARALLEL_BLOBS: usize = 3;
/// Blobs up to this size go up in one PUT; bigger ones in PATCHes of this size.
pub const DEFAULT_CHUNK: u64 = 32 << 20;
/// Repositories tried for a mount, per blob.
const MOUNT_TRIES: usize = 3;

pub struct PushOptions {
    pub quiet: bool,
    pub tls: Tls,
    pub chunk_size: u64,
}

pub struct Pushed {
    /// The tag (or digest) the manifest was put under.
    pub reference: String,
    pub digest: String,
    pub size: u64,
}

struct Blob {
    label: String,
    digest: String,
    size: u64,
    /// Other repositories of the destination registry that are known to hold it.
    mount_from: Vec<String>,
}

pub fn push(store: &Store, image: &ImageRecord, dest: &Reference, opts: &PushOptions) -> Result<Pushed> {
    let progress = Progress::new(opts.quiet);
    // Garbage collection waits until the blobs are sent.
    let _writers = store.lock_writers()?;
    let manifest_bytes = store.read_blob(&image.manifest_digest)?;
    let reference = match &dest.digest {
        Some(d) if *d != image.manifest_digest => {
            bail!("{} names digest {}, but the image's manifest is {}", dest, d, image.manifest_digest)
        }
        Some(d) => d.clone(),
        None => dest.tag_or_latest().to_string(),
    };
    let media_type = image
        .manifest
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| image.manifest_media_type.clone());

    let mut blobs = Vec::new();
    let config = image.manifest.config();
    blobs.push((format!("Config {}", short(config.digest().as_ref())), config));
    for layer in image.manifest.layers() {
        blobs.push((format!("Layer {}", short(layer.digest().as_ref())), layer));
    }
    let known = repositories_by_blob(store, dest);
    let mut blobs: Vec<Blob> = blobs
        .into_iter()
        .map(|(label, d)| {
            let digest = d.digest().to_string();
            if !is_valid_digest(&digest) {
                bail!("{}: the manifest names an invalid digest {:?}", dest, digest);
            }
            Ok(Blob { label, mount_from: mount_sources(store, &known, dest, &digest), digest, size: d.size() })
        })
        .collect::<Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    blobs.retain(|b| seen.insert(b.digest.clone()));

    let mut scopes = vec![format!("repository:{}:pull,push", dest.repository)];
    scopes.extend(blobs.iter().flat_map(|b| &b.mount_from).map(|r| format!("repository:{}:pull", r)));
    let client =
        RegistryClient::with_options(&dest.registry, &dest.repository, auth::lookup(&dest.registry), opts.tls, scopes)?;
    // One request before the parallel ones, so that they all find the token it brings.
    let first_exists = client.has_blob(&blobs[0].digest)?;
    progress.message(&format!("The push refers to repository [{}]", dest.name()));
    push_blobs(store, &client, &progress, &blobs, first_exists, opts)?;
    let digests: Vec<String> = blobs.iter().map(|b| b.digest.clone()).collect();
    let _ = sources::record(store, &digests, &dest.name());

    progress.message("Writing manifest");
    let answered = client.put_manifest(&reference, &media_type, &manifest_bytes)?;
    if let Some(d) = answered.filter(|d| *d != image.manifest_digest) {
        bail!("registry {} stored the manifest as {}, not {}", dest.registry, d, image.manifest_digest);
    }
    Ok(Pushed { reference, digest: image.manifest_digest.clone(), size: manifest_bytes.len() as u64 })
}

/// For each blob, the other repositories of the destination's registry that name images
/// of the store using it (most likely pulled from there). A hint: a store it cannot read
/// whole gives none.
fn repositories_by_blob(store: &Store, dest: &Reference) -> HashMap<String, Vec<String>> {
    let mut known: HashMap<String, Vec<String>> = HashMap::new();
    for img in images::list(store).unwrap_or_default() {
        let repos: Vec<String> = img
            .names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .filter(|r| r.registry == dest.registry && r.repository != dest.repository)
            .map(|r| r.repository)
            .collect();
        if repos.is_empty() {
            continue;
        }
        let digests = img.manifest.layers().iter().chain([img.manifest.config()]).map(|d| d.digest().to_string());
        for digest in digests {
            let entry = known.entry(digest).or_default();
            for r in &repos {
                if !entry.contains(r) {
                    entry.push(r.clone());
                }
            }
        }
    }
    known
}

/// Where to mount `digest` from: what the store noted at pull or push time first, then
/// the repositories of the store's images that use it.
fn mount_sources(store: &Store, known: &HashMap<String, Vec<String>>, dest: &Reference, digest: &str) -> Vec<String> {
    let prefix = format!("{}/", dest.registry);
    let mut out: Vec<String> = Vec::new();
    let noted = sources::sources(store, digest).into_iter().filter_map(|s| s.strip_prefix(&prefix).map(str::to_string));
    for repo in noted.chain(known.get(digest).into_iter().flatten().cloned()) {
        if repo != dest.repository && !out.contains(&repo) {
            out.push(repo);
        }
    }
    out.truncate(MOUNT_TRIES);
    out
}

fn push_blobs(
    store: &Store,
    client: &RegistryClient,
    progress: &Progress,
    blobs: &[Blob],
    first_exists: bool,
    opts: &PushOptions,
) -> Result<()> {
    parallel::each(blobs, PARALLEL_BLOBS, |i, blob| {
        let exists = if i == 0 { first_exists } else { client.has_blob(&blob.digest)? };
        push_blob(store, client, progress, blob, exists, opts)
    })
}

fn push_blob(
    store: &Store,
    client: &RegistryClient,
    progress: &Progress,
    blob: &Blob,
    exists: bool,
    opts: &PushOptions,
) -> Result<()> {
    if exists {
        progress.message(&format!("{}: already exists", blob.label));
        return Ok(());
    }
    let path = store.blob_path(&blob.digest)?;
    let stored = std::fs::metadata(&path).map(|m| m.len()).ok();
    if stored != Some(blob.size) {
        bail!("{} ({}) is not in the store, so it cannot be pushed", blob.label.to_lowercase(), blob.digest);
    }
    let mut session = None;
    for (i, from) in blob.mount_from.iter().enumerate() {
        match client.start_upload(Some((&blob.digest, from))) {
            Ok(Started::Mounted) => {
                progress.message(&format!("{}: mounted from {}", blob.label, from));
                return Ok(());
            }
            // Declined: the upload it opened serves unless another repository is left.
            Ok(Started::Session(s)) if i + 1 == blob.mount_from.len() => session = Some(s),
            Ok(Started::Session(s)) => client.cancel_upload(s),
            // A repository the credentials may not read: upload instead.
            Err(_) => {}
        }
    }
    let session = match session {
        Some(s) => s,
        None => match client.start_upload(None)? {
            Started::Session(s) => s,
            Started::Mounted => bail!("registry {} answered an upload as a mount", client.registry()),
        },
    };
    let transfer = progress.transfer(&blob.label, blob.size, "uploading");
    let part = |offset: u64, len: u64| -> Result<reqwest::blocking::Body> {
        let reader = BlobPart::open(path.clone(), offset, len, transfer.clone())?;
        Ok(reqwest::blocking::Body::sized(reader, len))
    };
    let chunk = opts.chunk_size.max(session.min_chunk.unwrap_or(0));
    let sent = if blob.size <= chunk && session.min_chunk.is_none() {
        client.upload_whole(session, &blob.digest, blob.size, &part)
    } else {
        client.upload_chunked(session, &blob.digest, blob.size, chunk, &part)
    };
    sent.with_context(|| format!("pushing {}", blob.label.to_lowercase()))?;
    transfer.finish("pushed");
    Ok(())
}

/// A stretch of a stored blob, moving its transfer's progress as it is read.
struct BlobPart {
    inner: std::io::Take<std::fs::File>,
    transfer: Transfer,
    position: u64,
}

impl BlobPart {
    fn open(path: PathBuf, offset: u64, len: u64, transfer: Transfer) -> Result<BlobPart> {
        let mut f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        transfer.set_position(offset);
        Ok(BlobPart { inner: f.take(len), transfer, position: offset })
    }
}

impl Read for BlobPart {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        self.transfer.set_position(self.position);
        Ok(n)
    }
}
