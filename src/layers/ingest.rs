//! Turning one compressed layer stream into a stored blob and an extracted layer in a
//! single pass: hash the compressed bytes, keep them, decompress, hash the tar, extract.
//! Nothing becomes visible until both digests and the size were checked.
use super::extract::{extract_layer, ExtractOptions, ExtractStats};
use super::store::{hex_of, HashingReader, LayerInfo, Store, TmpArea};
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn from_media_type(t: &str) -> Result<Compression> {
        Ok(match t {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            other => bail!("unsupported layer media type {}", other),
        })
    }
}

/// What the layer must turn out to be.
pub struct LayerTarget<'a> {
    pub blob_digest: &'a str,
    pub blob_size: u64,
    pub compression: Compression,
    pub diff_id: &'a str,
    pub chain_id: &'a str,
    pub parent: Option<&'a str>,
}

/// Copies what it reads into a file, when there is one.
struct Tee<'a, R> {
    inner: R,
    out: Option<&'a mut BufWriter<File>>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(out) = self.out.as_mut() {
            out.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Ingests one layer from `source` (the compressed blob). With `keep_blob`, the blob
/// is stored as well. Call with the layer's lock held.
pub fn ingest_layer(
    store: &Store,
    tmp: &TmpArea,
    source: impl Read,
    target: &LayerTarget,
    keep_blob: bool,
    opts: &ExtractOptions,
) -> Result<LayerInfo> {
    let hex = hex_of(target.chain_id)?;
    let layer_tmp = tmp.path(&format!("layer-{}", hex));
    fs::create_dir(&layer_tmp)?;
    fs::create_dir(layer_tmp.join("diff"))?;
    let blob_tmp = tmp.path(&format!("blob-{}", hex_of(target.blob_digest)?));
    let mut blob_out = if keep_blob {
        Some(BufWriter::with_capacity(1 << 20, File::create(&blob_tmp).context("creating a temp blob")?))
    } else {
        None
    };

    let mut compressed = HashingReader::new(source, target.blob_size);
    let extracted = {
        let mut tee = Tee { inner: &mut compressed, out: blob_out.as_mut() };
        let result = decompress_and_extract(&mut tee, target.compression, &layer_tmp.join("diff"), opts);
        // Whatever happened, read the rest so the blob's digest can tell a corrupt
        // download from a bad layer.
        let drained = std::io::copy(&mut tee, &mut std::io::sink());
        result.and_then(|r| drained.map(|_| r).map_err(Into::into))
    };
    let (digest, size) = compressed.finish().unwrap_or_default();
    if size != target.blob_size {
        bail!("blob {} is truncated or oversized: got {} of {} bytes", target.blob_digest, size, target.blob_size);
    }
    if digest != target.blob_digest {
        bail!("blob {} does not match its digest (got {}); refused", target.blob_digest, digest);
    }
    let (stats, diff_id) = extracted.with_context(|| format!("layer {}", target.blob_digest))?;
    if diff_id != target.diff_id {
        bail!("layer {} uncompresses to {}, but the image config says {}; refused", target.blob_digest, diff_id, target.diff_id);
    }
    if let Some(mut out) = blob_out {
        out.flush()?;
        drop(out);
        store.commit_blob_file(target.blob_digest, &blob_tmp)?;
    }
    let info = LayerInfo {
        chain_id: target.chain_id.to_string(),
        diff_id: diff_id.clone(),
        parent: target.parent.map(str::to_string),
        blob: target.blob_digest.to_string(),
        size: stats.bytes,
        entries: stats.entries,
        ownership: match opts.ownership {
            super::extract::Ownership::Keep => "mapped".into(),
            super::extract::Ownership::Ignore => "user".into(),
        },
    };
    store.commit_layer(&layer_tmp, &info)?;
    Ok(info)
}

fn decompress_and_extract(
    input: &mut impl Read,
    compression: Compression,
    dest: &std::path::Path,
    opts: &ExtractOptions,
) -> Result<(ExtractStats, String)> {
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 17, input))),
        Compression::Zstd => Box::new(zstd::Decoder::new(input).context("starting zstd")?),
    };
    let mut tar = HashingReader::new(decoder, u64::MAX);
    let stats = extract_layer(&mut tar, dest, opts)?;
    let (diff_id, _) = tar.finish().context("decompressing")?;
    Ok((stats, diff_id))
}
