//! `husk port`: the container's published ports (`-p`), in Docker's format.
use super::Ctx;
use crate::container::Container;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct PortArgs {
    /// Container name, id or unique id prefix
    pub container: String,
    /// Only this private port (PORT or PORT/PROTO)
    pub private_port: Option<String>,
}

pub fn run(ctx: &Ctx, args: PortArgs) -> Result<i32> {
    let store = ctx.store()?;
    let c = Container::find(&store, &args.container)?;
    let ports = &c.state.settings.ports;
    match &args.private_port {
        None => {
            for p in ports {
                println!("{} -> {}", p.private(), p.public());
            }
        }
        Some(want) => {
            let want = if want.contains('/') { want.clone() } else { format!("{}/tcp", want) };
            let matching: Vec<_> = ports.iter().filter(|p| p.private() == want).collect();
            if matching.is_empty() {
                bail!("no public port '{}' published for {}", want, args.container);
            }
            for p in matching {
                println!("{}", p.public());
            }
        }
    }
    Ok(0)
}
