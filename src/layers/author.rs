//! Writing images: a config taken from a base image (every field kept, Docker's own
//! included) or begun from scratch, changed by Dockerfile-style changes, with layers
//! and history entries appended as Docker writes them; then the config and an OCI
//! manifest stored as blobs and the image recorded in `index.json`.
use super::changes::{apply, ConfigChange};
use super::images::{record_manifest, ImageRecord};
use super::newlayer::NewLayer;
use super::store::{chain_ids, sha256_digest, Store};
use crate::fetch::manifest::PlatformSpec;
use crate::util::rfc3339;
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{json, Map, Value};
use std::time::SystemTime;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One history entry (`created` is the time it is added).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub created_by: String,
    pub comment: Option<String>,
    pub author: Option<String>,
}

/// An image being made.
#[derive(Debug, Clone)]
pub struct ImageDraft {
    /// The whole image config document.
    doc: Map<String, Value>,
    /// Manifest layer descriptors, bottom first.
    layers: Vec<Value>,
    /// Whether a CMD was set since the draft began (see `changes::apply`).
    cmd_set: bool,
}

/// What `ImageDraft::write` stored.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    pub config_digest: String,
    pub manifest_digest: String,
    pub manifest_size: u64,
}

impl ImageDraft {
    /// An image without layers (`FROM scratch`, `import`) for this host's platform.
    pub fn scratch() -> ImageDraft {
        let p = PlatformSpec::host();
        let mut doc = json!({
            "architecture": p.arch,
            "os": p.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = p.variant {
            doc["variant"] = Value::String(v);
        }
        ImageDraft { doc: doc.as_object().cloned().expect("an object"), layers: Vec::new(), cmd_set: false }
    }

    /// An image on top of `base`, starting from its config.
    pub fn from_image(store: &Store, base: &ImageRecord) -> Result<ImageDraft> {
        let bytes = store.read_blob(&base.config_digest)?;
        let mut doc: Map<String, Value> = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing the config of image {}", base.short_id()))?;
        // They describe the container that made the base, not this image.
        for stale in ["container", "container_config", "docker_version", "id", "parent"] {
            doc.remove(stale);
        }
        doc.entry("history").or_insert_with(|| Value::Array(Vec::new()));
        if !doc.get("config").is_some_and(Value::is_object) {
            doc.insert("config".into(), Value::Object(Map::new()));
        }
        let layers = base
            .manifest
            .layers()
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d)?;
                let oci = oci_layer_type(d.media_type().as_ref());
                v["mediaType"] = Value::String(oci.to_string());
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        let draft = ImageDraft { doc, layers, cmd_set: false };
        if draft.diff_ids().len() != draft.layers.len() {
            bail!("image {}: its config and manifest disagree on the number of layers", base.short_id());
        }
        Ok(draft)
    }

    /// The runtime config (`Cmd`, `Env`, `WorkingDir`, ...).
    pub fn config(&self) -> &Map<String, Value> {
        self.doc.get("config").and_then(Value::as_object).expect("config is an object")
    }

    pub fn config_mut(&mut self) -> &mut Map<String, Value> {
        self.doc.get_mut("config").and_then(Value::as_object_mut).expect("config is an object")
    }

    /// The whole config document (for fields beyond the runtime config).
    pub fn document_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.doc
    }

    pub fn diff_ids(&self) -> Vec<String> {
        super::changes::string_list(self.doc.get("rootfs").and_then(|r| r.get("diff_ids")))
    }

    /// The chain id of the top layer, the parent of the next one.
    pub fn top_chain_id(&self) -> Option<String> {
        chain_ids(&self.diff_ids()).pop()
    }

    pub fn apply(&mut self, change: &ConfigChange) {
        let mut cmd_set = self.cmd_set;
        apply(self.config_mut(), change, &mut cmd_set);
        self.cmd_set = cmd_set;
    }

    pub fn set_author(&mut self, author: &str) {
        self.doc.insert("author".into(), Value::String(author.to_string()));
    }

    /// Appends a layer and its history entry.
    pub fn add_layer(&mut self, layer: &NewLayer, history: History) {
        self.layers.push(json!({
            "mediaType": layer.media_type,
            "digest": layer.blob_digest,
            "size": layer.blob_size,
        }));
        let rootfs = self.doc.entry("rootfs").or_insert_with(|| json!({"type": "layers"}));
        let ids = rootfs.as_object_mut().map(|r| r.entry("diff_ids").or_insert_with(|| json!([])));
        if let Some(Value::Array(ids)) = ids {
            ids.push(Value::String(layer.diff_id.clone()));
        }
        self.push_history(history, false);
    }

    /// Appends a history entry for a change of the config only.
    pub fn add_empty_layer_history(&mut self, history: History) {
        self.push_history(history, true);
    }

    fn push_history(&mut self, h: History, empty_layer: bool) {
        let mut entry = Map::new();
        entry.insert("created".into(), Value::String(rfc3339(SystemTime::now())));
        if !h.created_by.is_empty() {
            entry.insert("created_by".into(), Value::String(h.created_by));
        }
        if let Some(a) = h.author.filter(|a| !a.is_empty()) {
            entry.insert("author".into(), Value::String(a));
        }
        if let Some(c) = h.comment.filter(|c| !c.is_empty()) {
            entry.insert("comment".into(), Value::String(c));
        }
        if empty_layer {
            entry.insert("empty_layer".into(), Value::Bool(true));
        }
        let history = self.doc.entry("history").or_insert_with(|| json!([]));
        if !history.is_array() {
            *history = json!([]);
        }
        history.as_array_mut().expect("an array").push(Value::Object(entry));
    }

    /// Whether a CMD was set since the draft began (a build's cache keeps it per step).
    pub fn cmd_set(&self) -> bool {
        self.cmd_set
    }

    pub fn set_cmd_set(&mut self, set: bool) {
        self.cmd_set = set;
    }

    /// Stores the config and the manifest and records the image under `name` (a
    /// normalized reference; none: an unnamed image). The layers must be in the store.
    pub fn write(mut self, store: &Store, name: Option<&str>) -> Result<WrittenImage> {
        let written = self.write_blobs(store)?;
        let desc = Descriptor::new(
            MediaType::ImageManifest,
            written.manifest_size,
            written.manifest_digest.parse::<oci_spec::image::Digest>()?,
        );
        record_manifest(store, desc, name)?;
        Ok(written)
    }

    /// Stores the config (created now) and the manifest without recording the image in
    /// `index.json` (a build's intermediate images).
    pub fn write_blobs(&mut self, store: &Store) -> Result<WrittenImage> {
        self.doc.insert("created".into(), Value::String(rfc3339(SystemTime::now())));
        let config = serde_json::to_vec(&self.doc)?;
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
            "layers": self.layers,
        }))?;
        let manifest_digest = sha256_digest(&manifest);
        store.write_blob(&config_digest, &config)?;
        store.write_blob(&manifest_digest, &manifest)?;
        Ok(WrittenImage { config_digest, manifest_digest, manifest_size: manifest.len() as u64 })
    }
}

/// The OCI media type of a layer (Docker's types name the same content).
fn oci_layer_type(t: &str) -> &str {
    match t {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        other => other,
    }
}
