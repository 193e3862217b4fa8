//! Raw system calls that nix does not wrap, each in one place.
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub fn openat_owned(dir: RawFd, name: &[u8], flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir), name, flags, mode)?;
    // SAFETY: `fd` was just returned by a successful openat and nothing else
    // owns it, so the OwnedFd becomes its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2). With RESOLVE_IN_ROOT or RESOLVE_BENEATH a lookup through `..` fails with
/// EAGAIN when any mount or rename on the system races it; that is retried, boundedly.
pub fn openat2(dir: RawFd, path: &[u8], flags: OFlag, resolve: u64) -> nix::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match openat2_once(dir, path, flags, resolve) {
            Err(Errno::EAGAIN) if tries < 1000 => tries += 1,
            other => return other,
        }
    }
}

fn openat2_once(dir: RawFd, path: &[u8], flags: OFlag, resolve: u64) -> nix::Result<OwnedFd> {
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    let how = OpenHow { flags: flags.bits() as u64, mode: 0, resolve };
    // SAFETY: `path` is a valid NUL-terminated string and `how` a properly laid
    // out `struct open_how` whose size is passed; both outlive the call, which
    // only reads them.
    let ret = unsafe {
        libc::syscall(libc::SYS_openat2, dir, path.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    };
    let fd = Errno::result(ret)?;
    // SAFETY: a successful openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes the mount at `path` read-only, with every mount below it when `recursive`.
pub fn mount_set_readonly(path: &std::path::Path, recursive: bool) -> nix::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let flags = if recursive { libc::AT_RECURSIVE as u32 } else { 0 };
    // SAFETY: `cpath` is NUL-terminated and `attr` a properly laid out `struct mount_attr`
    // whose size is passed; both outlive the call, which only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(ret).map(drop)
}
