//! Turning one compressed layer stream into a stored blob and an extracted layer in a
//! single pass: hash the compressed bytes, keep them, decompress, hash the tar, extract.
//! Nothing becomes visible until both digests and the size were checked.
use super::extract::{extract_layer, ExtractOptions};
use super::gzip::GzipReader;
use super::store::{hex_of, HashingReader, LayerInfo, Store, TmpArea};
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{BufRead, BufWriter, Read, Write};
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

    let (compressed_in, compressed_out) = pipe();
    let (tar_in, tar_out) = pipe();
    let (blob_result, extracted) = std::thread::scope(|s| {
        let fetcher = s.spawn(move || fetch_stage(source, target, blob_out, compressed_in));
        s.spawn(move || decompress_stage(compressed_out, target.compression, tar_in));
        let mut tar = HashingReader::new(tar_out, u64::MAX);
        let extracted =
            extract_layer(&mut tar, &layer_tmp.join("diff"), opts).and_then(|stats| Ok((stats, finish_tar(tar)?)));
        // The extractor's end of the pipe is gone now: decompression stops, while the
        // fetcher still reads and hashes the rest of the blob.
        let blob_result = fetcher.join().unwrap_or_else(|_| Err(anyhow::anyhow!("layer fetcher panicked")));
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
        bail!(
            "layer {} uncompresses to {}, but the image config says {}; refused",
            target.blob_digest,
            diff_id,
            target.diff_id
        );
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

/// How much may follow a layer's end-of-archive marker: the second zero block and the
/// padding of the last record (10 KiB with GNU tar's defaults). More is no tar data,
/// only work: a gzip stream of zeros behind a small archive inflates to gigabytes that
/// would all be decompressed and hashed for nothing.
pub const MAX_TRAILING_BYTES: u64 = 1 << 20;

/// The diff id of a tar stream whose archive was read: what follows the end-of-archive
/// marker counts too, up to [`MAX_TRAILING_BYTES`].
fn finish_tar(mut tar: HashingReader<PipeReader>) -> Result<String> {
    let trailing =
        std::io::copy(&mut (&mut tar).take(MAX_TRAILING_BYTES + 1), &mut std::io::sink()).context("decompressing")?;
    if trailing > MAX_TRAILING_BYTES {
        bail!("more than {} MiB of data follow the end of the layer's tar archive; refused", MAX_TRAILING_BYTES >> 20);
    }
    Ok(tar.finish().context("decompressing")?.0)
}

const PIPE_CHUNKS: usize = 8;
pub(crate) const CHUNK: usize = 256 << 10;

/// Stage 1: read the blob, hash and keep it, pass it on. Always reads to the end (even
/// when later stages stopped), so the digest check can tell a corrupt download from a
/// bad layer.
fn fetch_stage(
    source: impl Read,
    target: &LayerTarget,
    mut blob_out: Option<BufWriter<File>>,
    out: PipeWriter,
) -> Result<(String, u64, Option<BufWriter<File>>)> {
    let mut compressed = HashingReader::new(source, target.blob_size);
    let mut downstream = true;
    let what = || format!("downloading blob {}", target.blob_digest);
    loop {
        let mut buf = out.buffer();
        let filled = match read_full(&mut compressed, &mut buf) {
            Ok(n) => n,
            Err(e) => {
                out.fail(&e);
                if compressed.count > target.blob_size {
                    bail!(
                        "blob {} is larger than its declared {} bytes; refused",
                        target.blob_digest,
                        target.blob_size
                    );
                }
                return Err(e).with_context(what);
            }
        };
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        if let Some(f) = blob_out.as_mut() {
            f.write_all(&buf).context("writing a temp blob")?;
        }
        if downstream {
            downstream = out.send(buf);
        }
    }
    drop(out);
    let (digest, size) = compressed.finish().with_context(what)?;
    Ok((digest, size, blob_out))
}

/// Stage 2: decompress. Errors travel down the pipe to the extractor.
fn decompress_stage(input: PipeReader, compression: Compression, out: PipeWriter) {
    let decoder: std::io::Result<Box<dyn Read>> = match compression {
        Compression::None => Ok(Box::new(input)),
        Compression::Gzip => Ok(Box::new(GzipReader::new(input))),
        Compression::Zstd => zstd::Decoder::with_buffer(input).map(|d| Box::new(d) as Box<dyn Read>),
    };
    // zstd's own messages ("Frame requires too much memory for decoding") do not say
    // what they are about; the gzip reader's do.
    let fail = |e: &std::io::Error| match compression {
        Compression::Zstd => out.fail(&std::io::Error::new(e.kind(), format!("zstd stream: {}", e))),
        _ => out.fail(e),
    };
    let mut decoder = match decoder {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    loop {
        let mut buf = out.buffer();
        match read_full(&mut decoder, &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if !out.send(buf) {
                    return;
                }
            }
            Err(e) => return fail(&e),
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

type Chunk = std::io::Result<Vec<u8>>;

/// A bounded pipe of byte chunks between two threads; buffers travel back for reuse.
pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = mpsc::sync_channel(PIPE_CHUNKS);
    let (back_tx, back_rx) = mpsc::channel();
    (PipeWriter { tx, recycled: back_rx }, PipeReader { rx, back: back_tx, chunk: Vec::new(), pos: 0 })
}

pub(crate) struct PipeWriter {
    tx: mpsc::SyncSender<Chunk>,
    recycled: mpsc::Receiver<Vec<u8>>,
}

impl PipeWriter {
    /// A CHUNK-sized buffer, reused when the reader has given one back.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        let mut buf = self.recycled.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }

    /// False when the reader has gone.
    pub(crate) fn send(&self, buf: Vec<u8>) -> bool {
        self.tx.send(Ok(buf)).is_ok()
    }

    fn fail(&self, e: &std::io::Error) {
        let _ = self.tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
    }
}

pub(crate) struct PipeReader {
    rx: mpsc::Receiver<Chunk>,
    back: mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.chunk, next);
                    let _ = self.back.send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}
