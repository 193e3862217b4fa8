//! Merging extracted layers into one plain directory, applying overlay-style whiteouts
//! (0/0 character devices) and opaque directories: the last-resort rootfs when no
//! overlay filesystem can be mounted. Hard links inside a layer become separate copies.
use anyhow::{Context, Result};
use nix::unistd::{fchownat, Gid, Uid};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Applies `layers` (bottom first) onto `dest`, which must exist.
pub fn merge_into(layers: &[impl AsRef<Path>], dest: &Path) -> Result<()> {
    for layer in layers {
        merge_dir(layer.as_ref(), dest).with_context(|| format!("copying layer {}", layer.as_ref().display()))?;
    }
    Ok(())
}

/// True when an extracted layer marks `dir` opaque (`user.overlay.opaque` = y).
pub fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(p), Ok(n)) =
        (std::ffi::CString::new(dir.as_os_str().as_bytes()), std::ffi::CString::new("user.overlay.opaque"))
    else {
        return false;
    };
    let mut buf = [0u8; 2];
    // SAFETY: both strings are NUL-terminated and `buf` is valid for its length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    r == 1 && buf[0] == b'y'
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => crate::util::remove_tree(path),
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}

fn copy_owner_and_mode(meta: &fs::Metadata, dest: &Path, symlink: bool) -> Result<()> {
    let _ = fchownat(
        None,
        dest,
        Some(Uid::from_raw(meta.uid())),
        Some(Gid::from_raw(meta.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    if !symlink {
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

fn merge_dir(src: &Path, dst: &Path) -> Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (s, d) = (entry.path(), dst.join(entry.file_name()));
        let meta = fs::symlink_metadata(&s)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            remove_any(&d)?; // whiteout
            continue;
        }
        if ft.is_dir() {
            let existing_dir = fs::symlink_metadata(&d).map(|m| m.is_dir()).unwrap_or(false);
            if !existing_dir || is_opaque(&s) {
                remove_any(&d)?;
                fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            }
            merge_dir(&s, &d)?;
            copy_owner_and_mode(&meta, &d, false)?;
            continue;
        }
        remove_any(&d)?;
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            copy_owner_and_mode(&meta, &d, true)?;
        } else if ft.is_file() {
            fs::copy(&s, &d).with_context(|| format!("copying {}", s.display()))?;
            copy_owner_and_mode(&meta, &d, false)?;
        } else if ft.is_fifo() {
            nix::unistd::mkfifo(&d, nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777))?;
            copy_owner_and_mode(&meta, &d, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_and_opaque_dirs_apply() {
        let base = std::env::temp_dir().join(format!("husk-merge-{}", std::process::id()));
        let (l1, l2, out) = (base.join("l1"), base.join("l2"), base.join("out"));
        for d in [&l1, &l2, &out] {
            fs::create_dir_all(d).unwrap();
        }
        fs::create_dir_all(l1.join("keep")).unwrap();
        fs::write(l1.join("keep/a"), "a").unwrap();
        fs::write(l1.join("gone"), "x").unwrap();
        fs::create_dir_all(l1.join("opq")).unwrap();
        fs::write(l1.join("opq/old"), "old").unwrap();
        fs::create_dir_all(l2.join("opq")).unwrap();
        fs::write(l2.join("opq/new"), "new").unwrap();
        fs::write(l2.join("keep/b"), "b").ok();
        fs::create_dir_all(l2.join("keep")).unwrap();
        fs::write(l2.join("keep/b"), "b").unwrap();
        let opq = std::ffi::CString::new(l2.join("opq").to_str().unwrap()).unwrap();
        let name = std::ffi::CString::new("user.overlay.opaque").unwrap();
        // SAFETY: NUL-terminated strings and a one-byte value that outlive the call.
        let set = unsafe { libc::lsetxattr(opq.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        let whiteout =
            nix::sys::stat::mknod(&l2.join("gone"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0);
        merge_into(&[&l1, &l2], &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("keep/a")).unwrap(), "a");
        assert_eq!(fs::read_to_string(out.join("keep/b")).unwrap(), "b");
        assert_eq!(fs::read_to_string(out.join("opq/new")).unwrap(), "new");
        if set == 0 {
            assert!(!out.join("opq/old").exists(), "opaque dir hides the lower content");
        }
        if whiteout.is_ok() {
            assert!(!out.join("gone").exists(), "whiteout removes the lower file");
        }
        crate::util::remove_tree(&base).unwrap();
    }
}
