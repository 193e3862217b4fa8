use super::Ctx;
use crate::container::{control, Container};
use anyhow::Result;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(ctx: &Ctx, args: StopArgs) -> Result<i32> {
    let store = ctx.store()?;
    super::each(&args.containers, |name| {
        let mut c = Container::find(&store, name)?;
        control::stop(&mut c, Duration::from_secs(args.time))
    })
}

#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait before SIGKILL
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn restart(ctx: &Ctx, args: RestartArgs) -> Result<i32> {
    let store = ctx.store()?;
    for name in &args.containers {
        let mut c = Container::find(&store, name)?;
        control::stop(&mut c, Duration::from_secs(args.time))?;
    }
    super::start::start_detached(ctx, &args.containers)
}
