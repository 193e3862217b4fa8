//! The container's root filesystem, built inside its new mount namespace: the image
//! layers under a native overlay with a private upper dir, then /proc, /dev, /sys and the
//! requested mounts, each destination resolved inside the rootfs (a symlink in the image
//! cannot send a mount outside: CVE-2021-30465 class), then pivot_root.
use crate::ns::mountpoints::MountPoint;
use crate::sys::{mount_set_readonly, openat2, openat_owned};
use anyhow::{bail, Context, Result};
use libc::{RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstatat, Mode, SFlag};
use oci_spec::runtime::{Mount, Spec};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the layers and the writable layer of one container are.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// Bottom layer first.
    pub lowerdirs: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// Content for /etc/hostname, /etc/hosts, /etc/resolv.conf (destination, content).
    pub etc_files: Vec<(String, String)>,
    /// Mount points the image lacks, provided by a tmpfs layer under a native overlay.
    pub scaffold: Vec<MountPoint>,
    /// --rm: the writable layer is deleted when the container ends, so the overlay is
    /// mounted `volatile`. Otherwise its unmount syncs the whole filesystem under the
    /// upper dir (everyone's dirty data on it), which can cost milliseconds per run.
    pub volatile: bool,
}

const HOST_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Builds the rootfs and moves into it. Runs in the child, in its own mount namespace.
pub fn enter(spec: &Spec, plan: &RootfsPlan, console: Option<&Path>) -> Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making mounts private")?;
    mount_layers(plan)?;
    let root = openat_owned(
        libc::AT_FDCWD,
        plan.target.to_string_lossy().as_bytes(),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .context("opening the rootfs")?;
    for special in ["proc", "dev", "sys"] {
        refuse_symlink(&root, special)?;
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        mount_in_root(&root, m).with_context(|| format!("mounting {}", m.destination().display()))?;
    }
    let dev = ensure_in_root(&root, Path::new("/dev"), true)?;
    let devdir = openat_owned(
        libc::AT_FDCWD,
        fd_path(&dev).to_string_lossy().as_bytes(),
        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    populate_dev(&root, &devdir)?;
    if let Some(pty) = console {
        let fd = ensure_in_root(&root, Path::new("/dev/console"), false)?;
        bind(pty, &fd_path(&fd), false, false).context("binding the pty to /dev/console")?;
    }
    write_etc_files(&root, &devdir, &plan.etc_files)?;
    pivot(&plan.target)?;
    // The working directory is created as root before the rootfs may become read-only,
    // as Docker does; after pivot_root its path can only resolve inside the container.
    if let Some(p) = spec.process() {
        let new_root =
            openat_owned(libc::AT_FDCWD, b"/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        ensure_in_root(&new_root, p.cwd(), true)
            .with_context(|| format!("creating the working directory {}", p.cwd().display()))?;
    }
    let linux = spec.linux().as_ref();
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        mask(Path::new(p))?;
    }
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        if Path::new(p).exists() {
            bind(Path::new(p), Path::new(p), true, true).with_context(|| format!("making {} read-only", p))?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        remount_ro(Path::new("/"), false).context("making the rootfs read-only")?;
    }
    Ok(())
}

/// For a stopped container (`husk cp`): in a forked process, enters a user namespace
/// with husk's mapping and a mount namespace of its own, mounts the container's layers
/// and writable layer as its rootfs would be, and chroots there.
pub fn enter_stopped(plan: &RootfsPlan) -> Result<()> {
    crate::ns::userns::enter_user_namespace()?;
    // What is copied in must be on the disk like any other write to a stopped container.
    let plan = &RootfsPlan { volatile: false, ..plan.clone() };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("creating a mount namespace")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("making mounts private")?;
    mount_layers(plan)?;
    nix::unistd::chroot(&plan.target).context("entering the container's root")?;
    nix::unistd::chdir("/").context("entering the container's root")
}

/// How the layers become one root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsMode {
    /// Native overlayfs mounted inside the user namespace.
    Overlay,
    /// fuse-overlayfs, when the kernel refuses overlayfs (needs /dev/fuse).
    FuseOverlayfs,
    /// A private copy of the layers: slow, always possible.
    Copy,
}

impl RootfsMode {
    /// `HUSK_ROOTFS=overlay|fuse-overlayfs|copy` forces a mode (for tests and odd kernels).
    pub fn forced() -> Result<Option<RootfsMode>> {
        match std::env::var("HUSK_ROOTFS").as_deref() {
            Err(_) | Ok("") => Ok(None),
            Ok("overlay") => Ok(Some(RootfsMode::Overlay)),
            Ok("fuse-overlayfs") => Ok(Some(RootfsMode::FuseOverlayfs)),
            Ok("copy") => Ok(Some(RootfsMode::Copy)),
            Ok(other) => bail!("HUSK_ROOTFS={:?}: expected overlay, fuse-overlayfs or copy", other),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RootfsMode::Overlay => "native overlayfs",
            RootfsMode::FuseOverlayfs => "fuse-overlayfs",
            RootfsMode::Copy => "private copy of the layers",
        }
    }
}

/// Mounts the layers at the target: native overlay, else fuse-overlayfs, else a copy.
pub fn mount_layers(plan: &RootfsPlan) -> Result<RootfsMode> {
    if let Some(mode) = RootfsMode::forced()? {
        match mode {
            RootfsMode::Overlay => mount_overlay(plan)?,
            RootfsMode::FuseOverlayfs => mount_fuse_overlayfs(plan)?,
            RootfsMode::Copy => mount_copy(plan)?,
        }
        return Ok(mode);
    }
    let native = match mount_overlay(plan) {
        Ok(()) => return Ok(RootfsMode::Overlay),
        Err(e) => e,
    };
    if crate::ns::idmap::find_in_path("fuse-overlayfs").is_some() && mount_fuse_overlayfs(plan).is_ok() {
        return Ok(RootfsMode::FuseOverlayfs);
    }
    mount_copy(plan)
        .with_context(|| format!("no overlay could be mounted ({:#}); copying the layers failed too", native))?;
    Ok(RootfsMode::Copy)
}

/// Which mode `mount_layers` would use here. Call inside husk's user namespace, in a
/// process that may unshare its mount namespace; `scratch` is an empty directory.
pub fn probe(scratch: &Path) -> Result<RootfsMode> {
    if let Some(mode) = RootfsMode::forced()? {
        return Ok(mode);
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("creating a mount namespace")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(scratch.join(d))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        scratch.join("lower").display(),
        scratch.join("upper").display(),
        scratch.join("work").display()
    );
    if mount(Some("overlay"), &scratch.join("merged"), Some("overlay"), MsFlags::empty(), Some(opts.as_str())).is_ok() {
        let _ = umount2(&scratch.join("merged"), MntFlags::MNT_DETACH);
        return Ok(RootfsMode::Overlay);
    }
    let fuse_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_ok();
    if fuse_usable && crate::ns::idmap::find_in_path("fuse-overlayfs").is_some() {
        return Ok(RootfsMode::FuseOverlayfs);
    }
    Ok(RootfsMode::Copy)
}

fn layer_links(plan: &RootfsPlan) -> Result<PathBuf> {
    let base = plan.upper.parent().context("the upper dir has no parent")?;
    let links = base.join("l");
    crate::util::remove_tree(&links)?;
    std::fs::create_dir(&links).context("creating the layer links")?;
    for (i, dir) in plan.lowerdirs.iter().enumerate() {
        std::os::unix::fs::symlink(dir, links.join(i.to_string())).context("linking a layer")?;
    }
    Ok(links)
}

fn mount_fuse_overlayfs(plan: &RootfsPlan) -> Result<()> {
    let links = layer_links(plan)?;
    let lower: Vec<String> =
        (0..plan.lowerdirs.len()).rev().map(|i| links.join(i.to_string()).to_string_lossy().into_owned()).collect();
    let opts =
        format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), plan.upper.display(), plan.work.display());
    let out = std::process::Command::new("fuse-overlayfs")
        .args(["-o", &opts])
        .arg(&plan.target)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running fuse-overlayfs")?;
    if !out.status.success() {
        bail!("fuse-overlayfs failed (is /dev/fuse usable by you?): {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn mount_copy(plan: &RootfsPlan) -> Result<()> {
    // The copy lives in the upper dir, so the container's writes land where they would
    // with an overlay; it is bound onto the target like any other rootfs.
    if std::fs::read_dir(&plan.upper)?.next().is_none() {
        crate::layers::merge::merge_into(&plan.lowerdirs, &plan.upper)?;
        // When the copy was made: what changed since is the container's (`layers::diff`).
        let base = plan.upper.parent().context("the upper dir has no parent")?;
        std::fs::write(base.join(crate::container::snapshot::COPY_MARKER), b"").context("marking the private copy")?;
    }
    bind(&plan.upper, &plan.target, false, false)
}

/// Mounts the layers with native overlayfs. Mount options are limited to a page, so the
/// layers are named through short links (`l/0`, `l/1`, …) relative to the container dir:
/// ~4 bytes a layer instead of ~100, enough for hundreds of layers.
fn mount_overlay(plan: &RootfsPlan) -> Result<()> {
    const PAGE: usize = 4096;
    // Relative to the layers' common directory, each layer costs ~70 bytes; past a
    // page of options, short links (`l/N` in the container dir) take over.
    let common = plan.lowerdirs.first().and_then(|p| p.parent()).and_then(|p| p.parent()).map(Path::to_path_buf);
    let relative: Option<Vec<String>> = common.as_ref().and_then(|c| {
        plan.lowerdirs.iter().rev().map(|p| p.strip_prefix(c).ok().map(|r| r.to_string_lossy().into_owned())).collect()
    });
    let mut tail = format!(",upperdir={},workdir={},userxattr", plan.upper.display(), plan.work.display());
    if plan.volatile {
        // overlayfs refuses a work dir a volatile mount used before (it cannot know
        // whether that one's data reached the disk); none of ours is in use here.
        crate::util::remove_tree(&plan.work.join("incompat"))?;
        tail.push_str(",volatile");
    }
    let scaffold_len = if plan.scaffold.is_empty() { 0 } else { plan.target.as_os_str().len() + 1 };
    let (dir, opts) = match (common, relative) {
        (Some(c), Some(rel))
            if rel.iter().map(|r| r.len() + 1).sum::<usize>() + tail.len() + scaffold_len + 10 < PAGE =>
        {
            (c, format!("lowerdir={}{}", rel.join(":"), tail))
        }
        _ => {
            let base = plan.upper.parent().context("the upper dir has no parent")?.to_path_buf();
            layer_links(plan)?;
            let lower: Vec<String> = (0..plan.lowerdirs.len()).rev().map(|i| format!("l/{}", i)).collect();
            (base, format!("lowerdir={}{}", lower.join(":"), tail))
        }
    };
    let opts = if plan.scaffold.is_empty() {
        opts
    } else {
        mount_scaffold(&plan.target, &plan.scaffold)?;
        opts.replacen("lowerdir=", &format!("lowerdir={}:", plan.target.display()), 1)
    };
    if opts.len() >= PAGE {
        let _ = umount2(&plan.target, MntFlags::MNT_DETACH);
        bail!("too many layers for one overlay mount ({} layers)", plan.lowerdirs.len());
    }
    let cwd = std::env::current_dir().ok();
    nix::unistd::chdir(&dir).context("entering the layers directory")?;
    let mounted = mount(Some("overlay"), &plan.target, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
        .context("mounting the overlay rootfs (native overlayfs in a user namespace)");
    if let Some(c) = cwd {
        let _ = nix::unistd::chdir(&c);
    }
    if mounted.is_err() && !plan.scaffold.is_empty() {
        let _ = umount2(&plan.target, MntFlags::MNT_DETACH);
    }
    mounted
}

/// A tmpfs at the (still empty) target holding the missing mount points; the overlay
/// then stacks on the same target with it as its top lower layer, so the mount
/// points never touch the disk. It lives as long as the overlay that references it.
fn mount_scaffold(target: &Path, entries: &[MountPoint]) -> Result<()> {
    mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755,size=16k"))
        .context("mounting the mount-point layer")?;
    for e in entries {
        let p = target.join(&e.path);
        let made = if e.dir {
            std::fs::DirBuilder::new().mode(0o755).create(&p)
        } else {
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&p).map(drop)
        };
        made.with_context(|| format!("creating the mount point /{}", e.path))?;
        if let Some(like) = &e.like {
            let meta = std::fs::symlink_metadata(like).with_context(|| format!("reading {}", like.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            let _ = std::os::unix::fs::lchown(&p, Some(meta.uid()), Some(meta.gid()));
        }
    }
    Ok(())
}

fn refuse_symlink(root: &OwnedFd, name: &str) -> Result<()> {
    match fstatat(Some(root.as_raw_fd()), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            bail!("the image's /{} is a symlink; refused", name)
        }
        _ => Ok(()),
    }
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens (creating when missing) `dest` inside the rootfs, never leaving it. A dangling
/// symlink on the way is followed by creating what it points to, inside the rootfs too.
pub fn ensure_in_root(root: &OwnedFd, dest: &Path, dir: bool) -> Result<OwnedFd> {
    ensure_in_root_depth(root, dest, dir, 0)
}

const MAX_LINKS: u32 = 40;

fn ensure_in_root_depth(root: &OwnedFd, dest: &Path, dir: bool, depth: u32) -> Result<OwnedFd> {
    if depth > MAX_LINKS {
        bail!("too many levels of symbolic links at {}", dest.display());
    }
    let rel = dest.strip_prefix("/").unwrap_or(dest);
    if rel.as_os_str().is_empty() {
        return Ok(root.try_clone()?);
    }
    let bytes = rel.to_string_lossy();
    let resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    match openat2(root.as_raw_fd(), bytes.as_bytes(), OFlag::O_PATH | OFlag::O_CLOEXEC, resolve) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(Errno::ELOOP) => bail!("{} leads through a magic link of /proc or a symlink loop; refused", dest.display()),
        Err(e) => return Err(e).with_context(|| format!("resolving {} in the rootfs", dest.display())),
    }
    let parent_path = rel.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = match parent_path {
        Some(p) => ensure_in_root_depth(root, &Path::new("/").join(p), true, depth)?,
        None => root.try_clone()?,
    };
    let name = rel.file_name().context("mount destination has no name")?;
    let name = name.to_string_lossy();
    if dir {
        match nix::sys::stat::mkdirat(Some(parent.as_raw_fd()), name.as_ref(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dest.display())),
        }
    } else {
        let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat_owned(parent.as_raw_fd(), name.as_bytes(), flags, Mode::from_bits_truncate(0o644)) {
            // ELOOP: a symlink is there; it is followed below, inside the rootfs.
            Ok(_) | Err(Errno::ELOOP) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dest.display())),
        }
    }
    match openat2(root.as_raw_fd(), bytes.as_bytes(), OFlag::O_PATH | OFlag::O_CLOEXEC, resolve) {
        Err(Errno::ENOENT) => {
            // `name` exists but leads nowhere: a dangling symlink. Create its target.
            let target = nix::fcntl::readlinkat(Some(parent.as_raw_fd()), name.as_ref())
                .with_context(|| format!("resolving {} in the rootfs", dest.display()))?;
            let target = Path::new(&target);
            let next = if target.is_absolute() {
                target.to_path_buf()
            } else {
                Path::new("/").join(parent_path.unwrap_or(Path::new(""))).join(target)
            };
            ensure_in_root_depth(root, &next, dir, depth + 1)?;
            openat2(root.as_raw_fd(), bytes.as_bytes(), OFlag::O_PATH | OFlag::O_CLOEXEC, resolve)
                .with_context(|| format!("resolving {} in the rootfs", dest.display()))
        }
        Err(Errno::ELOOP) => bail!("{} leads through a magic link of /proc or a symlink loop; refused", dest.display()),
        other => other.with_context(|| format!("resolving {} in the rootfs", dest.display())),
    }
}

/// Refuses a mount whose resolved destination is on procfs (a symlink in the image or
/// in a bound directory can lead a path there that does not look like /proc).
fn refuse_proc_target(target: &OwnedFd, destination: &Path) -> Result<()> {
    let on_proc = nix::sys::statfs::fstatfs(target)
        .map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
        .unwrap_or(false);
    if on_proc {
        bail!("{} resolves into /proc; nothing may be mounted there", destination.display());
    }
    Ok(())
}

fn mount_in_root(root: &OwnedFd, m: &Mount) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("bind");
    let options = m.options().clone().unwrap_or_default();
    let readonly = options.iter().any(|o| o == "ro");
    let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    if is_bind {
        let source = m.source().as_ref().context("bind mount without a source")?;
        let is_dir = std::fs::metadata(source).with_context(|| format!("bind source {}", source.display()))?.is_dir();
        let target = ensure_in_root(root, m.destination(), is_dir)?;
        refuse_proc_target(&target, m.destination())?;
        let recursive = options.iter().any(|o| o == "rbind");
        bind(source, &fd_path(&target), false, recursive)?;
        if readonly {
            // The descriptor still names the directory under the new mount: resolve again.
            let mounted = ensure_in_root(root, m.destination(), is_dir)?;
            remount_ro(&fd_path(&mounted), recursive)?;
        }
        return Ok(());
    }
    let target = ensure_in_root(root, m.destination(), true)?;
    if typ != "proc" {
        refuse_proc_target(&target, m.destination())?;
    }
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in &options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "rw" => {}
            other => data.push(other.to_string()),
        }
    }
    let data = data.join(",");
    let source = m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| typ.to_string());
    mount(Some(source.as_str()), &fd_path(&target), Some(typ), flags, Some(data.as_str()))
        .with_context(|| format!("mount -t {}", typ))
}

/// Bind-mounts `source` on `target` (with its submounts when `recursive`), read-only when asked.
fn bind(source: &Path, target: &Path, readonly: bool, recursive: bool) -> Result<()> {
    let flags = if recursive { MsFlags::MS_BIND | MsFlags::MS_REC } else { MsFlags::MS_BIND };
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("bind-mounting {}", source.display()))?;
    if readonly {
        remount_ro(target, recursive)?;
    }
    Ok(())
}

/// Makes a mount (and, when `recursive`, the mounts below it) read-only.
fn remount_ro(target: &Path, recursive: bool) -> Result<()> {
    mount_set_readonly(target, recursive).with_context(|| format!("making {} read-only", target.display()))
}

/// Device files bound from the host (a user namespace cannot create real ones) and the usual links.
fn populate_dev(root: &OwnedFd, devdir: &OwnedFd) -> Result<()> {
    for dev in HOST_DEVICES {
        let host = Path::new("/dev").join(dev);
        if host.exists() {
            // /dev is normally the container's fresh tmpfs: make the mount point there
            // directly; only what already exists (a /dev the user mounted) is resolved.
            let fd = match openat_owned(
                devdir.as_raw_fd(),
                dev.as_bytes(),
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            ) {
                Err(Errno::EEXIST) => ensure_in_root(root, &host, false)?,
                made => made.with_context(|| format!("creating /dev/{}", dev))?,
            };
            bind(&host, &fd_path(&fd), false, false)?;
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match nix::unistd::symlinkat(target, Some(devdir.as_raw_fd()), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("creating /dev/{}", name)),
        }
    }
    Ok(())
}

/// Writes each file into the container's /dev tmpfs, binds it over its place in /etc and
/// unlinks the source: the mount keeps the file, which costs no disk at all.
fn write_etc_files(root: &OwnedFd, devdir: &OwnedFd, files: &[(String, String)]) -> Result<()> {
    use std::io::Write;
    for (i, (dest, content)) in files.iter().enumerate() {
        let name = format!(".husk-etc-{}", i);
        let fd = openat_owned(
            devdir.as_raw_fd(),
            name.as_bytes(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .with_context(|| format!("writing {}", dest))?;
        std::fs::File::from(fd).write_all(content.as_bytes()).with_context(|| format!("writing {}", dest))?;
        let source = fd_path(devdir).join(&name);
        let target = ensure_in_root(root, Path::new(dest), false)?;
        refuse_proc_target(&target, Path::new(dest))?;
        bind(&source, &fd_path(&target), false, false)?;
        nix::unistd::unlinkat(Some(devdir.as_raw_fd()), name.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

fn pivot(target: &Path) -> Result<()> {
    nix::unistd::chdir(target).context("entering the rootfs")?;
    nix::unistd::pivot_root(".", ".").context("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).context("detaching the old root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// Hides a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
            .with_context(|| format!("masking {}", path.display())),
        Ok(_) => mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .with_context(|| format!("masking {}", path.display())),
    }
}
