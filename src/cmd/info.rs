use super::Ctx;
use anyhow::Result;

pub fn run(ctx: &Ctx) -> Result<i32> {
    // Probed before entering the user namespace, which changes what is writable.
    let cgroups = crate::cgroup::probe();
    let ids = crate::ns::userns::enter_user_namespace()?;
    println!("husk version: {}", env!("CARGO_PKG_VERSION"));
    println!("store: {}", ctx.root.display());
    println!("id mapping: {}", ids.describe());
    println!(
        "image file owners: {}",
        if ids.keeps_owners() { "kept (mapped into the id range above)" } else { "all files belong to you" }
    );
    println!("cgroups: {}", cgroups.describe());
    println!("pause: {}", super::pause::pause_method());
    let store = ctx.store()?;
    let tmp = store.tmp_area()?;
    match crate::ns::rootfs::probe(&tmp.path("probe")) {
        Ok(mode) => println!("rootfs: {}", mode.name()),
        Err(e) => println!("rootfs: unknown ({:#})", e),
    }
    Ok(0)
}
