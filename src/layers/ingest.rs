//! Turning one compressed layer stream into a stored blob and an extracted layer in a
//! single pass: hash the compressed bytes, keep them, decompress, hash the tar, extract.
//! Nothing becomes visible until both digests and the size were checked.
use super::extract::{extract_layer, ExtractOptions};
use super::store::{hex_of, HashingReader, LayerInfo, Store, TmpArea};
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::sync::mpsc;

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
///
/// Two threads share the work: one reads, hashes, keeps and decompresses the blob,
/// the other hashes the tar stream and extracts it.
pub fn ingest_layer(
    store: &Store,
    tmp: &TmpArea,
    source: impl Read + Send,
    target: &LayerTarget,
    keep_blob: bool,
    opts: &ExtractOptions,
) -> Result<LayerInfo> {
    let hex = hex_of(target.chain_id)?;
    let layer_tmp = tmp.path(&format!("layer-{}", hex));
    fs::create_dir(&layer_tmp)?;
    fs::create_dir(layer_tmp.join("diff"))?;
    let blob_tmp = tmp.path(&format!("blob-{}", hex_of(target.blob_digest)?));
    let blob_out = if keep_blob {
        Some(BufWriter::with_capacity(1 << 20, File::create(&blob_tmp).context("creating a temp blob")?))
    } else {
        None
    };

    let (tx, rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(PIPE_CHUNKS);
    let (blob_result, extracted) = std::thread::scope(|s| {
        let producer = s.spawn(move || read_and_decompress(source, target, blob_out, tx));
        let mut tar = HashingReader::new(ChunkReader { rx, chunk: Vec::new(), pos: 0 }, u64::MAX);
        let extracted = extract_layer(&mut tar, &layer_tmp.join("diff"), opts)
            .and_then(|stats| Ok((stats, tar.finish().context("decompressing")?.0)));
        // The reader is gone now: the producer stops decompressing but still hashes the rest.
        let blob_result = producer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("layer reader panicked")));
        (blob_result, extracted)
    });
    let (digest, size, blob_out) = blob_result?;
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
        diff_id,
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

const PIPE_CHUNKS: usize = 16;
const CHUNK: usize = 256 << 10;

/// Producer side: hash and keep the compressed bytes, decompress them into `tx`.
/// Always reads the source to its end, so the digest check can tell a corrupt
/// download from a bad layer.
fn read_and_decompress(
    source: impl Read,
    target: &LayerTarget,
    mut blob_out: Option<BufWriter<File>>,
    tx: mpsc::SyncSender<std::io::Result<Vec<u8>>>,
) -> Result<(String, u64, Option<BufWriter<File>>)> {
    let mut compressed = HashingReader::new(source, target.blob_size);
    let mut tee = Tee { inner: &mut compressed, out: blob_out.as_mut() };
    let sent = decompress_into(&mut tee, target.compression, &tx);
    if let Err(e) = sent {
        let _ = tx.send(Err(e));
    }
    drop(tx);
    let drained = std::io::copy(&mut tee, &mut std::io::sink());
    if compressed.count > target.blob_size {
        bail!("blob {} is larger than its declared {} bytes; refused", target.blob_digest, target.blob_size);
    }
    let what = || format!("downloading blob {}", target.blob_digest);
    drained.with_context(what)?;
    let (digest, size) = compressed.finish().with_context(what)?;
    Ok((digest, size, blob_out))
}

fn decompress_into(input: &mut impl Read, compression: Compression, tx: &mpsc::SyncSender<std::io::Result<Vec<u8>>>) -> std::io::Result<()> {
    let mut decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 17, input))),
        Compression::Zstd => Box::new(zstd::Decoder::new(input)?),
    };
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match decoder.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            return Ok(());
        }
        buf.truncate(filled);
        if tx.send(Ok(buf)).is_err() {
            return Ok(()); // the extractor stopped; its error is reported there
        }
    }
}

/// Consumer side of the decompressed stream.
struct ChunkReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
