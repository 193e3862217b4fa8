//! The mount points every container needs (/proc, /dev, /sys and the /etc files husk
//! provides) that the image lacks. Creating them in the container's upper dir costs
//! several directory operations on disk per start and as many again on `--rm`; instead
//! they are made on a small tmpfs that the overlay stacks as its top lower layer.
//!
//! Looking them up reads the extracted layers with overlay's rules: whiteouts (0/0
//! character devices) hide, opaque directories stop the lookup, and any non-directory
//! on the way (a symlinked /etc, say) leaves that path to the general in-rootfs
//! resolution, which follows symlinks inside the rootfs.
use crate::layers::merge::is_opaque;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// A mount point to provide: its path relative to the root, and whether it is a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub path: String,
    pub dir: bool,
    /// For a directory the image has (a parent of missing files): the image's own copy,
    /// whose owner and mode the stacked directory must keep, since overlay shows the
    /// attributes of the top-most layer.
    pub like: Option<PathBuf>,
}

const DIRS: [&str; 3] = ["proc", "dev", "sys"];
const ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// What the image (layers top first) lacks, parents before children.
pub fn missing(layers_top_first: &[PathBuf]) -> Vec<MountPoint> {
    let mut out = Vec::new();
    for d in DIRS {
        if lookup(layers_top_first, d) == Entry::Missing {
            out.push(MountPoint { path: d.into(), dir: true, like: None });
        }
    }
    let etc_layers = match lookup(layers_top_first, "etc") {
        Entry::Missing => {
            out.push(MountPoint { path: "etc".into(), dir: true, like: None });
            Vec::new()
        }
        Entry::Dir(layers) => layers,
        Entry::Other => return out,
    };
    let files: Vec<MountPoint> = ETC_FILES
        .iter()
        .filter(|f| lookup(&etc_layers, f) == Entry::Missing)
        .map(|f| MountPoint { path: format!("etc/{}", f), dir: false, like: None })
        .collect();
    if !files.is_empty() {
        if let Some(image_etc) = etc_layers.first() {
            out.push(MountPoint { path: "etc".into(), dir: true, like: Some(image_etc.clone()) });
        }
    }
    out.extend(files);
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Missing,
    /// A directory: the layer directories (top first) that make up its content.
    Dir(Vec<PathBuf>),
    /// A file, symlink or other non-directory.
    Other,
}

/// Looks `name` up in a directory made of `dirs` (top first).
fn lookup(dirs: &[PathBuf], name: &str) -> Entry {
    let mut layers = Vec::new();
    let mut found_dir = false;
    for dir in dirs {
        let path = dir.join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            break; // a whiteout hides everything below
        }
        if !ft.is_dir() {
            if found_dir {
                break; // a lower non-directory is hidden by the directory above
            }
            return Entry::Other;
        }
        found_dir = true;
        let opaque = is_opaque(&path);
        layers.push(path);
        if opaque {
            break;
        }
    }
    if found_dir {
        Entry::Dir(layers)
    } else {
        Entry::Missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn layers(n: usize) -> (PathBuf, Vec<PathBuf>) {
        let base = std::env::temp_dir().join(format!("husk-mp-{}-{}", std::process::id(), rand_suffix()));
        let v: Vec<PathBuf> = (0..n).map(|i| base.join(i.to_string())).collect();
        for l in &v {
            fs::create_dir_all(l).unwrap();
        }
        (base, v)
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn paths(m: &[MountPoint]) -> Vec<&str> {
        m.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn an_empty_image_lacks_everything() {
        let (base, l) = layers(1);
        assert_eq!(paths(&missing(&l)), ["proc", "dev", "sys", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf"]);
        assert!(missing(&l)[3].dir && !missing(&l)[4].dir);
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn entries_in_any_layer_count() {
        let (base, l) = layers(2);
        for d in ["proc", "dev"] {
            fs::create_dir(l[1].join(d)).unwrap();
        }
        fs::create_dir(l[0].join("sys")).unwrap();
        fs::create_dir(l[0].join("etc")).unwrap();
        fs::create_dir(l[1].join("etc")).unwrap();
        fs::write(l[1].join("etc/hosts"), "").unwrap();
        assert_eq!(paths(&missing(&l)), ["etc", "etc/hostname", "etc/resolv.conf"]);
        assert_eq!(missing(&l)[0].like.as_deref(), Some(l[0].join("etc").as_path()), "the top-most image copy of /etc");
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn an_opaque_directory_hides_lower_entries() {
        let (base, l) = layers(2);
        fs::create_dir(l[0].join("etc")).unwrap();
        fs::create_dir(l[1].join("etc")).unwrap();
        fs::write(l[1].join("etc/hosts"), "").unwrap();
        xattr_set(&l[0].join("etc"), "user.overlay.opaque", b"y");
        assert!(paths(&missing(&l)).contains(&"etc/hosts"));
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_symlinked_etc_is_left_to_the_rootfs_resolution() {
        let (base, l) = layers(1);
        fs::create_dir(l[0].join("real-etc")).unwrap();
        std::os::unix::fs::symlink("real-etc", l[0].join("etc")).unwrap();
        assert_eq!(paths(&missing(&l)), ["proc", "dev", "sys"]);
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_whiteout_hides_the_lower_directory() {
        assert!(nix::unistd::geteuid().is_root(), "this test makes a whiteout (a 0/0 device): run the tests as root");
        let (base, l) = layers(2);
        fs::create_dir(l[1].join("proc")).unwrap();
        nix::sys::stat::mknod(&l[0].join("proc"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
            .unwrap();
        assert!(paths(&missing(&l)).contains(&"proc"));
        fs::remove_dir_all(base).unwrap();
    }

    fn xattr_set(p: &Path, name: &str, value: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid NUL-terminated strings and a valid buffer.
        let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        assert_eq!(r, 0, "setxattr {:?}", std::io::Error::last_os_error());
    }
}
