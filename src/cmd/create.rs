use super::run::RunArgs;
use super::Ctx;
use anyhow::Result;

/// Create a container without starting it (same options as run); prints its id
pub fn run(ctx: &Ctx, args: RunArgs) -> Result<i32> {
    let (_store, container, _spec, _userns) = super::run::create(ctx, &args, "created", false)?;
    println!("{}", container.state.id);
    Ok(0)
}
