use super::Ctx;
use crate::container::spec::{build, SpecInput};
use crate::container::user::{read_image_file, resolve as resolve_user};
use crate::container::Container;
use crate::fetch::manifest::PlatformSpec;
use crate::fetch::pull::{pull, PullOptions};
use crate::fetch::reference::Reference;
use crate::layers::images::{resolve, ImageRecord};
use crate::layers::store::Store;
use crate::ns::idmap::IdMapping;
use crate::ns::rootfs::RootfsPlan;
use crate::ns::run::{run as run_container, Exit, RunOptions};
use crate::ns::userns::{begin_user_namespace, PendingUserNamespace};
use crate::util::trace;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

/// Run a command in a new container
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to take it from husk's environment)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name or uid) and optionally group: user[:group]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Name of the container
    #[arg(long)]
    pub name: Option<String>,
    /// Hostname of the container (default: its short id)
    #[arg(long, short = 'h')]
    pub hostname: Option<String>,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Keep standard input open (otherwise the container reads nothing)
    #[arg(short, long)]
    pub interactive: bool,
    /// Run a minimal init as pid 1 that reaps zombies and forwards signals
    #[arg(long)]
    pub init: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS]
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Bind-mount a host path: HOST:CONTAINER[:ro]
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// Network: host (share the host's) or none (only loopback)
    #[arg(long, default_value = "host", value_parser = ["host", "none"])]
    pub network: String,
    /// Add a capability (or ALL)
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL)
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// When to pull the image
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Platform to pull (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Do not print pull progress
    #[arg(short, long)]
    pub quiet: bool,
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Image to run
    pub image: String,
    /// Command and arguments (default: the image's entrypoint and command)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<i32> {
    let platform = args.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let binds = args.volumes.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>>>()?;
    let tmpfs = args.tmpfs.iter().map(|t| parse_tmpfs(t)).collect::<Result<Vec<_>>>()?;
    let capabilities = crate::ns::caps::resolve(&args.cap_add, &args.cap_drop)?;
    let mut env_extra = Vec::new();
    for f in &args.env_file {
        env_extra.extend(read_env_file(f)?);
    }
    env_extra.extend(args.env.iter().filter_map(|e| expand_env(e)));
    if let Some(n) = &args.name {
        crate::container::validate_name(n)?;
    }

    trace("arguments parsed");
    // The setuid map tools take a few milliseconds: prepare the container meanwhile
    // when the image is already here; a pull needs the mapping to extract layers.
    let userns = begin_user_namespace()?;
    let ids = userns.mapping().clone();
    let store = ctx.store()?;
    let (image, userns) = match local_image(&store, &args)? {
        Some(image) => (image, Some(userns)),
        None => {
            let ids = userns.finish()?;
            (pull_image(&store, &ids, &args, platform)?, None)
        }
    };
    trace("image resolved");

    let writers = store.lock_writers()?;
    let layers_top_first: Vec<PathBuf> =
        image.chain_ids.iter().rev().map(|c| store.layer_diff(c)).collect::<Result<_>>()?;
    let cfg = image.config.config().clone().unwrap_or_default();
    let command = command_line(&args, &cfg)?;
    let mut container = Container::create(
        &store,
        args.name.as_deref(),
        &args.image,
        image.id(),
        image.chain_ids.clone(),
        command.clone(),
        "running",
    )?;
    drop(writers);
    trace("container created");

    let result = start(
        &ids,
        userns,
        &args,
        &image,
        &cfg,
        &layers_top_first,
        &mut container,
        command,
        binds,
        tmpfs,
        capabilities,
        env_extra,
    );
    let code = match &result {
        Ok(Exit::Status(c)) => *c,
        Ok(Exit::NotStarted { code, .. }) => *code,
        Err(_) => 125,
    };
    trace("container exited");
    if args.rm {
        container.remove(&store)?;
    } else {
        let _ = container.set_exited(code);
    }
    trace("cleaned up");
    match result? {
        Exit::Status(c) => Ok(c),
        Exit::NotStarted { code, message } => {
            eprintln!("Error: {}", message);
            Ok(code)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn start(
    ids: &IdMapping,
    userns: Option<PendingUserNamespace>,
    args: &RunArgs,
    image: &ImageRecord,
    cfg: &oci_spec::image::Config,
    layers_top_first: &[PathBuf],
    container: &mut Container,
    command: Vec<String>,
    binds: Vec<(String, String, bool)>,
    tmpfs: Vec<(String, String)>,
    capabilities: Vec<String>,
    env_extra: Vec<String>,
) -> Result<Exit> {
    let user_spec = args.user.clone().or_else(|| cfg.user().clone()).unwrap_or_default();
    let passwd = read_image_file(layers_top_first, "/etc/passwd");
    let group = read_image_file(layers_top_first, "/etc/group");
    let user = resolve_user(&user_spec, passwd.as_deref(), group.as_deref())?;
    if ids.host_uid(user.uid).is_none() || ids.host_gid(user.gid).is_none() {
        bail!(
            "user {} (uid {}, gid {}) is not mapped in husk's user namespace ({}); add a range to /etc/subuid and /etc/subgid",
            user_spec,
            user.uid,
            user.gid,
            ids.describe()
        );
    }
    let hostname = args.hostname.clone().unwrap_or_else(|| container.short_id().to_string());
    let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    set_env(&mut env, &format!("HOSTNAME={}", hostname));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    for e in env_extra {
        set_env(&mut env, &e);
    }
    let cwd = args
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        bail!("the working directory {:?} is not an absolute path", cwd);
    }
    let own_network = args.network == "none";
    let spec = build(&SpecInput {
        args: command,
        env,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids.iter().copied().filter(|g| ids.host_gid(*g).is_some()).collect(),
        hostname: hostname.clone(),
        capabilities,
        read_only: args.read_only,
        own_network,
        tty_gid_mapped: ids.host_gid(5).is_some(),
        binds,
        tmpfs,
    })?;
    crate::util::atomic_replace(&container.dir.join("config.json"), &serde_json::to_vec_pretty(&spec)?)?;
    let etc_files = etc_files(&hostname);
    let scaffold = crate::ns::mountpoints::missing(layers_top_first);
    trace("spec and files written");
    if let Some(userns) = userns {
        userns.finish()?;
    }
    trace("user namespace entered");
    run_container(
        &spec,
        &RunOptions {
            rootfs: RootfsPlan {
                lowerdirs: layers_top_first.iter().rev().cloned().collect(),
                upper: container.dir.join("upper"),
                work: container.dir.join("work"),
                target: container.dir.join("rootfs"),
                etc_files,
                scaffold,
            },
            stdin: args.interactive,
            own_network,
            init: args.init,
            tty: args.tty,
        },
    )
    .with_context(|| {
        format!("starting a container from {}", image.names.first().map(String::as_str).unwrap_or(image.short_id()))
    })
}

/// The image from the store, unless this run must pull it.
fn local_image(store: &Store, args: &RunArgs) -> Result<Option<ImageRecord>> {
    let local = resolve(store, &args.image).ok();
    match args.pull {
        PullPolicy::Always => Ok(None),
        PullPolicy::Missing => Ok(local),
        PullPolicy::Never => {
            local.map(Some).with_context(|| format!("image {} is not in the store (and --pull=never)", args.image))
        }
    }
}

fn pull_image(store: &Store, ids: &IdMapping, args: &RunArgs, platform: Option<PlatformSpec>) -> Result<ImageRecord> {
    let reference = Reference::parse(&args.image)?;
    let pulled = pull(store, ids, &reference, &PullOptions { platform, quiet: args.quiet })?;
    resolve(store, &pulled.config_digest)
}

/// Entrypoint + Cmd as Docker combines them.
fn command_line(args: &RunArgs, cfg: &oci_spec::image::Config) -> Result<Vec<String>> {
    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => vec![],
        Some(e) => vec![e.clone()],
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        vec![]
    } else {
        cfg.cmd().clone().unwrap_or_default()
    };
    let all: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if all.is_empty() {
        bail!("no command given and the image {} has neither an entrypoint nor a command", args.image);
    }
    Ok(all)
}

fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split('=').next().unwrap_or(kv);
    env.retain(|e| e.split('=').next() != Some(key));
    env.push(kv.to_string());
}

/// `KEY` alone takes the value from husk's environment; an unset KEY is left out.
fn expand_env(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{}={}", e, v))
    }
}

fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading env file {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(expand_env).collect())
}

fn parse_volume(v: &str) -> Result<(String, String, bool)> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => bail!("invalid volume {:?}: expected HOST:CONTAINER[:ro]", v),
    };
    if !src.starts_with('/') || !dst.starts_with('/') {
        bail!("invalid volume {:?}: both paths must be absolute (named volumes come later)", v);
    }
    refuse_proc_destination(dst, v)?;
    let src = std::fs::canonicalize(src).with_context(|| format!("volume source {}", src))?;
    Ok((src.to_string_lossy().into_owned(), dst.to_string(), ro))
}

/// Nothing may be mounted over or under /proc, as in Docker.
fn refuse_proc_destination(dst: &str, spec: &str) -> Result<()> {
    let clean: PathBuf = Path::new(dst).components().collect();
    if clean.starts_with("/proc") {
        bail!("invalid mount {:?}: nothing may be mounted over or under /proc", spec);
    }
    Ok(())
}

fn parse_tmpfs(t: &str) -> Result<(String, String)> {
    let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
    if !dst.starts_with('/') {
        bail!("invalid tmpfs {:?}: the path must be absolute", t);
    }
    refuse_proc_destination(dst, t)?;
    Ok((dst.to_string(), opts.to_string()))
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf for the container.
fn etc_files(hostname: &str) -> Vec<(String, String)> {
    let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n", hostname);
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    vec![
        ("/etc/hostname".into(), format!("{}\n", hostname)),
        ("/etc/hosts".into(), hosts),
        ("/etc/resolv.conf".into(), resolv),
    ]
}
