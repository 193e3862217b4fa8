use super::images::print_table;
use super::Ctx;
use crate::layers::gc::collect;
use crate::layers::images::{forget_manifest, list};
use crate::util::human_size;
use anyhow::Result;
use std::collections::HashSet;
use std::io::BufRead;

/// Manage husk's storage
#[derive(clap::Subcommand, Debug)]
pub enum SystemCmd {
    /// Show disk usage
    Df,
    /// Remove unused data
    Prune(PruneArgs),
    /// Show husk's configuration
    Info,
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, cmd: SystemCmd) -> Result<i32> {
    match cmd {
        SystemCmd::Df => df(ctx),
        SystemCmd::Prune(a) => prune(ctx, a),
        SystemCmd::Info => super::info::run(ctx),
    }
}

fn df(ctx: &Ctx) -> Result<i32> {
    let store = ctx.store()?;
    let images = list(&store)?;
    let mut seen = HashSet::new();
    let mut size = 0;
    for img in &images {
        for c in &img.chain_ids {
            if seen.insert(c.clone()) {
                size += store.layer_info(c).map(|l| l.size).unwrap_or(0);
            }
        }
    }
    let reclaim = if size == 0 { "0B".to_string() } else { format!("{} (100%)", human_size(size)) };
    let zero = || ["0".to_string(), "0".into(), "0B".into(), "0B".into()];
    let row = |name: &str, v: [String; 4]| [name.to_string(), v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()];
    print_table(&[
        ["TYPE".to_string(), "TOTAL".into(), "ACTIVE".into(), "SIZE".into(), "RECLAIMABLE".into()],
        row("Images", [images.len().to_string(), "0".into(), human_size(size), reclaim]),
        row("Containers", zero()),
        row("Local Volumes", zero()),
        row("Build Cache", zero()),
    ]);
    Ok(0)
}

fn confirm(all: bool) -> bool {
    eprintln!("WARNING! This will remove:");
    eprintln!(
        "  - {}",
        if all { "all images without at least one container associated to them" } else { "all dangling images" }
    );
    eprintln!("  - leftovers of interrupted husk commands");
    eprint!("Are you sure you want to continue? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn prune(ctx: &Ctx, args: PruneArgs) -> Result<i32> {
    if !args.force && !confirm(args.all) {
        return Ok(0);
    }
    crate::ns::userns::enter_user_namespace()?;
    let store = ctx.store()?;
    let _gc = store.lock_gc()?;
    store.clean_tmp()?;
    for img in list(&store)? {
        if args.all || img.names.is_empty() {
            forget_manifest(&store, &img.manifest_digest)?;
            println!("Deleted: {}", img.id());
        }
    }
    let tmp = store.tmp_area()?;
    let stats = collect(&store, &tmp)?;
    println!("Total reclaimed space: {}", human_size(stats.bytes));
    Ok(0)
}
