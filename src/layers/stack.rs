//! Reading a stack of extracted layer directories as overlayfs shows them, without
//! mounting anything: a 0/0 character device hides the name below it, a directory
//! marked opaque hides the directories below it, a non-directory hides everything below.
use super::merge::is_opaque;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// Symlinks followed in one lookup before giving up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The directories (top first) that make up one merged directory; each is tagged with
/// the index of the layer it belongs to.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    pub dirs: Vec<(usize, PathBuf)>,
}

/// What a name is in a merged directory.
pub enum Found {
    /// A directory: its own stack, and the top-most copy (whose metadata overlay shows).
    Dir { stack: Stack, top: (usize, PathBuf), meta: Metadata },
    /// Anything else, from the top-most layer that has it.
    Other { layer: usize, path: PathBuf, meta: Metadata },
}

impl Found {
    pub fn meta(&self) -> &Metadata {
        match self {
            Found::Dir { meta, .. } | Found::Other { meta, .. } => meta,
        }
    }
}

pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

impl Stack {
    /// The merged root of `layers` (top first).
    pub fn of_layers(layers_top_first: &[PathBuf]) -> Stack {
        Stack { dirs: layers_top_first.iter().cloned().enumerate().collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    pub fn lookup(&self, name: &OsStr) -> Option<Found> {
        let mut dirs = Vec::new();
        let mut top: Option<((usize, PathBuf), Metadata)> = None;
        for (layer, dir) in &self.dirs {
            let path = dir.join(name);
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if is_whiteout(&meta) {
                break;
            }
            if !meta.is_dir() {
                if top.is_none() {
                    return Some(Found::Other { layer: *layer, path, meta });
                }
                break;
            }
            let opaque = is_opaque(&path);
            if top.is_none() {
                top = Some(((*layer, path.clone()), meta));
            }
            dirs.push((*layer, path));
            if opaque {
                break;
            }
        }
        top.map(|(top, meta)| Found::Dir { stack: Stack { dirs }, top, meta })
    }

    /// Looks a relative path up, component by component.
    pub fn lookup_path(&self, path: &[u8]) -> Option<Found> {
        let mut comps = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).peekable();
        let mut stack = self.clone();
        while let Some(c) = comps.next() {
            let found = stack.lookup(OsStr::from_bytes(c))?;
            if comps.peek().is_none() {
                return Some(found);
            }
            match found {
                Found::Dir { stack: below, .. } => stack = below,
                Found::Other { .. } => return None,
            }
        }
        None
    }

    /// Looks `path` up as the container sees it: symlinks on the way and at its end
    /// are followed inside the image (an absolute target starts again at the image's
    /// root), never on the host. None when it does not exist (or is the root).
    pub fn resolve(&self, path: &[u8]) -> Result<Option<Found>> {
        let (real, exists) = self.follow(path)?;
        Ok(if exists { self.lookup_path(&real) } else { None })
    }

    /// `path` with the image's symlinks followed inside the image (`follow_links`): the
    /// path they lead to, and whether it all exists.
    pub fn follow(&self, path: &[u8]) -> Result<(Vec<u8>, bool)> {
        follow_links(path, |p| {
            Ok(match self.lookup_path(p) {
                Some(Found::Other { path: host, meta, .. }) if meta.file_type().is_symlink() => Node::Link(host),
                Some(_) => Node::Present,
                None => Node::Missing,
            })
        })
    }

    /// The names the merged directory shows, sorted by their bytes.
    pub fn names(&self) -> std::io::Result<Vec<OsString>> {
        let mut seen: BTreeMap<OsString, bool> = BTreeMap::new();
        for (_, dir) in &self.dirs {
            for e in fs::read_dir(dir)? {
                let e = e?;
                let name = e.file_name();
                if seen.contains_key(&name) {
                    continue;
                }
                let hidden = e.file_type()?.is_char_device() && e.metadata().map(|m| is_whiteout(&m)).unwrap_or(false);
                seen.insert(name, !hidden);
            }
        }
        Ok(seen.into_iter().filter(|(_, visible)| *visible).map(|(n, _)| n).collect())
    }
}

/// The components of a path, `.` and empty ones dropped, `..` applied to what precedes
/// it (leading ones dropped: nothing is above the root).
pub fn components(p: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

/// What a path is, for `follow_links`.
pub enum Node {
    Missing,
    Present,
    /// A symlink, read at this host path.
    Link(PathBuf),
}

/// Resolves `path` (cleaned lexically first, as Docker does) component by component,
/// following symlinks inside the tree `node` describes: a relative target continues
/// from the link's directory, its `..` applied there (and stopping at the root), an
/// absolute one starts again at the root. Returns the path and whether it all exists;
/// from the first missing component on, the rest is appended as written.
pub fn follow_links(path: &[u8], node: impl Fn(&[u8]) -> Result<Node>) -> Result<(Vec<u8>, bool)> {
    let mut pending: Vec<Vec<u8>> = components(path).into_iter().rev().collect();
    let mut real: Vec<Vec<u8>> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == b".." {
            real.pop();
            continue;
        }
        real.push(c);
        match node(&real.join(&b'/'))? {
            Node::Present => {}
            Node::Link(host) => {
                hops += 1;
                if hops > MAX_LINKS {
                    bail!("too many levels of symbolic links at /{}", String::from_utf8_lossy(path));
                }
                let target = fs::read_link(&host).with_context(|| format!("reading the link {}", host.display()))?;
                let target = target.as_os_str().as_bytes();
                real.pop();
                if target.starts_with(b"/") {
                    real.clear();
                }
                let target_comps = target.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".");
                pending.extend(target_comps.map(<[u8]>::to_vec).collect::<Vec<_>>().into_iter().rev());
            }
            Node::Missing => {
                // Nothing below a missing name exists: the rest applies lexically.
                for c in pending.into_iter().rev() {
                    if c == b".." {
                        real.pop();
                    } else {
                        real.push(c);
                    }
                }
                return Ok((real.join(&b'/'), false));
            }
        }
    }
    Ok((real.join(&b'/'), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn layers(n: usize) -> (Dir, Vec<PathBuf>) {
        let base = std::env::temp_dir().join(format!("husk-stack-{}", crate::util::unique_suffix()));
        let v: Vec<PathBuf> = (0..n).map(|i| base.join(i.to_string())).collect();
        for l in &v {
            fs::create_dir_all(l).unwrap();
        }
        (Dir(base), v)
    }

    fn host_of(found: Option<Found>) -> Option<PathBuf> {
        match found {
            Some(Found::Other { path, .. }) => Some(path),
            Some(Found::Dir { top, .. }) => Some(top.1),
            None => None,
        }
    }

    #[test]
    fn resolve_follows_links_inside_the_image_only() {
        let (_base, l) = layers(2); // l[0] is the top layer
        let outside = l[0].parent().unwrap().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("passwd"), "host\n").unwrap();
        // bottom: usr/etc/passwd; top: etc -> /usr/etc (absolute), and links out
        fs::create_dir_all(l[1].join("usr/etc")).unwrap();
        fs::write(l[1].join("usr/etc/passwd"), "image\n").unwrap();
        symlink("/usr/etc", l[0].join("etc")).unwrap();
        symlink(&outside, l[0].join("abs-out")).unwrap();
        symlink("../../../../../../../..", l[0].join("rel-out")).unwrap();
        fs::create_dir_all(l[0].join("a/b")).unwrap();
        symlink("../../usr/etc/passwd", l[0].join("a/b/up")).unwrap();
        let s = Stack::of_layers(&l);
        let image_passwd = Some(l[1].join("usr/etc/passwd"));
        assert_eq!(host_of(s.resolve(b"/etc/passwd").unwrap()), image_passwd);
        // a relative target's .. applies from the link's directory
        assert_eq!(host_of(s.resolve(b"a/b/up").unwrap()), image_passwd);
        // out of the image: the host's file is never reached
        assert_eq!(host_of(s.resolve(b"abs-out/passwd").unwrap()), None);
        assert_eq!(host_of(s.resolve(b"rel-out/usr/etc/passwd").unwrap()), image_passwd, ".. stops at the root");
        assert!(Path::new(&outside.join("passwd")).exists());
        // loops end
        symlink("loop2", l[0].join("loop1")).unwrap();
        symlink("loop1", l[0].join("loop2")).unwrap();
        match s.resolve(b"loop1/x") {
            Err(e) => assert!(e.to_string().contains("too many levels"), "{e}"),
            Ok(_) => panic!("a symlink loop resolved"),
        }
    }
}
