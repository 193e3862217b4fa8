//! `husk port`: the container's published ports. None exist yet (rootless networking
//! will add them), so it prints nothing for an existing container.
use super::Ctx;
use crate::container::Container;
use anyhow::{bail, Result};

/// List port mappings of a container (none until networking supports publishing ports)
#[derive(clap::Args, Debug)]
pub struct PortArgs {
    /// Container name, id or unique id prefix
    pub container: String,
    /// Only this private port (PORT or PORT/PROTO)
    pub private_port: Option<String>,
}

pub fn run(ctx: &Ctx, args: PortArgs) -> Result<i32> {
    let store = ctx.store()?;
    let _c = Container::find(&store, &args.container)?;
    // When the state records published ports, print them here as
    // "80/tcp -> 0.0.0.0:8080" lines (filtered by `private_port`).
    if let Some(p) = &args.private_port {
        let p = if p.contains('/') { p.clone() } else { format!("{}/tcp", p) };
        bail!("no public port '{}' published for {}", p, args.container);
    }
    Ok(0)
}
