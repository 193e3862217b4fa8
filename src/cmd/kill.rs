use super::Ctx;
use crate::container::{control, Container};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal (name or number)
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(ctx: &Ctx, args: KillArgs) -> Result<i32> {
    let store = ctx.store()?;
    let sig = control::parse_signal(&args.signal)?;
    super::each(&args.containers, |name| control::signal(&Container::find(&store, name)?, sig))
}
