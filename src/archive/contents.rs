//! An image archive read once, as a stream, into temp files. Each regular file is
//! hashed as it is written; a path from the archive never becomes a host path (the
//! temp files are numbered), so `..`, absolute names and symlinks can only be refused
//! or resolved inside the archive's own name space.
//!
//! Rules: names are relative and without `..`; a symlink or hard link must point at
//! a place inside the archive; nothing lies under a symlink (a symlinked `blobs/`);
//! no name appears twice; only files, directories and links are allowed.
use crate::layers::ingest::Compression;
use crate::layers::store::HashingReader;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use tar::EntryType;

const MAX_ENTRIES: usize = 100_000;
const MAX_LINKS: usize = 16;

/// A regular file of the archive, in a temp file.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
}

enum Node {
    File(Spooled),
    /// A symlink or hard link, its target already resolved to an archive path.
    Link(String),
    Dir,
}

#[derive(Default)]
pub struct Contents {
    nodes: HashMap<String, Node>,
    /// Every parent directory some entry lies in.
    parents: HashSet<String>,
}

impl Contents {
    /// Reads the (uncompressed) tar stream `input` to its end, keeping its files in `dir`.
    pub fn read(input: impl Read, dir: &Path) -> Result<Contents> {
        let mut archive = tar::Archive::new(input);
        let mut contents = Contents::default();
        let entries = archive.entries().context("reading the archive")?;
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.context(if n == 0 {
                "not an image archive (nor a tar stream)"
            } else {
                "reading the archive"
            })?;
            if n >= MAX_ENTRIES {
                bail!("the archive has more than {} entries; not an image archive", MAX_ENTRIES);
            }
            let name = String::from_utf8(entry.path_bytes().into_owned()).map_err(|_| {
                anyhow!("archive entry {:?}: name is not UTF-8", String::from_utf8_lossy(&entry.path_bytes()))
            })?;
            let what = || format!("archive entry {:?}", name);
            let path = inside("", &name).ok_or_else(|| anyhow!("{}: path leaves the archive", what()))?;
            let kind = entry.header().entry_type();
            let node = match kind {
                EntryType::Regular | EntryType::Continuous => {
                    let spool = dir.join(format!("f{}", n));
                    Node::File(spool_file(&mut entry, spool).with_context(what)?)
                }
                EntryType::Directory => Node::Dir,
                EntryType::Symlink | EntryType::Link => {
                    let target = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned());
                    let target = target.ok_or_else(|| anyhow!("{}: link without a target", what()))?;
                    // A symlink is relative to its directory, a hard link to the archive root.
                    let base = match kind {
                        EntryType::Symlink => path.rsplit_once('/').map(|(d, _)| d).unwrap_or(""),
                        _ => "",
                    };
                    let resolved = inside(base, &target)
                        .ok_or_else(|| anyhow!("{}: link to {:?} points outside the archive", what(), target))?;
                    Node::Link(resolved)
                }
                EntryType::XGlobalHeader => continue,
                other => bail!("{}: {:?} entries have no place in an image archive", what(), other),
            };
            contents.insert(path, node).with_context(what)?;
        }
        Ok(contents)
    }

    fn insert(&mut self, path: String, node: Node) -> Result<()> {
        if path.is_empty() {
            return match node {
                Node::Dir => Ok(()),
                _ => bail!("names the archive's root"),
            };
        }
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let parent = &path[..end + i];
            if matches!(self.nodes.get(parent), Some(Node::File(_) | Node::Link(_))) {
                bail!("lies under {:?}, which is not a directory", parent);
            }
            self.parents.insert(parent.to_string());
            end += i + 1;
        }
        let is_dir = matches!(node, Node::Dir);
        match self.nodes.get(&path) {
            Some(Node::Dir) if is_dir => return Ok(()),
            Some(_) => bail!("appears twice"),
            None if !is_dir && self.parents.contains(&path) => bail!("is also a directory"),
            None => {}
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    pub fn has(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    /// The regular file at `name`, through links inside the archive.
    pub fn file(&self, name: &str) -> Result<&Spooled> {
        let mut cur = inside("", name).ok_or_else(|| anyhow!("{:?} leaves the archive", name))?;
        for _ in 0..MAX_LINKS {
            match self.nodes.get(&cur) {
                Some(Node::File(f)) => return Ok(f),
                Some(Node::Link(target)) => cur = target.clone(),
                Some(Node::Dir) => bail!("{:?} in the archive is a directory, not a file", name),
                None => match self.link_above(&cur) {
                    Some(link) => bail!("{:?} lies under the link {:?} in the archive; refused", name, link),
                    None => bail!("the archive has no file {:?}", name),
                },
            }
        }
        bail!("{:?} in the archive: too many levels of links", name)
    }

    fn link_above<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.match_indices('/').map(|(i, _)| &path[..i]).find(|p| matches!(self.nodes.get(*p), Some(Node::Link(_))))
    }

    /// A small file (a manifest, a config) read whole, at most `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let f = self.file(name)?;
        if f.size > limit {
            bail!("{:?} in the archive has {} bytes, over the {} byte limit", name, f.size, limit);
        }
        fs::read(&f.path).with_context(|| format!("reading {:?} of the archive", name))
    }
}

fn spool_file(entry: &mut impl Read, dest: PathBuf) -> Result<Spooled> {
    let file = File::options().write(true).create_new(true).open(&dest).context("creating a temp file")?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hashing = HashingReader::new(entry, u64::MAX);
    std::io::copy(&mut hashing, &mut out).context("reading the archive")?;
    out.flush().context("writing a temp file")?;
    let (digest, size) = hashing.finish()?;
    Ok(Spooled { path: dest, digest, size })
}

/// `target` taken relative to the archive directory `base`, as a clean archive path;
/// None when it is absolute or climbs above the archive's root.
fn inside(base: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The compression a stream starting with `head` has: gzip and zstd are read, the
/// other kinds Docker knows are refused by name.
pub fn sniff(head: &[u8]) -> Result<Compression> {
    Ok(match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        // "BZh", the block size, then the first block's magic: a tar whose first name
        // merely starts with "BZh" is still a tar.
        [b'B', b'Z', b'h', b'1'..=b'9', 0x31, 0x41, ..] => {
            bail!("bzip2 compression is not supported (husk reads tar, gzip and zstd)")
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            bail!("xz compression is not supported (husk reads tar, gzip and zstd)")
        }
        _ => Compression::None,
    })
}

/// `input` decompressed according to its first bytes.
pub fn decompressed<'a>(mut input: impl Read + Send + 'a) -> Result<Box<dyn Read + Send + 'a>> {
    let mut head = Vec::with_capacity(8);
    (&mut input).take(6).read_to_end(&mut head).context("reading the archive")?;
    let stream = std::io::BufReader::with_capacity(1 << 20, Cursor::new(head.clone()).chain(input));
    Ok(match sniff(&head)? {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(crate::layers::gzip::GzipReader::new(stream)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(stream).context("reading the archive")?),
    })
}

/// The compression of a spooled file, from its first bytes.
pub fn sniff_file(f: &Spooled) -> Result<Compression> {
    let mut head = Vec::with_capacity(8);
    File::open(&f.path)?.take(6).read_to_end(&mut head)?;
    sniff(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside() {
        assert_eq!(inside("", "./a/b").as_deref(), Some("a/b"));
        assert_eq!(inside("x/y", "../z.tar").as_deref(), Some("x/z.tar"));
        assert_eq!(inside("x", "../../etc/passwd"), None);
        assert_eq!(inside("", "/etc/passwd"), None);
        assert_eq!(inside("", "a/../../b"), None);
    }

    fn tar_of(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, name, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    // set_path would refuse `..`: write the raw name
                    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn read(entries: &[(&str, EntryType, &str)]) -> (Result<Contents>, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        (Contents::read(&tar_of(entries)[..], &dir.0), dir)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!("husk-contents-{}", crate::util::unique_suffix()));
                std::fs::create_dir(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn files_and_links_resolve_inside() {
        let (c, _d) = read(&[
            ("abc.tar", EntryType::Regular, "layer"),
            ("id/layer.tar", EntryType::Symlink, "../abc.tar"),
            ("hard", EntryType::Link, "abc.tar"),
        ]);
        let c = c.unwrap();
        let f = c.file("id/layer.tar").unwrap();
        assert_eq!(f.size, 5);
        assert_eq!(f.digest, crate::layers::store::sha256_digest(b"layer"));
        assert_eq!(c.file("./hard").unwrap().path, f.path);
        assert!(c.file("missing").unwrap_err().to_string().contains("no file"));
    }

    #[test]
    fn hostile_shapes_are_refused() {
        let err = |entries: &[(&str, EntryType, &str)]| format!("{:#}", read(entries).0.err().expect("refused"));
        assert!(err(&[("../evil", EntryType::Regular, "x")]).contains("leaves the archive"));
        assert!(err(&[("blobs", EntryType::Symlink, "/tmp")]).contains("outside the archive"));
        assert!(err(&[("l", EntryType::Symlink, "../../x")]).contains("outside the archive"));
        assert!(err(&[("blobs", EntryType::Symlink, "other"), ("blobs/sha256/a", EntryType::Regular, "x")])
            .contains("not a directory"));
        assert!(err(&[("a", EntryType::Regular, "x"), ("a", EntryType::Regular, "y")]).contains("twice"));
        assert!(err(&[("d/f", EntryType::Regular, "x"), ("d", EntryType::Symlink, "e")]).contains("also a directory"));
        assert!(err(&[("fifo", EntryType::Fifo, "")]).contains("no place"));
        // a symlinked directory is never followed by a lookup
        let (c, _d) = read(&[("real/x", EntryType::Regular, "x"), ("blobs", EntryType::Symlink, "real")]);
        assert!(c.unwrap().file("blobs/x").unwrap_err().to_string().contains("under the link"));
    }

    #[test]
    fn compression_is_recognised() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]).unwrap(), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap(), Compression::Zstd);
        assert_eq!(sniff(b"manifest").unwrap(), Compression::None);
        assert!(sniff(b"BZh91AY").is_err());
        assert_eq!(sniff(b"BZh-named-file").unwrap(), Compression::None);
    }
}
