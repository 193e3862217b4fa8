//! A container's filesystem as images see it: its writable layer against its image's
//! layers (`diff`, `commit`) and its whole tree (`export`).
//!
//! Call these as root of husk's user namespace (see `layers::diff`).
use super::Container;
use crate::fetch::pull::extract_options;
use crate::layers::author::{History, ImageDraft, WrittenImage};
use crate::layers::changes::{string_list, ConfigChange};
use crate::layers::diff::{Diff, Format, WritableLayer};
use crate::layers::images::resolve;
use crate::layers::newlayer::store_tar_layer;
use crate::layers::store::Store;
use crate::ns::idmap::IdMapping;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::PathBuf;

/// Left beside the writable layer when the copy mode filled it (`ns::rootfs`); its
/// mtime is when the copy was complete.
pub const COPY_MARKER: &str = "copy-rootfs";

pub fn writable_layer(store: &Store, c: &Container) -> Result<WritableLayer> {
    let lowers_top_first =
        c.state.layers.iter().rev().map(|l| store.layer_diff(l)).collect::<Result<Vec<PathBuf>>>()?;
    let format = match std::fs::metadata(c.dir.join(COPY_MARKER)) {
        Ok(m) => Format::Copy { since: m.modified()? },
        Err(_) => Format::Overlay,
    };
    Ok(WritableLayer { upper: c.dir.join("upper"), lowers_top_first, format })
}

/// What `commit` makes besides the layer.
#[derive(Debug, Default)]
pub struct CommitOptions {
    pub message: Option<String>,
    pub author: Option<String>,
    pub changes: Vec<ConfigChange>,
    /// A normalized reference, or none for an unnamed image.
    pub name: Option<String>,
}

/// Makes an image of the container: its image's layers and config, the container's
/// command and environment, the changes, and one new layer with the writable layer.
pub fn commit(store: &Store, ids: &IdMapping, c: &Container, opts: CommitOptions) -> Result<WrittenImage> {
    let _writers = store.lock_writers()?;
    let tmp = store.tmp_area()?;
    let image = resolve(store, &c.state.image_id)
        .with_context(|| format!("the image of container {} ({})", c.state.name, c.state.image))?;
    let mut draft = ImageDraft::from_image(store, &image)?;
    take_container_config(&mut draft, c)?;
    for change in &opts.changes {
        draft.apply(change);
    }
    if let Some(a) = &opts.author {
        draft.set_author(a);
    }
    let layer = writable_layer(store, c)?;
    let parent = draft.top_chain_id();
    let new = store_tar_layer(store, &tmp, parent.as_deref(), &extract_options(ids), |out| {
        Diff::scan(&layer)?.write_tar(out)?;
        Ok(())
    })?;
    let history = History { created_by: c.state.command.join(" "), comment: opts.message, author: opts.author };
    draft.add_layer(&new, history);
    draft.write(store, opts.name.as_deref())
}

/// The container's command, environment and working directory, as Docker's commit
/// keeps them. The command is split back into Entrypoint and Cmd when it begins with
/// the image's entrypoint; otherwise it becomes the Cmd.
fn take_container_config(draft: &mut ImageDraft, c: &Container) -> Result<()> {
    let spec = c.spec()?;
    let config = draft.config_mut();
    let entrypoint = string_list(config.get("Entrypoint"));
    let cmd = string_list(config.get("Cmd"));
    let command = &c.state.command;
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    if *command != [entrypoint.clone(), cmd].concat() {
        if !entrypoint.is_empty() && command.starts_with(&entrypoint) {
            config.insert("Cmd".into(), strings(&command[entrypoint.len()..]));
        } else {
            config.insert("Entrypoint".into(), Value::Null);
            config.insert("Cmd".into(), strings(command));
        }
    }
    let Some(process) = spec.process() else { return Ok(()) };
    let image_env = string_list(config.get("Env"));
    let image_has = |key: &str| image_env.iter().any(|e| e.split('=').next() == Some(key));
    // HOSTNAME and a HOME the image does not set are husk's, made at each start.
    let env: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            let key = e.split('=').next().unwrap_or("");
            key != "HOSTNAME" && (key != "HOME" || image_has("HOME"))
        })
        .collect();
    config.insert("Env".into(), strings(&env));
    let cwd = process.cwd().to_string_lossy().into_owned();
    let image_cwd = config.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("/");
    if cwd != image_cwd {
        config.insert("WorkingDir".into(), Value::String(cwd));
    }
    Ok(())
}
