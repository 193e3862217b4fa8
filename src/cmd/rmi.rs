use super::Ctx;
use crate::layers::gc::collect;
use crate::layers::images::{forget_manifest, normalize, resolve, untag};
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Images to remove, by name or id
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove an image even when several names refer to it
    #[arg(short, long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, args: RmiArgs) -> Result<i32> {
    // Layers may hold files owned by subordinate ids: remove them from inside the namespace.
    crate::ns::userns::enter_user_namespace()?;
    let store = ctx.store()?;
    // Containers are made under the writers lock: with the gc lock held, none is being
    // made from an image between the check that none uses it and its removal.
    let _gc = store.lock_gc()?;
    let mut failed = None;
    for query in &args.images {
        if let Err(e) = remove_one(&store, query, args.force) {
            eprintln!("Error: {:#}", e);
            failed = Some(e);
        }
    }
    let tmp = store.tmp_area()?;
    collect(&store, &tmp)?;
    Ok(if failed.is_some() { 125 } else { 0 })
}

fn remove_one(store: &crate::layers::store::Store, query: &str, force: bool) -> Result<()> {
    let img = resolve(store, query)?;
    let by_name = normalize(query).filter(|n| img.names.contains(n));
    match by_name {
        Some(name) if img.names.len() > 1 => {
            untag(store, &name)?;
            println!("Untagged: {}", name);
        }
        _ => {
            let users: Vec<String> =
                crate::container::list(store)?.into_iter().filter(|c| c.image_id == img.id()).map(|c| c.name).collect();
            if !users.is_empty() && !force {
                bail!(
                    "unable to remove image {} (must be forced): it is used by container(s) {}",
                    img.short_id(),
                    users.join(", ")
                );
            }
            if img.names.len() > 1 && !force {
                bail!(
                    "unable to remove image {} (must be forced): it is referenced by {} names",
                    img.short_id(),
                    img.names.len()
                );
            }
            for n in &img.names {
                println!("Untagged: {}", n);
            }
            forget_manifest(store, &img.manifest_digest)?;
            println!("Deleted: {}", img.id());
        }
    }
    Ok(())
}
