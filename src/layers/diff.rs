//! A container's writable layer as an OCI layer: what changed against the image's layers
//! (`husk diff`), and that change as a tar with OCI whiteouts (`husk commit`, build).
//!
//! The writable layer is either an overlay upper dir (native overlayfs with `userxattr`
//! or fuse-overlayfs: deletions are 0/0 character devices, or `.wh.NAME` files when
//! fuse-overlayfs could not make devices; replaced directories are opaque by the
//! `user.overlay.opaque`, `trusted.overlay.opaque` or `user.fuseoverlayfs.opaque` xattr,
//! or a `.wh..wh..opq` file), or the full private copy of the copy mode
//! (`layers::merge`), compared with the layers entry by entry.
//!
//! Run this as root of husk's user namespace: the ids read are the container's, and
//! the files of every container user are readable. File data and xattrs are read
//! through descriptors opened beneath the layer's root without following symlinks, so
//! a running container that swaps a directory for a symlink cannot make husk archive
//! a host file.
//!
//! Entries are sorted by name in each directory (a directory before its contents), and
//! each keeps its mode, owner and mtime (whole seconds), as Docker's layers do; a
//! whiteout has mode 0, owner 0 and mtime 0, so the same change gives the same layer.
use super::stack::{is_whiteout, Found, Stack};
use super::tarwrite::{Entry, Kind, TarWriter};
use crate::sys::openat2;
use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTRS: [&std::ffi::CStr; 3] =
    [c"user.overlay.opaque", c"trusted.overlay.opaque", c"user.fuseoverlayfs.opaque"];

/// How the writable layer records its changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An overlay upper dir.
    Overlay,
    /// A full copy of the layers made at `since` (copy mode): a file not changed since
    /// then is what the layers hold.
    Copy { since: SystemTime },
}

/// A container's writable layer and the image layers under it.
#[derive(Debug, Clone)]
pub struct WritableLayer {
    pub upper: PathBuf,
    pub lowers_top_first: Vec<PathBuf>,
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// Docker's letter for it.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path, relative to the root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: Vec<u8>,
}

#[derive(Debug)]
enum What {
    /// A file, directory, symlink, ... of layer `root` (0: the writable layer).
    Node { root: usize, meta: Metadata },
    /// The name was deleted (`.wh.NAME`).
    Whiteout,
    /// The directory hides what the layers had in it (`.wh..wh..opq`).
    Opaque,
    /// Only shown by `husk diff`: deleted along with an opaque directory's old content.
    Gone,
}

#[derive(Debug)]
struct Member {
    path: Vec<u8>,
    what: What,
    change: Option<ChangeKind>,
}

/// A set of tar members and the changes they stand for.
pub struct Diff {
    /// Layer directories the members' content comes from (0: the writable layer).
    roots: Vec<PathBuf>,
    members: Vec<Member>,
}

/// Mount points husk makes in a rootfs that lacks them (see `ns::mountpoints`); they
/// are not the container's changes. Files before the directories that hold them.
const HUSK_MOUNT_POINTS: [&[u8]; 7] =
    [b"etc/hostname", b"etc/hosts", b"etc/resolv.conf", b"proc", b"dev", b"sys", b"etc"];

impl Diff {
    /// What the writable layer changed.
    pub fn scan(layer: &WritableLayer) -> Result<Diff> {
        let mut roots = vec![layer.upper.clone()];
        roots.extend(layer.lowers_top_first.iter().cloned());
        let lowers = image_stack(layer);
        let mut diff = Diff { roots, members: Vec::new() };
        let names = sorted_names(&layer.upper)?;
        match layer.format {
            Format::Overlay => diff.scan_overlay(b"", &names, Some(&lowers))?,
            Format::Copy { since } => {
                diff.scan_copy(b"", &names, Some(&lowers), since)?;
            }
        }
        diff.drop_husk_mount_points(&lowers);
        Ok(diff)
    }

    /// The container's whole filesystem as members (`husk export`).
    pub fn merged(layer: &WritableLayer) -> Result<Diff> {
        let layers: Vec<PathBuf> = match layer.format {
            Format::Overlay => std::iter::once(&layer.upper).chain(&layer.lowers_top_first).cloned().collect(),
            Format::Copy { .. } => vec![layer.upper.clone()],
        };
        let mut diff = Diff { roots: layers.clone(), members: Vec::new() };
        diff.walk_merged(b"", &Stack::of_layers(&layers))?;
        diff.drop_husk_mount_points(&image_stack(layer));
        Ok(diff)
    }

    /// The changes as `husk diff` lists them, sorted by path.
    pub fn changes(&self) -> Vec<Change> {
        let mut out: Vec<Change> =
            self.members.iter().filter_map(|m| m.change.map(|kind| Change { kind, path: m.path.clone() })).collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// True when the layer would hold no entry at all.
    pub fn is_empty(&self) -> bool {
        !self.members.iter().any(|m| !matches!(m.what, What::Gone))
    }

    fn push(&mut self, path: Vec<u8>, what: What, change: Option<ChangeKind>) {
        self.members.push(Member { path, what, change });
    }

    fn scan_overlay(&mut self, rel: &[u8], names: &[OsString], lower: Option<&Stack>) -> Result<()> {
        let upper_dir = self.roots[0].join(OsStr::from_bytes(rel));
        for name in names {
            let bytes = name.as_bytes();
            if bytes == OPAQUE_MARKER {
                continue;
            }
            if let Some(hidden) = bytes.strip_prefix(WHITEOUT_PREFIX) {
                // fuse-overlayfs' whiteout when it cannot make devices
                if !hidden.is_empty() {
                    self.whiteout(rel, OsStr::from_bytes(hidden), lower);
                }
                continue;
            }
            let path = upper_dir.join(name);
            let meta = fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            if is_whiteout(&meta) {
                self.whiteout(rel, name, lower);
                continue;
            }
            if meta.file_type().is_socket() {
                continue; // not archived, as Docker does
            }
            let child = join(rel, bytes);
            let found = lower.and_then(|l| l.lookup(name));
            let kind = if found.is_some() { ChangeKind::Changed } else { ChangeKind::Added };
            let is_dir = meta.is_dir();
            self.push(child.clone(), What::Node { root: 0, meta }, Some(kind));
            if !is_dir {
                continue;
            }
            let child_names = sorted_names(&path)?;
            let below = match found {
                Some(Found::Dir { stack, .. }) => Some(stack),
                _ => None,
            };
            if is_opaque_upper(&path, &child_names) {
                self.push(child.clone(), What::Opaque, None);
                if let Some(below) = &below {
                    for old in below.names()? {
                        if child_names.binary_search(&old).is_err() {
                            self.push(join(&child, old.as_bytes()), What::Gone, Some(ChangeKind::Deleted));
                        }
                    }
                }
                self.scan_overlay(&child, &child_names, None)?;
            } else {
                self.scan_overlay(&child, &child_names, below.as_ref())?;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &[u8], name: &OsStr, lower: Option<&Stack>) {
        // Overlay only leaves whiteouts over names the layers have; any other is moot.
        if lower.and_then(|l| l.lookup(name)).is_some() {
            self.push(join(rel, name.as_bytes()), What::Whiteout, Some(ChangeKind::Deleted));
        }
    }

    /// Compares a directory of the private copy with the layers' one; true when
    /// anything below it changed.
    fn scan_copy(&mut self, rel: &[u8], names: &[OsString], lower: Option<&Stack>, since: SystemTime) -> Result<bool> {
        let upper_dir = self.roots[0].join(OsStr::from_bytes(rel));
        let mut all: Vec<OsString> = names.to_vec();
        if let Some(l) = lower {
            all.extend(l.names()?);
        }
        all.sort();
        all.dedup();
        let mut changed = false;
        for name in &all {
            let child = join(rel, name.as_bytes());
            let found = lower.and_then(|l| l.lookup(name));
            let path = upper_dir.join(name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if found.is_some() {
                        self.push(child, What::Whiteout, Some(ChangeKind::Deleted));
                        changed = true;
                    }
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            if meta.file_type().is_socket() {
                continue;
            }
            let kind = if found.is_some() { ChangeKind::Changed } else { ChangeKind::Added };
            if !meta.is_dir() {
                let differs = match &found {
                    None | Some(Found::Dir { .. }) => true,
                    Some(Found::Other { path: lower_path, meta: lower_meta, .. }) => {
                        copy_differs(&self.roots[0], &child, &meta, lower_path, lower_meta, since)?
                    }
                };
                if differs {
                    self.push(child, What::Node { root: 0, meta }, Some(kind));
                    changed = true;
                }
                continue;
            }
            let at = self.members.len();
            let (below, own_change) = match found {
                Some(Found::Dir { stack, meta: lower_meta, .. }) => (Some(stack), attrs_differ(&meta, &lower_meta)),
                _ => (None, true),
            };
            let inner = self.scan_copy(&child, &sorted_names(&path)?, below.as_ref(), since)?;
            if own_change || inner {
                self.members.insert(at, Member { path: child, what: What::Node { root: 0, meta }, change: Some(kind) });
                changed = true;
            }
        }
        Ok(changed)
    }

    fn walk_merged(&mut self, rel: &[u8], stack: &Stack) -> Result<()> {
        for name in stack.names()? {
            let child = join(rel, name.as_bytes());
            match stack.lookup(&name) {
                Some(Found::Other { layer, meta, .. }) if !meta.file_type().is_socket() => {
                    self.push(child, What::Node { root: layer, meta }, None);
                }
                None | Some(Found::Other { .. }) => {}
                Some(Found::Dir { stack: below, top: (layer, _), meta }) => {
                    self.push(child.clone(), What::Node { root: layer, meta }, None);
                    self.walk_merged(&child, &below)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the empty mount points husk made in the writable layer where the image
    /// (`image`, its layers) has none.
    fn drop_husk_mount_points(&mut self, image: &Stack) {
        for mp in HUSK_MOUNT_POINTS {
            let Some(i) = self.members.iter().position(|m| m.path == mp) else { continue };
            let What::Node { root: 0, meta } = &self.members[i].what else { continue };
            let empty = if meta.is_dir() {
                let prefix = join(mp, b"");
                !self.members.iter().any(|o| o.path.starts_with(&prefix))
            } else {
                meta.is_file() && meta.len() == 0
            };
            if empty && image.lookup_path(mp).is_none() {
                self.members.remove(i);
            }
        }
    }

    /// Writes the members as a complete tar and returns the output.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<W> {
        let root_fds: Vec<OwnedFd> = self
            .roots
            .iter()
            .map(|r| {
                openat2(
                    libc::AT_FDCWD,
                    r.as_os_str().as_bytes(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    0,
                )
                .with_context(|| format!("opening {}", r.display()))
            })
            .collect::<Result<_>>()?;
        let mut tar = TarWriter::new(out);
        let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        for m in &self.members {
            let shown = || format!("/{}", String::from_utf8_lossy(&m.path));
            match &m.what {
                What::Gone => {}
                What::Whiteout => {
                    let name = whiteout_name(&m.path);
                    tar.entry(&Entry { mode: 0, ..Entry::new(&name, Kind::File) })?;
                }
                What::Opaque => {
                    let name = join(&m.path, OPAQUE_MARKER);
                    tar.entry(&Entry { mode: 0, ..Entry::new(&name, Kind::File) })?;
                }
                What::Node { root, meta } => {
                    write_node(&mut tar, &root_fds[*root], &m.path, meta, &mut links)
                        .with_context(|| format!("archiving {}", shown()))?;
                }
            }
        }
        Ok(tar.finish()?)
    }
}

/// The image's layers, numbered as `Diff::roots` (after the writable layer).
fn image_stack(layer: &WritableLayer) -> Stack {
    Stack { dirs: layer.lowers_top_first.iter().cloned().enumerate().map(|(i, p)| (i + 1, p)).collect() }
}

fn write_node<W: Write>(
    tar: &mut TarWriter<W>,
    root: &OwnedFd,
    path: &[u8],
    meta: &Metadata,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<()> {
    let ft = meta.file_type();
    let mut e = Entry::new(path, Kind::File);
    e.mode = meta.mode() & 0o7777;
    e.uid = meta.uid() as u64;
    e.gid = meta.gid() as u64;
    e.mtime = meta.mtime();
    if ft.is_symlink() {
        let target = read_link_beneath(root, path).context("reading the symlink")?;
        return Ok(tar.entry(&Entry { kind: Kind::Symlink, link: target.as_os_str().as_bytes(), ..e })?);
    }
    if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        e.kind = if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::CharDevice
        } else {
            Kind::BlockDevice
        };
        let rdev = meta.rdev();
        e.device = (libc::major(rdev), libc::minor(rdev));
        return Ok(tar.entry(&e)?);
    }
    if ft.is_file() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return Ok(tar.entry(&Entry { kind: Kind::HardLink, link: first, ..e })?);
        }
        links.insert((meta.dev(), meta.ino()), path.to_vec());
    }
    let dir = ft.is_dir();
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let flags = if dir { flags | OFlag::O_DIRECTORY } else { flags };
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let fd = openat2(root.as_raw_fd(), path, flags, resolve).context("opening it")?;
    let file = File::from(fd);
    let now = file.metadata().context("reading its metadata")?;
    if now.is_dir() != dir || (!dir && !now.is_file()) {
        bail!("it changed type while being archived");
    }
    let xattrs = read_xattrs(&file)?;
    e.xattrs = &xattrs;
    if dir {
        e.kind = Kind::Dir;
        return Ok(tar.entry(&e)?);
    }
    e.size = now.len();
    e.mode = now.mode() & 0o7777;
    e.mtime = now.mtime();
    tar.entry(&e)?;
    Ok(tar.data(std::io::BufReader::with_capacity(1 << 20, file))?)
}

/// The target of the symlink `path` beneath `root`, reached without following any
/// other symlink.
fn read_link_beneath(root: &OwnedFd, path: &[u8]) -> Result<PathBuf> {
    let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let parent_bytes: &[u8] = if parent.is_empty() { b"." } else { parent };
    let dir = openat2(root.as_raw_fd(), parent_bytes, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, resolve)
        .context("opening its directory")?;
    let target = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), OsStr::from_bytes(name)).context("readlink")?;
    Ok(PathBuf::from(target))
}

/// The xattrs a layer carries: `user.*` (overlay's own `user.overlay.*` left out, the
/// escaped `user.overlay.overlay.*` of the container's files unescaped) and
/// `security.capability`.
fn read_xattrs(file: &File) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let fd = file.as_raw_fd();
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: `names` is valid for writes of its length.
        let n = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        match nix::errno::Errno::last() {
            nix::errno::Errno::ERANGE => names.resize(names.len() * 4, 0),
            nix::errno::Errno::ENOTSUP => return Ok(Vec::new()),
            e => return Err(e).context("listing xattrs"),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let shown = if let Some(rest) = name.strip_prefix(b"user.overlay.overlay.") {
            [b"user.overlay.".as_slice(), rest].concat()
        } else if name.starts_with(b"user.overlay.") || name.starts_with(b"user.fuseoverlayfs.") {
            continue;
        } else if name.starts_with(b"user.") || name == b"security.capability" {
            name.to_vec()
        } else {
            continue;
        };
        let cname = std::ffi::CString::new(name).expect("split at NUL");
        let mut value = vec![0u8; 256];
        loop {
            // SAFETY: `cname` is NUL-terminated and `value` valid for writes of its length.
            let n = unsafe { libc::fgetxattr(fd, cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
            if n >= 0 {
                value.truncate(n as usize);
                break;
            }
            match nix::errno::Errno::last() {
                nix::errno::Errno::ERANGE => value.resize(value.len() * 4, 0),
                nix::errno::Errno::ENODATA => {
                    value.clear();
                    break;
                }
                e => return Err(e).with_context(|| format!("reading xattr {}", String::from_utf8_lossy(name))),
            }
        }
        out.push((shown, value));
    }
    out.sort();
    Ok(out)
}

fn is_opaque_upper(dir: &Path, names: &[OsString]) -> bool {
    if names.iter().any(|n| n.as_bytes() == OPAQUE_MARKER) {
        return true;
    }
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    OPAQUE_XATTRS.iter().any(|name| {
        let mut buf = [0u8; 2];
        // SAFETY: both strings are NUL-terminated and `buf` is valid for its length.
        let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        n == 1 && buf[0] == b'y'
    })
}

/// Whether a file of the private copy differs from the layers' one. A file whose inode
/// did not change since the copy was made is the copy; others are compared.
fn copy_differs(
    upper_root: &Path,
    rel: &[u8],
    meta: &Metadata,
    lower_path: &Path,
    lower: &Metadata,
    since: SystemTime,
) -> Result<bool> {
    if meta.file_type() != lower.file_type() || attrs_differ(meta, lower) {
        return Ok(true);
    }
    let changed_at = SystemTime::UNIX_EPOCH + std::time::Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32);
    if changed_at <= since {
        return Ok(false);
    }
    let upper_path = upper_root.join(OsStr::from_bytes(rel));
    if meta.file_type().is_symlink() {
        return Ok(fs::read_link(&upper_path)? != fs::read_link(lower_path)?);
    }
    if !meta.is_file() {
        return Ok(false);
    }
    if meta.len() != lower.len() {
        return Ok(true);
    }
    Ok(!same_content(&upper_path, lower_path)?)
}

fn attrs_differ(a: &Metadata, b: &Metadata) -> bool {
    (a.mode() & 0o7777, a.uid(), a.gid()) != (b.mode() & 0o7777, b.uid(), b.gid())
}

/// Whether two files (neither a symlink) hold the same bytes.
pub(crate) fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
            .with_context(|| format!("reading {}", p.display()))
    };
    use std::os::unix::fs::OpenOptionsExt;
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The names in `dir`, sorted.
pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    names.sort();
    Ok(names)
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    if rel.is_empty() {
        return name.to_vec();
    }
    [rel, b"/", name].concat()
}

fn whiteout_name(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => [&path[..=i], WHITEOUT_PREFIX, &path[i + 1..]].concat(),
        None => [WHITEOUT_PREFIX, path].concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::extract::{extract_layer, ExtractOptions, Ownership};
    use crate::layers::merge::merge_into;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{symlink, PermissionsExt};

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("husk-diff-{}-{}", tag, crate::util::unique_suffix()));
            fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn dir(&self, name: &str) -> PathBuf {
            let p = self.0.join(name);
            fs::create_dir_all(&p).unwrap();
            p
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = crate::util::remove_tree(&self.0);
        }
    }

    fn setxattr(p: &Path, name: &str, value: &[u8]) -> bool {
        let (cp, cn) =
            (std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap(), std::ffi::CString::new(name).unwrap());
        // SAFETY: NUL-terminated strings and a value buffer that outlive the call.
        unsafe { libc::lsetxattr(cp.as_ptr(), cn.as_ptr(), value.as_ptr().cast(), value.len(), 0) == 0 }
    }

    fn whiteout(p: &Path) {
        nix::sys::stat::mknod(p, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
            .expect("mknod 0/0 (run the unit tests as root or in a user namespace)");
    }

    fn write(p: &Path, data: &str) {
        fs::write(p, data).unwrap();
    }

    /// A tree as text lines: type, mode, content or target, user.* xattrs; hard links by group.
    fn snapshot(root: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut inodes: HashMap<u64, String> = HashMap::new();
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, inodes: &mut HashMap<u64, String>) {
            let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            for n in names {
                let p = dir.join(&n);
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let m = fs::symlink_metadata(&p).unwrap();
                let ft = m.file_type();
                let what = if ft.is_dir() {
                    "dir".to_string()
                } else if ft.is_symlink() {
                    format!("link {}", fs::read_link(&p).unwrap().display())
                } else if ft.is_file() {
                    let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
                    format!("file {:?} same-as {}", fs::read_to_string(&p).unwrap(), first)
                } else {
                    format!("other {:o}", m.mode())
                };
                let file = if ft.is_symlink() { None } else { File::open(&p).ok() };
                let xattrs: Vec<(Vec<u8>, Vec<u8>)> = file.map(|f| read_xattrs(&f).unwrap()).unwrap_or_default();
                let xattrs: Vec<String> = xattrs
                    .iter()
                    .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
                    .collect();
                out.insert(rel, format!("{} {:o} {}", what, m.mode() & 0o7777, xattrs.join(",")));
                if ft.is_dir() {
                    walk(root, &p, out, inodes);
                }
            }
        }
        walk(root, root, &mut out, &mut inodes);
        out
    }

    fn extract(tar: &[u8], dest: &Path) {
        let opts = ExtractOptions { ownership: Ownership::Keep, strip_setid: false };
        extract_layer(tar, dest, &opts).unwrap();
    }

    /// lower layers (bottom first) → the merged tree in `out`.
    fn merged(layers: &[&Path], out: &Path) -> BTreeMap<String, String> {
        merge_into(layers, out).unwrap();
        snapshot(out)
    }

    fn members(tar: &[u8]) -> Vec<(String, tar::EntryType, String)> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default();
                (String::from_utf8_lossy(&e.path_bytes()).into_owned(), e.header().entry_type(), link)
            })
            .collect()
    }

    /// Docker's lines for the changes.
    fn shown(diff: &Diff) -> Vec<String> {
        diff.changes().iter().map(|c| format!("{} /{}", c.kind.letter(), String::from_utf8_lossy(&c.path))).collect()
    }

    /// Two image layers and an overlay upper dir with every kind of change.
    fn overlay_case(t: &Tmp) -> (PathBuf, PathBuf, PathBuf, WritableLayer) {
        let (l1, l2, upper) = (t.dir("l1"), t.dir("l2"), t.dir("upper"));
        fs::create_dir_all(l1.join("etc/old")).unwrap();
        write(&l1.join("etc/old/a"), "a");
        write(&l1.join("etc/passwd"), "root");
        write(&l1.join("bin-file"), "lower");
        fs::create_dir_all(l2.join("etc")).unwrap();
        write(&l2.join("etc/gone"), "bye");
        write(&l2.join("keep"), "kept");
        symlink("etc/passwd", l2.join("lnk")).unwrap();
        // upper: etc copied up with a new file, a deleted lower file, etc/old replaced
        // by an opaque dir, a new symlink, new hard links, xattrs.
        fs::create_dir_all(upper.join("etc/old")).unwrap();
        assert!(setxattr(&upper.join("etc/old"), "user.overlay.opaque", b"y"));
        write(&upper.join("etc/old/b"), "b");
        write(&upper.join("etc/new"), "new");
        assert!(setxattr(&upper.join("etc/new"), "user.test", b"v"));
        assert!(setxattr(&upper.join("etc/new"), "user.overlay.origin", b"x"));
        assert!(setxattr(&upper.join("etc/new"), "user.overlay.overlay.mine", b"m"));
        whiteout(&upper.join("etc/gone"));
        whiteout(&upper.join("never-existed"));
        write(&upper.join("bin-file"), "changed");
        fs::set_permissions(upper.join("bin-file"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("/etc/new", upper.join("sym")).unwrap();
        write(&upper.join("h1"), "linked");
        fs::hard_link(upper.join("h1"), upper.join("h2")).unwrap();
        // husk's own mount points, where the image has none: not changes
        fs::create_dir_all(upper.join("proc")).unwrap();
        write(&upper.join("etc/hostname"), "");
        let layer = WritableLayer {
            upper: upper.clone(),
            lowers_top_first: vec![l2.clone(), l1.clone()],
            format: Format::Overlay,
        };
        (l1, l2, upper, layer)
    }

    #[test]
    fn overlay_changes_and_their_tar() {
        let t = Tmp::new("overlay");
        let (l1, l2, upper, layer) = overlay_case(&t);
        let diff = Diff::scan(&layer).unwrap();
        assert_eq!(
            shown(&diff),
            [
                "C /bin-file",
                "C /etc",
                "D /etc/gone",
                "A /etc/new",
                "C /etc/old",
                "D /etc/old/a",
                "A /etc/old/b",
                "A /h1",
                "A /h2",
                "A /sym"
            ]
        );
        let tar = diff.write_tar(Vec::new()).unwrap();
        let m = members(&tar);
        let names: Vec<&str> = m.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin-file",
                "etc/",
                "etc/.wh.gone",
                "etc/new",
                "etc/old/",
                "etc/old/.wh..wh..opq",
                "etc/old/b",
                "h1",
                "h2",
                "sym"
            ]
        );
        assert_eq!(m[8].1, tar::EntryType::Link);
        assert_eq!(m[8].2, "h1");
        assert_eq!(m[9].1, tar::EntryType::Symlink);
        assert_eq!(diff.write_tar(Vec::new()).unwrap(), tar, "the same change gives the same bytes");

        // The tar applied on the image's layers gives what the overlay showed.
        let applied = t.dir("applied");
        extract(&tar, &applied);
        let via_tar = merged(&[&l1, &l2, &applied], &t.dir("m1"));
        let mut via_overlay = merged(&[&l1, &l2, &upper], &t.dir("m2"));
        via_overlay.remove("proc");
        via_overlay.remove("etc/hostname");
        assert_eq!(via_tar, via_overlay);
        // merge_into copies neither xattrs nor hard links: see them in the layer itself.
        let layer_view = snapshot(&applied);
        let new = &layer_view["etc/new"];
        assert!(
            new.contains("user.test=v") && new.contains("user.overlay.mine=m") && !new.contains("origin"),
            "{}",
            new
        );
        assert!(layer_view["h2"].contains("same-as h1"), "{}", layer_view["h2"]);
        assert!(layer_view["bin-file"].contains(" 700 "), "{}", layer_view["bin-file"]);
    }

    #[test]
    fn fuse_overlayfs_whiteout_files_are_whiteouts() {
        let t = Tmp::new("fuse");
        let (lower, upper) = (t.dir("lower"), t.dir("upper"));
        fs::create_dir_all(lower.join("d/x")).unwrap();
        write(&lower.join("f"), "f");
        write(&upper.join(".wh.f"), "");
        fs::create_dir_all(upper.join("d")).unwrap();
        write(&upper.join("d/.wh..wh..opq"), "");
        let layer = WritableLayer { upper, lowers_top_first: vec![lower], format: Format::Overlay };
        let tar = Diff::scan(&layer).unwrap().write_tar(Vec::new()).unwrap();
        let names: Vec<String> = members(&tar).into_iter().map(|m| m.0).collect();
        assert_eq!(names, [".wh.f", "d/", "d/.wh..wh..opq"]);
    }

    #[test]
    fn copy_mode_compares_with_the_layers() {
        let t = Tmp::new("copy");
        let (l1, upper) = (t.dir("l1"), t.dir("upper"));
        fs::create_dir_all(l1.join("d/sub")).unwrap();
        write(&l1.join("d/sub/x"), "x");
        write(&l1.join("same"), "12345");
        write(&l1.join("samesize"), "aaaaa");
        write(&l1.join("gone"), "g");
        write(&l1.join("mode"), "m");
        symlink("same", l1.join("lnk")).unwrap();
        merge_into(&[&l1], &upper).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let since = SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&upper.join("samesize"), "bbbbb");
        fs::remove_file(upper.join("gone")).unwrap();
        fs::set_permissions(upper.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
        write(&upper.join("d/sub/new"), "n");
        fs::remove_file(upper.join("lnk")).unwrap();
        symlink("samesize", upper.join("lnk")).unwrap();
        // rewritten with the same content: no change
        write(&upper.join("same"), "12345");
        let layer =
            WritableLayer { upper: upper.clone(), lowers_top_first: vec![l1.clone()], format: Format::Copy { since } };
        let diff = Diff::scan(&layer).unwrap();
        assert_eq!(shown(&diff), ["C /d", "C /d/sub", "A /d/sub/new", "D /gone", "C /lnk", "C /mode", "C /samesize"]);
        let tar = diff.write_tar(Vec::new()).unwrap();
        let applied = t.dir("applied");
        extract(&tar, &applied);
        assert_eq!(merged(&[&l1, &applied], &t.dir("m")), snapshot(&upper));
    }

    #[test]
    fn merged_tree_is_the_containers_view() {
        let t = Tmp::new("merged");
        let (l1, l2, upper, layer) = overlay_case(&t);
        let tar = Diff::merged(&layer).unwrap().write_tar(Vec::new()).unwrap();
        let out = t.dir("out");
        extract(&tar, &out);
        let mut expected = merged(&[&l1, &l2, &upper], &t.dir("m"));
        expected.remove("proc");
        expected.remove("etc/hostname");
        // what merge_into does not copy, and the container sees
        expected.insert("etc/new".into(), snapshot(&upper)["etc/new"].clone());
        expected.insert("h2".into(), snapshot(&upper)["h2"].clone());
        assert_eq!(snapshot(&out), expected);
    }

    #[test]
    fn an_unchanged_container_makes_an_empty_layer() {
        let t = Tmp::new("empty");
        let (lower, upper) = (t.dir("lower"), t.dir("upper"));
        write(&lower.join("f"), "f");
        let layer = WritableLayer { upper, lowers_top_first: vec![lower], format: Format::Overlay };
        let diff = Diff::scan(&layer).unwrap();
        assert!(diff.is_empty() && diff.changes().is_empty());
        assert_eq!(diff.write_tar(Vec::new()).unwrap(), vec![0u8; 1024]);
    }
}
