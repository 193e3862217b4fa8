//! COPY and ADD: the layer is a tar written straight from the sources (no container),
//! then stored like any other layer (`layers::newlayer`), so the store's extraction
//! and ownership rules hold for it.
//!
//! Sources are paths of the build context (after `.dockerignore`) or of another stage's
//! or image's layers (`--from`), globs allowed per component (Go's `filepath.Match`). A
//! directory is copied by its content; a symlink named as a source is followed, inside
//! the context or image only; symlinks met inside a copied directory are copied as
//! symlinks. Context files are opened beneath the context's root without following
//! any symlink, so a link in the context never reads a host file; nothing in the
//! context is ever written.
//!
//! Destination rules as Docker's: relative to WORKDIR; a trailing `/`, or a directory
//! that exists in the image, receives the sources under their names; with several
//! sources it must be a directory. Parent directories are written with the metadata
//! the image has for them (a layer's directory entry replaces the one below it), new
//! ones 0755. Owners are 0:0 for context files (`--chown` names resolved in the image's
//! /etc/passwd and /etc/group), kept for `--from` files; `--chmod` takes an octal mode.
//!
//! ADD extracts a local tar archive (plain, gzip or zstd) into the destination; ADD of
//! a URL, and of xz or bzip2 archives, is refused with one line.
use super::dockerignore::{self, EntryKind, Rules};
use super::CopySpec;
use crate::container::user::{read_image_file, resolve as resolve_user};
use crate::layers::stack::{components, follow_links, Found, Node, Stack};
use crate::layers::tarwrite::{Entry, Kind, TarWriter};
use crate::sys::openat2;
use anyhow::{anyhow, bail, Context as _, Result};
use nix::fcntl::OFlag;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The build context: a directory husk only reads.
pub struct Context {
    pub root: PathBuf,
    fd: OwnedFd,
    /// What `.dockerignore` keeps, by path (relative, `/`-separated).
    kept: BTreeMap<Vec<u8>, EntryKind>,
}

impl Context {
    pub fn open(root: &Path, rules: &Rules) -> Result<Context> {
        let fd: OwnedFd =
            File::open(root).with_context(|| format!("opening the build context {}", root.display()))?.into();
        let kept = dockerignore::context_files(root, rules)?
            .into_iter()
            .map(|e| (e.path.as_os_str().as_bytes().to_vec(), e.kind))
            .collect();
        Ok(Context { root: root.to_path_buf(), fd, kept })
    }

    /// Opens a kept file for reading, beneath the root, following no symlink.
    fn open_file(&self, rel: &[u8]) -> Result<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        let fd = openat2(self.fd.as_raw_fd(), rel, flags, resolve)
            .with_context(|| format!("opening {} in the build context", String::from_utf8_lossy(rel)))?;
        Ok(File::from(fd))
    }

    fn meta(&self, rel: &[u8]) -> Result<fs::Metadata> {
        let p = self.root.join(OsStr::from_bytes(rel));
        fs::symlink_metadata(&p).with_context(|| format!("reading {} in the build context", display(rel)))
    }

    fn kind(&self, rel: &[u8]) -> Option<EntryKind> {
        if rel.is_empty() {
            return Some(EntryKind::Dir);
        }
        self.kept.get(rel).copied()
    }

    /// Follows symlinks at `rel` (and in its parents) inside the context: the path it
    /// names, if that is kept.
    fn follow(&self, rel: &[u8]) -> Result<Option<Vec<u8>>> {
        let (real, exists) = follow_links(rel, |path| {
            Ok(match self.kind(path) {
                None => Node::Missing,
                Some(EntryKind::Symlink) => Node::Link(self.root.join(OsStr::from_bytes(path))),
                Some(_) => Node::Present,
            })
        })?;
        Ok(exists.then_some(real))
    }
}

/// Where the sources come from.
pub enum Source<'a> {
    Context(&'a Context),
    /// Another stage's or image's layers (top first).
    Layers(Stack),
}

/// One COPY or ADD, variables already substituted.
pub struct Request<'a> {
    pub spec: &'a CopySpec,
    pub add: bool,
    pub source: Source<'a>,
    /// The layers of the image being built (top first): the destination.
    pub image_layers: &'a [PathBuf],
    pub workdir: &'a str,
}

#[derive(Debug, Clone)]
enum Data {
    None,
    Context(Vec<u8>),
    Host(PathBuf),
    Inline(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Item {
    /// Relative to the image root, no leading `/`.
    path: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Vec<u8>,
    data: Data,
    /// A tar archive to extract with this directory as its root (ADD).
    archive: Option<(Data, Compression)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What one COPY/ADD will write.
pub struct Plan {
    items: Vec<Item>,
    /// The sources' content (names, modes, owners, bytes; not times), for the cache key.
    pub content_hash: String,
}

/// Works out what the instruction copies; errors name the cause (the caller adds the line).
pub fn plan(req: &Request) -> Result<Plan> {
    let spec = req.spec;
    if let Some(url) = spec.sources.iter().find(|s| s.contains("://")) {
        bail!("ADD from a URL ({}) is not supported by husk: download it and COPY the file", url);
    }
    let owner = match &spec.chown {
        Some(c) => Some(chown_ids(c, req.image_layers)?),
        None => None,
    };
    let chmod = spec.chmod.as_deref().map(parse_chmod).transpose()?;
    let image = Stack::of_layers(req.image_layers);

    let dest_text = if spec.dest.starts_with('/') {
        spec.dest.clone()
    } else {
        format!("{}/{}", req.workdir.trim_end_matches('/'), spec.dest)
    };
    let dest_dir_hint = spec.dest.ends_with('/') || spec.dest.ends_with("/.") || spec.dest == ".";
    let dest = resolve_dest(&image, dest_text.as_bytes())?;
    let dest_is_dir = dest_dir_hint || matches!(lookup(&image, &dest), Some(Found::Dir { .. }));

    // The sources, each a path in its tree (symlinks followed) and what it is.
    let mut matched: Vec<(Vec<u8>, SourceKind)> = Vec::new();
    for pattern in &spec.sources {
        let clean = components(pattern.as_bytes()).join(&b'/');
        let found = match &req.source {
            Source::Context(ctx) => context_matches(ctx, &clean)?,
            Source::Layers(stack) => stack_matches(stack, &clean)?,
        };
        if found.is_empty() {
            let where_ = match req.source {
                Source::Context(_) => "in the build context",
                Source::Layers(_) => "in the --from stage or image",
            };
            if has_glob(pattern) {
                bail!("no source files were specified: {} matches nothing {}", pattern, where_);
            }
            bail!("{}: no such file or directory {}", pattern, where_);
        }
        matched.extend(found);
    }
    let count = matched.len() + spec.inline.len();
    if count > 1 && !dest_dir_hint {
        bail!("When using COPY with more than one source file, the destination must be a directory and end with a /");
    }

    let mut items: Vec<Item> = Vec::new();
    let new_dir = |path: Vec<u8>| Item {
        path,
        kind: Kind::Dir,
        mode: chmod.unwrap_or(0o755),
        uid: owner.map(|o| o.0).unwrap_or(0),
        gid: owner.map(|o| o.1).unwrap_or(0),
        mtime: now(),
        size: 0,
        link: Vec::new(),
        data: Data::None,
        archive: None,
    };
    let file_dest = |name: &[u8]| if dest_is_dir { join(&dest, name) } else { dest.clone() };
    for (path, kind) in matched {
        match kind {
            SourceKind::Dir => {
                items.push(new_dir(dest.clone()));
                match &req.source {
                    Source::Context(ctx) => {
                        context_tree(ctx, &path, &dest, owner, chmod, &mut items)?;
                    }
                    Source::Layers(stack) => {
                        let Some(Found::Dir { stack: below, .. }) =
                            stack.lookup_path(&path).or(root_found(stack, &path))
                        else {
                            bail!("{} is no longer a directory", display(&path));
                        };
                        stack_tree(&below, &dest, owner, chmod, &mut items)?;
                    }
                }
            }
            SourceKind::Other => {
                let name = basename(&path);
                let target = file_dest(&name);
                if req.add {
                    if let Source::Context(ctx) = &req.source {
                        if let Some(c) = archive_kind(&mut ctx.open_file(&path)?, &path)? {
                            let mut dir = new_dir(dest.clone());
                            dir.archive = Some((Data::Context(path.clone()), c));
                            items.push(dir);
                            continue;
                        }
                    }
                }
                items.push(match &req.source {
                    Source::Context(ctx) => context_item(ctx, &path, target, owner, chmod)?,
                    Source::Layers(stack) => match stack.lookup_path(&path) {
                        Some(Found::Other { path: host, meta, .. }) => host_item(&host, &meta, target, owner, chmod)?,
                        _ => bail!("{} disappeared while being copied", display(&path)),
                    },
                });
            }
        }
    }
    for f in &spec.inline {
        let mut it = new_dir(file_dest(f.name.as_bytes()));
        it.kind = Kind::File;
        it.mode = chmod.unwrap_or(0o644);
        it.size = f.content.len() as u64;
        it.data = Data::Inline(f.content.as_bytes().to_vec());
        items.push(it);
    }

    // Later sources win over earlier ones of the same name, as when copied one by one.
    let mut by_path: BTreeMap<Vec<u8>, Item> = BTreeMap::new();
    for it in items {
        if it.path.is_empty() {
            continue; // the root itself: its metadata stays the image's
        }
        if it.kind == Kind::Dir && by_path.get(&it.path).is_some_and(|e| e.kind == Kind::Dir) {
            continue;
        }
        by_path.insert(it.path.clone(), it);
    }
    let parents: Vec<Vec<u8>> = by_path.keys().flat_map(|p| ancestors(p)).collect();
    for p in parents {
        if by_path.contains_key(&p) {
            continue;
        }
        let item = match lookup(&image, &p) {
            Some(Found::Dir { meta, .. }) => Item {
                mode: meta.mode() & 0o7777,
                uid: meta.uid() as u64,
                gid: meta.gid() as u64,
                mtime: meta.mtime(),
                ..new_dir(p.clone())
            },
            _ => Item { mode: 0o755, uid: 0, gid: 0, ..new_dir(p.clone()) },
        };
        by_path.insert(p, item);
    }
    let items: Vec<Item> = by_path.into_values().collect();
    let content_hash = hash_items(&items, &req.source)?;
    Ok(Plan { items, content_hash })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Dir,
    Other,
}

impl Plan {
    /// Writes the layer tar.
    pub fn write_tar(&self, ctx: Option<&Context>, out: &mut dyn Write) -> Result<()> {
        let mut tar = TarWriter::new(out);
        for it in &self.items {
            let mut e = Entry::new(&it.path, it.kind);
            e.mode = it.mode;
            e.uid = it.uid;
            e.gid = it.gid;
            e.mtime = it.mtime;
            e.link = &it.link;
            if it.kind == Kind::File {
                let (reader, size) = open_data(&it.data, ctx)?;
                e.size = size;
                tar.entry(&e)?;
                tar.data(reader).with_context(|| format!("copying {}", display(&it.path)))?;
            } else {
                tar.entry(&e)?;
            }
            if let Some((data, compression)) = &it.archive {
                let (reader, _) = open_data(data, ctx)?;
                extract_into(&mut tar, reader, *compression, &it.path)?;
            }
        }
        tar.finish()?;
        Ok(())
    }
}

fn open_data<'a>(data: &'a Data, ctx: Option<&Context>) -> Result<(Box<dyn Read + 'a>, u64)> {
    Ok(match data {
        Data::Context(rel) => {
            let ctx = ctx.context("no build context")?;
            let f = ctx.open_file(rel)?;
            let size = f.metadata()?.len();
            (Box::new(BufReader::with_capacity(1 << 20, f)), size)
        }
        Data::Host(p) => {
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?;
            let size = f.metadata()?.len();
            (Box::new(BufReader::with_capacity(1 << 20, f)), size)
        }
        Data::Inline(b) => (Box::new(&b[..]), b.len() as u64),
        Data::None => (Box::new(std::io::empty()), 0),
    })
}

use std::os::unix::fs::OpenOptionsExt;

/// Copies the members of an archive into `tar` under `dest`. Names are cleaned (a
/// `..` above the archive's root is refused); whiteout names are dropped (an archive
/// adds files, it does not delete the image's); device nodes are skipped.
fn extract_into(tar: &mut TarWriter<&mut dyn Write>, reader: impl Read, c: Compression, dest: &[u8]) -> Result<()> {
    let reader: Box<dyn Read> = match c {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::Decoder::new(reader)?),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let raw = entry.path_bytes().into_owned();
        let name = clean_member(&raw)?;
        if name.is_empty() || basename(&name).starts_with(b".wh.") {
            continue;
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::Fifo => Kind::Fifo,
            _ => continue,
        };
        let path = join(dest, &name);
        let link = match kind {
            Kind::Symlink => entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default(),
            Kind::HardLink => {
                let target = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
                join(dest, &clean_member(&target)?)
            }
            _ => Vec::new(),
        };
        let mut e = Entry::new(&path, kind);
        e.mode = header.mode().unwrap_or(0o644) & 0o7777;
        e.uid = header.uid().unwrap_or(0);
        e.gid = header.gid().unwrap_or(0);
        e.mtime = header.mtime().unwrap_or(0) as i64;
        e.link = &link;
        e.size = if kind == Kind::File { entry.size() } else { 0 };
        tar.entry(&e)?;
        if kind == Kind::File {
            tar.data(&mut entry).with_context(|| format!("extracting {}", display(&raw)))?;
        }
    }
    Ok(())
}

fn clean_member(raw: &[u8]) -> Result<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    bail!("the archive member {:?} points outside the archive", display(raw));
                }
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out.join(&b'/'))
}

/// Whether a context file is a tar archive ADD extracts, and its compression.
fn archive_kind(f: &mut File, rel: &[u8]) -> Result<Option<Compression>> {
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    let c = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"\xfd7zXZ\0") || head.starts_with(b"BZh") {
        bail!(
            "ADD {}: xz and bzip2 archives are not supported by husk; decompress it (or use gzip or zstd)",
            display(rel)
        );
    } else if n == 512 && is_tar_header(head) {
        return Ok(Some(Compression::None));
    } else {
        return Ok(None);
    };
    // A compressed file is an archive only if it holds a tar.
    let f2 = f.try_clone()?;
    let mut inner: Box<dyn Read> = {
        use std::io::Seek;
        let mut f2 = f2;
        f2.seek(std::io::SeekFrom::Start(0))?;
        match c {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f2)),
            _ => Box::new(zstd::Decoder::new(f2)?),
        }
    };
    let mut block = [0u8; 512];
    Ok((inner.read_exact(&mut block).is_ok() && is_tar_header(&block)).then_some(c))
}

/// A tar header: its checksum adds up (what Go's and Docker's archive detection checks).
fn is_tar_header(h: &[u8]) -> bool {
    if h.len() < 512 || h.iter().all(|&b| b == 0) {
        return false;
    }
    let field = std::str::from_utf8(&h[148..156]).unwrap_or("");
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8) else {
        return false;
    };
    let sum: u32 = h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u32 }).sum();
    sum == want
}

fn context_item(
    ctx: &Context,
    rel: &[u8],
    path: Vec<u8>,
    owner: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Item> {
    let meta = ctx.meta(rel)?;
    let mut it = host_item(&ctx.root.join(OsStr::from_bytes(rel)), &meta, path, None, chmod)?;
    it.uid = owner.map(|o| o.0).unwrap_or(0);
    it.gid = owner.map(|o| o.1).unwrap_or(0);
    if it.kind == Kind::File {
        it.data = Data::Context(rel.to_vec());
    }
    Ok(it)
}

/// An item from a file husk reads directly (a layer's, or the context's metadata).
fn host_item(
    host: &Path,
    meta: &fs::Metadata,
    path: Vec<u8>,
    owner: Option<(u64, u64)>,
    chmod: Option<u32>,
) -> Result<Item> {
    let ft = meta.file_type();
    let (kind, link, data) = if ft.is_file() {
        (Kind::File, Vec::new(), Data::Host(host.to_path_buf()))
    } else if ft.is_dir() {
        (Kind::Dir, Vec::new(), Data::None)
    } else if ft.is_symlink() {
        let target = fs::read_link(host).with_context(|| format!("reading the link {}", host.display()))?;
        (Kind::Symlink, target.as_os_str().as_bytes().to_vec(), Data::None)
    } else {
        bail!("{} is not a file, directory or symlink", display(&path))
    };
    let mode = match (chmod, kind) {
        (_, Kind::Symlink) => 0o777,
        (Some(m), _) => m,
        (None, _) => meta.mode() & 0o7777,
    };
    Ok(Item {
        path,
        kind,
        mode,
        uid: owner.map(|o| o.0).unwrap_or(meta.uid() as u64),
        gid: owner.map(|o| o.1).unwrap_or(meta.gid() as u64),
        mtime: meta.mtime(),
        size: if kind == Kind::File { meta.len() } else { 0 },
        link,
        data,
        archive: None,
    })
}

/// The kept entries under context directory `dir`, as items under `dest`.
fn context_tree(
    ctx: &Context,
    dir: &[u8],
    dest: &[u8],
    owner: Option<(u64, u64)>,
    chmod: Option<u32>,
    out: &mut Vec<Item>,
) -> Result<()> {
    let prefix = if dir.is_empty() { Vec::new() } else { [dir, b"/"].concat() };
    for (path, kind) in ctx.kept.range(prefix.clone()..) {
        if !path.starts_with(&prefix) {
            break;
        }
        if *kind == EntryKind::Other {
            continue; // sockets, fifos, devices: not copied
        }
        let target = join(dest, &path[prefix.len()..]);
        out.push(context_item(ctx, path, target, owner, chmod)?);
    }
    Ok(())
}

/// A merged directory of layers, recursively, as items under `dest`.
fn stack_tree(
    stack: &Stack,
    dest: &[u8],
    owner: Option<(u64, u64)>,
    chmod: Option<u32>,
    out: &mut Vec<Item>,
) -> Result<()> {
    for name in stack.names()? {
        let target = join(dest, name.as_bytes());
        match stack.lookup(&name) {
            Some(Found::Dir { stack: below, top, meta }) => {
                out.push(host_item(&top.1, &meta, target.clone(), owner, chmod)?);
                stack_tree(&below, &target, owner, chmod, out)?;
            }
            Some(Found::Other { path, meta, .. }) if meta.file_type().is_file() || meta.file_type().is_symlink() => {
                out.push(host_item(&path, &meta, target, owner, chmod)?);
            }
            Some(Found::Other { .. }) => {}
            None => {}
        }
    }
    Ok(())
}

/// Context paths matching `pattern` (clean, relative), symlinks followed.
fn context_matches(ctx: &Context, pattern: &[u8]) -> Result<Vec<(Vec<u8>, SourceKind)>> {
    let candidates: Vec<Vec<u8>> = if has_glob(&String::from_utf8_lossy(pattern)) {
        let pat = components(pattern);
        ctx.kept
            .keys()
            .filter(|p| {
                let comps = components(p);
                comps.len() == pat.len() && comps.iter().zip(&pat).all(|(c, m)| glob_match(m, c))
            })
            .cloned()
            .collect()
    } else {
        vec![pattern.to_vec()]
    };
    let mut out = Vec::new();
    for c in candidates {
        let Some(real) = ctx.follow(&c)? else { continue };
        match ctx.kind(&real) {
            Some(EntryKind::Dir) => out.push((real, SourceKind::Dir)),
            Some(EntryKind::File) => out.push((real, SourceKind::Other)),
            _ => {}
        }
    }
    Ok(out)
}

/// Paths of a stage's or image's tree matching `pattern`, symlinks followed inside it.
fn stack_matches(stack: &Stack, pattern: &[u8]) -> Result<Vec<(Vec<u8>, SourceKind)>> {
    let mut paths: Vec<Vec<u8>> = vec![Vec::new()];
    for comp in components(pattern) {
        let mut next = Vec::new();
        for p in paths {
            let real = resolve_dest(stack, &p)?;
            let names: Vec<Vec<u8>> = if has_glob(&String::from_utf8_lossy(&comp)) {
                match lookup(stack, &real) {
                    Some(Found::Dir { stack: dir, .. }) => dir
                        .names()?
                        .into_iter()
                        .map(|n| n.as_bytes().to_vec())
                        .filter(|n| glob_match(&comp, n))
                        .collect(),
                    _ => Vec::new(),
                }
            } else {
                vec![comp.clone()]
            };
            next.extend(names.into_iter().map(|n| join(&real, &n)));
        }
        paths = next;
    }
    let mut out = Vec::new();
    for p in paths {
        let real = resolve_dest(stack, &p)?;
        match lookup(stack, &real) {
            Some(Found::Dir { .. }) => out.push((real, SourceKind::Dir)),
            Some(Found::Other { meta, .. }) if meta.file_type().is_file() => out.push((real, SourceKind::Other)),
            _ => {}
        }
    }
    Ok(out)
}

/// A path looked up in merged layers; the empty path is the root.
fn lookup(stack: &Stack, path: &[u8]) -> Option<Found> {
    if path.is_empty() {
        return root_found(stack, path);
    }
    stack.lookup_path(path)
}

fn root_found(stack: &Stack, path: &[u8]) -> Option<Found> {
    if !path.is_empty() {
        return None;
    }
    let (layer, dir) = stack.dirs.first()?.clone();
    let meta = fs::symlink_metadata(&dir).ok()?;
    Some(Found::Dir { stack: stack.clone(), top: (layer, dir), meta })
}

/// `path` with the symlinks of the image followed (inside the image), as far as it
/// exists; the rest is appended as written.
fn resolve_dest(stack: &Stack, path: &[u8]) -> Result<Vec<u8>> {
    Ok(stack.follow(path)?.0)
}

/// `--chown=user[:group]`: names from the image's /etc/passwd and /etc/group; a user
/// without a group gets the group of the same number, as Docker documents.
pub fn chown_ids(spec: &str, image_layers: &[PathBuf]) -> Result<(u64, u64)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        bail!("invalid --chown {:?}: expected USER[:GROUP]", spec);
    }
    let passwd = read_image_file(image_layers, "/etc/passwd")?;
    let groups = read_image_file(image_layers, "/etc/group")?;
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            resolve_user(user, passwd.as_deref(), groups.as_deref())
                .map_err(|e| anyhow!("--chown {}: {}", spec, e))?
                .uid
        }
    };
    let gid = match group {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                resolve_user(&format!("0:{}", g), passwd.as_deref(), groups.as_deref())
                    .map_err(|e| anyhow!("--chown {}: {}", spec, e))?
                    .gid
            }
        },
    };
    Ok((uid as u64, gid as u64))
}

fn parse_chmod(s: &str) -> Result<u32> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if !s.is_empty() && m <= 0o7777 => Ok(m),
        _ => bail!("invalid --chmod {:?}: husk takes an octal mode (such as 755)", s),
    }
}

/// The content hash of the sources: every item's name, type, mode, owner, link target
/// and bytes (context files only: a stage's or image's content is in its own key).
fn hash_items(items: &[Item], source: &Source) -> Result<String> {
    let mut h = Sha256::new();
    let ctx = match source {
        Source::Context(c) => Some(*c),
        Source::Layers(_) => None,
    };
    let mut buf = vec![0u8; 1 << 16];
    for it in items {
        let line = format!("{:?} {:o} {}:{} {} ", it.kind, it.mode, it.uid, it.gid, it.path.len());
        h.update(line.as_bytes());
        h.update(&it.path);
        h.update(it.link.len().to_le_bytes());
        h.update(&it.link);
        for data in [Some(&it.data), it.archive.as_ref().map(|a| &a.0)].into_iter().flatten() {
            let hashed = match data {
                Data::Context(_) | Data::Inline(_) => true,
                Data::Host(_) | Data::None => false,
            };
            if !hashed {
                continue;
            }
            let (mut r, _) = open_data(data, ctx)?;
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            h.update(b"\0end");
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => [a, b"/", b].concat(),
    }
}

fn basename(p: &[u8]) -> Vec<u8> {
    p.rsplit(|&b| b == b'/').next().unwrap_or(p).to_vec()
}

/// Every proper prefix of a path (`a`, `a/b` for `a/b/c`).
fn ancestors(p: &[u8]) -> Vec<Vec<u8>> {
    p.iter().enumerate().filter(|(_, &b)| b == b'/').map(|(i, _)| p[..i].to_vec()).collect()
}

fn display(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one component: `*`, `?`, `[...]` (with `^`/`!` and ranges), `\` escapes.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, len)) = class_match(&pattern[p..], name[n]) {
                        if matched {
                            p += len;
                            n += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == name[n] => {
                    p += 2;
                    n += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// `[...]` at the start of `p` against `c`: whether it matches, and the class's length.
fn class_match(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(p.get(i), Some(b'^') | Some(b'!'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        let lo = if lo == b'\\' {
            i += 1;
            *p.get(i)?
        } else {
            lo
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&b| b != b']') {
            hi = p[i + 1];
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_go() {
        assert!(glob_match(b"*.txt", b"a.txt"));
        assert!(!glob_match(b"*.txt", b"a.txs"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[^a-c]x", b"bx"));
        assert!(glob_match(b"\\*", b"*"));
        assert!(!glob_match(b"\\*", b"a"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"aXbYc"));
    }

    #[test]
    fn paths_never_climb_above_the_root() {
        assert_eq!(components(b"../../a/./b/../c"), vec![b"a".to_vec(), b"c".to_vec()]);
        assert!(clean_member(b"../x").is_err());
        assert_eq!(clean_member(b"./a/../b").unwrap(), b"b".to_vec());
        assert_eq!(ancestors(b"a/b/c"), vec![b"a".to_vec(), b"a/b".to_vec()]);
    }

    #[test]
    fn chmod_is_octal() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert_eq!(parse_chmod("0640").unwrap(), 0o640);
        assert!(parse_chmod("u+x").is_err());
        assert!(parse_chmod("99999").is_err());
    }
}
