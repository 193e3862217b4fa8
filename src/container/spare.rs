//! Spare container directories. A removed container's directory, emptied, waits as
//! `containers/.spare-<n>` for the next container instead of being deleted, so a start
//! and a removal make and delete one directory fewer. On this machine's ext4 (no
//! journal, `discard`) each directory made costs up to ~0.14 ms and each one deleted a
//! synchronous discard of its block.
//!
//! Only the directory itself is reused. The writable layer `upper/` carries the
//! attributes of the container's `/`, and the overlay work dir may still be in use by a
//! mount that outlives the container (a `husk cp` still in its mount namespace): both
//! are always made anew.
use crate::layers::store::remove_path;
use anyhow::{Context, Result};
use nix::fcntl::{renameat2, RenameFlags};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const PREFIX: &str = ".spare-";
/// At most this many wait.
const SLOTS: usize = 4;

fn slot(containers: &Path, n: usize) -> PathBuf {
    containers.join(format!("{}{}", PREFIX, n))
}

/// Moves a spare to `dir` (which must not exist). False when none is there. A spare
/// that is not empty is put aside as a removed container's files (`aside`, a name that
/// removal leftovers are collected under), never used.
pub fn claim(containers: &Path, dir: &Path, aside: impl Fn() -> PathBuf) -> bool {
    for n in 0..SLOTS {
        if fs::rename(slot(containers, n), dir).is_err() {
            continue; // none there, or another husk took it first
        }
        if fs::read_dir(dir).map(|mut rd| rd.next().is_none()).unwrap_or(false) {
            return true;
        }
        if fs::rename(dir, aside()).is_err() {
            return false;
        }
    }
    false
}

/// Empties a removed container's directory and puts it in a free slot, with the mode
/// new container directories get. False when it was not kept (no free slot): the
/// caller deletes it.
pub fn keep(containers: &Path, dir: &Path) -> Result<bool> {
    // overlayfs leaves work/work with mode 000: deleted before the tree walk reads it
    let _ = fs::remove_dir(dir.join("work/work"));
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        remove_path(&e?.path())?;
    }
    let mode = fs::metadata(containers)?.permissions().mode();
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    for n in 0..SLOTS {
        match renameat2(None, dir, None, &slot(containers, n), RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(true),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(e).with_context(|| format!("keeping {} as a spare", dir.display())),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("husk-spare-{}", crate::util::unique_suffix()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn removed_container(containers: &Path, name: &str) -> PathBuf {
        let d = containers.join(name);
        fs::create_dir_all(d.join("upper/etc")).unwrap();
        fs::write(d.join("upper/etc/secret"), "x").unwrap();
        fs::create_dir_all(d.join("work/work/incompat/volatile")).unwrap();
        fs::write(d.join("work/work/incompat/volatile/dirty"), "").unwrap();
        fs::write(d.join("state.json"), "{}").unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn is_empty(dir: &Path) -> bool {
        fs::read_dir(dir).unwrap().next().is_none()
    }

    fn aside(c: &Path) -> impl Fn() -> PathBuf + '_ {
        move || c.join(format!(".rm-spare-{}", crate::util::unique_suffix()))
    }

    #[test]
    fn a_kept_directory_is_empty_with_a_new_directory_s_mode_and_is_claimed_once() {
        let c = tmp();
        let gone = removed_container(&c, ".rm-a");
        assert!(keep(&c, &gone).unwrap());
        assert!(!gone.exists());
        let spare = slot(&c, 0);
        assert!(is_empty(&spare));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode(&spare), mode(&c), "the mode of containers/, as mkdir gives");
        let new = c.join(".new-b");
        assert!(claim(&c, &new, aside(&c)));
        assert!(is_empty(&new) && !spare.exists());
        assert!(!claim(&c, &c.join(".new-c"), aside(&c)), "one spare, claimed once");
        fs::remove_dir_all(&c).unwrap();
    }

    #[test]
    fn slots_are_bounded_and_a_spare_not_empty_is_put_aside_not_used() {
        let c = tmp();
        for i in 0..SLOTS {
            assert!(keep(&c, &removed_container(&c, &format!(".rm-{}", i))).unwrap());
        }
        let extra = removed_container(&c, ".rm-extra");
        assert!(!keep(&c, &extra).unwrap(), "no free slot: the caller deletes it");
        fs::write(slot(&c, 0).join("leftover"), "").unwrap();
        let new = c.join(".new-x");
        assert!(claim(&c, &new, aside(&c)), "the next slot serves");
        assert!(!slot(&c, 0).exists() && is_empty(&new));
        let set_aside: Vec<_> = fs::read_dir(&c)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".rm-spare-"))
            .map(|e| e.path())
            .collect();
        assert_eq!(set_aside.len(), 1);
        assert!(set_aside[0].join("leftover").exists(), "left for the removal leftovers' collection");
        fs::remove_dir_all(&c).unwrap();
    }
}
