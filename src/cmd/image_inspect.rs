use super::Ctx;
use crate::layers::images::{resolve, split_name};
use anyhow::Result;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct ImageInspectArgs {
    /// Images, by name or id
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(ctx: &Ctx, args: ImageInspectArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut out = Vec::new();
    for q in &args.images {
        let img = resolve(&store, q)?;
        let repo_digests: Vec<String> =
            img.names.iter().map(|n| format!("{}@{}", split_name(n).0, img.manifest_digest)).collect();
        let c = &img.config;
        out.push(json!({
            "Id": img.id(),
            "RepoTags": img.names.iter().filter(|n| !n.contains('@')).collect::<Vec<_>>(),
            "RepoDigests": repo_digests,
            "Created": c.created(),
            "Author": c.author(),
            "Architecture": c.architecture().to_string(),
            "Variant": c.variant(),
            "Os": c.os().to_string(),
            "Config": c.config(),
            "Size": img.size(&store),
            "RootFS": { "Type": "layers", "Layers": c.rootfs().diff_ids() },
            "Manifest": { "Digest": img.manifest_digest, "MediaType": img.manifest_media_type },
            "History": c.history(),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}
