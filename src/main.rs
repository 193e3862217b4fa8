use clap::{CommandFactory, Parser, Subcommand};
use husk::cmd::{self, Ctx};
use husk::ns::userns::PendingUserNamespace;
use std::path::PathBuf;

/// Daemonless, rootless containers in one binary
#[derive(Parser, Debug)]
#[command(name = "husk", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Store directory (default $XDG_DATA_HOME/husk, i.e. ~/.local/share/husk)
    #[arg(long, global = true, env = "HUSK_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    /// Run a command in a new container
    #[command(disable_help_flag = true)]
    Run(cmd::run::RunArgs),
    /// Create a container without starting it (same options as run)
    #[command(disable_help_flag = true)]
    Create(cmd::run::RunArgs),
    /// Build an image from a Dockerfile
    Build(cmd::build::BuildArgs),
    /// Start stopped containers
    Start(cmd::start::StartArgs),
    /// Attach this terminal to a running container's output (and input, with -i)
    Attach(cmd::attach::AttachArgs),
    /// Copy files between a container and the host (CONTAINER:PATH; - for a tar stream)
    Cp(cmd::cp::CpArgs),
    /// Run a command in a running container
    Exec(cmd::exec::ExecArgs),
    /// Stop running containers (the stop signal, then SIGKILL after a grace period)
    Stop(cmd::stop::StopArgs),
    /// Restart containers
    Restart(cmd::stop::RestartArgs),
    /// Send a signal to running containers
    Kill(cmd::kill::KillArgs),
    /// Wait for containers to stop and print their exit codes
    Wait(cmd::wait::WaitArgs),
    /// Remove containers
    Rm(cmd::rm::RmArgs),
    /// List containers
    Ps(cmd::ps::PsArgs),
    /// Print a container's output
    Logs(cmd::logs::LogsArgs),
    /// Show containers' configuration and state as JSON (in the shape of docker inspect)
    Inspect(cmd::inspect::InspectArgs),
    /// Pull an image from a registry into the store
    Pull(cmd::pull::PullArgs),
    /// Upload an image to a registry
    Push(cmd::push::PushArgs),
    /// List images in the store
    Images(cmd::images::ImagesArgs),
    /// Remove images (their layers go when no other image uses them)
    Rmi(cmd::rmi::RmiArgs),
    /// Give an image another name
    Tag(cmd::tag::TagArgs),
    /// Create a new image from a container's changes
    Commit(cmd::commit::CommitArgs),
    /// Show the changes to a container's filesystem (A added, C changed, D deleted)
    Diff(cmd::diff::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(cmd::export::ExportArgs),
    /// Create an image from a tar archive of a filesystem
    Import(cmd::import::ImportArgs),
    /// Show the history of an image
    History(cmd::history::HistoryArgs),
    /// Save images to a tar archive (standard output by default)
    Save(cmd::save::SaveArgs),
    /// Load images from a tar archive (docker-archive or oci-archive; tar, gzip or zstd)
    Load(cmd::load::LoadArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage husk's storage
    #[command(subcommand)]
    System(cmd::system::SystemCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(cmd::volume::VolumeCmd),
    /// Manage user-defined networks
    #[command(subcommand)]
    Network(cmd::network::NetworkCmd),
    /// Show husk's configuration: store, id mapping
    Info,
    /// Log in to a registry (credentials stored 0600 under $XDG_CONFIG_HOME/husk/auth.json)
    Login(cmd::login::LoginArgs),
    /// Log out from a registry
    Logout(cmd::login::LogoutArgs),
    /// Pause all processes within one or more containers
    Pause(cmd::pause::PauseArgs),
    /// Unpause all processes within one or more containers
    Unpause(cmd::pause::UnpauseArgs),
    /// Display the running processes of a container
    Top(cmd::top::TopArgs),
    /// List port mappings of a container
    Port(cmd::port::PortArgs),
    /// Display resource usage of containers (one sample; streaming is not supported yet)
    Stats(cmd::stats::StatsArgs),
    /// Write the man pages into DIR
    #[command(hide = true)]
    GenerateMan { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum ImageCmd {
    /// Show an image's details as JSON
    Inspect(cmd::image_inspect::ImageInspectArgs),
    /// List images
    Ls(cmd::images::ImagesArgs),
    /// Pull an image from a registry into the store
    Pull(cmd::pull::PullArgs),
    /// Upload an image to a registry
    Push(cmd::push::PushArgs),
    /// Remove images
    Rm(cmd::rmi::RmiArgs),
    /// Give an image another name
    Tag(cmd::tag::TagArgs),
    /// Show the history of an image
    History(cmd::history::HistoryArgs),
    /// Create an image from a tar archive of a filesystem
    Import(cmd::import::ImportArgs),
    /// Save images to a tar archive (standard output by default)
    Save(cmd::save::SaveArgs),
    /// Load images from a tar archive (docker-archive or oci-archive; tar, gzip or zstd)
    Load(cmd::load::LoadArgs),
}

fn dispatch(cli: Cli, early_userns: Option<PendingUserNamespace>) -> anyhow::Result<i32> {
    let ctx = Ctx::new(cli.root)?.with_early_user_namespace(early_userns);
    match cli.command {
        Command::Run(a) => cmd::run::run(&ctx, a),
        Command::Create(a) => cmd::create::run(&ctx, a),
        Command::Build(a) => cmd::build::run(&ctx, a),
        Command::Start(a) => cmd::start::run(&ctx, a),
        Command::Attach(a) => cmd::attach::run(&ctx, a),
        Command::Cp(a) => cmd::cp::run(&ctx, a),
        Command::Exec(a) => cmd::exec::run(&ctx, a),
        Command::Stop(a) => cmd::stop::run(&ctx, a),
        Command::Restart(a) => cmd::stop::restart(&ctx, a),
        Command::Kill(a) => cmd::kill::run(&ctx, a),
        Command::Wait(a) => cmd::wait::run(&ctx, a),
        Command::Rm(a) => cmd::rm::run(&ctx, a),
        Command::Ps(a) => cmd::ps::run(&ctx, a),
        Command::Logs(a) => cmd::logs::run(&ctx, a),
        Command::Inspect(a) => cmd::inspect::run(&ctx, a),
        Command::Pull(a) | Command::Image(ImageCmd::Pull(a)) => cmd::pull::run(&ctx, a),
        Command::Push(a) | Command::Image(ImageCmd::Push(a)) => cmd::push::run(&ctx, a),
        Command::Images(a) | Command::Image(ImageCmd::Ls(a)) => cmd::images::run(&ctx, a),
        Command::Rmi(a) | Command::Image(ImageCmd::Rm(a)) => cmd::rmi::run(&ctx, a),
        Command::Tag(a) | Command::Image(ImageCmd::Tag(a)) => cmd::tag::run(&ctx, a),
        Command::Save(a) | Command::Image(ImageCmd::Save(a)) => cmd::save::run(&ctx, a),
        Command::Load(a) | Command::Image(ImageCmd::Load(a)) => cmd::load::run(&ctx, a),
        Command::Image(ImageCmd::Inspect(a)) => cmd::image_inspect::run(&ctx, a),
        Command::Commit(a) => cmd::commit::run(&ctx, a),
        Command::Diff(a) => cmd::diff::run(&ctx, a),
        Command::Export(a) => cmd::export::run(&ctx, a),
        Command::Import(a) | Command::Image(ImageCmd::Import(a)) => cmd::import::run(&ctx, a),
        Command::History(a) | Command::Image(ImageCmd::History(a)) => cmd::history::run(&ctx, a),
        Command::System(c) => cmd::system::run(&ctx, c),
        Command::Volume(c) => cmd::volume::run(&ctx, c),
        Command::Network(c) => cmd::network::run(&ctx, c),
        Command::Info => cmd::info::run(&ctx),
        Command::Login(a) => cmd::login::login(&ctx, a),
        Command::Logout(a) => cmd::login::logout(&ctx, a),
        Command::Pause(a) => cmd::pause::pause(&ctx, a),
        Command::Unpause(a) => cmd::pause::unpause(&ctx, a),
        Command::Top(a) => cmd::top::run(&ctx, a),
        Command::Port(a) => cmd::port::run(&ctx, a),
        Command::Stats(a) => cmd::stats::run(&ctx, a),
        Command::GenerateMan { dir } => cmd::man::generate(Cli::command(), &dir).map(|_| 0),
    }
}

fn main() {
    // SAFETY: restores the default SIGPIPE disposition (Rust ignores it) before any
    // thread exists, so `husk images | head` ends quietly like other Unix tools.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    husk::util::trace("start");
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let early_userns = cmd::run::early_user_namespace(&argv);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            drop(early_userns);
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    husk::util::trace("clap parsed");
    let code = match dispatch(cli, early_userns) {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever the registry or the tar that caused it wrote.
            eprintln!("Error: {}", husk::util::one_line(&format!("{:#}", e)));
            125
        }
    };
    std::process::exit(code);
}
