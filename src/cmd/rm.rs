use super::Ctx;
use crate::container::{control, remove_leftovers, Container};
use anyhow::{bail, Result};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    pub force: bool,
    /// Remove the container's anonymous volumes too
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(ctx: &Ctx, args: RmArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut in_user_namespace = false;
    let code = super::each(&args.containers, |name| {
        let mut c = Container::find(&store, name)?;
        if args.force {
            control::wait_while_starting(&mut c)?;
        }
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
        if c.is_starting() {
            bail!("container {} is being started: stop it once it runs, or use rm -f", name);
        }
        let volumes = c.state.volumes.clone();
        let removed = c.remove_from_sight(&store)?;
        drop(lock);
        // Files the container's users made may be theirs: if husk cannot delete them
        // itself, it does so as root of a user namespace with the same mapping (which
        // costs the setuid map tools' few milliseconds, so only then).
        match removed.delete_files() {
            Err(e) if in_user_namespace => Err(e),
            Err(_) => {
                crate::ns::userns::enter_user_namespace()?;
                in_user_namespace = true;
                removed.delete_files()
            }
            Ok(()) => Ok(()),
        }?;
        if args.volumes {
            crate::container::volume::remove_anonymous(&store, &volumes, &mut in_user_namespace);
        }
        Ok(())
    })?;
    remove_leftovers(&store, true);
    Ok(code)
}
