//! Where blobs are known to be: for each blob, the repositories (`registry/repository`)
//! it was pulled from or pushed to, most recent first, in `sources/<hex>.json`. A push
//! mounts a blob from one of them instead of uploading it when the destination is on the
//! same registry. Only a hint: a lost update or a stale entry costs an upload, nothing
//! else, so the notes are written without fsync or lock.
use super::store::{hex_of, Store};
use crate::util::atomic_replace;
use anyhow::Result;
use std::path::PathBuf;

/// Repositories remembered per blob.
const KEEP: usize = 8;

fn path(store: &Store, digest: &str) -> Result<PathBuf> {
    Ok(store.root().join("sources").join(format!("{}.json", hex_of(digest)?)))
}

/// The repositories `digest` is known to be in, most recent first.
pub fn sources(store: &Store, digest: &str) -> Vec<String> {
    path(store, digest)
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|d| serde_json::from_slice::<Vec<String>>(&d).ok())
        .unwrap_or_default()
}

/// Notes that each of `digests` is in `repository` (`registry/repository`).
pub fn record(store: &Store, digests: &[String], repository: &str) -> Result<()> {
    std::fs::create_dir_all(store.root().join("sources"))?;
    for digest in digests {
        let mut known = sources(store, digest);
        if known.first().map(String::as_str) == Some(repository) {
            continue;
        }
        known.retain(|r| r != repository);
        known.insert(0, repository.to_string());
        known.truncate(KEEP);
        atomic_replace(&path(store, digest)?, &serde_json::to_vec(&known)?)?;
    }
    Ok(())
}

/// Drops the note of a blob that leaves the store.
pub fn forget(store: &Store, digest: &str) {
    if let Ok(p) = path(store, digest) {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::store::sha256_digest;

    #[test]
    fn most_recent_first_without_repeats() {
        let dir = std::env::temp_dir().join(format!("husk-sources-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        let d = sha256_digest(b"x");
        let one = std::slice::from_ref(&d);
        assert!(sources(&store, &d).is_empty());
        record(&store, one, "r:5000/a").unwrap();
        record(&store, one, "r:5000/b").unwrap();
        record(&store, one, "r:5000/a").unwrap();
        assert_eq!(sources(&store, &d), vec!["r:5000/a", "r:5000/b"]);
        for i in 0..20 {
            record(&store, one, &format!("r/{}", i)).unwrap();
        }
        assert_eq!(sources(&store, &d).len(), KEEP);
        forget(&store, &d);
        assert!(sources(&store, &d).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
