use super::Ctx;
use crate::archive::load::load;
use crate::fetch::progress::{Progress, ProgressReader};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Read from FILE instead of standard input
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Show no progress bar
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(ctx: &Ctx, args: LoadArgs) -> Result<i32> {
    let (input, size): (Box<dyn Read + Send>, u64) = match &args.input {
        Some(path) => {
            let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = f.metadata()?.len();
            (Box::new(f), size)
        }
        None if std::io::stdin().is_terminal() => {
            bail!("no archive on standard input: use -i FILE or redirect standard input")
        }
        None => (Box::new(std::io::stdin()), 0),
    };
    let ids = crate::ns::userns::enter_user_namespace()?;
    // Only a bar on a terminal: the output is the list of images loaded.
    let progress =
        if args.quiet || !crate::util::stderr_is_terminal() { Progress::Quiet } else { Progress::new(false) };
    let store = ctx.store()?;
    let transfer = progress.transfer("Loading", size, "reading");
    let loaded = load(&store, &ids, ProgressReader { inner: input, transfer: &transfer })?;
    transfer.finish("done");
    for image in loaded {
        if image.names.is_empty() {
            println!("Loaded image ID: {}", image.id);
        }
        for name in image.names {
            println!("Loaded image: {}", name);
        }
    }
    Ok(0)
}
