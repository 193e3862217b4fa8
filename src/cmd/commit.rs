use super::Ctx;
use crate::container::snapshot::{commit, CommitOptions};
use crate::container::Container;
use crate::fetch::reference::Reference;
use crate::layers::changes::parse_change;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g. "Jane Doe <jane@example.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause the container during the commit (--pause=false to not)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub pause: bool,
    /// Container name, id or unique id prefix
    pub container: String,
    /// Name of the new image: REPOSITORY[:TAG]
    pub name: Option<String>,
}

pub fn run(ctx: &Ctx, args: CommitArgs) -> Result<i32> {
    let name = args.name.as_deref().map(image_name).transpose()?;
    let changes = args.change.iter().map(|c| parse_change(c)).collect::<Result<Vec<_>>>()?;
    let store = ctx.store()?;
    let c = Container::find(&store, &args.container)?;
    let pause = args.pause && c.state.status == "running" && c.is_up();
    if pause {
        super::pause::set_paused(&store, &c.state.id, true)?;
    }
    let opts = CommitOptions { message: args.message, author: args.author, changes, name };
    let made = crate::ns::forked::in_user_namespace(|ids| {
        let store = ctx.store()?;
        let written = commit(&store, ids, &c, opts)?;
        Ok(written.config_digest)
    });
    let unpaused = if pause { super::pause::set_paused(&store, &c.state.id, false) } else { Ok(()) };
    println!("{}", made?);
    unpaused?;
    Ok(0)
}

/// A name for a new image (no digest), normalized as the store records names.
pub fn image_name(s: &str) -> Result<String> {
    let r = Reference::parse(s)?;
    if r.digest.is_some() {
        bail!("invalid image name {:?}: a new image's name cannot carry a digest", s);
    }
    Ok(r.to_string())
}
