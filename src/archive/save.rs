//! Saving images as an archive, streamed: each blob goes from the store to the output
//! in chunks, checked against its digest before its tar entry is complete, so a
//! damaged store makes the save fail instead of writing a bad archive.
use super::{docker, oci, ArchiveFormat};
use crate::layers::images::{normalize, resolve, ImageRecord};
use crate::layers::store::Store;
use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use tar::{EntryType, Header};

/// An image to save and the names it is saved under: the one it was asked by, none
/// when asked by id (as Docker does).
pub struct SaveImage {
    pub record: ImageRecord,
    pub names: Vec<String>,
}

/// Writes the images `queries` name to `out` as one archive.
pub fn save(store: &Store, queries: &[String], format: ArchiveFormat, out: &mut impl Write) -> Result<()> {
    // Held shared, as by a pull: garbage collection waits until the save is done.
    let _gc = store.lock_writers()?;
    let tmp = store.tmp_area()?;
    let images = select(store, queries)?;
    let mut tar = tar::Builder::new(out);
    let written = match format {
        ArchiveFormat::DockerArchive => docker::write(store, &tmp, &images, &mut tar),
        ArchiveFormat::OciArchive => oci::write(store, &images, &mut tar),
    };
    if let Err(e) = written {
        // Dropped, the builder would end the archive as if it were complete.
        std::mem::forget(tar);
        return Err(e);
    }
    tar.into_inner().context("writing the archive")?.flush().context("writing the archive")?;
    Ok(())
}

fn select(store: &Store, queries: &[String]) -> Result<Vec<SaveImage>> {
    let mut out: Vec<SaveImage> = Vec::new();
    for q in queries {
        let record = resolve(store, q)?;
        let name = normalize(q).filter(|n| record.names.contains(n) && !n.contains('@'));
        match out.iter_mut().find(|s| s.record.manifest_digest == record.manifest_digest) {
            Some(s) => s.names.extend(name.filter(|n| !s.names.contains(n))),
            None => out.push(SaveImage { record, names: name.into_iter().collect() }),
        }
    }
    Ok(out)
}

fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

pub fn add_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut h = header(EntryType::Directory, 0, 0o755);
    tar.append_data(&mut h, path, io::empty()).context("writing the archive")
}

pub fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = header(EntryType::Regular, data.len() as u64, 0o644);
    tar.append_data(&mut h, path, data).context("writing the archive")
}

/// Streams the file at `src` into the archive; it must have `size` bytes and, when
/// given, the digest `digest`.
pub fn add_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    src: &Path,
    size: u64,
    digest: Option<&str>,
) -> Result<()> {
    let file = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut h = header(EntryType::Regular, size, 0o644);
    let reader = Checked { inner: file, hasher: Sha256::new(), count: 0, size, digest };
    tar.append_data(&mut h, path, reader).context("writing the archive")
}

/// Fails the read that would end the stream unless the size and digest are right, so
/// that the tar entry it feeds is never completed with wrong content.
struct Checked<'a, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    size: u64,
    digest: Option<&'a str>,
}

impl<R: Read> Read for Checked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (self.size - self.count).min(buf.len() as u64) as usize;
        let n = if room == 0 { self.inner.read(&mut [0u8; 1])? } else { self.inner.read(&mut buf[..room])? };
        if room == 0 && n > 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the blob is larger than its descriptor says"));
        }
        if n == 0 {
            if self.count != self.size {
                let msg = format!("the blob has {} bytes, its descriptor says {}", self.count, self.size);
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, msg));
            }
            if let Some(want) = self.digest {
                let got = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
                if got != want {
                    let msg =
                        format!("the stored blob is {}, not {} (run `husk system prune` and pull again)", got, want);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
