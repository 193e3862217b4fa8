use super::images::print_table;
use super::Ctx;
use crate::container::Container;
use crate::layers::gc::collect;
use crate::layers::images::{forget_manifest, list, ImageRecord};
use crate::layers::store::Store;
use crate::util::human_size;
use anyhow::Result;
use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

/// Manage husk's storage
#[derive(clap::Subcommand, Debug)]
pub enum SystemCmd {
    /// Show disk usage
    Df,
    /// Remove unused data
    Prune(PruneArgs),
    /// Show husk's configuration
    Info,
    /// Verify the store and find what interrupted commands left behind
    ///
    /// Hashes every blob, extracts every layer in use again from its blob and compares
    /// the files, checks that every image has its manifest, config and layers and that
    /// every container's state agrees with its files and with the processes that exist.
    /// Prints one line per problem: "damaged" (the store does not hold what it records)
    /// or "leftover" (what an interrupted command left: unused, and harmless). Exit
    /// status: 0 when the store is consistent, 1 when only leftovers were found, 2 when
    /// something is damaged. Safe to run beside other husk commands: it waits for pulls,
    /// builds and commits in progress and holds new ones back while it runs.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Remove leftovers and what is damaged beyond repair, extract damaged layers again
    /// from their blobs, mark containers whose monitor is gone as exited; then check
    /// again (exit status 0 when everything left is consistent)
    #[arg(long)]
    pub repair: bool,
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
        SystemCmd::Check(a) => check(ctx, a),
    }
}

fn df(ctx: &Ctx) -> Result<i32> {
    let store = ctx.store()?;
    let containers = crate::container::all(&store)?;
    if !containers.is_empty() {
        // A container's writable layer holds files of the ids of its image's users:
        // measured from inside the user namespace, where they are all readable.
        crate::ns::userns::enter_user_namespace()?;
    }
    let images = list(&store)?;
    let usage = Usage::measure(&store, &images, &containers);
    print_table(&[
        ["TYPE".to_string(), "TOTAL".into(), "ACTIVE".into(), "SIZE".into(), "RECLAIMABLE".into()],
        usage.images.row("Images"),
        usage.containers.row("Containers"),
        Row::default().row("Local Volumes"),
        Row::default().row("Build Cache"),
    ]);
    Ok(0)
}

/// One line of `system df`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Row {
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

impl Row {
    fn row(&self, name: &str) -> [String; 5] {
        let reclaim = if self.reclaimable == 0 {
            "0B".to_string()
        } else {
            format!("{} ({}%)", human_size(self.reclaimable), self.reclaimable * 100 / self.size.max(1))
        };
        [name.to_string(), self.total.to_string(), self.active.to_string(), human_size(self.size), reclaim]
    }
}

struct Usage {
    images: Row,
    containers: Row,
}

impl Usage {
    /// Images: each layer counted once; an image is active when a container was made
    /// from it, and what no container needs is reclaimable. Containers: their writable
    /// layers; those of containers that are not running are reclaimable.
    fn measure(store: &Store, images: &[ImageRecord], containers: &[Container]) -> Usage {
        let used_images: HashSet<&str> = containers.iter().map(|c| c.state.image_id.as_str()).collect();
        let kept_layers: HashSet<&str> =
            containers.iter().flat_map(|c| c.state.layers.iter().map(String::as_str)).collect();
        let mut seen = HashSet::new();
        let mut img = Row { total: images.len(), ..Row::default() };
        for i in images {
            if used_images.contains(i.id()) {
                img.active += 1;
            }
            for c in &i.chain_ids {
                if seen.insert(c.as_str()) {
                    let size = store.layer_info(c).map(|l| l.size).unwrap_or(0);
                    img.size += size;
                    if !kept_layers.contains(c.as_str()) {
                        img.reclaimable += size;
                    }
                }
            }
        }
        let mut ctr = Row { total: containers.len(), ..Row::default() };
        for c in containers {
            let size = tree_size(&c.dir.join("upper"));
            ctr.size += size;
            if c.is_up() {
                ctr.active += 1;
            } else {
                ctr.reclaimable += size;
            }
        }
        Usage { images: img, containers: ctr }
    }
}

/// Bytes of the files under `dir` (apparent sizes; links and directories count nothing).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.len();
            }
        }
    }
    total
}

fn check(ctx: &Ctx, args: CheckArgs) -> Result<i32> {
    // Layers and containers hold files of the image's users: read as husk's root.
    let ids = crate::ns::userns::enter_user_namespace()?;
    let store = ctx.store()?;
    let options = crate::fetch::pull::extract_options(&ids);
    let summary = crate::layers::check::check(&store, &options, args.repair, |line| println!("{}", line))?;
    eprintln!("{}", summary.describe(args.repair));
    Ok(summary.exit_code())
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
    crate::container::remove_leftovers(&store, true);
    crate::container::remove_spares(&store);
    // Images that containers were made from stay, as with `rmi` without -f.
    let used: HashSet<String> = crate::container::list(&store)?.into_iter().map(|c| c.image_id).collect();
    for img in list(&store)? {
        if (args.all || img.names.is_empty()) && !used.contains(img.id()) {
            forget_manifest(&store, &img.manifest_digest)?;
            println!("Deleted: {}", img.id());
        }
    }
    let tmp = store.tmp_area()?;
    let stats = collect(&store, &tmp)?;
    println!("Total reclaimed space: {}", human_size(stats.bytes));
    Ok(0)
}
