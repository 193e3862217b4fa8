use super::Ctx;
use crate::container::attach::{self, AttachOptions};
use crate::container::Container;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Do not send this terminal's input
    #[arg(long)]
    pub no_stdin: bool,
    /// Pass the signals husk receives on to the container (not with -t)
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// The key sequence that detaches and leaves the container running
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    pub container: String,
}

pub fn run(ctx: &Ctx, args: AttachArgs) -> Result<i32> {
    let store = ctx.store()?;
    let detach_keys = attach::parse_detach_keys(&args.detach_keys)?;
    let mut c = Container::find(&store, &args.container)?;
    let orphan = {
        let _l = c.lock()?;
        c.reload()?;
        c.reap_orphan()?
    };
    if orphan || !c.is_up() || c.live_pid().is_none() {
        bail!("container {} is not running: you cannot attach to a stopped container, start it first", args.container);
    }
    attach::attach(&c, AttachOptions { stdin: !args.no_stdin, sig_proxy: args.sig_proxy, detach_keys })
}
