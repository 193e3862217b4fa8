use super::Ctx;
use crate::container::snapshot::writable_layer;
use crate::container::Container;
use crate::layers::diff::Diff;
use anyhow::Result;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// Container name, id or unique id prefix
    pub container: String,
}

pub fn run(ctx: &Ctx, args: DiffArgs) -> Result<i32> {
    let store = ctx.store()?;
    let c = Container::find(&store, &args.container)?;
    crate::ns::userns::enter_user_namespace()?;
    let changes = Diff::scan(&writable_layer(&store, &c)?)?.changes();
    let mut out = std::io::stdout().lock();
    for ch in changes {
        out.write_all(format!("{} /", ch.kind.letter()).as_bytes())?;
        out.write_all(&ch.path)?;
        out.write_all(b"\n")?;
    }
    Ok(0)
}
