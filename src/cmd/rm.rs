use super::Ctx;
use crate::container::{control, Container};
use anyhow::{bail, Result};
use std::time::Duration;

/// Remove containers
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes too (there are none yet)
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(ctx: &Ctx, args: RmArgs) -> Result<i32> {
    let store = ctx.store()?;
    // The writable layers hold files of the container's users: remove them as root of
    // a user namespace with the same mapping.
    crate::ns::userns::enter_user_namespace()?;
    super::each(&args.containers, |name| {
        let mut c = Container::find(&store, name)?;
        if c.is_up() {
            if !args.force {
                bail!("container {} is running: stop it first or use rm -f", name);
            }
            control::stop(&mut c, Duration::ZERO)?;
        }
        let lock = c.lock()?;
        c.reload()?;
        if c.is_up() {
            bail!("container {} started again while being removed", name);
        }
        drop(lock);
        c.remove(&store)
    })
}
