//! Layer extraction (src/layers/extract.rs) of arbitrary tar streams, with an escape
//! check after every input.
//!
//! Each input is extracted into `JAIL/a/b/dest`, an empty directory two levels below a
//! jail directory that also holds `JAIL/outside/canary` (a file) and `JAIL/outside/dir/`.
//! After the extraction (successful or not) everything in the jail outside `dest` must
//! be exactly as before: no new or removed entry, the canary's content, mode and link
//! count unchanged (a hard link to it from `dest` would raise the count). `dest` is then
//! emptied. Files are never chowned (`Ownership::Ignore`, what an unprivileged user
//! without subordinate ids gets); the first input byte chooses `strip_setid`.
#![no_main]

use husk::layers::extract::{extract_layer, ExtractOptions, Ownership};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const CANARY: &[u8] = b"husk fuzz canary: must never change\n";

struct Jail {
    root: PathBuf,
    dest: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

/// Every entry under `dir` except `skip`, with what must not change about it.
fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        let mut what = format!("mode {:o} nlink {} size {}", m.mode(), m.nlink(), m.len());
        if m.file_type().is_file() {
            what.push_str(&format!(" content {:?}", fs::read(&p).unwrap_or_default()));
        }
        out.insert(p.clone(), what);
        if m.file_type().is_dir() {
            snapshot(&p, skip, out);
        }
    }
}

fn jail() -> &'static Jail {
    static JAIL: OnceLock<Jail> = OnceLock::new();
    JAIL.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("husk-fuzz-extract-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("outside/dir")).unwrap();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("outside/canary"), CANARY).unwrap();
        fs::set_permissions(root.join("outside/canary"), fs::Permissions::from_mode(0o644)).unwrap();
        let dest = root.join("a/b/dest");
        fs::create_dir(&dest).unwrap();
        let mut before = BTreeMap::new();
        snapshot(&root, &dest, &mut before);
        Jail { root, dest, before }
    })
}

/// Removes a tree whatever its modes (an extracted directory may be mode 000).
fn remove_tree(p: &Path) {
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.file_type().is_dir() {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    remove_tree(&e.path());
                }
            }
            fs::remove_dir(p).unwrap_or_else(|e| panic!("removing {}: {e}", p.display()));
        } else {
            fs::remove_file(p).unwrap_or_else(|e| panic!("removing {}: {e}", p.display()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, tar)) = data.split_first() else { return };
    let j = jail();
    let opts = ExtractOptions { ownership: Ownership::Ignore, strip_setid: flags & 1 == 1 };
    let result = extract_layer(tar, &j.dest, &opts);
    let mut after = BTreeMap::new();
    snapshot(&j.root, &j.dest, &mut after);
    if after != j.before {
        let changed: Vec<_> = after
            .iter()
            .filter(|(k, v)| j.before.get(*k) != Some(*v))
            .map(|(k, v)| format!("{} ({v})", k.display()))
            .chain(j.before.keys().filter(|k| !after.contains_key(*k)).map(|k| format!("{} removed", k.display())))
            .collect();
        panic!("extraction escaped its directory (result {result:?}): {changed:#?}");
    }
    if let Err(e) = &result {
        assert!(!format!("{e:#}").contains('\n'), "a multi-line error: {e:#}");
    }
    remove_tree(&j.dest);
    fs::create_dir(&j.dest).unwrap();
});
