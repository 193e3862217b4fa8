use super::Ctx;
use crate::ns::idmap::IdMapping;
use anyhow::Result;

/// Show husk's configuration: store, id mapping
#[derive(clap::Args, Debug)]
pub struct InfoArgs {}

pub fn run(ctx: &Ctx) -> Result<i32> {
    let ids = IdMapping::detect();
    println!("husk version: {}", env!("CARGO_PKG_VERSION"));
    println!("store: {}", ctx.root.display());
    println!("id mapping: {}", ids.describe());
    println!(
        "image file owners: {}",
        if ids.keeps_owners() { "kept (mapped into the id range above)" } else { "all files belong to you" }
    );
    Ok(0)
}
