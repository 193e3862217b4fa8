use super::Ctx;
use crate::container::Container;
use anyhow::Result;
use serde_json::json;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Output format (only json)
    #[arg(short, long, default_value = "json", value_parser = ["json"])]
    pub format: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(ctx: &Ctx, args: InspectArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut out = Vec::new();
    for name in &args.containers {
        let c = Container::find(&store, name)?;
        let mut j = describe(&c)?;
        j["NetworkSettings"]["Networks"] = networks(&store, &c);
        out.push(j);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

fn describe(c: &Container) -> Result<serde_json::Value> {
    let s = &c.state;
    let spec = c.spec().ok();
    let process = spec.as_ref().and_then(|sp| sp.process().clone());
    let mounts: Vec<serde_json::Value> = spec
        .as_ref()
        .and_then(|sp| sp.mounts().clone())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind") && m.destination().to_str() != Some("/sys"))
        .map(|m| {
            let opts = m.options().clone().unwrap_or_default();
            let volume = s.volumes.iter().find(|v| Some(Path::new(&v.destination)) == Some(m.destination().as_path()));
            let mut j = json!({
                "Type": if volume.is_some() { "volume" } else { "bind" },
                "Source": m.source(),
                "Destination": m.destination(),
                "RW": !opts.iter().any(|o| o == "ro"),
            });
            if let Some(v) = volume {
                j["Name"] = json!(v.name);
                j["Driver"] = json!("local");
            }
            j
        })
        .collect();
    let up = c.is_up() && c.live_pid().is_some();
    let zero = "0001-01-01T00:00:00Z".to_string();
    Ok(json!({
        "Id": s.id,
        "Created": s.created,
        "Path": s.command.first(),
        "Args": s.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": s.status,
            "Running": up && s.status == "running",
            "Paused": s.status == "paused",
            "Pid": if up { s.pid.map(|p| p.pid).unwrap_or(0) } else { 0 },
            "ExitCode": s.exit_code.unwrap_or(0),
            "StartedAt": s.started_at.clone().unwrap_or_else(|| zero.clone()),
            "FinishedAt": s.finished_at.clone().unwrap_or(zero),
        },
        "Image": s.image_id,
        "Name": format!("/{}", s.name),
        "Config": {
            "Hostname": spec.as_ref().and_then(|sp| sp.hostname().clone()),
            "User": process.as_ref().map(|p| format!("{}:{}", p.user().uid(), p.user().gid())),
            "Env": process.as_ref().and_then(|p| p.env().clone()),
            "Cmd": s.command,
            "Image": s.image,
            "WorkingDir": process.as_ref().map(|p| p.cwd().clone()),
            "Tty": s.settings.tty,
            "OpenStdin": s.settings.interactive,
            "StopSignal": s.settings.stop_signal,
        },
        "Mounts": mounts,
        "NetworkSettings": { "Ports": crate::container::network::ports_json(&s.settings.ports) },
        "HostConfig": {
            "AutoRemove": s.settings.auto_remove,
            "NetworkMode": crate::container::launch::network_name(&s.settings),
            "PortBindings": crate::container::network::ports_json(&s.settings.ports),
            "Init": s.settings.init,
            "ReadonlyRootfs": spec.as_ref().and_then(|sp| sp.root().as_ref().and_then(|r| r.readonly())).unwrap_or(false),
            "CapAdd": serde_json::Value::Null,
            "CgroupParent": s.settings.cgroup_parent,
            "Resources": s.settings.limits.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": { "UpperDir": c.dir.join("upper"), "WorkDir": c.dir.join("work") },
        },
    }))
}

/// NetworkSettings.Networks: the user-defined network, with the container's address
/// while it runs (empty otherwise, as Docker's).
fn networks(store: &crate::layers::store::Store, c: &Container) -> serde_json::Value {
    let Some(name) = crate::container::usernet::network_of(c) else { return json!({}) };
    let id = crate::container::netdef::load(store, &name).map(|n| n.id).unwrap_or_default();
    let ep = c.state.endpoint.as_ref().filter(|_| c.is_up() && c.live_pid().is_some());
    json!({ name: {
        "NetworkID": id,
        "IPAddress": ep.map(|e| e.address.to_string()).unwrap_or_default(),
        "IPPrefixLen": ep.map(|e| e.prefix).unwrap_or(0),
        "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
        "Aliases": [c.state.name.clone(), c.short_id()],
    }})
}
