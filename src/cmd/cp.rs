use super::Ctx;
use crate::container::{copy, Container};
use anyhow::{bail, Result};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct CpArgs {
    /// Follow a symbolic link given as the source
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Source: CONTAINER:PATH, a host path, or - (a tar on stdin)
    pub src: String,
    /// Destination: CONTAINER:PATH, a host path, or - (a tar on stdout)
    pub dst: String,
}

/// `NAME:PATH` names a container's path; anything with a `/` before the first `:` (or no
/// `:`) is a host path, as Docker reads it.
fn container_part(arg: &str) -> Option<(&str, &str)> {
    let (name, path) = arg.split_once(':')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((name, path))
}

pub fn run(ctx: &Ctx, args: CpArgs) -> Result<i32> {
    let store = ctx.store()?;
    match (container_part(&args.src), container_part(&args.dst)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported: one side must be the host"),
        (None, None) => bail!("one of source and destination must be CONTAINER:PATH"),
        (Some((name, path)), None) => {
            let c = Container::find(&store, name)?;
            let path = absolute_in_container(path)?;
            let dst = (args.dst != "-").then(|| Path::new(&args.dst));
            copy::copy_out(&store, &c, &path, dst, args.follow_link)?;
        }
        (None, Some((name, path))) => {
            let c = Container::find(&store, name)?;
            let path = absolute_in_container(path)?;
            let src = (args.src != "-").then(|| Path::new(&args.src));
            copy::copy_in(&store, &c, src, &path)?;
        }
    }
    Ok(0)
}

/// Container paths are taken from its root, as Docker does with relative ones.
fn absolute_in_container(path: &str) -> Result<String> {
    if path.is_empty() {
        bail!("empty path in the container");
    }
    Ok(if path.starts_with('/') { path.to_string() } else { format!("/{}", path) })
}
