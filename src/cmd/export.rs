use super::Ctx;
use crate::container::snapshot::writable_layer;
use crate::container::Container;
use crate::layers::diff::Diff;
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Write to a file instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Container name, id or unique id prefix
    pub container: String,
}

pub fn run(ctx: &Ctx, args: ExportArgs) -> Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write a tar archive to a terminal: use -o FILE or redirect stdout");
    }
    let store = ctx.store()?;
    let c = Container::find(&store, &args.container)?;
    let Some(path) = args.output else {
        crate::ns::userns::enter_user_namespace()?;
        let diff = Diff::merged(&writable_layer(&store, &c)?)?;
        diff.write_tar(std::io::stdout().lock())?.flush().context("writing to stdout")?;
        return Ok(0);
    };
    // Written beside the destination and renamed: a failed export leaves no file.
    let tmp = temp_beside(&path)?;
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", path.display()))?;
    let written = (|| {
        crate::ns::userns::enter_user_namespace()?;
        let diff = Diff::merged(&writable_layer(&store, &c)?)?;
        let file = diff.write_tar(std::io::BufWriter::with_capacity(1 << 20, file))?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| 0)
}

fn temp_beside(path: &std::path::Path) -> Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
    let mut tmp = name.to_os_string();
    tmp.push(format!(".husk-tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp))
}
