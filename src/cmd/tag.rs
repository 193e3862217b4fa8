use super::Ctx;
use crate::fetch::reference::Reference;
use crate::layers::images::{resolve, tag_manifest};
use anyhow::Result;
use oci_spec::image::Descriptor;

#[derive(clap::Args, Debug)]
pub struct TagArgs {
    /// Existing image (name or id)
    pub source: String,
    /// New name
    pub target: String,
}

pub fn run(ctx: &Ctx, args: TagArgs) -> Result<i32> {
    let store = ctx.store()?;
    let target = Reference::parse(&args.target)?;
    if target.digest.is_some() {
        anyhow::bail!("invalid tag target {:?}: a name cannot carry a digest", args.target);
    }
    let img = resolve(&store, &args.source)?;
    let size = store.read_blob(&img.manifest_digest)?.len() as u64;
    let desc = Descriptor::new(
        img.manifest_media_type.as_str().into(),
        size,
        img.manifest_digest.parse::<oci_spec::image::Digest>()?,
    );
    tag_manifest(&store, desc, &target.to_string())?;
    Ok(0)
}
