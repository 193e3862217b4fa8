//! `husk volume create|ls|inspect|rm|prune`, and the parsing of `-v` and `--mount`.
use super::images::print_table;
use super::{Ctx, Format};
use crate::container::volume::{self, validate_name, MountRequest, Volume};
use crate::util::human_size;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::BufRead;

/// Manage volumes
#[derive(clap::Subcommand, Debug)]
pub enum VolumeCmd {
    Create(CreateArgs),
    Ls(LsArgs),
    Inspect(InspectArgs),
    Rm(RmArgs),
    Prune(PruneArgs),
}

/// Create a volume (prints its name)
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Name of the volume (default: 64 random hex digits)
    pub name: Option<String>,
}

/// List volumes
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only show volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Show volumes as JSON
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Remove volumes
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Remove volumes even if containers use them; names that do not exist are no error
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Remove unused anonymous volumes (all unused volumes with -a)
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, named ones too
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(a) => create(ctx, a),
        VolumeCmd::Ls(a) => ls(ctx, a),
        VolumeCmd::Inspect(a) => inspect(ctx, a),
        VolumeCmd::Rm(a) => rm(ctx, a),
        VolumeCmd::Prune(a) => prune(ctx, a),
    }
}

fn create(ctx: &Ctx, args: CreateArgs) -> Result<i32> {
    let store = ctx.store()?;
    let name = match args.name {
        Some(n) => n,
        None => volume::random_name()?,
    };
    validate_name(&name)?;
    let _l = volume::lock_shared(&store)?;
    volume::create(&store, &name, false)?;
    println!("{}", name);
    Ok(0)
}

fn describe(v: &Volume) -> serde_json::Value {
    let mut labels = v.meta.labels.clone();
    if v.meta.anonymous {
        labels.insert("com.docker.volume.anonymous".into(), String::new());
    }
    json!({
        "CreatedAt": v.meta.created,
        "Driver": "local",
        "Labels": labels,
        "Mountpoint": v.data(),
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    })
}

fn ls(ctx: &Ctx, args: LsArgs) -> Result<i32> {
    let store = ctx.store()?;
    let volumes = volume::list(&store)?;
    if args.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
    } else if args.format == Format::Json {
        let rows: Vec<_> = volumes.iter().map(describe).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut rows = vec![["DRIVER".to_string(), "VOLUME NAME".to_string()]];
        rows.extend(volumes.iter().map(|v| ["local".to_string(), v.name.clone()]));
        print_table(&rows);
    }
    Ok(0)
}

fn inspect(ctx: &Ctx, args: InspectArgs) -> Result<i32> {
    let store = ctx.store()?;
    super::inspect_each(&args.names, |n| Ok(describe(&volume::load(&store, n)?)))
}

fn rm(ctx: &Ctx, args: RmArgs) -> Result<i32> {
    let store = ctx.store()?;
    let _l = volume::lock_exclusive(&store)?;
    let users = volume::users(&store)?;
    let mut in_user_namespace = false;
    let code = super::each(&args.names, |name| {
        if args.force && volume::load(&store, name).is_err() {
            return Ok(());
        }
        let removed = volume::take_out(&store, name, &users, args.force)?;
        volume::delete_all(&[removed], &mut in_user_namespace)
    })?;
    volume::remove_leftovers(&store);
    Ok(code)
}

fn confirm(all: bool) -> bool {
    eprintln!(
        "WARNING! This will remove {} not used by at least one container.",
        if all { "all volumes" } else { "anonymous volumes" }
    );
    eprint!("Are you sure you want to continue? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn prune(ctx: &Ctx, args: PruneArgs) -> Result<i32> {
    if !args.force && !confirm(args.all) {
        return Ok(0);
    }
    let store = ctx.store()?;
    let _l = volume::lock_exclusive(&store)?;
    crate::container::remove_leftovers(&store, false);
    let users = volume::users(&store)?;
    let mut removed = Vec::new();
    let mut bytes = 0;
    for v in volume::list(&store)? {
        if users.contains_key(&v.name) || !(args.all || v.meta.anonymous) {
            continue;
        }
        bytes += volume::size(&v);
        removed.push(volume::take_out(&store, &v.name, &users, false)?);
    }
    let mut in_user_namespace = false;
    volume::delete_all(&removed, &mut in_user_namespace)?;
    volume::remove_leftovers(&store);
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for r in &removed {
            println!("{}", r.name);
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(0)
}

// ---------------------------------------------------------------------------
// -v and --mount
// ---------------------------------------------------------------------------

/// The mounts asked for with `-v` and `--mount`; a duplicate destination is refused.
pub fn parse_flags(volumes: &[String], mounts: &[String], tmpfs_targets: &[String]) -> Result<Vec<MountRequest>> {
    let mut out = Vec::new();
    for v in volumes {
        out.push(parse_volume(v)?);
    }
    for m in mounts {
        out.push(parse_mount(m)?);
    }
    let mut seen: Vec<String> =
        tmpfs_targets.iter().map(|t| volume::clean_path(t.split(':').next().unwrap_or(t))).collect();
    for r in &out {
        let clean = volume::clean_path(r.target());
        if seen.contains(&clean) {
            bail!("duplicate mount point: {}", clean);
        }
        seen.push(clean);
    }
    Ok(out)
}

fn check_target(target: &str, spec: &str) -> Result<()> {
    if !target.starts_with('/') {
        bail!("invalid mount {:?}: the container path {:?} must be absolute", spec, target);
    }
    if volume::clean_path(target) == "/" {
        bail!("invalid mount {:?}: the container path cannot be /", spec);
    }
    super::run::refuse_proc_destination(target, spec)
}

fn bind_source(src: &str, spec: &str) -> Result<String> {
    if !src.starts_with('/') {
        bail!("invalid mount {:?}: the bind source {:?} must be an absolute path", spec, src);
    }
    let canonical = std::fs::canonicalize(src).with_context(|| format!("bind source path {}", src))?;
    Ok(canonical.to_string_lossy().into_owned())
}

/// `-v`: `/CTR` (anonymous volume), `NAME:/CTR[:OPTS]` (named volume) or
/// `/HOST:/CTR[:OPTS]` (bind); OPTS is a comma-separated list of ro, rw, nocopy.
pub fn parse_volume(v: &str) -> Result<MountRequest> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [s, d] => (Some(*s), *d, ""),
        [s, d, o] => (Some(*s), *d, *o),
        _ => bail!("invalid volume {:?}: expected [SOURCE:]CONTAINER[:OPTIONS]", v),
    };
    let (mut readonly, mut nocopy) = (false, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "nocopy" => nocopy = true,
            _ => bail!("invalid volume {:?}: unknown option {:?} (ro, rw, nocopy)", v, o),
        }
    }
    check_target(dst, v)?;
    let target = dst.to_string();
    match src {
        None => Ok(MountRequest::Volume { name: None, target, readonly, nocopy }),
        Some(s) if s.starts_with('/') => {
            if nocopy {
                bail!("invalid volume {:?}: nocopy applies to volumes, not to bind mounts", v);
            }
            Ok(MountRequest::Bind { source: bind_source(s, v)?, target, readonly })
        }
        Some(s) => {
            validate_name(s).with_context(|| format!("invalid volume {:?}", v))?;
            Ok(MountRequest::Volume { name: Some(s.to_string()), target, readonly, nocopy })
        }
    }
}

fn parse_bool(v: Option<&str>, key: &str, spec: &str) -> Result<bool> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => bail!("invalid --mount {:?}: {}={:?} is not a boolean", spec, key, other),
    }
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly]` with Docker's key names.
pub fn parse_mount(spec: &str) -> Result<MountRequest> {
    let (mut typ, mut source, mut target) = ("volume".to_string(), None::<String>, None::<String>);
    let (mut readonly, mut nocopy) = (false, false);
    let mut tmpfs_opts: Vec<String> = Vec::new();
    let mut volume_only = None;
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let value = || v.with_context(|| format!("invalid --mount {:?}: {} needs a value", spec, k));
        match k.as_str() {
            "type" => typ = value()?.to_string(),
            "source" | "src" => source = Some(value()?.to_string()),
            "target" | "destination" | "dst" => target = Some(value()?.to_string()),
            "readonly" | "ro" => readonly = parse_bool(v, &k, spec)?,
            "volume-nocopy" => {
                nocopy = parse_bool(v, &k, spec)?;
                volume_only = Some(k.clone());
            }
            "tmpfs-size" => tmpfs_opts.push(format!("size={}", value()?)),
            "tmpfs-mode" => {
                let m = value()?;
                u32::from_str_radix(m, 8)
                    .map_err(|_| anyhow::anyhow!("invalid --mount {:?}: tmpfs-mode {:?} is not octal", spec, m))?;
                tmpfs_opts.push(format!("mode={}", m));
            }
            _ => bail!("invalid --mount {:?}: unknown option {:?}", spec, k),
        }
    }
    let target = target.with_context(|| format!("invalid --mount {:?}: target is required", spec))?;
    check_target(&target, spec)?;
    if typ != "tmpfs" && !tmpfs_opts.is_empty() {
        bail!("invalid --mount {:?}: tmpfs options apply only to type=tmpfs", spec);
    }
    if typ != "volume" {
        if let Some(k) = volume_only {
            bail!("invalid --mount {:?}: {} applies only to type=volume", spec, k);
        }
    }
    match typ.as_str() {
        "bind" => {
            let s =
                source.with_context(|| format!("invalid --mount {:?}: source is required for a bind mount", spec))?;
            Ok(MountRequest::Bind { source: bind_source(&s, spec)?, target, readonly })
        }
        "volume" => {
            if let Some(s) = &source {
                validate_name(s).with_context(|| format!("invalid --mount {:?}", spec))?;
            }
            Ok(MountRequest::Volume { name: source, target, readonly, nocopy })
        }
        "tmpfs" => {
            if source.is_some() {
                bail!("invalid --mount {:?}: a tmpfs takes no source", spec);
            }
            if readonly {
                tmpfs_opts.push("ro".into());
            }
            Ok(MountRequest::Tmpfs { target, options: tmpfs_opts.join(",") })
        }
        other => bail!("invalid --mount {:?}: type {:?} is not bind, volume or tmpfs", spec, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: Option<&str>, target: &str, readonly: bool) -> MountRequest {
        MountRequest::Volume { name: name.map(String::from), target: target.into(), readonly, nocopy: false }
    }

    #[test]
    fn volume_flags() {
        assert_eq!(parse_volume("/data").unwrap(), vol(None, "/data", false));
        assert_eq!(parse_volume("db:/data:ro").unwrap(), vol(Some("db"), "/data", true));
        assert_eq!(
            parse_volume("/:/host:ro").unwrap(),
            MountRequest::Bind { source: "/".into(), target: "/host".into(), readonly: true }
        );
        for bad in ["data", "x:/d", "db:data", "db:/d:rx", "db:/", "db:/proc/x", "a:b:c:d", "/nonexistent-husk:/d"] {
            assert!(parse_volume(bad).is_err(), "{}", bad);
        }
    }

    #[test]
    fn mount_flags() {
        assert_eq!(parse_mount("type=volume,src=db,dst=/d,readonly").unwrap(), vol(Some("db"), "/d", true));
        assert_eq!(parse_mount("target=/d").unwrap(), vol(None, "/d", false));
        assert_eq!(parse_mount("type=volume,source=db,destination=/d,ro=false").unwrap(), vol(Some("db"), "/d", false));
        assert_eq!(
            parse_mount("type=bind,source=/,target=/h,ro").unwrap(),
            MountRequest::Bind { source: "/".into(), target: "/h".into(), readonly: true }
        );
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777").unwrap(),
            MountRequest::Tmpfs { target: "/t".into(), options: "size=1m,mode=1777".into() }
        );
        for bad in [
            "type=bind,target=/d",
            "type=bind,source=rel,target=/d",
            "type=nfs,target=/d",
            "source=db",
            "type=volume,source=a/b,target=/d",
            "type=tmpfs,source=x,target=/t",
            "type=volume,target=/d,tmpfs-size=1m",
            "type=bind,source=/,target=/d,volume-nocopy",
            "type=volume,target=/d,colour=blue",
            "type=volume,target=/d,readonly=maybe",
            "type=tmpfs,target=/t,tmpfs-mode=9",
        ] {
            assert!(parse_mount(bad).is_err(), "{}", bad);
        }
    }

    #[test]
    fn duplicate_destinations_are_refused() {
        assert!(parse_flags(&["a1:/d".into()], &["target=/d/".into()], &[]).is_err());
        assert!(parse_flags(&["a1:/d".into()], &[], &["/d".into()]).is_err());
        assert!(parse_flags(&["a1:/d".into(), "/e".into()], &[], &[]).is_ok());
    }
}
