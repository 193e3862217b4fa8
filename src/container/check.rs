//! The containers' part of `husk system check` (see `layers::check`): each container's
//! record against its files, its name and the processes that exist; and what killed
//! husks left: containers half-made (`.new-<id>`) or half-removed (`.rm-<id>`), name
//! reservations and creation locks of containers that do not exist, temp files, and
//! volumes and networks half-made or half-removed.
//!
//! What a live husk is doing is not reported: a half-made container whose creator still
//! holds its creation lock, half-removed ones while a husk deletes files (the removal
//! lock), volumes and networks while their lock is taken.
use super::{
    containers_dir, creation_lock, creator_alive, delete_container_files, name_in_use_by, names_dir, process,
    removal_lock, reserve_name, Container, State, CREATING, REMOVING,
};
use crate::build::run_step::STEP_IMAGE;
use crate::layers::check::{relative, Finding};
use crate::layers::store::{remove_path, stray_temp_files, Store};
use crate::util::{FileLock, LockProbe};
use anyhow::{bail, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Every problem of the containers (and volumes and networks) of `store`.
pub fn analyse(store: &Store) -> Result<Vec<Finding<'_>>> {
    let mut out = Vec::new();
    let removal_held = half_done(store, &mut out)?;
    containers(store, &mut out)?;
    name_reservations(store, &mut out, removal_held)?;
    creation_locks(store, &mut out)?;
    for (what, found) in [("volume", super::volume::leftovers(store)?), ("network", super::netdef::leftovers(store)?)] {
        let Some((lock, paths)) = found else { continue };
        let lock = Rc::new(lock);
        for path in paths {
            let lock = lock.clone();
            out.push(
                Finding::leftover(
                    relative(store, &path),
                    format!("a {} half-made or half-removed by a husk that is gone", what),
                )
                .fix(move || {
                    let _held = lock;
                    remove_path(&path).map(|()| "removed".into())
                }),
            );
        }
    }
    Ok(out)
}

/// `.new-<id>` whose creator is gone, `.rm-<id>` while no husk is deleting any. True
/// when the findings hold the removal lock (so no husk is removing a container).
fn half_done<'a>(store: &'a Store, out: &mut Vec<Finding<'a>>) -> Result<bool> {
    let Ok(rd) = fs::read_dir(containers_dir(store)) else { return Ok(false) };
    let mut removal: Option<Option<Rc<FileLock>>> = None;
    let mut holding = false;
    for e in rd {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if let Some(id) = name.strip_prefix(CREATING) {
            // a creator renames the dir before it drops its lock: one still there once
            // the lock is free (or gone) has no creator
            if !creator_alive(store, id)? && path.exists() {
                let lock = creation_lock(store, id);
                out.push(
                    Finding::leftover(relative(store, &path), "a container half-made by a husk that is gone").fix(
                        move || {
                            delete_container_files(&path)?;
                            remove_path(&lock)?;
                            Ok("removed".into())
                        },
                    ),
                );
            }
        } else if name.starts_with(REMOVING) {
            let held = removal
                .get_or_insert_with(|| FileLock::try_exclusive(&removal_lock(store)).ok().flatten().map(Rc::new));
            // with the lock no removal is under way; one may have ended since the listing
            if let Some(lock) = held.clone().filter(|_| path.exists()) {
                holding = true;
                out.push(
                    Finding::leftover(relative(store, &path), "a container half-removed by a husk that is gone").fix(
                        move || {
                            let _held = lock;
                            delete_container_files(&path).map(|()| "removed".into())
                        },
                    ),
                );
            }
        }
    }
    Ok(holding)
}

/// Each container: its state, name, config, layers and processes.
fn containers<'a>(store: &'a Store, out: &mut Vec<Finding<'a>>) -> Result<()> {
    for id in crate::util::visible_entries(&containers_dir(store)) {
        let dir = containers_dir(store).join(&id);
        let before = out.len();
        let result = container(store, id, dir.clone(), out);
        // `rm` renames a container away before it deletes anything, so a container still
        // there now was whole while it was looked at; one removed meanwhile has no problem
        if !dir.exists() {
            out.truncate(before);
            continue;
        }
        result?;
    }
    Ok(())
}

/// One container's problems.
fn container<'a>(store: &'a Store, id: String, dir: PathBuf, out: &mut Vec<Finding<'a>>) -> Result<()> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        out.push(
            Finding::leftover(relative(store, &dir), "not a container")
                .fix(move || delete_container_files(&dir).map(|()| "removed".into())),
        );
        return Ok(());
    }
    let state = fs::read(dir.join("state.json")).ok().and_then(|d| serde_json::from_slice::<State>(&d).ok());
    let Some(state) = state else {
        out.push(Finding::damaged(format!("container {}", &id[..12]), "its state.json is missing or unreadable").fix(
            move || {
                let c = Container { dir, state: State { id, ..State::default() } };
                c.remove(store).map(|()| "removed".into())
            },
        ));
        return Ok(());
    };
    let subject = format!("container {} ({})", state.name, &id[..12]);
    for path in stray_temp_files(&dir)? {
        out.push(Finding::stray_path(store, path, "left by a process that is gone"));
    }
    if let Some(problem) = record_problem(store, &id, &dir, &state) {
        out.push(Finding::damaged(subject.clone(), problem));
    }
    if fs::read_to_string(names_dir(store).join(&state.name)).ok().as_deref() != Some(id.as_str()) {
        let (name, id) = (state.name.clone(), id.clone());
        out.push(Finding::damaged(subject.clone(), "its name is not reserved for it").fix(move || {
            fs::create_dir_all(names_dir(store))?;
            if !reserve_name(store, &name, &id)? {
                bail!("another container has the name {}", name);
            }
            Ok("reserved again".into())
        }));
    }
    let up = matches!(state.status.as_str(), "running" | "paused");
    if state.image == STEP_IMAGE && state.image_id.is_empty() {
        // Builds hold the writers lock, which this check waits for: its build is gone.
        out.push(
            Finding::leftover(subject, "the container of a RUN step of a build that is gone")
                .fix(move || reap(store, &id, true)),
        );
    } else if up && !state.monitor.is_some_and(|m| process::is_alive(&m)) && still_up(&dir) {
        let problem = format!("marked {} but its monitor is gone", state.status);
        out.push(Finding::leftover(subject, problem).fix(move || reap(store, &id, false)));
    }
    Ok(())
}

/// What makes a container unusable, if anything: husk cannot repair it (the container
/// can only be removed).
fn record_problem(store: &Store, id: &str, dir: &Path, state: &State) -> Option<String> {
    if state.id != id {
        return Some(format!("its state.json is that of container {}", state.id));
    }
    let config = fs::read(dir.join("config.json")).ok();
    if config.and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok()).is_none() {
        return Some("its config.json is missing or unreadable (remove it with husk rm)".into());
    }
    let missing = state.layers.iter().find(|l| !store.has_layer(l))?;
    Some(format!("its layer {} is missing (remove it with husk rm)", missing))
}

/// Whether the container's state, read again, still says it is up: a monitor records
/// the end (or a foreground `run --rm` removes the container) before it exits, so read
/// after its exit was seen this tells an orphan from a container that just ended.
fn still_up(dir: &Path) -> bool {
    let state = fs::read(dir.join("state.json")).ok().and_then(|d| serde_json::from_slice::<State>(&d).ok());
    state.is_some_and(|s| matches!(s.status.as_str(), "running" | "paused"))
}

/// Records an orphan as exited, as `ps` does, and removes it if it was `--rm` (as its
/// monitor would have) or is a RUN step's (`step`, whose build would have).
fn reap(store: &Store, id: &str, step: bool) -> Result<String> {
    let mut c = Container::load(store, id)?;
    let lock = c.lock()?;
    c.reload()?;
    let reaped = c.reap_orphan()?;
    if c.is_up() {
        bail!("it runs again");
    }
    if !step && !reaped {
        return Ok("it had ended meanwhile".into());
    }
    if !step && !c.state.settings.auto_remove {
        return Ok("recorded as exited (137)".into());
    }
    let removed = c.remove_from_sight(store)?;
    drop(lock);
    removed.delete_files()?;
    Ok(if step { "removed" } else { "removed (it was --rm)" }.into())
}

/// `container-names/<name>` of containers that do not exist, and the temp files of
/// reservations whose creator is gone.
fn name_reservations<'a>(store: &'a Store, out: &mut Vec<Finding<'a>>, removal_held: bool) -> Result<()> {
    let Ok(rd) = fs::read_dir(names_dir(store)) else { return Ok(()) };
    for e in rd {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if let Some(id) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
            if !creator_alive(store, id)? && path.exists() {
                out.push(Finding::stray_path(store, path, "left by a husk that is gone"));
            }
            continue;
        }
        let owner = fs::read_to_string(&path).unwrap_or_default();
        if !owner.is_empty() && (name_in_use_by(store, &owner)? || (!removal_held && being_removed(store, &owner))) {
            continue;
        }
        // `rm` renames a container away, releases its name, then deletes its files
        if fs::read_to_string(&path).ok().as_deref() != Some(owner.as_str()) {
            continue;
        }
        let problem = format!("reserves the name for container {:.12}, which does not exist", owner);
        out.push(Finding::leftover(relative(store, &path), problem).fix(move || release_stale(store, &path, &owner)));
    }
    Ok(())
}

/// Whether container `id` is renamed aside for removal while a husk removes containers
/// (it releases the name next).
fn being_removed(store: &Store, id: &str) -> bool {
    containers_dir(store).join(format!("{}{}", REMOVING, id)).exists()
        && matches!(FileLock::probe(&removal_lock(store)), Ok(LockProbe::Held))
}

/// Removes a stale reservation under the lock `reserve_name` takes over such ones with.
fn release_stale(store: &Store, path: &PathBuf, owner: &str) -> Result<String> {
    let _l = FileLock::exclusive(&store.root().join("locks/containers.lock"))?;
    if fs::read_to_string(path).unwrap_or_default() != owner || (!owner.is_empty() && name_in_use_by(store, owner)?) {
        return Ok("taken meanwhile".into());
    }
    remove_path(path).map(|()| "removed".into())
}

/// `locks/new-<id>.lock` of creations that ended without a `.new-<id>` left.
fn creation_locks<'a>(store: &'a Store, out: &mut Vec<Finding<'a>>) -> Result<()> {
    for e in fs::read_dir(store.root().join("locks"))? {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("new-").and_then(|n| n.strip_suffix(".lock")) else { continue };
        if !containers_dir(store).join(format!("{}{}", CREATING, id)).exists()
            && matches!(FileLock::probe(&path)?, LockProbe::Free(_))
        {
            out.push(Finding::stray_path(store, path, "lock of a container creation that ended"));
        }
    }
    Ok(())
}
