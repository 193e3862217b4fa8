//! Images as the store knows them: `index.json` entries (one per name, plus unnamed
//! "dangling" ones) pointing at manifests, whose configs and layers are in the store.
use super::store::{chain_ids, Store, REF_NAME};
use crate::fetch::reference::Reference;
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use std::collections::HashMap;

pub struct ImageRecord {
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub config_digest: String,
    pub names: Vec<String>,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    pub chain_ids: Vec<String>,
}

impl ImageRecord {
    /// The image id as Docker shows it: the config digest.
    pub fn id(&self) -> &str {
        &self.config_digest
    }

    pub fn short_id(&self) -> &str {
        &self.config_digest[7..19]
    }

    /// A layer of the image that is not in the store (an `rmi` removed the image after
    /// it was looked up): check under the writers lock before using the layers.
    pub fn missing_layer(&self, store: &Store) -> Option<&str> {
        self.chain_ids.iter().find(|c| !store.has_layer(c)).map(String::as_str)
    }

    /// Uncompressed size of all its layers.
    pub fn size(&self, store: &Store) -> u64 {
        self.chain_ids.iter().filter_map(|c| store.layer_info(c)).map(|l| l.size).sum()
    }
}

/// Parses an image config. `history` is optional in the OCI spec but required by
/// oci-spec 0.7's type, so an absent one is read as empty (the stored bytes are untouched).
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(obj) = v.as_object_mut() {
        obj.entry("history").or_insert_with(|| serde_json::Value::Array(Vec::new()));
    }
    Ok(serde_json::from_value(v)?)
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

fn load(store: &Store, manifest_digest: &str, media_type: String, names: Vec<String>) -> Result<ImageRecord> {
    let manifest: ImageManifest = serde_json::from_slice(&store.read_blob(manifest_digest)?)
        .with_context(|| format!("parsing stored manifest {}", manifest_digest))?;
    let config_digest = manifest.config().digest().to_string();
    let config = parse_config(&store.read_blob(&config_digest)?)
        .with_context(|| format!("parsing stored config {}", config_digest))?;
    let diff_ids = config.rootfs().diff_ids().to_vec();
    Ok(ImageRecord {
        manifest_digest: manifest_digest.to_string(),
        manifest_media_type: media_type,
        config_digest,
        names,
        manifest,
        config,
        chain_ids: chain_ids(&diff_ids),
    })
}

/// Every image, one record per manifest, in index order.
pub fn list(store: &Store) -> Result<Vec<ImageRecord>> {
    let index = store.read_index()?;
    let mut order: Vec<(String, String)> = Vec::new();
    let mut names: HashMap<String, Vec<String>> = HashMap::new();
    for d in index.manifests() {
        let digest = d.digest().to_string();
        if !names.contains_key(&digest) {
            order.push((digest.clone(), d.media_type().to_string()));
        }
        let entry = names.entry(digest).or_default();
        if let Some(n) = ref_name(d) {
            entry.push(n.to_string());
        }
    }
    order
        .into_iter()
        .map(|(digest, mt)| {
            let n = names.remove(&digest).unwrap_or_default();
            load(store, &digest, mt, n)
        })
        .collect()
}

/// The normalized name a user's string refers to, if it is a reference at all.
pub fn normalize(query: &str) -> Option<String> {
    Reference::parse(query).ok().map(|r| r.to_string())
}

/// Finds an image by name, full or short id (config digest), or manifest digest.
pub fn resolve(store: &Store, query: &str) -> Result<ImageRecord> {
    // A name is matched in index.json alone, loading only the image it names.
    if let Some(name) = normalize(query) {
        let index = store.read_index()?;
        if let Some(d) = index.manifests().iter().find(|d| ref_name(d) == Some(name.as_str())) {
            let digest = d.digest().to_string();
            let names = index
                .manifests()
                .iter()
                .filter(|e| e.digest().to_string() == digest)
                .filter_map(|e| ref_name(e).map(str::to_string))
                .collect();
            return load(store, &digest, d.media_type().to_string(), names);
        }
    }
    let images = list(store)?;
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if !hex.is_empty() && hex.len() <= 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let matches: Vec<usize> = images
            .iter()
            .enumerate()
            .filter(|(_, i)| i.config_digest[7..].starts_with(hex) || i.manifest_digest[7..].starts_with(hex))
            .map(|(n, _)| n)
            .collect();
        match matches.len() {
            1 => return Ok(images.into_iter().nth(matches[0]).unwrap()),
            0 => {}
            _ => bail!("image id prefix {:?} is ambiguous", query),
        }
    }
    bail!("image not known: {}", query)
}

/// Points `name` at the manifest `desc`; what it pointed at before stays as an
/// unnamed (dangling) image when nothing else names it.
pub fn tag_manifest(store: &Store, desc: Descriptor, name: &str) -> Result<()> {
    let digest = desc.digest().to_string();
    store.update_index(|entries| {
        let old = entries.iter().position(|d| ref_name(d) == Some(name)).map(|i| entries.remove(i));
        entries.retain(|d| !(ref_name(d).is_none() && d.digest().to_string() == digest));
        let mut named = desc.clone();
        named.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name.to_string())])));
        entries.push(named);
        if let Some(old) = old {
            let old_digest = old.digest().to_string();
            if old_digest != digest && !entries.iter().any(|d| d.digest().to_string() == old_digest) {
                let mut dangling = old;
                dangling.set_annotations(None);
                entries.push(dangling);
            }
        }
        Ok(())
    })
}

/// Records a manifest under `name` (as `tag_manifest`), or without a name when no
/// entry has it yet.
pub fn record_manifest(store: &Store, desc: Descriptor, name: Option<&str>) -> Result<()> {
    match name {
        Some(n) => tag_manifest(store, desc, n),
        None => add_unnamed(store, desc),
    }
}

/// Records an image without a name (a dangling one) unless the index has it already.
pub fn add_unnamed(store: &Store, mut desc: Descriptor) -> Result<()> {
    let digest = desc.digest().to_string();
    desc.set_annotations(None);
    store.update_index(|entries| {
        if !entries.iter().any(|d| d.digest().to_string() == digest) {
            entries.push(desc);
        }
        Ok(())
    })
}

/// Removes one name; true when it existed.
pub fn untag(store: &Store, name: &str) -> Result<bool> {
    store.update_index(|entries| {
        let before = entries.len();
        entries.retain(|d| ref_name(d) != Some(name));
        Ok(entries.len() != before)
    })
}

/// Removes every entry for a manifest.
pub fn forget_manifest(store: &Store, manifest_digest: &str) -> Result<()> {
    store.update_index(|entries| {
        entries.retain(|d| d.digest().to_string() != manifest_digest);
        Ok(())
    })
}

/// Splits a stored name into (repository, tag) for display.
pub fn split_name(name: &str) -> (String, String) {
    if let Some((repo, _digest)) = name.split_once('@') {
        return (repo.to_string(), "<none>".to_string());
    }
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (name[..i].to_string(), name[i + 1..].to_string()),
        _ => (name.to_string(), "<none>".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_split_into_repository_and_tag() {
        assert_eq!(split_name("docker.io/library/a:latest"), ("docker.io/library/a".into(), "latest".into()));
        assert_eq!(split_name("127.0.0.1:5000/a:1"), ("127.0.0.1:5000/a".into(), "1".into()));
        assert_eq!(split_name("h:5000/a@sha256:00"), ("h:5000/a".into(), "<none>".into()));
    }
}
