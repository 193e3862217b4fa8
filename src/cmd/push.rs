use super::Ctx;
use crate::fetch::push::{push, PushOptions, DEFAULT_CHUNK};
use crate::fetch::reference::Reference;
use crate::fetch::registry::Tls;
use crate::layers::images::{normalize, resolve};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Image to push (name or id)
    pub image: String,
    /// Where to push it, REGISTRY/REPOSITORY[:TAG] (default: the image's own name)
    pub destination: Option<String>,
    /// Print no progress; print only the pushed name
    #[arg(short, long)]
    pub quiet: bool,
    /// false: accept any certificate, and plain HTTP when the registry has no TLS;
    /// true: verified HTTPS even for a loopback registry (default: verified HTTPS,
    /// plain HTTP for loopback and insecure registries)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Write the digest of the pushed manifest to FILE
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, args: PushArgs) -> Result<i32> {
    let given = match &args.destination {
        Some(d) => Some(Reference::parse(d.strip_prefix("docker://").unwrap_or(d)).context("destination")?),
        None => None,
    };
    let store = ctx.store()?;
    let image = resolve(&store, &args.image)?;
    let dest = match given {
        Some(d) => d,
        // The image's own name, unless it was named by its id.
        None => match normalize(&args.image).filter(|n| image.names.contains(n)) {
            Some(name) => Reference::parse(&name)?,
            None => {
                bail!("{} is an image id: say where to push it (husk push IMAGE REGISTRY/REPOSITORY[:TAG])", args.image)
            }
        },
    };
    let tls = match args.tls_verify {
        None => Tls::Default,
        Some(true) => Tls::Verify,
        Some(false) => Tls::NoVerify,
    };
    let chunk_size = std::env::var("HUSK_PUSH_CHUNK_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CHUNK);
    let pushed = push(&store, &image, &dest, &PushOptions { quiet: args.quiet, tls, chunk_size })
        .with_context(|| format!("pushing {}", dest))?;
    if let Some(file) = &args.digestfile {
        std::fs::write(file, &pushed.digest).with_context(|| format!("writing {}", file.display()))?;
    }
    if args.quiet {
        println!("{}", dest);
    } else {
        println!("{}: digest: {} size: {}", pushed.reference, pushed.digest, pushed.size);
    }
    Ok(0)
}
