use super::{Ctx, Format};
use crate::container::{self, State};
use crate::util::{human_ago, parse_rfc3339};
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: only running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Only print container ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate ids and commands
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: status=created|running|paused|exited, name=NAME, id=PREFIX, network=NAME
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: PsArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut filters = Vec::new();
    for f in &args.filter {
        match f.split_once('=') {
            Some((k @ ("status" | "name" | "id" | "network"), v)) => filters.push((k.to_string(), v.to_string())),
            _ => bail!("invalid filter {:?}: expected status=…, name=…, id=… or network=…", f),
        }
    }
    let mut states: Vec<State> = Vec::new();
    for mut c in container::all(&store)? {
        if c.is_up() && !c.state.monitor.map(|m| container::process::is_alive(&m)).unwrap_or(false) {
            c.reap_if_orphaned()?;
            if !c.dir.is_dir() {
                continue; // removed meanwhile
            }
        }
        states.push(c.state);
    }
    states.retain(|s| {
        let explicit_status = filters.iter().any(|(k, _)| k == "status");
        (args.all || explicit_status || s.status == "running" || s.status == "paused")
            && filters.iter().all(|(k, v)| match k.as_str() {
                "status" => &s.status == v,
                "name" => s.name.contains(v.as_str()),
                "network" => crate::container::launch::network_name(&s.settings) == *v,
                _ => s.id.starts_with(v.as_str()),
            })
    });
    states.sort_by(|a, b| b.created.cmp(&a.created));
    if args.quiet {
        for s in &states {
            println!("{}", if args.no_trunc { &s.id[..] } else { &s.id[..12] });
        }
        return Ok(0);
    }
    if args.format == Format::Json {
        let rows: Vec<serde_json::Value> = states.iter().map(json_row).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let rows: Vec<[String; 7]> = states
        .iter()
        .map(|s| {
            let id = if args.no_trunc { s.id.clone() } else { s.id[..12].to_string() };
            let mut command = format!("\"{}\"", s.command.join(" "));
            if !args.no_trunc && command.chars().count() > 22 {
                command = format!("{}…\"", command.chars().take(20).collect::<String>());
            }
            let ports = crate::container::network::ports_column(&s.settings.ports);
            [id, s.image.clone(), command, created(s), status_text(s), ports, s.name.clone()]
        })
        .collect();
    let headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"];
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&headers.map(String::from));
    for r in &rows {
        line(r);
    }
    Ok(0)
}

fn created(s: &State) -> String {
    parse_rfc3339(&s.created).map(human_ago).unwrap_or_default()
}

/// "Up 3 seconds", "Exited (0) 2 minutes ago", "Up 5 seconds (Paused)", "Created".
pub fn status_text(s: &State) -> String {
    let since = |t: &Option<String>| t.as_deref().and_then(parse_rfc3339).map(human_ago).unwrap_or_default();
    match s.status.as_str() {
        "running" => format!("Up {}", since(&s.started_at).trim_end_matches(" ago")),
        "paused" => format!("Up {} (Paused)", since(&s.started_at).trim_end_matches(" ago")),
        "exited" => format!("Exited ({}) {}", s.exit_code.unwrap_or(0), since(&s.finished_at)),
        _ => "Created".into(),
    }
}

fn json_row(s: &State) -> serde_json::Value {
    serde_json::json!({
        "Id": s.id,
        "Names": [s.name],
        "Image": s.image,
        "ImageID": s.image_id,
        "Command": s.command,
        "Created": s.created,
        "State": s.status,
        "Status": status_text(s),
        "ExitCode": s.exit_code,
        "Pid": s.pid.map(|p| p.pid).unwrap_or(0),
        "Ports": crate::container::network::ports_column(&s.settings.ports),
        "Networks": [crate::container::launch::network_name(&s.settings)],
        "IPAddress": s.endpoint.as_ref().filter(|_| s.status == "running" || s.status == "paused").map(|e| e.address.to_string()),
    })
}
