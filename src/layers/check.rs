//! `husk system check`: the store against what it records, and what interrupted
//! commands left behind.
//!
//! Every blob is hashed and compared with its name; every layer's `layer.json` must name
//! its directory and agree with its parent and diff id; every layer an image or a
//! container uses is extracted again from its blob (the diff id of the tar checked on the
//! way) and the two trees compared file by file: type, mode, owner, size, content, link
//! target, times, xattrs. Every image in `index.json` must have its manifest, config,
//! layer blobs and layers, and each name must name one image. Then what no image, build
//! cache entry or container uses, scratch space and temp files of processes that are
//! gone, and the containers' own leftovers (`container::check`).
//!
//! A finding is *damage* (the store does not hold what it records) or a *leftover* (what
//! a killed command or a lost race left: unused, invisible to the other commands, and
//! collected by later ones). Nothing that a running husk is working on is reported: the
//! check holds the exclusive gc lock, so no pull, build, commit, load or container
//! creation runs meanwhile, and takes the others' locks as they do.
//!
//! With repair, each finding's fix runs (a leftover is removed; a damaged layer whose
//! blob is sound is replaced by a fresh extraction; what is damaged otherwise is
//! removed, and an image missing parts is dropped from `index.json` so that a pull
//! fetches it again), and the store is checked again, until nothing new is found.
use super::diff::{same_content, sorted_names};
use super::extract::{extract_layer, ExtractOptions, Ownership};
use super::gc::InUse;
use super::images::{normalize, parse_config};
use super::store::{chain_ids, hex_of, remove_path, sha256_digest, HashingReader, LayerInfo, Store, TmpArea};
use crate::fetch::reference::is_valid_digest;
use crate::util::{atomic_write, remove_tree};
use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageManifest};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Left by an interrupted command: unused and harmless.
    Leftover,
    /// The store does not hold what it records.
    Damaged,
}

/// One problem, and how to repair it (None: husk cannot).
pub struct Finding<'a> {
    pub severity: Severity,
    /// What it is about: a path under the store, or "image NAME", "layer DIGEST"…
    pub subject: String,
    pub problem: String,
    fix: Option<Box<dyn FnOnce() -> Result<String> + 'a>>,
}

impl<'a> Finding<'a> {
    pub fn leftover(subject: impl Into<String>, problem: impl Into<String>) -> Finding<'a> {
        Finding { severity: Severity::Leftover, subject: subject.into(), problem: problem.into(), fix: None }
    }

    pub fn damaged(subject: impl Into<String>, problem: impl Into<String>) -> Finding<'a> {
        Finding { severity: Severity::Damaged, subject: subject.into(), problem: problem.into(), fix: None }
    }

    /// The repair: returns what it did ("removed").
    pub fn fix(mut self, f: impl FnOnce() -> Result<String> + 'a) -> Finding<'a> {
        self.fix = Some(Box::new(f));
        self
    }

    /// A leftover path (file or tree) whose repair is its removal.
    pub fn stray_path(store: &Store, path: PathBuf, problem: impl Into<String>) -> Finding<'a> {
        Finding::leftover(relative(store, &path), problem).fix(move || remove_path(&path).map(|()| "removed".into()))
    }

    fn line(&self) -> String {
        let kind = match self.severity {
            Severity::Leftover => "leftover",
            Severity::Damaged => "damaged",
        };
        format!("{:<8} {}: {}", kind, self.subject, self.problem)
    }
}

/// What a whole check found and did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Problems reported (each once, however many passes saw it).
    pub found: usize,
    pub repaired: usize,
    /// Problems left at the end, by severity.
    pub leftovers: usize,
    pub damaged: usize,
}

impl Summary {
    /// 0: consistent; 1: leftovers only; 2: damage.
    pub fn exit_code(&self) -> i32 {
        if self.damaged > 0 {
            2
        } else if self.leftovers > 0 {
            1
        } else {
            0
        }
    }

    pub fn describe(&self, repair: bool) -> String {
        let left = match (self.leftovers, self.damaged) {
            (0, 0) => "the store is consistent".to_string(),
            (l, 0) => format!("{} leftover{} of interrupted commands", l, plural(l)),
            (0, d) => format!("{} damaged", d),
            (l, d) => format!("{} damaged, {} leftover{} of interrupted commands", d, l, plural(l)),
        };
        match (repair, self.found) {
            (_, 0) => "no problems found".into(),
            (false, n) => format!("{} problem{} found: {}", n, plural(n), left),
            (true, n) => format!("{} problem{} found, {} repaired: {}", n, plural(n), self.repaired, left),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Passes with repairs before the check gives up on what keeps coming back.
const MAX_REPAIR_PASSES: usize = 3;

/// Checks the store, reporting each problem as one line through `report` (with what its
/// repair did, when `repair`). `extract` are the options layers are extracted with
/// (their ownership is taken from each layer's record). Call as root of husk's user
/// namespace, so that every file of every layer and container can be read and removed.
pub fn check(store: &Store, extract: &ExtractOptions, repair: bool, mut report: impl FnMut(&str)) -> Result<Summary> {
    let scratch = store.scratch_area()?;
    let verified = Verified::default();
    let mut summary = Summary::default();
    let mut reported: HashSet<(String, String)> = HashSet::new();
    for pass in 0.. {
        let gc = store.lock_gc()?;
        let mut findings = analyse_store(store, extract, &scratch, &verified)?;
        findings.extend(crate::container::check::analyse(store)?);
        summary.leftovers = findings.iter().filter(|f| f.severity == Severity::Leftover).count();
        summary.damaged = findings.len() - summary.leftovers;
        let fixing = repair && pass < MAX_REPAIR_PASSES;
        let mut fixed = 0;
        for f in findings {
            if !reported.insert((f.subject.clone(), f.problem.clone())) {
                continue; // seen in an earlier pass (a repair that did not hold)
            }
            summary.found += 1;
            let outcome = match (fixing, f.fix) {
                (false, _) => String::new(),
                (true, None) => " [husk cannot repair this]".into(),
                (true, Some(fix)) => match fix() {
                    Ok(done) => {
                        fixed += 1;
                        format!(" [{}]", done)
                    }
                    Err(e) => format!(" [not repaired: {:#}]", e),
                },
            };
            report(&format!("{}{}", Finding { fix: None, ..f }.line(), outcome));
        }
        summary.repaired += fixed;
        drop(gc);
        if fixed == 0 {
            break;
        }
    }
    Ok(summary)
}

/// Verdicts on content, kept across passes: hashing blobs and extracting layers again
/// is the slow part, and what was found sound stays so under the gc lock.
#[derive(Default)]
struct Verified {
    /// Blob digest -> its problem, if any.
    blobs: RefCell<HashMap<String, Option<String>>>,
    /// Layer chain id -> its verdict.
    layers: RefCell<HashMap<String, Verdict>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Sound,
    /// The files differ from a fresh extraction of its blob (kept for the repair).
    Differs(String),
    /// Its blob is not its content (another diff id), or it cannot be extracted.
    Unverifiable(String),
}

fn analyse_store<'a>(
    store: &'a Store,
    extract: &'a ExtractOptions,
    scratch: &'a TmpArea,
    verified: &'a Verified,
) -> Result<Vec<Finding<'a>>> {
    let mut out = Vec::new();
    check_layout(store, &mut out);
    stale_temp(store, &mut out)?;
    let blobs = check_blobs(store, verified, &mut out)?;
    let layers = check_layers(store, scratch, &mut out)?;
    let Some(mut used) = check_images(store, &blobs, &layers, &mut out) else {
        return Ok(out); // without index.json, what is unused cannot be told
    };
    check_build_cache(store, &blobs, &mut used, &mut out)?;
    for c in crate::container::list(store)? {
        used.layers.extend(c.layers);
    }
    for (chain, info) in &layers {
        if !used.layers.contains(chain) {
            let chain = chain.clone();
            out.push(
                Finding::leftover(format!("layer {}", chain), "used by no image, build step or container")
                    .fix(move || store.remove_layer(&chain, scratch).map(|()| "removed".into())),
            );
            continue;
        }
        let blob = used.layer_blobs.get(chain).cloned().or_else(|| Some(info.blob.clone()).filter(|b| !b.is_empty()));
        if let Some(blob) = blob.filter(|b| blobs.contains(b)) {
            verify_layer(store, extract, scratch, verified, info, &blob, &mut out)?;
        }
    }
    for digest in blobs.iter().filter(|d| !used.blobs.contains(*d)) {
        let digest = digest.clone();
        out.push(
            Finding::leftover(format!("blob {}", digest), "used by no image or build step")
                .fix(move || store.remove_blob(&digest).map(|()| "removed".into())),
        );
    }
    stale_layer_locks(store, &mut out)?;
    stale_sources(store, &mut out)?;
    Ok(out)
}

fn check_layout(store: &Store, out: &mut Vec<Finding>) {
    let path = store.root().join("oci-layout");
    let readable = fs::read(&path).ok().and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok());
    if !readable.is_some_and(|v| v["imageLayoutVersion"].is_string()) {
        out.push(
            Finding::damaged("oci-layout", "missing or unreadable").fix(move || {
                atomic_write(&path, br#"{"imageLayoutVersion":"1.0.0"}"#).map(|()| "written again".into())
            }),
        );
    }
}

/// Scratch dirs of processes that are gone (each with its lock file) and temp files of
/// writers that are gone.
fn stale_temp<'a>(store: &'a Store, out: &mut Vec<Finding<'a>>) -> Result<()> {
    let mut stale = store.stale_temp_paths()?.into_iter().peekable();
    while let Some(path) = stale.next() {
        // A scratch dir comes just before its lock: one finding for both.
        let lock = path.with_extension("lock");
        if stale.peek() == Some(&lock) {
            stale.next();
            out.push(Finding::leftover(relative(store, &path), "scratch space of a process that is gone").fix(
                move || {
                    remove_path(&path)?;
                    remove_path(&lock)?;
                    Ok("removed".into())
                },
            ));
        } else {
            out.push(Finding::stray_path(store, path, "left by a process that is gone"));
        }
    }
    Ok(())
}

/// Hashes every blob; returns the sound ones.
fn check_blobs<'a>(store: &'a Store, verified: &Verified, out: &mut Vec<Finding<'a>>) -> Result<HashSet<String>> {
    let mut sound = HashSet::new();
    let dir = store.root().join("blobs/sha256");
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a temp file: of a live writer, or reported by stale_temp
        }
        let digest = format!("sha256:{}", name);
        if !is_valid_digest(&digest) || !e.file_type()?.is_file() {
            out.push(Finding::stray_path(store, e.path(), "not a blob"));
            continue;
        }
        let problem = verified
            .blobs
            .borrow_mut()
            .entry(digest.clone())
            .or_insert_with(|| match hash_file(&e.path()) {
                Ok(actual) if actual == digest => None,
                Ok(actual) => Some(format!("its content does not match its digest (it is {})", actual)),
                Err(e) => Some(format!("unreadable: {:#}", e)),
            })
            .clone();
        match problem {
            None => {
                sound.insert(digest);
            }
            Some(problem) => out.push(
                Finding::damaged(format!("blob {}", digest), problem)
                    .fix(move || store.remove_blob(&digest).map(|()| "removed".into())),
            ),
        }
    }
    Ok(sound)
}

/// Reads every `layer.json`; returns the layers whose record is consistent, by chain id.
fn check_layers<'a>(
    store: &'a Store,
    scratch: &'a TmpArea,
    out: &mut Vec<Finding<'a>>,
) -> Result<BTreeMap<String, LayerInfo>> {
    let mut sound = BTreeMap::new();
    let dir = store.root().join("layers");
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let chain = format!("sha256:{}", e.file_name().to_string_lossy());
        if !is_valid_digest(&chain) || !e.file_type()?.is_dir() {
            out.push(Finding::stray_path(store, e.path(), "not a layer"));
            continue;
        }
        let info = fs::read(e.path().join("layer.json"))
            .map_err(anyhow::Error::from)
            .and_then(|d| serde_json::from_slice::<LayerInfo>(&d).map_err(anyhow::Error::from));
        let problem = match &info {
            Err(err) => Some(format!("its layer.json is missing or unreadable ({:#})", err)),
            Ok(info) => layer_record_problem(&chain, info, &e.path()),
        };
        match (problem, info) {
            (None, Ok(info)) => {
                sound.insert(chain, info);
            }
            (problem, _) => out.push(
                Finding::damaged(format!("layer {}", chain), problem.unwrap_or_default())
                    .fix(move || store.remove_layer(&chain, scratch).map(|()| "removed".into())),
            ),
        }
    }
    Ok(sound)
}

/// What is wrong with a layer's record (its name, chain, diff dir), if anything.
fn layer_record_problem(chain: &str, info: &LayerInfo, dir: &Path) -> Option<String> {
    if info.chain_id != chain {
        return Some(format!("its layer.json names another layer ({})", info.chain_id));
    }
    if !is_valid_digest(&info.diff_id) || info.parent.as_deref().is_some_and(|p| !is_valid_digest(p)) {
        return Some("its layer.json holds an invalid digest".into());
    }
    let expected = match &info.parent {
        None => info.diff_id.clone(),
        Some(p) => sha256_digest(format!("{} {}", p, info.diff_id).as_bytes()),
    };
    if expected != chain {
        return Some(format!("its parent and diff id make the chain id {}, not its own", expected));
    }
    if !dir.join("diff").is_dir() {
        return Some("its diff directory is missing".into());
    }
    None
}

/// The images of `index.json`: each must have all its parts, each name one image.
/// Returns what they use, or None when the index cannot be read.
fn check_images<'a>(
    store: &'a Store,
    blobs: &HashSet<String>,
    layers: &BTreeMap<String, LayerInfo>,
    out: &mut Vec<Finding<'a>>,
) -> Option<InUse> {
    let index = match store.read_index() {
        Ok(i) => i,
        Err(e) => {
            out.push(Finding::damaged("index.json", format!("{:#}", e)));
            return None;
        }
    };
    let mut used = InUse::default();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut order: Vec<(String, Vec<String>)> = Vec::new();
    for d in index.manifests() {
        let digest = d.digest().to_string();
        let name = ref_name(d);
        let bad = if !is_valid_digest(&digest) {
            Some(format!("names an invalid digest {:?}", digest))
        } else {
            name.filter(|n| normalize(n).as_deref() != Some(*n)).map(|n| format!("has an invalid name {:?}", n))
        };
        if let Some(problem) = bad {
            let entry = d.clone();
            out.push(Finding::damaged("index.json entry", problem).fix(move || {
                store
                    .update_index(|entries| {
                        entries.retain(|e| *e != entry);
                        Ok(())
                    })
                    .map(|()| "dropped".into())
            }));
            continue;
        }
        if let Some(n) = name {
            if let Some(first) = names.get(n).filter(|first| **first != digest) {
                let (n, first) = (n.to_string(), first.clone());
                out.push(
                    Finding::damaged(
                        format!("image name {}", n),
                        format!("names two images ({} and {})", first, digest),
                    )
                    .fix(move || {
                        store
                            .update_index(|entries| {
                                entries.retain(|e| ref_name(e) != Some(&n) || e.digest().to_string() == first);
                                Ok(())
                            })
                            .map(|()| format!("kept for {}", first))
                    }),
                );
                continue;
            }
            names.insert(n.to_string(), digest.clone());
        }
        match order.iter_mut().find(|(m, _)| *m == digest) {
            Some((_, ns)) => ns.extend(name.map(str::to_string)),
            None => order.push((digest, name.map(str::to_string).into_iter().collect())),
        }
    }
    for (digest, names) in order {
        if let Err(problem) = image_parts(store, &digest, blobs, layers, &mut used) {
            let subject = match names.is_empty() {
                true => format!("image {}", digest),
                false => format!("image {} ({})", names.join(", "), digest),
            };
            out.push(Finding::damaged(subject, problem).fix(move || {
                super::images::forget_manifest(store, &digest).map(|()| "removed from the images; pull it again".into())
            }));
        }
    }
    Some(used)
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(super::store::REF_NAME).map(String::as_str)
}

/// Marks what the image of `manifest_digest` uses; the first part it lacks is an error.
fn image_parts(
    store: &Store,
    manifest_digest: &str,
    blobs: &HashSet<String>,
    layers: &BTreeMap<String, LayerInfo>,
    used: &mut InUse,
) -> std::result::Result<(), String> {
    used.blobs.insert(manifest_digest.to_string());
    let have = |d: &str, what: &str| match blobs.contains(d) {
        true => Ok(()),
        false => Err(format!("its {} {} is missing or damaged", what, d)),
    };
    have(manifest_digest, "manifest")?;
    let manifest: ImageManifest = store
        .read_blob(manifest_digest)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
        .map_err(|e| format!("its manifest does not parse: {:#}", e))?;
    // Its parts stay in use while it exists (they are not leftovers of anything), also
    // those that only the layer records tell when its config is gone.
    for blob in manifest.layers().iter().map(|l| l.digest().to_string()) {
        used.layers.extend(layers.values().filter(|l| l.blob == blob).map(|l| l.chain_id.clone()));
        used.blobs.insert(blob);
    }
    let config_digest = manifest.config().digest().to_string();
    used.blobs.insert(config_digest.clone());
    have(&config_digest, "config")?;
    let config = store
        .read_blob(&config_digest)
        .and_then(|b| parse_config(&b))
        .map_err(|e| format!("its config does not parse: {:#}", e))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() || diff_ids.iter().any(|d| !is_valid_digest(d)) {
        return Err("its config's diff ids do not match its manifest's layers".into());
    }
    let chains = chain_ids(diff_ids);
    used.image(manifest_digest, &manifest, &chains);
    for (i, (layer, chain)) in manifest.layers().iter().zip(&chains).enumerate() {
        have(layer.digest().as_ref(), "layer blob")?;
        let info = layers.get(chain).ok_or_else(|| format!("its layer {} ({}) is missing or damaged", i + 1, chain))?;
        if info.parent.as_ref() != i.checked_sub(1).map(|p| &chains[p]) {
            return Err(format!("its layer {} ({}) records another parent", i + 1, chain));
        }
    }
    Ok(())
}

/// Build cache entries keep their images' blobs and layers (while complete, they are
/// used by the next build); an entry whose image is gone is a cache miss, as designed.
fn check_build_cache<'a>(
    store: &'a Store,
    blobs: &HashSet<String>,
    used: &mut InUse,
    out: &mut Vec<Finding<'a>>,
) -> Result<()> {
    let dir = store.root().join("build-cache");
    let Ok(rd) = fs::read_dir(&dir) else { return Ok(()) };
    for e in rd {
        let path = e?.path();
        if path.file_name().is_some_and(|n| n.as_bytes().starts_with(b".")) {
            continue; // a temp file (see stale_temp)
        }
        let entry = fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice::<crate::build::cache::Entry>(&d).ok())
            .filter(|e| is_valid_digest(&e.manifest));
        let Some(entry) = entry else {
            out.push(Finding::stray_path(store, path, "not a readable build cache entry"));
            continue;
        };
        if !blobs.contains(&entry.manifest) {
            continue;
        }
        if let Ok(image) = crate::build::cache::load_unnamed(store, &entry.manifest) {
            used.image(&entry.manifest, &image.manifest, &image.chain_ids);
        }
    }
    Ok(())
}

/// Extracts the layer's blob again (the tar's digest must be the layer's diff id) and
/// compares the two trees.
fn verify_layer<'a>(
    store: &'a Store,
    extract: &ExtractOptions,
    scratch: &'a TmpArea,
    verified: &'a Verified,
    info: &LayerInfo,
    blob: &str,
    out: &mut Vec<Finding<'a>>,
) -> Result<()> {
    let chain = info.chain_id.clone();
    let fresh = scratch.path(&format!("verify-{}", hex_of(&chain)?));
    let cached = verified.layers.borrow().get(&chain).cloned();
    let verdict = match cached {
        Some(v) => v,
        None => {
            let opts = ExtractOptions {
                ownership: if info.ownership == "mapped" { Ownership::Keep } else { Ownership::Ignore },
                ..*extract
            };
            let v = match extract_again(store, blob, &fresh, &opts) {
                Err(e) => Verdict::Unverifiable(format!("its blob {} cannot be extracted again: {:#}", blob, e)),
                Ok(diff_id) if diff_id != info.diff_id => {
                    Verdict::Unverifiable(format!("its blob {} holds the diff {}, not its own", blob, diff_id))
                }
                Ok(_) => match compare_trees(&fresh.join("diff"), &store.layer_diff(&chain)?)? {
                    diffs if diffs.is_empty() => Verdict::Sound,
                    diffs => Verdict::Differs(summarize(&diffs)),
                },
            };
            if !matches!(v, Verdict::Differs(_)) {
                remove_tree(&fresh)?;
            }
            verified.layers.borrow_mut().insert(chain.clone(), v.clone());
            v
        }
    };
    match verdict {
        Verdict::Sound => {}
        Verdict::Differs(diffs) => {
            let record = info.clone();
            out.push(
                Finding::damaged(format!("layer {}", chain), format!("its files differ from its blob's: {}", diffs))
                    .fix(move || {
                        replace_layer(store, &record, &fresh)?;
                        verified.layers.borrow_mut().insert(record.chain_id.clone(), Verdict::Sound);
                        Ok("replaced by a fresh extraction of its blob".into())
                    }),
            );
        }
        Verdict::Unverifiable(problem) => out.push(
            Finding::damaged(format!("layer {}", chain), problem)
                .fix(move || store.remove_layer(&chain, scratch).map(|()| "removed".into())),
        ),
    }
    Ok(())
}

/// Extracts blob `digest` into `dest/diff`; returns the digest of its tar (the diff id).
fn extract_again(store: &Store, digest: &str, dest: &Path, opts: &ExtractOptions) -> Result<String> {
    let _ = remove_tree(dest);
    fs::create_dir_all(dest.join("diff")).with_context(|| format!("creating {}", dest.display()))?;
    let file = File::open(store.blob_path(digest)?).with_context(|| format!("opening blob {}", digest))?;
    let mut tar = HashingReader::new(crate::archive::contents::decompressed(file)?, u64::MAX);
    extract_layer(&mut tar, &dest.join("diff"), opts)?;
    Ok(tar.finish().context("decompressing")?.0)
}

/// Swaps the layer's directory with `fresh` (which gets its record first) in one
/// rename, so that the layer is never missing, then deletes the old files.
fn replace_layer(store: &Store, info: &LayerInfo, fresh: &Path) -> Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    atomic_write(&fresh.join("layer.json"), &serde_json::to_vec_pretty(info)?)?;
    let dir = store.layer_dir(&info.chain_id)?;
    renameat2(None, fresh, None, &dir, RenameFlags::RENAME_EXCHANGE)
        .with_context(|| format!("replacing {}", dir.display()))?;
    remove_tree(fresh)
}

/// The first few differences, and how many more there are.
fn summarize(diffs: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = diffs.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if diffs.len() > SHOWN {
        s.push_str(&format!("; and {} more", diffs.len() - SHOWN));
    }
    s
}

/// Lock files of layers that are not stored (removed under the gc lock, as gc does).
fn stale_layer_locks<'a>(store: &'a Store, out: &mut Vec<Finding<'a>>) -> Result<()> {
    for e in fs::read_dir(store.root().join("locks"))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_prefix("layer-").and_then(|n| n.strip_suffix(".lock")) {
            let chain = format!("sha256:{}", hex);
            if !is_valid_digest(&chain) || !store.layer_dir(&chain)?.exists() {
                out.push(Finding::stray_path(store, e.path(), "lock of a layer that is not stored"));
            }
        }
    }
    Ok(())
}

/// Notes of where blobs came from (`sources/`), for blobs that are not stored.
fn stale_sources<'a>(store: &'a Store, out: &mut Vec<Finding<'a>>) -> Result<()> {
    let Ok(rd) = fs::read_dir(store.root().join("sources")) else { return Ok(()) };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a temp file (see stale_temp)
        }
        let digest = name.strip_suffix(".json").map(|h| format!("sha256:{}", h));
        if !digest.is_some_and(|d| store.has_blob(&d)) {
            out.push(Finding::stray_path(store, e.path(), "notes the sources of a blob that is not stored"));
        }
    }
    Ok(())
}

/// `path` relative to the store's root, for messages.
pub fn relative(store: &Store, path: &Path) -> String {
    path.strip_prefix(store.root()).unwrap_or(path).display().to_string()
}

fn hash_file(path: &Path) -> Result<String> {
    Ok(HashingReader::new(File::open(path)?, u64::MAX).finish()?.0)
}

/// Differences between two extracted layers, one line per path: type, permission bits,
/// owner, size and content of files, link targets, device numbers of whiteouts, xattrs,
/// link counts, and the times extraction sets (not those of directories, which
/// extraction only sets for directories the tar names). The roots' own metadata is
/// not compared.
pub fn compare_trees(expected: &Path, actual: &Path) -> Result<Vec<String>> {
    let mut diffs = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let (want, have) = (sorted_names(&expected.join(&rel))?, sorted_names(&actual.join(&rel))?);
        for name in have.iter().filter(|n| !want.contains(n)) {
            diffs.push(format!("/{} is not in the blob", rel.join(name).display()));
        }
        for name in &want {
            let r = rel.join(name);
            if !have.contains(name) {
                diffs.push(format!("/{} is missing", r.display()));
                continue;
            }
            let (e, a) = (expected.join(&r), actual.join(&r));
            if let Some(what) = entry_difference(&e, &a)? {
                diffs.push(format!("/{}: {}", r.display(), what));
            }
            if fs::symlink_metadata(&e)?.is_dir() && fs::symlink_metadata(&a)?.is_dir() {
                todo.push(r);
            }
        }
    }
    diffs.sort();
    Ok(diffs)
}

/// What differs between two entries of the same name, if anything.
fn entry_difference(expected: &Path, actual: &Path) -> Result<Option<String>> {
    let (e, a) = (fs::symlink_metadata(expected)?, fs::symlink_metadata(actual)?);
    let (et, at) = (e.file_type(), a.file_type());
    let kind = |t: fs::FileType| match () {
        _ if t.is_dir() => "directory",
        _ if t.is_file() => "file",
        _ if t.is_symlink() => "symlink",
        _ if t.is_fifo() => "fifo",
        _ if t.is_char_device() => "character device",
        _ => "other",
    };
    if kind(et) != kind(at) {
        return Ok(Some(format!("a {} instead of a {}", kind(at), kind(et))));
    }
    if !et.is_symlink() && e.mode() & 0o7777 != a.mode() & 0o7777 {
        return Ok(Some(format!("mode {:04o} instead of {:04o}", a.mode() & 0o7777, e.mode() & 0o7777)));
    }
    if (e.uid(), e.gid()) != (a.uid(), a.gid()) {
        return Ok(Some(format!("owner {}:{} instead of {}:{}", a.uid(), a.gid(), e.uid(), e.gid())));
    }
    if et.is_char_device() && e.rdev() != a.rdev() {
        return Ok(Some(format!("device {:#x} instead of {:#x}", a.rdev(), e.rdev())));
    }
    if et.is_symlink() && fs::read_link(expected)? != fs::read_link(actual)? {
        return Ok(Some(format!("points to {}", fs::read_link(actual)?.display())));
    }
    if et.is_file() {
        if e.len() != a.len() {
            return Ok(Some(format!("{} bytes instead of {}", a.len(), e.len())));
        }
        if !same_content(expected, actual)? {
            return Ok(Some("other content".into()));
        }
        if e.nlink() != a.nlink() {
            return Ok(Some(format!("{} links instead of {}", a.nlink(), e.nlink())));
        }
    }
    let timed = et.is_file() || et.is_symlink() || et.is_fifo();
    if timed && (e.mtime(), e.mtime_nsec()) != (a.mtime(), a.mtime_nsec()) {
        return Ok(Some("another modification time".into()));
    }
    if xattrs(expected)? != xattrs(actual)? {
        return Ok(Some("other extended attributes".into()));
    }
    Ok(None)
}

/// Every extended attribute of `path` (not following a symlink) that this process can read.
fn xattrs(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let mut out = BTreeMap::new();
    // SAFETY: a NUL-terminated path; a null buffer of size 0 asks for the size.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return Ok(out);
    }
    let mut list = vec![0u8; size as usize];
    // SAFETY: `list` is valid for `list.len()` bytes.
    let size = unsafe { libc::llistxattr(c.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    if size < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("listing xattrs of {}", path.display()));
    }
    for name in list[..size as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name)?;
        let mut value = vec![0u8; 64 << 10];
        // SAFETY: both strings are NUL-terminated; `value` is valid for its length.
        let n = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if n >= 0 {
            value.truncate(n as usize);
            out.insert(name.to_vec(), value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::author::{History, ImageDraft, WrittenImage};
    use crate::layers::newlayer::{store_tar_layer, NewLayer};
    use crate::layers::store::TempStore;
    use crate::layers::tarwrite::{Entry, Kind, TarWriter};

    const OPTS: ExtractOptions = ExtractOptions { ownership: Ownership::Ignore, strip_setid: false };
    const NAME: &str = "example.com/check:1";

    /// A store with one image (NAME) of one layer: a directory, a file and a symlink.
    fn store_with_image(label: &str) -> (TempStore, WrittenImage, NewLayer) {
        let s = TempStore::new(label);
        let mut w = TarWriter::new(Vec::new());
        w.entry(&Entry { mode: 0o750, mtime: 1_700_000_000, ..Entry::new(b"dir", Kind::Dir) }).unwrap();
        w.entry(&Entry { size: 5, mtime: 1_700_000_001, ..Entry::new(b"dir/file", Kind::File) }).unwrap();
        w.data(&b"hello"[..]).unwrap();
        w.entry(&Entry { mtime: 1_700_000_002, link: b"file", ..Entry::new(b"dir/link", Kind::Symlink) }).unwrap();
        let tar = w.finish().unwrap();
        let tmp = s.1.tmp_area().unwrap();
        let layer = store_tar_layer(&s.1, &tmp, None, &OPTS, |out| Ok(out.write_all(&tar)?)).unwrap();
        let mut draft = ImageDraft::scratch();
        draft.add_layer(&layer, History::default());
        let written = draft.write(&s.1, Some(NAME)).unwrap();
        (s, written, layer)
    }

    fn run(store: &Store, repair: bool) -> (Vec<String>, Summary) {
        let mut lines = Vec::new();
        let summary = check(store, &OPTS, repair, |l| lines.push(l.to_string())).unwrap();
        (lines, summary)
    }

    #[test]
    fn a_store_that_holds_what_it_records_is_clean() {
        let (s, _, _) = store_with_image("check-clean");
        let (lines, summary) = run(&s.1, false);
        assert!(lines.is_empty(), "{:#?}", lines);
        assert_eq!((summary.found, summary.exit_code()), (0, 0));
        assert_eq!(summary.describe(false), "no problems found");
    }

    #[test]
    fn a_changed_file_in_a_layer_is_found_and_extracted_again() {
        let (s, _, layer) = store_with_image("check-layer");
        let file = s.1.layer_diff(&layer.chain_id).unwrap().join("dir/file");
        fs::write(&file, b"HELLO").unwrap();
        let (lines, summary) = run(&s.1, false);
        assert_eq!(
            lines,
            [format!("damaged  layer {}: its files differ from its blob's: /dir/file: other content", layer.chain_id)]
        );
        assert_eq!(summary.exit_code(), 2);
        let (lines, summary) = run(&s.1, true);
        assert!(lines[0].ends_with("[replaced by a fresh extraction of its blob]"), "{:#?}", lines);
        assert_eq!((summary.repaired, summary.exit_code()), (1, 0));
        assert_eq!(fs::read(&file).unwrap(), b"hello");
        assert_eq!(run(&s.1, false).1.found, 0);
    }

    #[test]
    fn a_missing_file_and_a_changed_mode_are_differences() {
        let (s, _, layer) = store_with_image("check-tree");
        let diff = s.1.layer_diff(&layer.chain_id).unwrap();
        fs::remove_file(diff.join("dir/link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", diff.join("dir/other")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(diff.join("dir"), fs::Permissions::from_mode(0o755)).unwrap();
        let found = compare_trees(&diff, &diff).unwrap();
        assert!(found.is_empty(), "{:?}", found);
        let fresh = s.1.root().join("fresh");
        extract_again(&s.1, &layer.blob_digest, &fresh, &OPTS).unwrap();
        assert_eq!(
            compare_trees(&fresh.join("diff"), &diff).unwrap(),
            ["/dir/link is missing", "/dir/other is not in the blob", "/dir: mode 0755 instead of 0750"]
        );
    }

    #[test]
    fn leftovers_are_found_and_removed_without_touching_the_image() {
        let (s, written, _) = store_with_image("check-leftovers");
        let orphan = sha256_digest(b"orphan");
        s.1.write_blob(&orphan, b"orphan").unwrap();
        // pid_max is at most 2^22: no process has this pid
        let temp = s.1.root().join(".index.json.tmp-4194305-0-0");
        fs::write(&temp, b"{").unwrap();
        let scratch = s.1.root().join("tmp/4194305-0-0");
        fs::create_dir(&scratch).unwrap();
        let (lines, summary) = run(&s.1, false);
        let mut expected = vec![
            format!("leftover .index.json.tmp-4194305-0-0: left by a process that is gone"),
            format!("leftover tmp/4194305-0-0: left by a process that is gone"),
            format!("leftover blob {}: used by no image or build step", orphan),
        ];
        let mut sorted = lines.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected);
        assert_eq!((summary.leftovers, summary.damaged, summary.exit_code()), (3, 0, 1));
        let (lines, summary) = run(&s.1, true);
        assert!(lines.iter().all(|l| l.ends_with("[removed]")), "{:#?}", lines);
        assert_eq!((summary.repaired, summary.exit_code()), (3, 0));
        assert!(!temp.exists() && !scratch.exists() && !s.1.has_blob(&orphan));
        assert!(s.1.has_blob(&written.manifest_digest));
        assert_eq!(run(&s.1, false).1.found, 0);
    }

    #[test]
    fn an_image_with_a_damaged_config_is_dropped_and_its_parts_collected() {
        let (s, written, layer) = store_with_image("check-image");
        fs::write(s.1.blob_path(&written.config_digest).unwrap(), b"{}").unwrap();
        let (lines, summary) = run(&s.1, false);
        assert_eq!(lines.len(), 2, "{:#?}", lines);
        assert!(lines[0].starts_with(&format!("damaged  blob {}: its content does not match", written.config_digest)));
        assert_eq!(
            lines[1],
            format!(
                "damaged  image {} ({}): its config {} is missing or damaged",
                NAME, written.manifest_digest, written.config_digest
            )
        );
        assert_eq!(summary.exit_code(), 2);
        let (lines, summary) = run(&s.1, true);
        // then the manifest, the layer and its blob are used by nothing: removed too,
        // and the lock of the layer after it
        assert_eq!(lines.len(), 6, "{:#?}", lines);
        assert!(lines[1].ends_with("[removed from the images; pull it again]"), "{:#?}", lines);
        assert!(lines[2..].iter().all(|l| l.starts_with("leftover ") && l.ends_with(" [removed]")), "{:#?}", lines);
        assert!(lines[5].starts_with("leftover locks/layer-"), "{:#?}", lines);
        assert_eq!((summary.repaired, summary.exit_code()), (6, 0));
        assert!(s.1.blobs().unwrap().is_empty() && !s.1.has_layer(&layer.chain_id));
        assert!(s.1.read_index().unwrap().manifests().is_empty());
    }
}
