use super::Ctx;
use crate::container::Container;
use crate::ns::join::{exec, ExecOptions};
use crate::ns::run::Exit;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Keep standard input open (otherwise the command reads nothing)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Detached: leave the command running in the container and return
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to take it from husk's environment)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (default: the container's)
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name or uid) and optionally group: user[:group] (default: the container's)
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container name or id (or a unique prefix of the id)
    pub container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(ctx: &Ctx, args: ExecArgs) -> Result<i32> {
    if args.detach && args.tty {
        bail!("-t cannot be used with -d: nothing would read the terminal");
    }
    if let Some(w) = args.workdir.as_deref().filter(|w| !w.starts_with('/')) {
        bail!("the working directory {:?} is not an absolute path", w);
    }
    let env = super::run::env_from_flags(&args.env, &args.env_file)?;
    crate::ns::exec::check_limits(&args.command, &env)?;

    let store = ctx.store()?;
    let c = Container::find(&store, &args.container)?;
    match c.state.status.as_str() {
        "running" => {}
        "paused" => bail!("container {} is paused, unpause it first", args.container),
        _ => bail!("container {} is not running", args.container),
    }
    let target = c
        .state
        .pid
        .filter(crate::container::process::is_alive)
        .with_context(|| format!("container {} is not running", args.container))?;
    let spec = c.spec()?;
    crate::util::trace("container found");
    let opts = ExecOptions {
        target,
        cgroup: c.state.cgroup.clone(),
        cgroup_required: !c.state.settings.limits.is_empty(),
        args: args.command,
        env,
        workdir: args.workdir,
        user: args.user,
        stdin: args.interactive && !args.detach,
        tty: args.tty,
        detach: args.detach,
    };
    match exec(&spec, &opts).with_context(|| format!("exec in container {}", args.container))? {
        Exit::Status(code) => Ok(code),
        Exit::NotStarted { code, message } => {
            eprintln!("Error: {}", message);
            Ok(code)
        }
    }
}
