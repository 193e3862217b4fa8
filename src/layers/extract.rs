//! Safe, streaming extraction of one OCI layer tar into an empty per-layer
//! directory that later becomes one lowerdir of a native overlay mount
//! (mounted with `userxattr`).
//!
//! Safety model:
//! * every entry name is normalised lexically; a `..` that would climb above
//!   the layer root is refused;
//! * `dest` is opened once; every parent directory is reached from that
//!   descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS)` (falling back to a component-by-component
//!   `openat(O_NOFOLLOW | O_DIRECTORY)` walk that also creates missing parents
//!   and diagnoses failures), so no symlink in the tree is ever followed;
//! * all files are created with `O_EXCL | O_NOFOLLOW` (anything already there is
//!   removed first, never written through) and all metadata is applied through
//!   descriptors (`fchown`, `fchmod`, `futimens`, `fsetxattr`) or with
//!   `AT_SYMLINK_NOFOLLOW`;
//! * OCI whiteouts are converted to overlayfs' form (char 0/0 device,
//!   `user.overlay.opaque=y`); device nodes are never created.
//!
//! Bounds (a gzip or zstd stream of zeros inflates a thousandfold, so what a layer
//! declares costs its sender nothing):
//! * the tar reader may read at most [`MAX_HEADER_BYTES`] between one entry's data and
//!   the next entry (tar-rs holds GNU long names and PAX records in memory whole);
//! * every entry must fit on the layer directory's filesystem before it is written,
//!   with a reserve kept free (1/64 of the filesystem, at most 256 MiB and 65536
//!   inodes): a file declaring more is refused before any of its data is read, and
//!   the disk never fills up.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

use crate::sys::{openat2, openat_owned};

use anyhow::{anyhow, Context, Result};
use nix::dir::{Dir, Type as DirType};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// What to do with the uid/gid recorded in the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// `fchown` to the tar's uid/gid (we run as root inside a user namespace
    /// whose map covers the image ids). An id that is not mapped (`EINVAL`)
    /// leaves the file owned by the current user and counts in
    /// [`ExtractStats::unmapped_owners`].
    Keep,
    /// Never chown: everything belongs to the current user.
    Ignore,
}

/// Options for [`extract_layer`].
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    pub ownership: Ownership,
    /// Clear `S_ISUID | S_ISGID` on everything (and drop
    /// `security.capability`); used when the real host owner would be root.
    pub strip_setid: bool,
}

/// What an extraction did.
#[derive(Default, Debug)]
pub struct ExtractStats {
    /// Tar members handled (PAX global headers are not counted).
    pub entries: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
    /// Entries whose uid/gid could not be applied (id not mapped).
    pub unmapped_owners: u64,
    /// Character/block device entries that were not created.
    pub skipped_devices: u64,
}

const COPY_BUF_SIZE: usize = 1 << 20;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &CStr = c"user.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &[u8] = b"user.overlay.";
const OVERLAY_ESCAPED_PREFIX: &[u8] = b"user.overlay.overlay.";
const SECURITY_CAPABILITY: &[u8] = b"security.capability";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Extract one layer tar stream into `dest`, which must be an empty directory.
///
/// Reads the stream once, up to the end-of-archive marker; whatever follows it
/// is left unread for the caller (which drains the stream for hashing).
pub fn extract_layer<R: Read>(tar_stream: R, dest: &Path, opts: &ExtractOptions) -> Result<ExtractStats> {
    let root = File::open(dest).with_context(|| format!("opening layer directory {}", dest.display()))?;
    let meta = root.metadata().with_context(|| format!("inspecting layer directory {}", dest.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("layer directory {} is not a directory", dest.display());
    }
    let mut ex = Extractor {
        root: Rc::new(OwnedFd::from(root)),
        opts: *opts,
        stats: ExtractStats::default(),
        deferred: BTreeMap::new(),
        cache: None,
        use_openat2: true,
        buf: vec![0u8; COPY_BUF_SIZE],
        room: None,
    };
    let meter = Rc::new(Meter::default());
    let mut archive = tar::Archive::new(Metered { inner: tar_stream, meter: meter.clone() });
    let entries = archive.entries().context("reading layer tar")?;
    let mut last_name: Option<String> = None;
    meter.headers_begin();
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            let after = match &last_name {
                Some(n) => format!(" (after entry {n:?})"),
                None => String::new(),
            };
            // tar's messages quote header bytes as they are, newlines included.
            anyhow!(crate::util::one_line(&e.to_string()).into_owned()).context(format!("reading layer tar{after}"))
        })?;
        meter.headers_end();
        let name = ex.entry(&mut entry)?;
        // Data no handler read (a symlink's or a directory's, say) is skipped here,
        // outside the headers' budget.
        std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| anyhow!(e).context(format!("reading layer tar (entry {name:?})")))?;
        last_name = Some(name);
        meter.headers_begin();
    }
    ex.finish()?;
    Ok(ex.stats)
}

/// How much the tar reader may read between the end of one entry's data and the start
/// of the next one's: the next header, its GNU long name and link name, its PAX records,
/// a GNU sparse map and padding. tar-rs reads long names and PAX records into memory
/// whole, whatever size they declare. Real ones take a few KiB (a long path, a few
/// extended attributes of at most 64 KiB each).
pub const MAX_HEADER_BYTES: u64 = 8 << 20;

/// Counts what the tar reader reads and, between entries, stops it at
/// [`MAX_HEADER_BYTES`].
#[derive(Default)]
struct Meter {
    read: Cell<u64>,
    /// While the reader is between entries: where that began.
    headers_from: Cell<Option<u64>>,
}

impl Meter {
    fn headers_begin(&self) {
        self.headers_from.set(Some(self.read.get()));
    }

    fn headers_end(&self) {
        self.headers_from.set(None);
    }
}

struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut want = buf.len();
        if let Some(from) = self.meter.headers_from.get() {
            let used = self.meter.read.get() - from;
            if used >= MAX_HEADER_BYTES {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "the headers of one entry (GNU long names, PAX records) take more than {} MiB; refused",
                        MAX_HEADER_BYTES >> 20
                    ),
                ));
            }
            want = want.min(usize::try_from(MAX_HEADER_BYTES - used).unwrap_or(usize::MAX));
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.meter.read.set(self.meter.read.get() + n as u64);
        Ok(n)
    }
}

/// What the extraction may still write before it asks the filesystem again: free
/// space and inodes as `fstatvfs` last reported them, less a reserve that husk always
/// leaves free (1/64 of the filesystem, at most 256 MiB and 65536 inodes), less what
/// was written since.
struct Room {
    bytes: u64,
    inodes: u64,
}

const RESERVE_MAX_BYTES: u64 = 256 << 20;
const RESERVE_MAX_INODES: u64 = 65536;
/// What one entry costs at least (a block), whatever its size.
const ENTRY_COST: u64 = 4096;

/// Names the entry being processed in error messages.
struct Cx {
    /// `layer entry "NAME"`, possibly followed by what is being resolved.
    prefix: String,
}

impl Cx {
    fn new(name: &str) -> Cx {
        Cx { prefix: format!("layer entry {name:?}") }
    }

    fn sub(&self, what: impl std::fmt::Display) -> Cx {
        Cx { prefix: format!("{}: {}", self.prefix, what) }
    }

    /// A policy refusal: one message naming the entry.
    fn refuse(&self, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: {}", self.prefix, msg)
    }

    /// A failed system call while doing `what`.
    fn sys(&self, e: impl std::error::Error + Send + Sync + 'static, what: impl std::fmt::Display) -> anyhow::Error {
        anyhow::Error::new(e).context(format!("{}: {}", self.prefix, what))
    }
}

/// Metadata of one entry, gathered from the header and PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    atime: TimeSpec,
    mtime: TimeSpec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Directory metadata applied after all entries (children change mtime, and
/// a restrictive mode would block later entries for an unprivileged user).
struct DirMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    atime: TimeSpec,
    mtime: TimeSpec,
}

struct Extractor {
    root: Rc<OwnedFd>,
    opts: ExtractOptions,
    stats: ExtractStats,
    /// Keyed by the normalised path ("" is the layer root). Reverse order
    /// visits every directory after all of its descendants.
    deferred: BTreeMap<Vec<u8>, DirMeta>,
    /// Last opened directory (normalised path, descriptor).
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    use_openat2: bool,
    buf: Vec<u8>,
    room: Option<Room>,
}

impl Extractor {
    /// Handle one tar member; returns its display name.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<String> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            if entry.size() > MAX_HEADER_BYTES {
                return Err(Cx::new(&name).refuse(format!(
                    "a global PAX header of {} bytes (more than {} MiB); refused",
                    entry.size(),
                    MAX_HEADER_BYTES >> 20
                )));
            }
            return Ok(name);
        }
        self.stats.entries += 1;
        let cx = Cx::new(&name);

        let comps = normalize(&raw).map_err(|m| cx.refuse(m))?;
        let meta = read_meta(entry).map_err(|e| cx.sys(e, "reading the entry header"))?;
        let is_dir = kind.is_dir() || (kind.is_file() && raw.ends_with(b"/"));

        let Some((last, parents)) = comps.split_last() else {
            // The layer root itself ("./", "/", ".").
            if !is_dir {
                return Err(cx.refuse(format!("the layer root can only be a directory, not {}", type_name(kind))));
            }
            self.apply_xattrs(&cx, self.root.as_raw_fd(), &meta, false)?;
            self.defer_dir(Vec::new(), &meta);
            return Ok(name);
        };

        // Whiteouts and aufs metadata are recognised by name, whatever their type.
        if parents.iter().any(|c| c.starts_with(WHITEOUT_META_PREFIX))
            || (last.starts_with(WHITEOUT_META_PREFIX) && *last != WHITEOUT_OPAQUE)
        {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs, ...): never materialised.
            return Ok(name);
        }
        let data = if is_dir || !(kind.is_file() || kind.is_contiguous()) { 0 } else { entry.size() };
        self.claim_room(&cx, data)?;
        if let Some(p) = parents.iter().find(|c| c.starts_with(WHITEOUT_PREFIX)) {
            return Err(cx.refuse(format!("whiteout name {:?} used as a directory", String::from_utf8_lossy(p))));
        }
        if *last == WHITEOUT_OPAQUE {
            let dir = self.open_dir(&cx, parents, true)?;
            fsetxattr(dir.as_raw_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(|e| cx.sys(e, "marking the directory opaque (user.overlay.opaque)"))?;
            return Ok(name);
        }
        if let Some(hidden) = last.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(cx.refuse("invalid whiteout name"));
            }
            let parent = self.open_dir(&cx, parents, true)?;
            let key = join_key(parents, hidden);
            self.remove_any(&cx, parent.as_raw_fd(), hidden, &key)?;
            mknodat(Some(parent.as_raw_fd()), hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| cx.sys(e, "creating the overlay whiteout (char 0/0)"))?;
            return Ok(name);
        }

        let key = join_key(parents, last);
        if is_dir {
            self.directory(&cx, parents, last, key, &meta)?;
            return Ok(name);
        }
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => self.regular(&cx, entry, parents, last, &key, &meta)?,
            T::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.symlink(&cx, parents, last, &key, target, &meta)?
            }
            T::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.hardlink(&cx, &comps, target)?
            }
            T::Fifo => self.fifo(&cx, parents, last, &key, &meta)?,
            T::Char | T::Block => self.stats.skipped_devices += 1,
            other => {
                return Err(cx.refuse(format!("unsupported entry type {}", type_name(other))));
            }
        }
        Ok(name)
    }

    fn regular<R: Read>(
        &mut self,
        cx: &Cx,
        entry: &mut tar::Entry<'_, R>,
        parents: &[&[u8]],
        last: &[u8],
        key: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let parent = self.open_dir(cx, parents, true)?;
        let pfd = parent.as_raw_fd();
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(0o600);
        let fd = match openat_owned(pfd, last, flags, mode) {
            Err(Errno::EEXIST) => {
                self.remove_any(cx, pfd, last, key)?;
                openat_owned(pfd, last, flags, mode)
            }
            r => r,
        }
        .map_err(|e| cx.sys(e, "creating the file"))?;
        let mut file = File::from(fd);

        let expected = entry.size();
        let mut copied: u64 = 0;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(cx.sys(e, "reading file data from the layer")),
            };
            file.write_all(&self.buf[..n]).map_err(|e| cx.sys(e, "writing file data"))?;
            copied += n as u64;
        }
        if copied != expected {
            return Err(cx.refuse(format!("layer tar is truncated: file data ends after {copied} of {expected} bytes")));
        }
        self.stats.bytes += copied;

        let fd = file.as_raw_fd();
        self.apply_xattrs(cx, fd, meta, false)?;
        self.chown_fd(cx, fd, meta.uid, meta.gid)?;
        // chown clears security.capability: set it afterwards.
        self.apply_xattrs(cx, fd, meta, true)?;
        fchmod(fd, self.mode(meta.mode)).map_err(|e| cx.sys(e, "setting the file mode"))?;
        futimens(fd, &meta.atime, &meta.mtime).map_err(|e| cx.sys(e, "setting the file times"))?;
        Ok(())
    }

    fn directory(&mut self, cx: &Cx, parents: &[&[u8]], last: &[u8], key: Vec<u8>, meta: &Meta) -> Result<()> {
        let parent = self.open_dir(cx, parents, true)?;
        let pfd = parent.as_raw_fd();
        let mode = Mode::from_bits_truncate(0o755);
        match mkdirat(Some(pfd), last, mode) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fstatat(Some(pfd), last, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| cx.sys(e, "inspecting the existing entry"))?;
                if !is_type(&st, SFlag::S_IFDIR) {
                    self.remove_any(cx, pfd, last, &key)?;
                    mkdirat(Some(pfd), last, mode).map_err(|e| cx.sys(e, "creating the directory"))?;
                }
            }
            Err(e) => return Err(cx.sys(e, "creating the directory")),
        }
        if meta.xattrs.iter().any(|(n, _)| n.starts_with(b"user.")) {
            let fd =
                openat_owned(pfd, last, dir_flags(), Mode::empty()).map_err(|e| cx.sys(e, "opening the directory"))?;
            self.apply_xattrs(cx, fd.as_raw_fd(), meta, false)?;
        }
        self.defer_dir(key, meta);
        Ok(())
    }

    fn symlink(
        &mut self,
        cx: &Cx,
        parents: &[&[u8]],
        last: &[u8],
        key: &[u8],
        target: Option<Vec<u8>>,
        meta: &Meta,
    ) -> Result<()> {
        let target = target.filter(|t| !t.is_empty()).ok_or_else(|| cx.refuse("symlink without a target"))?;
        if target.contains(&0) {
            return Err(cx.refuse("symlink target contains a NUL byte"));
        }
        let parent = self.open_dir(cx, parents, true)?;
        let pfd = parent.as_raw_fd();
        match symlinkat(&target[..], Some(pfd), last) {
            Err(Errno::EEXIST) => {
                self.remove_any(cx, pfd, last, key)?;
                symlinkat(&target[..], Some(pfd), last)
            }
            r => r,
        }
        .map_err(|e| cx.sys(e, "creating the symlink"))?;
        if self.opts.ownership == Ownership::Keep {
            match ids(meta.uid, meta.gid) {
                None => self.stats.unmapped_owners += 1,
                Some((u, g)) => match fchownat(Some(pfd), last, Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(()) => {}
                    Err(Errno::EINVAL) => self.stats.unmapped_owners += 1,
                    Err(e) => return Err(cx.sys(e, "setting the symlink owner")),
                },
            }
        }
        utimensat(Some(pfd), last, &meta.atime, &meta.mtime, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| cx.sys(e, "setting the symlink times"))?;
        Ok(())
    }

    fn hardlink(&mut self, cx: &Cx, comps: &[&[u8]], target: Option<Vec<u8>>) -> Result<()> {
        let target = target.ok_or_else(|| cx.refuse("hardlink without a target"))?;
        let tname = String::from_utf8_lossy(&target).into_owned();
        let tcomps = normalize(&target).map_err(|m| cx.refuse(format!("hardlink target {tname:?}: {m}")))?;
        let Some((tlast, tparents)) = tcomps.split_last() else {
            return Err(cx.refuse("hardlink to the layer root"));
        };
        if tcomps == comps {
            return Ok(()); // a link to itself: nothing to do
        }
        let (last, parents) = comps.split_last().expect("caller handles the root");
        let tdir = self.open_dir(&cx.sub(format!("hardlink target {tname:?}")), tparents, false)?;
        let tfd = tdir.as_raw_fd();
        let tst = match fstatat(Some(tfd), *tlast, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                return Err(cx.refuse(format!("hardlink target {tname:?} does not exist in the layer")))
            }
            Err(e) => return Err(cx.sys(e, format!("inspecting hardlink target {tname:?}"))),
        };
        if is_type(&tst, SFlag::S_IFDIR) {
            return Err(cx.refuse(format!("hardlink target {tname:?} is a directory")));
        }
        if is_type(&tst, SFlag::S_IFCHR) || is_type(&tst, SFlag::S_IFBLK) {
            return Err(cx.refuse(format!("hardlink target {tname:?} is a whiteout")));
        }
        let parent = self.open_dir(cx, parents, true)?;
        let pfd = parent.as_raw_fd();
        let key = join_key(parents, last);
        match linkat(Some(tfd), *tlast, Some(pfd), *last, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => {
                if let Ok(st) = fstatat(Some(pfd), *last, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino {
                        return Ok(()); // already the same inode
                    }
                }
                self.remove_any(cx, pfd, last, &key)?;
                linkat(Some(tfd), *tlast, Some(pfd), *last, AtFlags::empty())
            }
            Err(e) => Err(e),
        }
        .map_err(|e| cx.sys(e, format!("creating the hardlink to {tname:?}")))?;
        // Never chmod/chown a hardlink entry: it shares the target's inode.
        Ok(())
    }

    fn fifo(&mut self, cx: &Cx, parents: &[&[u8]], last: &[u8], key: &[u8], meta: &Meta) -> Result<()> {
        let parent = self.open_dir(cx, parents, true)?;
        let pfd = parent.as_raw_fd();
        let mode = Mode::from_bits_truncate(0o600);
        match mkfifoat(Some(pfd), last, mode) {
            Err(Errno::EEXIST) => {
                self.remove_any(cx, pfd, last, key)?;
                mkfifoat(Some(pfd), last, mode)
            }
            r => r,
        }
        .map_err(|e| cx.sys(e, "creating the fifo"))?;
        // O_NONBLOCK: opening a fifo for reading does not wait for a writer.
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat_owned(pfd, last, flags, Mode::empty()).map_err(|e| cx.sys(e, "opening the fifo"))?;
        let fd = fd.as_raw_fd();
        let st = fstat(fd).map_err(|e| cx.sys(e, "inspecting the fifo"))?;
        if !is_type(&st, SFlag::S_IFIFO) {
            return Err(cx.refuse("the fifo was replaced while extracting"));
        }
        self.chown_fd(cx, fd, meta.uid, meta.gid)?;
        fchmod(fd, self.mode(meta.mode)).map_err(|e| cx.sys(e, "setting the fifo mode"))?;
        futimens(fd, &meta.atime, &meta.mtime).map_err(|e| cx.sys(e, "setting the fifo times"))?;
        Ok(())
    }

    /// Apply deferred directory metadata, deepest first.
    fn finish(&mut self) -> Result<()> {
        self.cache = None;
        let deferred = std::mem::take(&mut self.deferred);
        for (key, m) in deferred.into_iter().rev() {
            let name = String::from_utf8_lossy(&key).into_owned();
            let cx = Cx::new(&name);
            let comps: Vec<&[u8]> = if key.is_empty() { Vec::new() } else { key.split(|&b| b == b'/').collect() };
            let fd = self.open_dir(&cx, &comps, false)?;
            let fd = fd.as_raw_fd();
            self.chown_fd(&cx, fd, m.uid, m.gid)?;
            fchmod(fd, self.mode(m.mode)).map_err(|e| cx.sys(e, "setting the directory mode"))?;
            futimens(fd, &m.atime, &m.mtime).map_err(|e| cx.sys(e, "setting the directory times"))?;
            self.cache = None; // keep at most one extra descriptor open
        }
        Ok(())
    }

    /// Makes sure an entry with `data` bytes fits on the layer directory's filesystem
    /// with the reserve left free; refuses it otherwise, before anything is written.
    fn claim_room(&mut self, cx: &Cx, data: u64) -> Result<()> {
        let cost = data.div_ceil(ENTRY_COST).saturating_add(1).saturating_mul(ENTRY_COST);
        if let Some(room) = self.room.as_mut() {
            if room.bytes >= cost && room.inodes >= 1 {
                room.bytes -= cost;
                room.inodes -= 1;
                return Ok(());
            }
        }
        // Out of what was measured (or never measured): ask the filesystem again.
        let st = nix::sys::statvfs::fstatvfs(self.root.as_ref())
            .map_err(|e| cx.sys(e, "measuring the free space of the store's filesystem"))?;
        let unit = st.fragment_size().max(1);
        let total = st.blocks().saturating_mul(unit);
        let free = st.blocks_available().saturating_mul(unit);
        let reserve = (total / 64).min(RESERVE_MAX_BYTES);
        if free.saturating_sub(reserve) < cost {
            return Err(cx.refuse(format!(
                "{} of file data do not fit in the {} free on the store's filesystem (husk keeps {} free); refused",
                crate::util::human_size(data),
                crate::util::human_size(free),
                crate::util::human_size(reserve)
            )));
        }
        // Filesystems without an inode count (btrfs) report none at all.
        let inodes = if st.files() == 0 {
            u64::MAX
        } else {
            let reserve = (st.files() / 64).min(RESERVE_MAX_INODES);
            let free = st.files_available();
            if free.saturating_sub(reserve) < 1 {
                return Err(cx.refuse(format!(
                    "no inode left for it on the store's filesystem ({} free, husk keeps {} free); refused",
                    free, reserve
                )));
            }
            free - reserve
        };
        self.room = Some(Room { bytes: free - reserve - cost, inodes: inodes - 1 });
        Ok(())
    }

    fn defer_dir(&mut self, key: Vec<u8>, meta: &Meta) {
        self.deferred.insert(
            key,
            DirMeta { mode: meta.mode, uid: meta.uid, gid: meta.gid, atime: meta.atime, mtime: meta.mtime },
        );
    }

    fn mode(&self, mode: u32) -> Mode {
        let mut mode = mode & 0o7777;
        if self.opts.strip_setid {
            mode &= !(libc::S_ISUID | libc::S_ISGID);
        }
        Mode::from_bits_truncate(mode)
    }

    fn chown_fd(&mut self, cx: &Cx, fd: RawFd, uid: u64, gid: u64) -> Result<()> {
        if self.opts.ownership == Ownership::Ignore {
            return Ok(());
        }
        let Some((u, g)) = ids(uid, gid) else {
            self.stats.unmapped_owners += 1;
            return Ok(());
        };
        match fchown(fd, Some(u), Some(g)) {
            Ok(()) => Ok(()),
            Err(Errno::EINVAL) => {
                self.stats.unmapped_owners += 1;
                Ok(())
            }
            Err(e) => Err(cx.sys(e, format!("setting the owner to {uid}:{gid}"))),
        }
    }

    /// Apply the entry's xattrs to `fd` (a regular file or directory).
    /// `capability == false`: the `user.*` ones (`user.overlay.*` are stored
    /// escaped as `user.overlay.overlay.*` so the layer cannot steer overlayfs,
    /// while the merged view still shows the original names); `true`:
    /// `security.capability`, best effort, unless `strip_setid`.
    fn apply_xattrs(&self, cx: &Cx, fd: RawFd, meta: &Meta, capability: bool) -> Result<()> {
        for (name, value) in &meta.xattrs {
            if capability {
                if name == SECURITY_CAPABILITY && !self.opts.strip_setid {
                    let cname = CString::new(name.clone()).expect("no NUL in xattr name");
                    let _ = fsetxattr(fd, &cname, value);
                }
                continue;
            }
            if !name.starts_with(b"user.") || name.len() <= b"user.".len() {
                continue;
            }
            let stored = match name.strip_prefix(OVERLAY_XATTR_PREFIX) {
                Some(rest) => [OVERLAY_ESCAPED_PREFIX, rest].concat(),
                None => name.clone(),
            };
            let shown = String::from_utf8_lossy(name);
            let cname =
                CString::new(stored).map_err(|_| cx.refuse(format!("xattr name {shown:?} contains a NUL byte")))?;
            fsetxattr(fd, &cname, value).map_err(|e| cx.sys(e, format!("setting xattr {shown:?}")))?;
        }
        Ok(())
    }

    /// Remove whatever is at `name` in `pfd` (a directory tree recursively).
    /// `key` is its normalised path, used to forget deferred metadata.
    fn remove_any(&mut self, cx: &Cx, pfd: RawFd, name: &[u8], key: &[u8]) -> Result<()> {
        let shown = String::from_utf8_lossy(key);
        let st = match fstatat(Some(pfd), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(cx.sys(e, format!("inspecting {shown:?} to replace it"))),
        };
        if is_type(&st, SFlag::S_IFDIR) {
            // Descriptors of the tree's directories must not be reused.
            self.cache = None;
            self.forget_deferred(key);
            remove_tree(pfd, name).map_err(|e| cx.sys(e, format!("removing directory {shown:?} to replace it")))?;
        } else {
            match unlinkat(Some(pfd), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(cx.sys(e, format!("removing {shown:?} to replace it"))),
            }
        }
        Ok(())
    }

    fn forget_deferred(&mut self, key: &[u8]) {
        self.deferred.remove(key);
        let mut prefix = key.to_vec();
        prefix.push(b'/');
        let doomed: Vec<Vec<u8>> = self
            .deferred
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.deferred.remove(&k);
        }
    }

    /// Open the directory at `comps` (relative to the layer root) without
    /// following any symlink. With `create`, missing directories are created
    /// 0755, owned by the current user.
    fn open_dir(&mut self, cx: &Cx, comps: &[&[u8]], create: bool) -> Result<Rc<OwnedFd>> {
        if comps.is_empty() {
            return Ok(self.root.clone());
        }
        let key = comps.join(&b'/');
        if let Some((k, fd)) = &self.cache {
            if *k == key {
                return Ok(fd.clone());
            }
        }
        let fd = Rc::new(self.open_dir_uncached(cx, comps, &key, create)?);
        self.cache = Some((key, fd.clone()));
        Ok(fd)
    }

    fn open_dir_uncached(&mut self, cx: &Cx, comps: &[&[u8]], key: &[u8], create: bool) -> Result<OwnedFd> {
        if self.use_openat2 {
            let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
            match openat2(self.root.as_raw_fd(), key, dir_flags(), resolve) {
                Ok(fd) => return Ok(fd),
                Err(Errno::ENOSYS) | Err(Errno::EPERM) => self.use_openat2 = false,
                // Missing, symlinked, not a directory, ...: the walk below
                // creates or explains.
                Err(_) => {}
            }
        }
        let mut cur: Option<OwnedFd> = None;
        for (i, c) in comps.iter().enumerate() {
            let at = cur.as_ref().map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
            let next = match openat_owned(at, c, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(open_err) => {
                    let shown = || String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned();
                    match fstatat(Some(at), *c, AtFlags::AT_SYMLINK_NOFOLLOW) {
                        Ok(st) if is_type(&st, SFlag::S_IFLNK) => {
                            return Err(cx.refuse(format!("parent {:?} is a symlink", shown())))
                        }
                        Ok(st) if !is_type(&st, SFlag::S_IFDIR) => {
                            return Err(cx.refuse(format!("parent {:?} is not a directory", shown())))
                        }
                        Ok(_) => return Err(cx.sys(open_err, format!("opening directory {:?}", shown()))),
                        Err(Errno::ENOENT) if create => {
                            match mkdirat(Some(at), *c, Mode::from_bits_truncate(0o755)) {
                                Ok(()) | Err(Errno::EEXIST) => {}
                                Err(e) => return Err(cx.sys(e, format!("creating parent directory {:?}", shown()))),
                            }
                            let fd = openat_owned(at, c, dir_flags(), Mode::empty())
                                .map_err(|e| cx.sys(e, format!("opening parent directory {:?}", shown())))?;
                            // Exactly 0755 whatever the umask.
                            fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o755))
                                .map_err(|e| cx.sys(e, format!("setting the mode of {:?}", shown())))?;
                            fd
                        }
                        Err(Errno::ENOENT) => {
                            return Err(cx.refuse(format!("parent {:?} does not exist in the layer", shown())))
                        }
                        Err(e) => return Err(cx.sys(e, format!("inspecting parent {:?}", shown()))),
                    }
                }
            };
            cur = Some(next);
        }
        Ok(cur.expect("comps is not empty"))
    }
}

/// Split a tar name into normal components: leading `/` and `./` dropped,
/// `.` and empty components skipped, `..` resolved lexically.
fn normalize(raw: &[u8]) -> std::result::Result<Vec<&[u8]>, &'static str> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte");
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path escapes the layer");
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn join_key(parents: &[&[u8]], last: &[u8]) -> Vec<u8> {
    let mut k = parents.join(&b'/');
    if !k.is_empty() {
        k.push(b'/');
    }
    k.extend_from_slice(last);
    k
}

fn type_name(t: tar::EntryType) -> String {
    match t {
        tar::EntryType::Regular => "regular file".into(),
        tar::EntryType::Link => "hardlink".into(),
        tar::EntryType::Symlink => "symlink".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Directory => "directory".into(),
        tar::EntryType::Fifo => "fifo".into(),
        tar::EntryType::Continuous => "contiguous file".into(),
        tar::EntryType::GNUSparse => "GNU sparse file ('S')".into(),
        other => format!("{:?} ({:?})", other, other.as_byte() as char),
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Meta> {
    let h = entry.header();
    // tar-rs already folds PAX uid/gid into the header.
    let mode = h.mode()?;
    let uid = h.uid()?;
    let gid = h.gid()?;
    let hdr_mtime = TimeSpec::new(i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0);
    let mut mtime = None;
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let k = ext.key_bytes();
            if k == b"mtime" {
                mtime = parse_pax_time(ext.value_bytes());
            } else if k == b"atime" {
                atime = parse_pax_time(ext.value_bytes());
            } else if let Some(name) = k.strip_prefix(PAX_XATTR_PREFIX) {
                if !name.contains(&0) {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    let mtime = mtime.unwrap_or(hdr_mtime);
    Ok(Meta { mode, uid, gid, atime: atime.unwrap_or(mtime), mtime, xattrs })
}

/// Parse a PAX time ("1700000000", "1700000000.123456789", "-1.5").
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    let (secs, nanos) = match (neg, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    };
    Some(TimeSpec::new(secs, nanos))
}

/// Ids usable with chown (u32::MAX means "unchanged" to the kernel).
fn ids(uid: u64, gid: u64) -> Option<(Uid, Gid)> {
    let u = u32::try_from(uid).ok().filter(|&u| u != u32::MAX)?;
    let g = u32::try_from(gid).ok().filter(|&g| g != u32::MAX)?;
    Some((Uid::from_raw(u), Gid::from_raw(g)))
}

fn is_type(st: &FileStat, t: SFlag) -> bool {
    st.st_mode & libc::S_IFMT == t.bits()
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn fsetxattr(fd: RawFd, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: `name` is NUL-terminated, `value` points to `value.len()`
    // readable bytes, and both outlive the call; `fd` is a live descriptor.
    let ret = unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(ret).map(drop)
}

/// Remove the directory `name` in `parent` and everything below it, with *at
/// calls only and without following symlinks. Iterative, holding at most two
/// directory descriptors at a time (climbing back up through "..", which is
/// safe in our private tree), so depth cannot exhaust fds or the stack.
fn remove_tree(parent: RawFd, name: &[u8]) -> nix::Result<()> {
    let mut names: Vec<Vec<u8>> = vec![name.to_vec()];
    let mut cur = Dir::openat(Some(parent), name, dir_flags(), Mode::empty())?;
    loop {
        let fd = cur.as_raw_fd();
        let mut descend: Option<Vec<u8>> = None;
        for ent in cur.iter() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let is_dir = match ent.file_type() {
                Some(t) => t == DirType::Directory,
                None => match fstatat(Some(fd), n, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => is_type(&st, SFlag::S_IFDIR),
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(e),
                },
            };
            if is_dir {
                descend = Some(n.to_vec());
                break;
            }
            match unlinkat(Some(fd), n, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(sub) = descend {
            let next = Dir::openat(Some(fd), &sub[..], dir_flags(), Mode::empty())?;
            names.push(sub);
            cur = next;
            continue;
        }
        let me = names.pop().expect("names is never empty here");
        if names.is_empty() {
            drop(cur);
            return unlinkat(Some(parent), &me[..], UnlinkatFlags::RemoveDir);
        }
        let up = Dir::openat(Some(fd), "..", dir_flags(), Mode::empty())?;
        drop(cur);
        unlinkat(Some(up.as_raw_fd()), &me[..], UnlinkatFlags::RemoveDir)?;
        cur = up;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tar::{EntryType, Header};

    const MTIME: u64 = 1_600_000_000;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn me() -> (u64, u64) {
        (nix::unistd::geteuid().as_raw().into(), nix::unistd::getegid().as_raw().into())
    }

    /// Keep ownership when we may chown (root, as in CI), else Ignore.
    fn opts() -> ExtractOptions {
        ExtractOptions { ownership: if is_root() { Ownership::Keep } else { Ownership::Ignore }, strip_setid: false }
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir().join(format!(
                "husk-extract-{}-{}-{}",
                std::process::id(),
                tag,
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir(&p).unwrap();
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            make_writable(&self.0);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn make_writable(p: &Path) {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.is_dir() {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        make_writable(&e.path());
                    }
                }
            }
        }
    }

    /// Builds tars with names written byte for byte (tar::Builder's own path
    /// setters refuse `..` and absolute names).
    struct Tar {
        b: tar::Builder<Vec<u8>>,
    }

    impl Tar {
        fn new() -> Tar {
            Tar { b: tar::Builder::new(Vec::new()) }
        }

        fn header(ty: EntryType, name: &[u8], link: &[u8], mode: u32, size: u64) -> Header {
            assert!(name.len() <= 100 && link.len() <= 100, "use gnu_long_name / pax for long names");
            let mut h = Header::new_gnu();
            h.set_entry_type(ty);
            h.set_mode(mode);
            h.set_size(size);
            h.set_mtime(MTIME);
            let (u, g) = me();
            h.set_uid(u);
            h.set_gid(g);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name);
            gnu.linkname = [0; 100];
            gnu.linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            h
        }

        fn raw(&mut self, mut h: Header, data: &[u8]) {
            h.set_cksum();
            self.b.append(&h, data).unwrap();
        }

        fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
            self.file_b(name.as_bytes(), mode, data)
        }

        fn file_b(&mut self, name: &[u8], mode: u32, data: &[u8]) {
            self.raw(Self::header(EntryType::Regular, name, b"", mode, data.len() as u64), data)
        }

        fn dir(&mut self, name: &str, mode: u32) {
            self.raw(Self::header(EntryType::Directory, name.as_bytes(), b"", mode, 0), b"")
        }

        fn symlink(&mut self, name: &str, target: &str) {
            self.raw(Self::header(EntryType::Symlink, name.as_bytes(), target.as_bytes(), 0o777, 0), b"")
        }

        fn hardlink(&mut self, name: &str, target: &str) {
            self.raw(Self::header(EntryType::Link, name.as_bytes(), target.as_bytes(), 0o777, 0), b"")
        }

        fn fifo(&mut self, name: &str, mode: u32) {
            self.raw(Self::header(EntryType::Fifo, name.as_bytes(), b"", mode, 0), b"")
        }

        fn device(&mut self, ty: EntryType, name: &str, major: u32, minor: u32) {
            let mut h = Self::header(ty, name.as_bytes(), b"", 0o666, 0);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            self.raw(h, b"")
        }

        /// A PAX extended header ('x') describing the next member.
        fn pax(&mut self, recs: &[(&str, &[u8])]) {
            let mut data = Vec::new();
            for (k, v) in recs {
                let body = k.len() + v.len() + 3; // ' ', '=', '\n'
                let mut len = body + 1;
                while len != body + len.to_string().len() {
                    len = body + len.to_string().len();
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            self.raw(Self::header(EntryType::XHeader, b"PaxHeaders.0/x", b"", 0o644, data.len() as u64), &data)
        }

        /// A GNU long name ('L') member naming the next member.
        fn gnu_long_name(&mut self, name: &[u8]) {
            let mut data = name.to_vec();
            data.push(0);
            self.raw(Self::header(EntryType::GNULongName, b"././@LongLink", b"", 0o644, data.len() as u64), &data)
        }

        fn build(self) -> Vec<u8> {
            self.b.into_inner().unwrap()
        }
    }

    fn extract(data: &[u8], dest: &Path, o: &ExtractOptions) -> Result<ExtractStats> {
        extract_layer(data, dest, o)
    }

    fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
        let cp = CString::new(p.as_os_str().as_bytes()).unwrap();
        let cn = CString::new(name).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: both strings are NUL-terminated and `buf` has `buf.len()` writable bytes.
        let n = unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    fn lstat(p: &Path) -> std::fs::Metadata {
        std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn mode(p: &Path) -> u32 {
        lstat(p).mode() & 0o7777
    }

    fn exists(p: &Path) -> bool {
        std::fs::symlink_metadata(p).is_ok()
    }

    /// Everything observable about a tree, without following symlinks.
    fn snapshot(root: &Path) -> Map<String, String> {
        fn walk(root: &Path, p: &Path, out: &mut Map<String, String>) {
            let m = lstat(p);
            let ft = m.file_type();
            let extra = if ft.is_symlink() {
                format!("-> {:?}", std::fs::read_link(p).unwrap())
            } else if ft.is_file() {
                format!("{:?}", String::from_utf8_lossy(&std::fs::read(p).unwrap()))
            } else {
                String::new()
            };
            let opaque = if ft.is_dir() || ft.is_file() { getxattr(p, "user.overlay.opaque") } else { None };
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                format!(
                    "{:o} {}:{} n{} s{} m{} {opaque:?} {extra}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.nlink(),
                    m.size(),
                    m.mtime(),
                ),
            );
            if ft.is_dir() {
                for e in std::fs::read_dir(p).unwrap() {
                    walk(root, &e.unwrap().path(), out);
                }
            }
        }
        let mut out = Map::new();
        walk(root, root, &mut out);
        out
    }

    /// A scratch area with `dest/` (the layer dir) and a sibling `victim/`
    /// that every attack aims at.
    struct Case {
        top: TempDir,
        before: Map<String, String>,
    }

    impl Case {
        fn new() -> Case {
            let top = TempDir::new("case");
            std::fs::create_dir(top.path().join("dest")).unwrap();
            let v = top.path().join("victim");
            std::fs::create_dir(&v).unwrap();
            std::fs::write(v.join("secret"), b"secret data").unwrap();
            std::fs::set_permissions(v.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::create_dir(v.join("sub")).unwrap();
            std::fs::write(v.join("sub/file"), b"more").unwrap();
            let before = snapshot(&v);
            Case { top, before }
        }
        fn dest(&self) -> PathBuf {
            self.top.path().join("dest")
        }
        fn victim(&self) -> PathBuf {
            self.top.path().join("victim")
        }
        /// The victim path without its leading '/', as an absolute tar name would be after stripping.
        fn victim_rel(&self) -> String {
            self.victim().to_str().unwrap().trim_start_matches('/').to_string()
        }
        fn run(&self, t: Tar, o: &ExtractOptions) -> Result<ExtractStats> {
            let r = extract(&t.build(), &self.dest(), o);
            self.assert_victim_unchanged();
            r
        }
        fn assert_victim_unchanged(&self) {
            assert_eq!(snapshot(&self.victim()), self.before, "the victim outside the layer changed");
            let mut names: Vec<_> =
                std::fs::read_dir(self.top.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            assert_eq!(names, ["dest", "victim"], "something was created beside the layer dir");
        }
    }

    fn expect_err(r: Result<ExtractStats>, needle: &str) -> String {
        match r {
            Ok(s) => {
                panic!("extraction succeeded ({s:?}), expected an error containing {needle:?}")
            }
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(msg.contains(needle), "error {msg:?} does not contain {needle:?}");
                msg
            }
        }
    }

    // ---------------------------------------------------------------- attacks

    #[test]
    fn attack_absolute_path_lands_inside() {
        let c = Case::new();
        let mut t = Tar::new();
        t.file(&format!("/{}/pwned", c.victim_rel()), 0o644, b"pwned");
        t.file(&format!("/{}/secret", c.victim_rel()), 0o644, b"overwritten?");
        c.run(t, &opts()).unwrap();
        let inside = c.dest().join(c.victim_rel());
        assert_eq!(std::fs::read(inside.join("pwned")).unwrap(), b"pwned");
        assert_eq!(std::fs::read(inside.join("secret")).unwrap(), b"overwritten?");
    }

    #[test]
    fn attack_dotdot_escape() {
        let c = Case::new();
        let mut t = Tar::new();
        t.file("../victim/pwned", 0o644, b"pwned");
        let msg = expect_err(c.run(t, &opts()), "path escapes the layer");
        assert!(msg.contains(r#"layer entry "../victim/pwned": path escapes the layer"#), "{msg}");
    }

    #[test]
    fn attack_inner_dotdot_escape() {
        let c = Case::new();
        let mut t = Tar::new();
        t.file("a/b", 0o644, b"fine");
        t.file("a/../../victim/secret", 0o644, b"pwned");
        expect_err(c.run(t, &opts()), "path escapes the layer");
        // A `..` that stays inside is merely normalised.
        let c = Case::new();
        let mut t = Tar::new();
        t.file("a/../b", 0o644, b"fine");
        c.run(t, &opts()).unwrap();
        assert_eq!(std::fs::read(c.dest().join("b")).unwrap(), b"fine");
    }

    #[test]
    fn attack_symlink_to_root_then_file_through_it() {
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("rootfs", "/");
        t.file(&format!("rootfs/{}/pwned", c.victim_rel()), 0o644, b"pwned");
        expect_err(c.run(t, &opts()), r#"parent "rootfs" is a symlink"#);
        // Same with a symlink straight at the victim and a file replacing a victim file.
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("v", c.victim().to_str().unwrap());
        t.file("v/secret", 0o666, b"pwned");
        expect_err(c.run(t, &opts()), r#"parent "v" is a symlink"#);
    }

    #[test]
    fn attack_symlink_dotdot_chain() {
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("up", "..");
        t.dir("d/", 0o755);
        t.symlink("d/up2", "../up/..");
        t.file("d/up2/victim/pwned", 0o644, b"pwned");
        expect_err(c.run(t, &opts()), r#"parent "d/up2" is a symlink"#);
        // The chain as a hardlink target.
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("up", "..");
        t.hardlink("h", "up/victim/secret");
        expect_err(c.run(t, &opts()), r#"parent "up" is a symlink"#);
        assert_eq!(lstat(&c.victim().join("secret")).nlink(), 1);
    }

    #[test]
    fn attack_hardlink_to_etc_passwd() {
        let before = lstat(Path::new("/etc/passwd"));
        let c = Case::new();
        let mut t = Tar::new();
        t.hardlink("passwd", "/etc/passwd");
        expect_err(c.run(t, &opts()), "does not exist in the layer");
        let after = lstat(Path::new("/etc/passwd"));
        assert_eq!((before.nlink(), before.mode(), before.uid()), (after.nlink(), after.mode(), after.uid()));
        // An absolute target naming the victim resolves inside the layer too.
        let c = Case::new();
        let mut t = Tar::new();
        t.hardlink("s", &format!("{}/secret", c.victim().display()));
        expect_err(c.run(t, &opts()), "does not exist in the layer");
        assert!(!exists(&c.dest().join("s")));
    }

    #[test]
    fn attack_hardlink_outside_via_dotdot() {
        let c = Case::new();
        let mut t = Tar::new();
        t.dir("a/", 0o755);
        t.hardlink("a/h", "a/../../victim/secret");
        expect_err(c.run(t, &opts()), "path escapes the layer");
        assert!(!exists(&c.dest().join("a/h")));
    }

    #[test]
    fn attack_hardlink_to_symlink_then_chmod() {
        let c = Case::new();
        let secret = c.victim().join("secret");
        let mut t = Tar::new();
        t.symlink("s", secret.to_str().unwrap());
        t.hardlink("h", "s"); // links the symlink inode itself
        t.hardlink("h2", "s");
        // Same names again, with modes that would be applied through the link.
        t.file("h", 0o777, b"replaced");
        t.dir("h2/", 0o777);
        t.fifo("s", 0o666);
        c.run(t, &opts()).unwrap();
        let d = c.dest();
        assert!(lstat(&d.join("h")).file_type().is_file());
        assert_eq!(std::fs::read(d.join("h")).unwrap(), b"replaced");
        assert_eq!(mode(&d.join("h")), 0o777);
        assert!(lstat(&d.join("h2")).is_dir());
        assert!(lstat(&d.join("s")).file_type().is_fifo());
        assert_eq!(mode(&secret), 0o600);
    }

    #[test]
    fn attack_hardlink_linking_a_symlink_keeps_it_a_symlink() {
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("s", c.victim().join("secret").to_str().unwrap());
        t.hardlink("h", "s");
        c.run(t, &opts()).unwrap();
        let h = lstat(&c.dest().join("h"));
        assert!(h.file_type().is_symlink());
        assert_eq!(h.ino(), lstat(&c.dest().join("s")).ino());
        assert_eq!(lstat(&c.victim().join("secret")).nlink(), 1);
    }

    #[test]
    fn attack_directory_replacing_symlink() {
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("d", c.victim().to_str().unwrap());
        t.dir("d/", 0o777);
        t.file("d/pwned", 0o644, b"inside");
        t.file("d/secret", 0o644, b"inside too");
        c.run(t, &opts()).unwrap();
        let d = c.dest().join("d");
        assert!(lstat(&d).is_dir());
        assert_eq!(mode(&d), 0o777);
        assert_eq!(std::fs::read(d.join("pwned")).unwrap(), b"inside");
    }

    #[test]
    fn attack_symlink_then_file_of_same_name() {
        // tar-rs issue #129: the file must replace the symlink, not write through it.
        for target in [c_abs_secret as fn(&Case) -> String, |_c: &Case| "../victim/secret".to_string()] {
            let c = Case::new();
            let mut t = Tar::new();
            t.symlink("s", &target(&c));
            t.file("s", 0o777, b"pwned");
            c.run(t, &opts()).unwrap();
            let s = c.dest().join("s");
            assert!(lstat(&s).file_type().is_file());
            assert_eq!(std::fs::read(&s).unwrap(), b"pwned");
        }
    }

    fn c_abs_secret(c: &Case) -> String {
        c.victim().join("secret").to_str().unwrap().to_string()
    }

    #[test]
    fn attack_whiteout_through_symlinked_parent() {
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("l", c.victim().to_str().unwrap());
        t.file("l/.wh.secret", 0o644, b"");
        expect_err(c.run(t, &opts()), r#"parent "l" is a symlink"#);
        assert!(exists(&c.victim().join("secret")));
        // Opaque marker through the symlink, and a whiteout of the symlinked dir's child dir.
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("l", c.victim().to_str().unwrap());
        t.file("l/.wh..wh..opq", 0o644, b"");
        expect_err(c.run(t, &opts()), r#""l" is a symlink"#);
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("l", "../victim");
        t.file("l/sub/.wh.file", 0o644, b"");
        expect_err(c.run(t, &opts()), r#"parent "l" is a symlink"#);
        // Whiteout names that would address the parent itself.
        let c = Case::new();
        let mut t = Tar::new();
        t.file("a/.wh...", 0o644, b"");
        expect_err(c.run(t, &opts()), "invalid whiteout name");
    }

    #[test]
    fn attack_pax_path_override_with_dotdot() {
        let c = Case::new();
        let mut t = Tar::new();
        t.pax(&[("path", b"../victim/pwned")]);
        t.file("innocent", 0o644, b"pwned");
        expect_err(c.run(t, &opts()), r#"layer entry "../victim/pwned": path escapes the layer"#);
        assert!(!exists(&c.dest().join("innocent")));
        // PAX linkpath of a hardlink.
        let c = Case::new();
        let mut t = Tar::new();
        t.pax(&[("linkpath", b"../victim/secret")]);
        t.hardlink("innocent", "innocent-target");
        expect_err(c.run(t, &opts()), "path escapes the layer");
    }

    #[test]
    fn attack_gnu_long_name_with_dotdot() {
        let c = Case::new();
        let name = format!("{}../../victim/pwned", "a/".repeat(60)).replace("a/a/", "a/../");
        assert!(name.len() > 100);
        let mut t = Tar::new();
        t.gnu_long_name(format!("{}{}", "./".repeat(60), "../victim/pwned").as_bytes());
        t.file("short", 0o644, b"pwned");
        expect_err(c.run(t, &opts()), "path escapes the layer");
        let c = Case::new();
        let mut t = Tar::new();
        t.gnu_long_name(name.as_bytes());
        t.file("short", 0o644, b"pwned");
        expect_err(c.run(t, &opts()), "path escapes the layer");
    }

    #[test]
    fn attack_device_nodes_not_created() {
        let c = Case::new();
        let mut t = Tar::new();
        t.device(EntryType::Char, "dev/null", 1, 3);
        t.device(EntryType::Block, "dev/sda", 8, 0);
        t.device(EntryType::Char, "fake-whiteout", 0, 0);
        t.file("ok", 0o644, b"x");
        let stats = c.run(t, &opts()).unwrap();
        assert_eq!(stats.skipped_devices, 3);
        assert_eq!(stats.entries, 4);
        assert!(!exists(&c.dest().join("dev/null")));
        assert!(!exists(&c.dest().join("dev/sda")));
        assert!(!exists(&c.dest().join("fake-whiteout")));
    }

    #[test]
    fn attack_setuid_root_file_with_strip_setid() {
        let c = Case::new();
        let mut t = Tar::new();
        let mut h = Tar::header(EntryType::Regular, b"bin/su", b"", 0o4755, 4);
        h.set_uid(0);
        h.set_gid(0);
        t.pax(&[(
            "SCHILY.xattr.security.capability",
            b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        )]);
        t.raw(h, b"ELF!");
        t.dir("shared/", 0o2775);
        t.file("bin/both", 0o6711, b"x");
        t.fifo("bin/fifo", 0o4644);
        let o = ExtractOptions { strip_setid: true, ..opts() };
        c.run(t, &o).unwrap();
        let d = c.dest();
        assert_eq!(mode(&d.join("bin/su")), 0o755);
        assert_eq!(mode(&d.join("shared")), 0o775);
        assert_eq!(mode(&d.join("bin/both")), 0o711);
        assert_eq!(mode(&d.join("bin/fifo")), 0o644);
        assert_eq!(getxattr(&d.join("bin/su"), "security.capability"), None);
        if is_root() {
            assert_eq!(lstat(&d.join("bin/su")).uid(), 0);
        }
    }

    #[test]
    fn attack_hardlink_to_directory_or_missing_refused() {
        let c = Case::new();
        let mut t = Tar::new();
        t.dir("d/", 0o755);
        t.hardlink("h", "d");
        expect_err(c.run(t, &opts()), r#"hardlink target "d" is a directory"#);
        let c = Case::new();
        let mut t = Tar::new();
        t.hardlink("h", "later");
        t.file("later", 0o644, b"");
        expect_err(c.run(t, &opts()), "does not exist in the layer");
        let c = Case::new();
        let mut t = Tar::new();
        t.hardlink("h", "./");
        expect_err(c.run(t, &opts()), "hardlink to the layer root");
    }

    #[test]
    fn attack_file_as_parent_and_root_replacement_refused() {
        let c = Case::new();
        let mut t = Tar::new();
        t.file("f", 0o644, b"");
        t.file("f/x", 0o644, b"");
        expect_err(c.run(t, &opts()), r#"parent "f" is not a directory"#);
        let c = Case::new();
        let mut t = Tar::new();
        t.symlink("./", c.victim().to_str().unwrap());
        expect_err(c.run(t, &opts()), "the layer root can only be a directory");
        let c = Case::new();
        let mut t = Tar::new();
        t.file(".wh.x/y", 0o644, b"");
        expect_err(c.run(t, &opts()), "used as a directory");
    }

    // --------------------------------------------------------------- positive

    #[test]
    fn regular_dir_symlink_hardlink_fifo() {
        let dest = TempDir::new("basic");
        let big: Vec<u8> = (0..(3 << 20) / 2).map(|i| (i * 7 % 251) as u8).collect();
        let mut t = Tar::new();
        t.dir("etc/", 0o755);
        t.file("etc/hosts", 0o644, b"127.0.0.1 localhost\n");
        t.symlink("etc/dangling", "../nowhere/../x");
        t.symlink("abs", "/etc/passwd");
        t.hardlink("etc/hosts2", "etc/hosts");
        t.hardlink("h3", "./etc/../etc/hosts");
        t.fifo("run/fifo", 0o620);
        t.file("./bin/big", 0o755, &big);
        t.file("empty", 0o600, b"");
        let stats = extract(&t.build(), dest.path(), &opts()).unwrap();
        let d = dest.path();
        assert_eq!(stats.entries, 9);
        assert_eq!(stats.bytes, 20 + big.len() as u64);
        assert_eq!(std::fs::read(d.join("etc/hosts")).unwrap(), b"127.0.0.1 localhost\n");
        assert_eq!(mode(&d.join("etc/hosts")), 0o644);
        assert_eq!(std::fs::read_link(d.join("etc/dangling")).unwrap(), Path::new("../nowhere/../x"));
        assert_eq!(std::fs::read_link(d.join("abs")).unwrap(), Path::new("/etc/passwd"));
        let ino = lstat(&d.join("etc/hosts")).ino();
        assert_eq!(lstat(&d.join("etc/hosts2")).ino(), ino);
        assert_eq!(lstat(&d.join("h3")).ino(), ino);
        assert_eq!(lstat(&d.join("etc/hosts")).nlink(), 3);
        assert!(lstat(&d.join("run/fifo")).file_type().is_fifo());
        assert_eq!(mode(&d.join("run/fifo")), 0o620);
        assert_eq!(mode(&d.join("run")), 0o755, "implicit parents are 0755");
        assert_eq!(lstat(&d.join("run")).uid(), me().0 as u32);
        assert_eq!(std::fs::read(d.join("bin/big")).unwrap(), big);
        assert_eq!(std::fs::read(d.join("empty")).unwrap(), b"");
        for p in ["etc/hosts", "bin/big", "abs", "run/fifo", "etc"] {
            assert_eq!(lstat(&d.join(p)).mtime(), MTIME as i64, "{p}");
        }
    }

    #[test]
    fn xattrs_user_only_overlay_names_escaped() {
        let dest = TempDir::new("xattr");
        let mut t = Tar::new();
        t.pax(&[
            ("SCHILY.xattr.user.foo", b"bar\0baz"),
            ("SCHILY.xattr.trusted.evil", b"x"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.overlay.opaque", b"y"),
            ("SCHILY.xattr.security.evil", b"x"),
        ]);
        t.file("f", 0o444, b"data");
        t.pax(&[("SCHILY.xattr.user.dirattr", b"1")]);
        t.dir("d/", 0o555);
        extract(&t.build(), dest.path(), &opts()).unwrap();
        let f = dest.path().join("f");
        assert_eq!(getxattr(&f, "user.foo").as_deref(), Some(&b"bar\0baz"[..]));
        assert_eq!(getxattr(&f, "trusted.evil"), None);
        assert_eq!(getxattr(&f, "trusted.overlay.opaque"), None);
        assert_eq!(getxattr(&f, "security.evil"), None);
        assert_eq!(getxattr(&f, "user.overlay.opaque"), None, "the layer must not steer overlayfs");
        assert_eq!(getxattr(&f, "user.overlay.overlay.opaque").as_deref(), Some(&b"y"[..]));
        assert_eq!(mode(&f), 0o444);
        assert_eq!(getxattr(&dest.path().join("d"), "user.dirattr").as_deref(), Some(&b"1"[..]));
        assert_eq!(mode(&dest.path().join("d")), 0o555);
    }

    #[test]
    fn long_names_pax_paths_and_non_ascii() {
        let dest = TempDir::new("names");
        let long = format!("{}/{}", "sub-directory-name".repeat(4), "f".repeat(180));
        let long_target = format!("/{}", "t".repeat(150));
        let mut t = Tar::new();
        t.gnu_long_name(long.as_bytes());
        t.file("ignored-short-name", 0o644, b"long");
        t.pax(&[("path", "données/日本語.txt".as_bytes()), ("mtime", b"1700000000.5")]);
        t.file("x", 0o644, b"pax");
        t.pax(&[("linkpath", long_target.as_bytes())]);
        t.symlink("longlink", "short");
        t.file_b(b"bin\xff\xfe", 0o644, b"latin");
        t.pax(&[("path", b"a/./b/../c//d")]);
        t.file("y", 0o644, b"norm");
        extract(&t.build(), dest.path(), &opts()).unwrap();
        let d = dest.path();
        assert_eq!(std::fs::read(d.join(&long)).unwrap(), b"long");
        assert!(!exists(&d.join("ignored-short-name")));
        let uni = d.join("données/日本語.txt");
        assert_eq!(std::fs::read(&uni).unwrap(), b"pax");
        assert_eq!(lstat(&uni).mtime(), 1_700_000_000);
        assert_eq!(lstat(&uni).mtime_nsec(), 500_000_000);
        assert_eq!(std::fs::read_link(d.join("longlink")).unwrap(), Path::new(&long_target));
        assert_eq!(std::fs::read(d.join(OsStr::from_bytes(b"bin\xff\xfe"))).unwrap(), b"latin");
        assert_eq!(std::fs::read(d.join("a/c/d")).unwrap(), b"norm");
        assert!(!exists(&d.join("a/b")));
    }

    #[test]
    fn whiteouts_become_char_0_0() {
        let dest = TempDir::new("wh");
        let mut t = Tar::new();
        t.file("a/b", 0o644, b"this layer's own copy");
        t.file("a/.wh.b", 0o644, b"");
        t.file("x/.wh.gone", 0o644, b""); // parent absent from this layer
        t.dir("tree/", 0o755);
        t.file("tree/deep/file", 0o644, b"");
        t.file(".wh.tree", 0o644, b"");
        t.file(".wh..wh.plnk/123.45", 0o644, b""); // aufs bookkeeping: ignored
        let stats = extract(&t.build(), dest.path(), &opts()).unwrap();
        assert_eq!(stats.entries, 7);
        for p in ["a/b", "x/gone", "tree"] {
            let m = lstat(&dest.path().join(p));
            assert!(m.file_type().is_char_device(), "{p}");
            assert_eq!(m.rdev(), 0, "{p}");
        }
        for p in ["a/.wh.b", "x/.wh.gone", ".wh.tree", ".wh..wh.plnk"] {
            assert!(!exists(&dest.path().join(p)), "{p}");
        }
    }

    #[test]
    fn opaque_marker_becomes_xattr() {
        let dest = TempDir::new("opq");
        let mut t = Tar::new();
        t.dir("o/", 0o750);
        t.file("o/keep", 0o644, b"kept");
        t.file("o/.wh..wh..opq", 0o644, b"");
        t.file("new/dir/.wh..wh..opq", 0o644, b"");
        t.dir("new/dir/", 0o700); // an explicit entry afterwards keeps the dir and the mark
        extract(&t.build(), dest.path(), &opts()).unwrap();
        let d = dest.path();
        assert_eq!(getxattr(&d.join("o"), "user.overlay.opaque").as_deref(), Some(&b"y"[..]));
        assert_eq!(getxattr(&d.join("new/dir"), "user.overlay.opaque").as_deref(), Some(&b"y"[..]));
        assert_eq!(std::fs::read(d.join("o/keep")).unwrap(), b"kept");
        assert!(!exists(&d.join("o/.wh..wh..opq")));
        assert_eq!(mode(&d.join("o")), 0o750);
        assert_eq!(mode(&d.join("new/dir")), 0o700);
    }

    #[test]
    fn later_entry_overrides_earlier() {
        let dest = TempDir::new("override");
        let mut t = Tar::new();
        t.file("f", 0o600, b"one");
        t.file("f", 0o640, b"two");
        t.dir("d/", 0o700);
        t.file("d/child", 0o644, b"");
        t.file("d", 0o644, b"file now");
        t.file("s", 0o644, b"");
        t.symlink("s", "target");
        t.symlink("l", "x");
        t.dir("l/", 0o711);
        t.file("p", 0o644, b"");
        t.fifo("p", 0o600);
        t.file("orig", 0o644, b"data");
        t.hardlink("hl", "orig");
        t.file("hl", 0o600, b"new");
        t.dir("keep/", 0o700);
        t.file("keep/a", 0o644, b"a");
        t.dir("keep/", 0o751); // metadata updated, contents kept
        extract(&t.build(), dest.path(), &opts()).unwrap();
        let d = dest.path();
        assert_eq!(std::fs::read(d.join("f")).unwrap(), b"two");
        assert_eq!(mode(&d.join("f")), 0o640);
        assert_eq!(std::fs::read(d.join("d")).unwrap(), b"file now");
        assert_eq!(std::fs::read_link(d.join("s")).unwrap(), Path::new("target"));
        assert!(lstat(&d.join("l")).is_dir());
        assert_eq!(mode(&d.join("l")), 0o711);
        assert!(lstat(&d.join("p")).file_type().is_fifo());
        assert_eq!(std::fs::read(d.join("orig")).unwrap(), b"data");
        assert_eq!(std::fs::read(d.join("hl")).unwrap(), b"new");
        assert_eq!(lstat(&d.join("orig")).nlink(), 1);
        assert_eq!(std::fs::read(d.join("keep/a")).unwrap(), b"a");
        assert_eq!(mode(&d.join("keep")), 0o751);
    }

    #[test]
    fn dir_mtimes_and_modes_preserved() {
        let dest = TempDir::new("modes");
        let mut t = Tar::new();
        let mut h = Tar::header(EntryType::Directory, b"ro/", b"", 0o555, 0);
        h.set_mtime(1_234_567_890);
        t.raw(h, b"");
        t.file("ro/f", 0o444, b"r");
        t.dir("ro/sub/", 0o700);
        t.file("ro/sub/x", 0o640, b"x");
        t.dir("ro/none/", 0o000);
        t.dir("tmp/", 0o1777);
        t.file("suid", 0o4755, b"s");
        t.file("sgid", 0o2711, b"s");
        t.file("ro/late", 0o644, b"late"); // after ro/ was 'made' read-only
        extract(&t.build(), dest.path(), &opts()).unwrap();
        let d = dest.path();
        assert_eq!(mode(&d.join("ro")), 0o555);
        assert_eq!(lstat(&d.join("ro")).mtime(), 1_234_567_890);
        assert_eq!(mode(&d.join("ro/f")), 0o444);
        assert_eq!(mode(&d.join("ro/sub")), 0o700);
        assert_eq!(lstat(&d.join("ro/sub")).mtime(), MTIME as i64);
        assert_eq!(mode(&d.join("ro/sub/x")), 0o640);
        assert_eq!(mode(&d.join("ro/none")), 0o000);
        assert_eq!(mode(&d.join("tmp")), 0o1777);
        assert_eq!(mode(&d.join("suid")), 0o4755);
        assert_eq!(mode(&d.join("sgid")), 0o2711);
        assert_eq!(std::fs::read(d.join("ro/late")).unwrap(), b"late");
    }

    #[test]
    fn root_entry_applies_to_dest() {
        for name in ["./", "/", "."] {
            let dest = TempDir::new("root");
            let mut t = Tar::new();
            let mut h = Tar::header(EntryType::Directory, name.as_bytes(), b"", 0o750, 0);
            h.set_mtime(1_111_111_111);
            t.raw(h, b"");
            t.file("./a", 0o644, b"a");
            extract(&t.build(), dest.path(), &opts()).unwrap();
            assert_eq!(mode(dest.path()), 0o750, "{name}");
            assert_eq!(lstat(dest.path()).mtime(), 1_111_111_111, "{name}");
        }
        let dest = TempDir::new("root");
        let mut t = Tar::new();
        t.file("", 0o644, b"");
        expect_err(extract(&t.build(), dest.path(), &opts()), "the layer root can only be a directory");
    }

    #[test]
    fn ownership_keep_chowns_before_chmod() {
        if !is_root() {
            eprintln!("skipped: needs root (or a user namespace) to chown");
            return;
        }
        let dest = TempDir::new("own");
        let mut t = Tar::new();
        for (ty, name, mode) in [
            (EntryType::Regular, &b"f"[..], 0o4755),
            (EntryType::Directory, b"d/", 0o2755),
            (EntryType::Symlink, b"s", 0o777),
            (EntryType::Fifo, b"p", 0o640),
        ] {
            let mut h = Tar::header(ty, name, if ty == EntryType::Symlink { b"f" } else { b"" }, mode, 0);
            h.set_uid(1234);
            h.set_gid(5678);
            t.raw(h, b"");
        }
        let stats = extract(&t.build(), dest.path(), &opts()).unwrap();
        // Real root maps every id; root of a user namespace whose map lacks
        // 1234/5678 gets EINVAL and falls back to keeping the current owner.
        let expected = match stats.unmapped_owners {
            0 => (1234, 5678),
            4 => (me().0 as u32, me().1 as u32),
            n => panic!("{n} unmapped owners"),
        };
        for p in ["f", "d", "s", "p"] {
            let m = lstat(&dest.path().join(p));
            assert_eq!((m.uid(), m.gid()), expected, "{p}");
        }
        assert_eq!(mode(&dest.path().join("f")), 0o4755, "setuid survives the chown");
        assert_eq!(mode(&dest.path().join("d")), 0o2755);
    }

    #[test]
    fn ownership_ignore_and_unmapped_ids() {
        let dest = TempDir::new("unmapped");
        let mut t = Tar::new();
        t.pax(&[("uid", b"4294967295"), ("gid", b"5")]);
        t.file("f", 0o644, b"");
        let stats = extract(&t.build(), dest.path(), &opts()).unwrap();
        if opts().ownership == Ownership::Keep {
            assert_eq!(stats.unmapped_owners, 1);
        }
        assert_eq!(lstat(&dest.path().join("f")).uid(), me().0 as u32);

        let dest = TempDir::new("ignore");
        let mut t = Tar::new();
        let mut h = Tar::header(EntryType::Regular, b"f", b"", 0o644, 0);
        h.set_uid(4321);
        t.raw(h, b"");
        let o = ExtractOptions { ownership: Ownership::Ignore, strip_setid: false };
        let stats = extract(&t.build(), dest.path(), &o).unwrap();
        assert_eq!(stats.unmapped_owners, 0);
        assert_eq!(lstat(&dest.path().join("f")).uid(), me().0 as u32);
    }

    #[test]
    fn replacing_a_deep_tree() {
        // Deeper than PATH_MAX: openat2 gives up, the component walk and the
        // iterative removal still work.
        let dest = TempDir::new("deep");
        let deep = "a/".repeat(2100);
        let mut t = Tar::new();
        t.gnu_long_name(format!("{deep}f").as_bytes());
        t.file("x", 0o644, b"bottom");
        t.file("a/sibling", 0o644, b"");
        t.file("a", 0o644, b"flat now");
        extract(&t.build(), dest.path(), &opts()).unwrap();
        assert_eq!(std::fs::read(dest.path().join("a")).unwrap(), b"flat now");
    }

    #[test]
    fn stream_errors_and_trailing_data() {
        // Truncated file data.
        let dest = TempDir::new("trunc");
        let mut t = Tar::new();
        t.file("f", 0o644, &[7u8; 5000]);
        let data = t.build();
        expect_err(extract(&data[..512 + 1000], dest.path(), &opts()), "truncated");
        // GNU sparse and unknown types are refused with their type.
        let dest = TempDir::new("sparse");
        let mut t = Tar::new();
        let mut h = Tar::header(EntryType::GNUSparse, b"sparse", b"", 0o644, 0);
        h.as_gnu_mut().unwrap().set_real_size(0);
        t.raw(h, b"");
        expect_err(extract(&t.build(), dest.path(), &opts()), "unsupported entry type GNU sparse");
        let dest = TempDir::new("other");
        let mut t = Tar::new();
        t.raw(Tar::header(EntryType::new(b'V'), b"volume", b"", 0o644, 0), b"");
        expect_err(extract(&t.build(), dest.path(), &opts()), "unsupported entry type");
        // A global PAX header is skipped; the end-of-archive is not read past.
        let dest = TempDir::new("trailer");
        let mut t = Tar::new();
        let g = b"20 comment=hello!!\n".to_vec();
        t.raw(Tar::header(EntryType::XGlobalHeader, b"pax_global_header", b"", 0o644, g.len() as u64), &g);
        t.file("f", 0o644, b"x");
        let mut data = t.build();
        data.extend_from_slice(b"TRAILER");
        let mut r = &data[..];
        let stats = extract_layer(&mut r, dest.path(), &opts()).unwrap();
        assert_eq!(stats.entries, 1);
        assert!(r.ends_with(b"TRAILER"), "{} bytes left", r.len());
    }

    /// A reader that counts what is read from it.
    struct Counting<R> {
        inner: R,
        read: std::rc::Rc<Cell<u64>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    #[test]
    fn header_bombs_are_refused_after_a_bounded_read() {
        // A PAX header, a GNU long name and long link each declaring 1 TiB of zeros
        // (an endless stream): refused once 8 MiB were read, nothing of it kept.
        for ty in [EntryType::XHeader, EntryType::GNULongName, EntryType::GNULongLink] {
            let dest = TempDir::new("header-bomb");
            let mut t = Tar::new();
            t.file("before", 0o644, b"x");
            let mut data = t.build();
            data.truncate(data.len() - 1024); // no end-of-archive marker
            let h = Tar::header(ty, b"././@LongLink", b"", 0o644, 1 << 40);
            data.extend_from_slice(h.as_bytes());
            let read = std::rc::Rc::new(Cell::new(0));
            let stream = Counting { inner: (&data[..]).chain(std::io::repeat(0).take(1 << 40)), read: read.clone() };
            let msg = expect_err(extract_layer(stream, dest.path(), &opts()), "more than 8 MiB");
            assert!(msg.contains("after entry \"before\""), "{msg}");
            assert!(read.get() < data.len() as u64 + MAX_HEADER_BYTES + (1 << 20), "{ty:?}: read {} bytes", read.get());
        }
        // A global PAX header is refused by its declared size.
        let dest = TempDir::new("global-bomb");
        let mut data = Vec::new();
        data.extend_from_slice(Tar::header(EntryType::XGlobalHeader, b"g", b"", 0o644, 1 << 40).as_bytes());
        let stream = (&data[..]).chain(std::io::repeat(0).take(1 << 40));
        expect_err(extract_layer(stream, dest.path(), &opts()), "global PAX header");
        // Data of a type that has none (a symlink's) is skipped outside the budget.
        let dest = TempDir::new("symlink-data");
        let mut t = Tar::new();
        let mut h = Tar::header(EntryType::Symlink, b"l", b"target", 0o777, 0);
        h.set_size(MAX_HEADER_BYTES + 4096);
        t.raw(h, &vec![7u8; (MAX_HEADER_BYTES + 4096) as usize]);
        t.file("after", 0o644, b"y");
        let stats = extract(&t.build(), dest.path(), &opts()).unwrap();
        assert_eq!(stats.entries, 2);
        assert_eq!(std::fs::read(dest.path().join("after")).unwrap(), b"y");
    }

    #[test]
    fn entries_that_do_not_fit_are_refused_before_their_data() {
        let dest = TempDir::new("room");
        let mut t = Tar::new();
        t.file("small", 0o644, b"fits");
        let mut data = t.build();
        data.truncate(data.len() - 1024);
        let mut h = Tar::header(EntryType::Regular, b"huge", b"", 0o644, 0);
        h.set_size(1 << 60);
        h.set_cksum();
        data.extend_from_slice(h.as_bytes());
        let read = std::rc::Rc::new(Cell::new(0));
        let stream = Counting { inner: (&data[..]).chain(std::io::repeat(b'a').take(1 << 40)), read: read.clone() };
        let msg = expect_err(extract_layer(stream, dest.path(), &opts()), "do not fit in the");
        assert!(msg.contains("layer entry \"huge\"") && msg.contains("free on the store's filesystem"), "{msg}");
        assert!(read.get() < data.len() as u64 + (1 << 20), "read {} bytes", read.get());
        assert!(!dest.path().join("huge").exists());
    }

    #[test]
    fn gzip_stream() {
        use flate2::{read::GzDecoder, write::GzEncoder, Compression};
        let dest = TempDir::new("gz");
        let mut t = Tar::new();
        t.dir("usr/", 0o755);
        t.file("usr/data", 0o644, &vec![42u8; 1 << 21]);
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&t.build()).unwrap();
        let gz = enc.finish().unwrap();
        let stats = extract_layer(GzDecoder::new(&gz[..]), dest.path(), &opts()).unwrap();
        assert_eq!(stats.bytes, 1 << 21);
        assert_eq!(lstat(&dest.path().join("usr/data")).len(), 1 << 21);
    }

    #[test]
    fn normalize_rules() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(normalize(b"/abs").unwrap(), vec![&b"abs"[..]]);
        assert!(normalize(b"./").unwrap().is_empty());
        assert!(normalize(b"").unwrap().is_empty());
        assert_eq!(normalize(b"a/.."), Ok(vec![]));
        assert!(normalize(b"a/../..").is_err());
        assert!(normalize(b"/..").is_err());
        assert!(normalize(b"a\0b").is_err());
        assert_eq!(parse_pax_time(b"-1.25"), Some(TimeSpec::new(-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"12.000000001999"), Some(TimeSpec::new(12, 1)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
