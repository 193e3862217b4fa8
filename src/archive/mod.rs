//! Image archives: `husk save` writes and `husk load` reads Docker's `docker save`
//! layout (docker-archive) and an OCI image layout in a tar (oci-archive).
//!
//! - `contents.rs`: an archive read into temp files, with its paths checked and its
//!   symlinks resolved inside the archive only;
//! - `docker.rs` / `oci.rs`: what each layout says, turned into images to load;
//! - `load.rs`: verifying and storing those images;
//! - `save.rs`: writing an archive as a stream; `output.rs`: where it goes.
pub mod contents;
pub mod docker;
pub mod load;
pub mod oci;
pub mod output;
pub mod save;

/// `--format` of `husk save`, named as podman names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// Docker's `docker save` layout: manifest.json, config JSON, one tar per layer
    DockerArchive,
    /// An OCI image layout (oci-layout, index.json, blobs/) in a tar
    OciArchive,
}

use crate::layers::gzip::GzipReader;
use crate::layers::ingest::Compression;
use crate::layers::store::HashingReader;
use anyhow::{Context, Result};
use std::io::{BufReader, Read, Write};

/// The OCI media type of a layer blob so compressed.
pub fn oci_layer_type(c: Compression) -> oci_spec::image::MediaType {
    use oci_spec::image::MediaType;
    match c {
        Compression::None => MediaType::ImageLayer,
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
    }
}

/// Decompresses a layer blob into `out`; returns the tar's digest (its diff id) and size.
pub fn uncompress(blob: impl Read, compression: Compression, out: &mut impl Write) -> Result<(String, u64)> {
    let blob = BufReader::with_capacity(1 << 20, blob);
    let tar: Box<dyn Read> = match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(GzipReader::new(blob)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(blob)?),
    };
    let mut hashing = HashingReader::new(tar, u64::MAX);
    std::io::copy(&mut hashing, out).context("decompressing a layer")?;
    Ok(hashing.finish()?)
}
