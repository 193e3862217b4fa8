use super::Ctx;
use crate::container::{control, Container};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(ctx: &Ctx, args: WaitArgs) -> Result<i32> {
    let store = ctx.store()?;
    for name in &args.containers {
        let mut c = Container::find(&store, name)?;
        control::wait_until_down(&mut c, None)?;
        // With --rm the state is gone once the container is: its code is then unknown.
        let code = c.state.exit_code.unwrap_or(0);
        println!("{}", code);
    }
    Ok(0)
}
