use super::Ctx;
use crate::fetch::pull::extract_options;
use crate::layers::author::{History, ImageDraft};
use crate::layers::changes::parse_change;
use crate::layers::newlayer::store_tar_layer;
use anyhow::{bail, Context, Result};
use std::io::{Cursor, Read};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image's config (as commit's --change)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Commit message for the imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Tar archive, plain or compressed with gzip or zstd; - for stdin
    pub file: String,
    /// Name of the new image: REPOSITORY[:TAG]
    pub name: Option<String>,
}

pub fn run(ctx: &Ctx, args: ImportArgs) -> Result<i32> {
    let name = args.name.as_deref().map(super::commit::image_name).transpose()?;
    let changes = args.change.iter().map(|c| parse_change(c)).collect::<Result<Vec<_>>>()?;
    let source: Box<dyn Read> = if args.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file))?)
    };
    let mut tar = decompressed(source, &args.file)?;
    let ids = crate::ns::userns::enter_user_namespace()?;
    let store = ctx.store()?;
    let _writers = store.lock_writers()?;
    let tmp = store.tmp_area()?;
    let mut draft = ImageDraft::scratch();
    for change in &changes {
        draft.apply(change);
    }
    let layer = store_tar_layer(&store, &tmp, None, &extract_options(&ids), |out| {
        std::io::copy(&mut tar, out).with_context(|| format!("reading {}", args.file))?;
        Ok(())
    })
    .with_context(|| format!("importing {}", args.file))?;
    let comment = args.message.unwrap_or_else(|| format!("Imported from {}", args.file));
    draft.add_layer(&layer, History { comment: Some(comment), ..History::default() });
    let written = draft.write(&store, name.as_deref())?;
    println!("{}", written.config_digest);
    Ok(0)
}

/// The tar stream, decompressed when it starts with a gzip or zstd magic number.
fn decompressed(mut source: Box<dyn Read>, what: &str) -> Result<Box<dyn Read>> {
    let mut head = Vec::with_capacity(512);
    (&mut source).take(512).read_to_end(&mut head).with_context(|| format!("reading {}", what))?;
    if head.is_empty() {
        bail!("{} is empty: expected a tar archive", what);
    }
    let magic = |m: &[u8]| head.starts_with(m);
    let whole = Cursor::new(head.clone()).chain(source);
    Ok(if magic(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(whole))
    } else if magic(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::new(whole).context("starting zstd decompression")?)
    } else if magic(&[0xfd, b'7', b'z', b'X', b'Z', 0]) || magic(b"BZh") {
        bail!("{}: xz and bzip2 archives are not supported; decompress it first or use gzip or zstd", what);
    } else {
        Box::new(whole)
    })
}
