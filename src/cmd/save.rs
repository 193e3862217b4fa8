use super::Ctx;
use crate::archive::output::Output;
use crate::archive::save::save;
use crate::archive::ArchiveFormat;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Write to FILE (replaced only once the archive is complete) instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format
    #[arg(long, value_enum, default_value_t = ArchiveFormat::DockerArchive)]
    pub format: ArchiveFormat,
    /// Images to save, by name or id; several go into one archive
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub fn run(ctx: &Ctx, args: SaveArgs) -> Result<i32> {
    let mut out = match &args.output {
        Some(path) => Output::file(path)?,
        None => Output::stdout()?,
    };
    save(&ctx.store()?, &args.images, args.format, &mut out)?;
    out.commit()?;
    Ok(0)
}
