//! One module per subcommand; each parses nothing itself beyond its clap Args and
//! calls into the library.
pub mod attach;
pub mod build;
pub mod commit;
pub mod cp;
pub mod create;
pub mod diff;
pub mod exec;
pub mod export;
pub mod history;
pub mod image_inspect;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod kill;
pub mod load;
pub mod login;
pub mod logs;
pub mod man;
pub mod network;
pub mod pause;
pub mod port;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod start;
pub mod stats;
pub mod stop;
pub mod system;
pub mod tag;
pub mod top;
pub mod volume;
pub mod wait;

use crate::layers::store::Store;
use crate::ns::userns::PendingUserNamespace;
use anyhow::Result;
use std::path::PathBuf;

/// What every command gets from the global options.
pub struct Ctx {
    pub root: PathBuf,
    /// A user namespace `main` began before parsing the command line (see
    /// `run::early_user_namespace`), for the command to take.
    early_userns: std::cell::Cell<Option<PendingUserNamespace>>,
}

impl Ctx {
    /// The store root: --root, HUSK_ROOT, or $XDG_DATA_HOME/husk.
    pub fn new(root: Option<PathBuf>) -> Result<Ctx> {
        let root = match root {
            Some(r) => r,
            None => crate::util::xdg_dir("XDG_DATA_HOME", ".local/share")?.join("husk"),
        };
        let root = if root.is_absolute() { root } else { std::env::current_dir()?.join(root) };
        Ok(Ctx { root, early_userns: std::cell::Cell::new(None) })
    }

    pub fn with_early_user_namespace(self, userns: Option<PendingUserNamespace>) -> Ctx {
        self.early_userns.set(userns);
        self
    }

    /// The user namespace begun early, or a new one.
    pub fn begin_user_namespace(&self) -> Result<PendingUserNamespace> {
        match self.early_userns.take() {
            Some(u) => Ok(u),
            None => crate::ns::userns::begin_user_namespace(),
        }
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

// `-q`, `--no-trunc` and `--format`, as the listing verbs with ids take them.
#[derive(clap::Args, Debug)]
pub struct ListFlags {
    /// Only show ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate ids
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Prints what `describe` makes of each name as one JSON array, as Docker's inspect
/// verbs do; a name it fails on is reported on stderr and makes the exit status 125.
pub fn inspect_each(names: &[String], mut describe: impl FnMut(&str) -> Result<serde_json::Value>) -> Result<i32> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in names {
        match describe(name) {
            Ok(j) => found.push(j),
            Err(e) => {
                eprintln!("Error: {:#}", e);
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(if failed { 125 } else { 0 })
}

/// Applies `f` to each named container as Docker's multi-container verbs do: prints
/// each name that succeeded, reports each failure on stderr, and fails (125) if any did.
pub fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut failed = 0;
    for name in names {
        match f(name) {
            Ok(()) => println!("{}", name),
            Err(e) => {
                eprintln!("Error: {:#}", e);
                failed += 1;
            }
        }
    }
    Ok(if failed > 0 { 125 } else { 0 })
}
