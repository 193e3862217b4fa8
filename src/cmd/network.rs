//! `husk network create|ls|inspect|rm`.
use super::images::print_table;
use super::{Ctx, Format};
use crate::container::netdef::{self, Network, NewNetwork, Subnet};
use crate::layers::store::Store;
use anyhow::{bail, Result};
use serde_json::json;
use std::net::Ipv4Addr;

/// Manage user-defined networks
#[derive(clap::Subcommand, Debug)]
pub enum NetworkCmd {
    Create(CreateArgs),
    Ls(LsArgs),
    Inspect(InspectArgs),
    Rm(RmArgs),
}

/// Create a network (prints its id); containers on it reach each other by name
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Driver (only bridge)
    #[arg(short, long, default_value = "bridge", value_parser = ["bridge"])]
    pub driver: String,
    /// IPv4 subnet, e.g. 10.90.0.0/24 (default: the first free /24 of 10.89.0.0/16)
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Gateway address (default: the subnet's first address)
    #[arg(long, value_name = "IP")]
    pub gateway: Option<Ipv4Addr>,
    /// No outbound connectivity: only the network's containers can be reached
    #[arg(long)]
    pub internal: bool,
    /// Option: allow_host_loopback=true makes the host's loopback reachable as
    /// host.containers.internal (outbound goes through pasta)
    #[arg(short, long = "opt", value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    pub name: String,
}

/// List networks
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub list: super::ListFlags,
}

/// Show networks as JSON, with their containers and addresses
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Names or ids
    #[arg(required = true)]
    pub networks: Vec<String>,
}

/// Remove networks
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Remove networks even if containers use them; names that do not exist are no error
    #[arg(short, long)]
    pub force: bool,
    /// Names or ids
    #[arg(required = true)]
    pub networks: Vec<String>,
}

pub fn run(ctx: &Ctx, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(ctx, a),
        NetworkCmd::Ls(a) => ls(ctx, a),
        NetworkCmd::Inspect(a) => inspect(ctx, a),
        NetworkCmd::Rm(a) => rm(ctx, a),
    }
}

fn create(ctx: &Ctx, args: CreateArgs) -> Result<i32> {
    let subnet = args.subnet.as_deref().map(Subnet::parse).transpose()?;
    if args.gateway.is_some() && subnet.is_none() {
        bail!("--gateway needs --subnet");
    }
    let mut host_loopback = false;
    for o in &args.opt {
        host_loopback = match o.as_str() {
            "allow_host_loopback=true" => true,
            "allow_host_loopback=false" => false,
            _ => bail!("unknown network option {:?} (allow_host_loopback=true|false)", o),
        };
    }
    let store = ctx.store()?;
    let new = NewNetwork { name: &args.name, subnet, gateway: args.gateway, internal: args.internal, host_loopback };
    let network = netdef::create(&store, new)?;
    println!("{}", network.id);
    Ok(0)
}

/// Docker's shape of a network, with the containers running on it.
fn describe(store: &Store, n: &Network) -> Result<serde_json::Value> {
    let mut containers = serde_json::Map::new();
    for c in crate::container::all(store)? {
        let on_it = crate::container::usernet::network_of(&c).as_deref() == Some(n.name.as_str());
        if let (true, true, Some(ep)) = (on_it, c.is_up() && c.live_pid().is_some(), &c.state.endpoint) {
            containers.insert(
                c.state.id.clone(),
                json!({
                    "Name": c.state.name,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.address, ep.prefix),
                    "IPv6Address": "",
                }),
            );
        }
    }
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{ "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string() }],
        },
        "Internal": n.internal,
        "Containers": containers,
        "Options": if n.host_loopback { json!({"allow_host_loopback": "true"}) } else { json!({}) },
        "Labels": {},
    }))
}

fn ls(ctx: &Ctx, args: LsArgs) -> Result<i32> {
    let args = args.list;
    let store = ctx.store()?;
    let networks = netdef::list(&store)?;
    let id = |n: &Network| if args.no_trunc { n.id.clone() } else { n.id[..12].to_string() };
    if args.quiet {
        for n in &networks {
            println!("{}", id(n));
        }
    } else if args.format == Format::Json {
        let rows = networks.iter().map(|n| describe(&store, n)).collect::<Result<Vec<_>>>()?;
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut rows = vec![["NETWORK ID", "NAME", "DRIVER", "SUBNET"].map(String::from)];
        rows.extend(networks.iter().map(|n| [id(n), n.name.clone(), "bridge".into(), n.subnet.to_string()]));
        print_table(&rows);
    }
    Ok(0)
}

fn inspect(ctx: &Ctx, args: InspectArgs) -> Result<i32> {
    let store = ctx.store()?;
    super::inspect_each(&args.networks, |what| describe(&store, &netdef::find(&store, what)?))
}

fn rm(ctx: &Ctx, args: RmArgs) -> Result<i32> {
    let store = ctx.store()?;
    super::each(&args.networks, |what| {
        let network = match netdef::find(&store, what) {
            Err(_) if args.force => return Ok(()),
            found => found?,
        };
        netdef::remove(&store, &network.name, args.force)
    })
}
