use super::Ctx;
use crate::fetch::auth::{self, Credentials};
use crate::fetch::registry::RegistryClient;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port] (default docker.io)
    pub registry: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port] (default docker.io)
    pub registry: Option<String>,
}

fn registry_name(r: Option<String>) -> String {
    let r = r.unwrap_or_else(|| "docker.io".into());
    let r = r.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_string();
    if r == "index.docker.io" || r == "registry-1.docker.io" {
        "docker.io".into()
    } else {
        r
    }
}

fn prompt(label: &str, hidden: bool) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no {} given and standard input is not a terminal (use -u/-p or --password-stdin)", label.to_lowercase());
    }
    eprint!("{}: ", label);
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = if hidden { nix::sys::termios::tcgetattr(&stdin).ok() } else { None };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, t);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn login(_ctx: &Ctx, args: LoginArgs) -> Result<i32> {
    let registry = registry_name(args.registry);
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username", false)?,
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s).context("reading the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match args.password {
            Some(p) => p,
            None => prompt("Password", true)?,
        }
    };
    if username.is_empty() || password.is_empty() {
        bail!("login to {}: username and password must not be empty", registry);
    }
    let creds = Credentials { username, password };
    RegistryClient::with_credentials(&registry, "", Some(creds.clone()))?
        .ping()
        .with_context(|| format!("login to {} failed", registry))?;
    auth::store(&registry, &creds)?;
    println!("Login Succeeded!");
    Ok(0)
}

pub fn logout(_ctx: &Ctx, args: LogoutArgs) -> Result<i32> {
    let registry = registry_name(args.registry);
    if auth::remove(&registry)? {
        println!("Removed login credentials for {}", registry);
    } else {
        println!("Not logged in to {}", registry);
    }
    Ok(0)
}
