//! Man pages generated from the clap definitions: husk.1 and husk-<verb>[-<sub>].1.
use anyhow::{Context, Result};
use std::path::Path;

pub fn generate(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd;
    cmd.build();
    write_page(&cmd, "husk", dir)
}

fn write_page(cmd: &clap::Command, name: &str, dir: &Path) -> Result<()> {
    let page = cmd.clone().name(name.to_string()).display_name(name.to_string());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let path = dir.join(format!("{}.1", name));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_page(sub, &format!("{}-{}", name, sub.get_name()), dir)?;
    }
    Ok(())
}
