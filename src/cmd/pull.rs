use super::Ctx;
use crate::fetch::manifest::PlatformSpec;
use crate::fetch::pull::{pull, PullOptions};
use crate::fetch::reference::Reference;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Image reference, e.g. alpine, docker.io/library/debian:bookworm, host:5000/app@sha256:...
    pub image: String,
    /// Platform to pull from a multi-platform image (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(ctx: &Ctx, args: PullArgs) -> Result<i32> {
    let reference = Reference::parse(&args.image)?;
    let platform = args.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let ids = crate::ns::userns::enter_user_namespace()?;
    let store = ctx.store()?;
    let image = pull(&store, &ids, &reference, &PullOptions { platform, quiet: args.quiet })?;
    println!("{}", &image.id()[7..]);
    Ok(0)
}
