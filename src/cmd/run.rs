use super::Ctx;
use crate::container::network::{choose, find_tool, NetworkMode, PortMapping};
use crate::container::spec::{build, set_env, SpecInput};
use crate::container::user::{read_image_file, resolve as resolve_user};
use crate::container::{launch, Container, NewContainer, Settings};
use crate::fetch::manifest::PlatformSpec;
use crate::fetch::pull::{pull, PullOptions};
use crate::fetch::reference::Reference;
use crate::layers::images::{resolve, ImageRecord};
use crate::layers::store::Store;
use crate::ns::idmap::IdMapping;
use crate::ns::userns::{begin_user_namespace, PendingUserNamespace};
use crate::util::trace;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

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
    /// Bind-mount a host path or mount a volume: [HOST-PATH|VOLUME:]CONTAINER[:ro]
    #[arg(short = 'v', long = "volume", value_name = "[SOURCE:]CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=…,target=…[,readonly]
    #[arg(long = "mount", value_name = "type=…,source=…,target=…")]
    pub mounts: Vec<String>,
    /// Network: pasta or slirp4netns (own namespace with outbound connectivity; add
    /// :allow_host_loopback=true to reach the host's loopback as
    /// host.containers.internal), none (only loopback), host (share the host's), or the
    /// name of a network made with `husk network create` (containers on it reach each
    /// other by name). Default: pasta when installed, else slirp4netns, else none with a
    /// warning (also when /dev/net/tun cannot be opened)
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Publish a container port: [HOSTIP:][HOSTPORT:]PORT[/tcp|/udp] (a free host port
    /// when left out; needs --network pasta or slirp4netns)
    #[arg(short = 'p', long = "publish", value_name = "[HOSTIP:][HOSTPORT:]PORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Add a capability (or ALL)
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL)
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Security options: seccomp=unconfined, seccomp=PROFILE.json (Docker's format),
    /// no-new-privileges
    #[arg(long, value_name = "OPTION")]
    pub security_opt: Vec<String>,
    /// All capabilities the user namespace allows, no seccomp filter, no masked paths
    #[arg(long)]
    pub privileged: bool,
    /// When to pull the image
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Platform to pull (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Do not print pull progress
    #[arg(short, long)]
    pub quiet: bool,
    /// Run in the background under its own monitor and print the container id
    #[arg(short, long)]
    pub detach: bool,
    /// Memory limit (e.g. 512m, 1g)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap)
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Cgroup (relative to the cgroup2 mount) to create the container's cgroup under
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Image to run
    pub image: String,
    /// Command and arguments (default: the image's entrypoint and command)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// For `run` and `create`, the user namespace is begun before the command line is
/// parsed: the setuid map tools take milliseconds, and clap's own work then overlaps
/// with them. Only the plain shapes (`husk [--root DIR] run|create …`) qualify, and
/// not with a user-defined network (its containers' user namespace is made inside the
/// network's); on any doubt, or if it fails, `create` begins it later as for any
/// command (and reports the error then).
pub fn early_user_namespace(argv: &[OsString]) -> Option<PendingUserNamespace> {
    let mut rest = argv.iter().skip(1).map(|a| a.to_str());
    let verb = loop {
        match rest.next()? {
            Some("--root") => {
                rest.next()?;
            }
            Some(a) if a.starts_with("--root=") => {}
            other => break other?,
        }
    };
    let wants_help = argv.iter().any(|a| a == "--help");
    if !matches!(verb, "run" | "create") || wants_help || names_a_network(argv) {
        return None;
    }
    begin_user_namespace().ok()
}

/// Whether any word could give --network a user-defined network (words of the
/// container's command count too: a false yes only costs the early start).
fn names_a_network(argv: &[OsString]) -> bool {
    let words: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap_or("")).collect();
    let values = words.iter().enumerate().filter_map(|(i, w)| match w.strip_prefix("--network") {
        Some("") => Some(words.get(i + 1).copied().unwrap_or("")),
        Some(v) => v.strip_prefix('='),
        None => None,
    });
    let builtin = |v: &str| matches!(v.split(':').next(), Some("" | "host" | "none" | "pasta" | "slirp4netns"));
    values.into_iter().any(|v| !builtin(v))
}

pub fn run(ctx: &Ctx, args: RunArgs) -> Result<i32> {
    // "created" until the process runs: a "running" container without a live monitor
    // would be taken for an orphan.
    let (store, container, spec, userns) = create(ctx, &args, "created", true)?;
    if args.detach {
        let id = container.state.id.clone();
        let code = launch::detached(&store, container, &spec, userns)?;
        if code == 0 {
            println!("{}", id);
        }
        return Ok(code);
    }
    launch::foreground(&store, container, &spec, userns)
}

/// Makes the container (pulling the image if needed) with its config and state on disk.
/// The user namespace is still being set up when this returns (unless a pull needed it);
/// with `starting`, it is the one to start the container from (on a user-defined
/// network, nested in the network's).
pub fn create(
    ctx: &Ctx,
    args: &RunArgs,
    status: &str,
    starting: bool,
) -> Result<(Store, Container, Spec, Option<PendingUserNamespace>)> {
    let platform = args.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let mount_requests = super::volume::parse_flags(&args.volumes, &args.mounts, &args.tmpfs)?;
    let mut tmpfs = args.tmpfs.iter().map(|t| parse_tmpfs(t)).collect::<Result<Vec<_>>>()?;
    let capabilities = match args.privileged {
        true => crate::ns::caps::privileged(&args.cap_drop)?,
        false => crate::ns::caps::resolve(&args.cap_add, &args.cap_drop)?,
    };
    let env_extra = env_from_flags(&args.env, &args.env_file)?;
    if let Some(n) = &args.name {
        crate::container::validate_name(n)?;
    }
    let choice = choose(args.network.as_deref())?;
    let network = choice.mode.clone();
    if let NetworkMode::Tool { tool, .. } = network {
        find_tool(tool)?;
    } else if let (false, Some(why)) = (args.publish.is_empty(), &choice.fallback) {
        bail!("-p/--publish needs --network pasta or slirp4netns, and the default fell back to none: {}", why);
    } else if !args.publish.is_empty() {
        bail!("-p/--publish needs --network pasta or slirp4netns: with --network {} there is nothing to publish a port through", network.name());
    }
    if let Some(w) = choice.warning() {
        eprintln!("{}", w);
    }
    let ports = args.publish.iter().map(|p| PortMapping::parse(p)).collect::<Result<Vec<_>>>()?;
    let limits = limit_flags(args);
    crate::container::limits::check(&limits, args.cgroup_parent.as_deref())?;

    trace("arguments parsed");
    // The setuid map tools take a few milliseconds: prepare the container meanwhile
    // when the image is already here; a pull needs the mapping to extract layers.
    // (`early_user_namespace` begins none when the command line names a network.)
    let userns = match &network {
        NetworkMode::Named(n) if starting => crate::container::usernet::begin_user_namespace(&ctx.store()?, Some(n))?,
        NetworkMode::Named(n) => {
            crate::container::netdef::load(&ctx.store()?, n)?; // before any pull
            ctx.begin_user_namespace()?
        }
        _ => ctx.begin_user_namespace()?,
    };
    let security = crate::container::security::from_flags(&args.security_opt, args.privileged, &capabilities)?;
    let ids = userns.mapping().clone();
    let store = ctx.store()?;
    let (image, mut userns) = match local_image(&store, args)? {
        Some(image) => (image, Some(userns)),
        None => {
            let ids = userns.finish()?;
            (pull_image(&store, &ids, args, platform)?, None)
        }
    };
    trace("image resolved");

    let networks_lock = crate::container::usernet::check_exists(&store, &network)?;
    let writers = store.lock_writers()?;
    if let Some(layer) = image.missing_layer(&store) {
        bail!("image {} was removed while the container was being made (its layer {} is gone)", args.image, layer);
    }
    let layers_top_first: Vec<PathBuf> =
        image.chain_ids.iter().rev().map(|c| store.layer_diff(c)).collect::<Result<_>>()?;
    let cfg = image.config.config().clone().unwrap_or_default();
    let command = command_line(args, &cfg)?;
    // Volumes: made (and filled from the image, as husk's namespace root so that the
    // image's owners are kept) before the container that records them.
    let image_volumes = cfg.volumes().clone().unwrap_or_default();
    let volumes_lock = crate::container::volume::lock_if_used(&store, &mount_requests, &image_volumes)?;
    let mounts = crate::container::volume::prepare(&store, mount_requests, &tmpfs, &image_volumes, &layers_top_first)?;
    if mounts.needs_fill() {
        if let Some(u) = userns.take() {
            u.finish()?;
        }
        mounts.fill(&layers_top_first)?;
    }
    tmpfs.extend(mounts.tmpfs.iter().cloned());
    let binds = mounts.binds.clone();
    let settings = Settings {
        auto_remove: args.rm,
        tty: args.tty,
        interactive: args.interactive,
        init: args.init,
        own_network: network.own_namespace(),
        network: recorded_mode(args.network.as_deref(), &network),
        ports,
        stop_signal: cfg.stop_signal().clone(),
        cgroup_parent: args.cgroup_parent.clone(),
        limits,
    };
    let created = Container::create(
        &store,
        NewContainer {
            name: args.name.as_deref(),
            image: &args.image,
            image_id: image.id(),
            layers: image.chain_ids.clone(),
            command: command.clone(),
            status,
            settings,
            volumes: mounts.volumes.clone(),
            starting,
        },
        |container| {
            write_spec(
                &ids,
                args,
                &cfg,
                &layers_top_first,
                container,
                command,
                binds,
                tmpfs,
                capabilities,
                env_extra,
                security,
                network.own_namespace(),
            )
        },
    );
    drop(writers);
    drop(volumes_lock);
    drop(networks_lock);
    let (container, spec) = match created {
        Ok(c) => c,
        Err(e) => {
            if let Some(u) = userns {
                let _ = u.finish();
            }
            crate::container::volume::remove_anonymous(&store, &mounts.volumes, &mut true);
            return Err(e);
        }
    };
    trace("container created");
    Ok((store, container, spec, userns))
}

/// What the container's state keeps of its network: --network as given (options
/// included), or the mode the default chose.
fn recorded_mode(given: Option<&str>, chosen: &NetworkMode) -> String {
    given.map(str::to_string).unwrap_or_else(|| chosen.name().to_string())
}

fn limit_flags(args: &RunArgs) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let mut add = |k: &str, val: Option<String>| {
        if let Some(val) = val {
            v.push((k.to_string(), val));
        }
    };
    add("memory", args.memory.clone());
    add("memory-swap", args.memory_swap.clone());
    add("cpus", args.cpus.clone());
    add("cpu-shares", args.cpu_shares.map(|c| c.to_string()));
    add("pids-limit", args.pids_limit.map(|c| c.to_string()));
    v
}

#[allow(clippy::too_many_arguments)]
fn write_spec(
    ids: &IdMapping,
    args: &RunArgs,
    cfg: &oci_spec::image::Config,
    layers_top_first: &[PathBuf],
    container: &Container,
    command: Vec<String>,
    binds: Vec<(String, String, bool)>,
    tmpfs: Vec<(String, String)>,
    capabilities: Vec<String>,
    env_extra: Vec<String>,
    security: crate::container::security::Security,
    own_network: bool,
) -> Result<Spec> {
    let user_spec = args.user.clone().or_else(|| cfg.user().clone()).unwrap_or_default();
    let passwd = read_image_file(layers_top_first, "/etc/passwd")?;
    let group = read_image_file(layers_top_first, "/etc/group")?;
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
    if cwd.contains('\0') {
        bail!("the working directory {:?} contains a NUL byte; refused", cwd);
    }
    crate::ns::exec::check_limits(&command, &env)?;
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
        security,
    })?;
    crate::util::atomic_replace(&container.dir.join("config.json"), &serde_json::to_vec(&spec)?)?;
    Ok(spec)
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
    pull(store, ids, &reference, &PullOptions { platform, quiet: args.quiet })
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

/// The environment of `--env-file` files then `-e` flags, as run and exec take them.
pub(super) fn env_from_flags(env: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        out.extend(read_env_file(f)?);
    }
    out.extend(env.iter().filter_map(|e| expand_env(e)));
    Ok(out)
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

/// Nothing may be mounted over or under /proc, as in Docker.
pub(super) fn refuse_proc_destination(dst: &str, spec: &str) -> Result<()> {
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
