use super::Ctx;
use crate::container::{launch, usernet, Container};
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Attach: run in the foreground with this terminal's output (and exit status)
    #[arg(short, long)]
    pub attach: bool,
    /// Attach this terminal's stdin too (implies -a)
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(ctx: &Ctx, args: StartArgs) -> Result<i32> {
    if !args.attach && !args.interactive {
        return start_detached(ctx, &args.containers);
    }
    if args.containers.len() != 1 {
        bail!("start -a takes exactly one container");
    }
    let store = ctx.store()?;
    let mut c = Container::find(&store, &args.containers[0])?;
    let userns = usernet::begin_user_namespace(&store, usernet::network_of(&c).as_deref())?;
    if !c.claim_start()? {
        bail!("container {} is already running", args.containers[0]);
    }
    c.state.settings.interactive = args.interactive;
    let spec = c.spec()?;
    launch::foreground(&store, c, &spec, Some(userns))
}

/// Starts each container under its own monitor; prints each name as given.
pub fn start_detached(ctx: &Ctx, names: &[String]) -> Result<i32> {
    let store = ctx.store()?;
    let networks: Vec<Option<String>> =
        names.iter().map(|n| Container::find(&store, n).ok().and_then(|c| usernet::network_of(&c))).collect();
    if networks.iter().any(|n| *n != networks[0]) {
        // Containers on different networks start from user namespaces of their own.
        let mut code = 0;
        for name in names {
            let one = usernet::in_own_process(|| start_detached(ctx, std::slice::from_ref(name)))?;
            code = code.max(one);
        }
        return Ok(code);
    }
    let mut userns = Some(usernet::begin_user_namespace(&store, networks[0].as_deref())?);
    super::each(names, |name| {
        let mut c = Container::find(&store, name)?;
        if !c.claim_start()? {
            return Ok(()); // running, or being started
        }
        let spec = c.spec()?;
        match launch::detached(&store, c, &spec, userns.take())? {
            0 => Ok(()),
            code => bail!("container {} could not start (exit status {})", name, code),
        }
    })
}
