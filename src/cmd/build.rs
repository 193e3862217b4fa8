use super::Ctx;
use crate::build::copy::Context;
use crate::build::dockerignore;
use crate::build::exec::{build, Options, StepFailed};
use crate::container::network::{choose, find_tool, NetworkMode};
use crate::fetch::reference::Reference;
use crate::layers::extract::{extract_layer, ExtractOptions, Ownership};
use anyhow::{bail, Context as _, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Name the image NAME[:TAG] (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default CONTEXT/Dockerfile, else CONTEXT/Containerfile; - reads it
    /// from standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build argument (KEY=VALUE, or KEY to take it from husk's environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build up to this stage
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the build cache (steps still fill it)
    #[arg(long)]
    pub no_cache: bool,
    /// Pull the base images even when the store has them
    #[arg(long)]
    pub pull: bool,
    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,
    /// Network of RUN steps: pasta, slirp4netns, none or host (default as for husk run)
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// The build context: a directory, or - for a tar archive (or a lone Dockerfile) on
    /// standard input
    pub context: String,
}

pub fn run(ctx: &Ctx, args: BuildArgs) -> Result<i32> {
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t).map(|r| r.to_string()).with_context(|| format!("invalid tag {:?}", t)))
        .collect::<Result<Vec<_>>>()?;
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => std::env::var(a).ok().and_then(|v| build_args.insert(a.clone(), v)),
        };
    }
    let choice = choose(args.network.as_deref())?;
    match &choice.mode {
        NetworkMode::Named(n) => bail!("husk build --network {}: RUN steps take pasta, slirp4netns, none or host", n),
        NetworkMode::Tool { tool, .. } => {
            find_tool(*tool)?;
        }
        _ => {}
    }
    if let Some(w) = choice.warning() {
        eprintln!("{}", w);
    }
    let stdin_dockerfile = args.file.as_deref() == Some(Path::new("-"));
    if stdin_dockerfile && args.context == "-" {
        bail!("the Dockerfile and the context cannot both come from standard input");
    }
    // Everything from here on, pulls included, runs as root of husk's user namespace.
    let ids = ctx.begin_user_namespace()?.finish()?;
    let store = ctx.store()?;
    let tmp = store.tmp_area()?;

    let (root, inline_dockerfile) = if args.context == "-" {
        context_from_stdin(&tmp.path("context"))?
    } else {
        let root = PathBuf::from(&args.context);
        if !root.is_dir() {
            bail!("the build context {} is not a directory", args.context);
        }
        (root, None)
    };
    let (dockerfile, path) = match (&args.file, inline_dockerfile) {
        (Some(f), _) if stdin_dockerfile => {
            let _ = f;
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading the Dockerfile from standard input")?;
            (text, None)
        }
        (Some(f), _) => (read_text(f)?, Some(f.clone())),
        (None, Some(text)) => (text, None),
        (None, None) => {
            let path = ["Dockerfile", "Containerfile"]
                .iter()
                .map(|n| root.join(n))
                .find(|p| p.is_file())
                .with_context(|| format!("no Dockerfile or Containerfile in {}", root.display()))?;
            (read_text(&path)?, Some(path))
        }
    };
    let name = path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let rules = dockerignore::load(&root, path.as_deref())?;
    let context = Context::open(&root, &rules)?;
    let opts = Options {
        dockerfile,
        dockerfile_name: name,
        tags,
        build_args,
        target: args.target,
        no_cache: args.no_cache,
        pull: args.pull,
        quiet: args.quiet,
        network: choice.mode,
    };
    match build(&store, &ids, &context, &opts) {
        Ok(built) => {
            println!("{}", &built.id[7..]);
            Ok(0)
        }
        Err(e) => match e.downcast::<StepFailed>() {
            Ok(failed) => {
                eprintln!("Error: {}", failed.message);
                Ok(failed.code)
            }
            Err(e) => Err(e),
        },
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// `husk build -`: a tar archive of the context (its Dockerfile inside), or a lone
/// Dockerfile and no context. The archive goes through the store's safe extraction.
fn context_from_stdin(dir: &Path) -> Result<(PathBuf, Option<String>)> {
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data).context("reading the context from standard input")?;
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let is_tar = data.len() >= 512 && &data[257..262] == b"ustar";
    let is_gzip = data.starts_with(&[0x1f, 0x8b]);
    if !is_tar && !is_gzip {
        let text = String::from_utf8(data).context("standard input is neither a tar archive nor a UTF-8 Dockerfile")?;
        return Ok((dir.to_path_buf(), Some(text)));
    }
    let opts = ExtractOptions { ownership: Ownership::Ignore, strip_setid: true };
    let reader: Box<dyn Read> =
        if is_gzip { Box::new(flate2::read::MultiGzDecoder::new(&data[..])) } else { Box::new(&data[..]) };
    extract_layer(reader, dir, &opts).context("extracting the build context from standard input")?;
    Ok((dir.to_path_buf(), None))
}
