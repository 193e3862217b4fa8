//! One module per subcommand; each parses nothing itself beyond its clap Args and
//! calls into the library.
pub mod image_inspect;
pub mod images;
pub mod info;
pub mod login;
pub mod man;
pub mod pull;
pub mod rmi;
pub mod run;
pub mod system;
pub mod tag;

use crate::layers::store::Store;
use anyhow::Result;
use std::path::PathBuf;

/// What every command gets from the global options.
pub struct Ctx {
    pub root: PathBuf,
}

impl Ctx {
    /// The store root: --root, HUSK_ROOT, or $XDG_DATA_HOME/husk.
    pub fn new(root: Option<PathBuf>) -> Result<Ctx> {
        let root = match root {
            Some(r) => r,
            None => crate::util::xdg_dir("XDG_DATA_HOME", ".local/share")?.join("husk"),
        };
        let root = if root.is_absolute() { root } else { std::env::current_dir()?.join(root) };
        Ok(Ctx { root })
    }

    pub fn store(&self) -> Result<Store> {
        Store::open(&self.root)
    }
}

/// `--format`: the table, or JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}
