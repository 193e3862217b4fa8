//! Reading a stack of extracted layer directories as overlayfs shows them, without
//! mounting anything: a 0/0 character device hides the name below it, a directory
//! marked opaque hides the directories below it, a non-directory hides everything below.
use super::merge::is_opaque;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

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
