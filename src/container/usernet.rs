//! A container on a user-defined network (`--network NAME`), from husk's side. The
//! user namespace husk starts it from is made inside the user namespace of the
//! network's holder (see `ns::holder`); before its process starts, its network
//! namespace is made and handed to the holder, which connects it and writes its
//! /etc/hosts: `hosts` in the container's directory, bound over the image's.
use super::netdef;
use super::network::NetworkMode;
use super::Container;
use crate::layers::store::Store;
use crate::ns::holder::{self, Holder, JoinRequest, Membership};
use crate::ns::userns::PendingUserNamespace;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::{MountBuilder, Spec};
use std::borrow::Cow;
use std::os::fd::AsFd;
use std::sync::Mutex;

/// The holder whose user namespace this process entered, and its connection until a
/// container takes it over. Per process, as the user namespace: a process enters one.
static ENTERED: Mutex<Option<Entered>> = Mutex::new(None);

struct Entered {
    network: String,
    instance: String,
    holder: Option<Holder>,
}

const HOSTS: &str = "hosts";

/// The user-defined network the container is on, if any.
pub fn network_of(c: &Container) -> Option<String> {
    match super::launch::settings_mode(&c.state.settings) {
        Ok(NetworkMode::Named(n)) => Some(n),
        _ => None,
    }
}

/// Fails with one line unless `mode` names an existing network (or is another mode);
/// otherwise returns the shared networks lock, to hold until the container is made.
pub fn check_exists(store: &Store, mode: &NetworkMode) -> Result<Option<crate::util::FileLock>> {
    let NetworkMode::Named(name) = mode else { return Ok(None) };
    let lock = netdef::lock_shared(store)?;
    netdef::load(store, name)?;
    Ok(Some(lock))
}

/// Enters the user namespace to start containers on `network` from (None: husk's own):
/// nested in the holder's, which is started if none runs. Call single-threaded.
pub fn begin_user_namespace(store: &Store, network: Option<&str>) -> Result<PendingUserNamespace> {
    let Some(name) = network else { return crate::ns::userns::begin_user_namespace() };
    let def = netdef::load(store, name)?;
    let holder = holder::connect_or_start(&def, &netdef::dir(store, name))?;
    let pending = crate::ns::userns::begin_nested_user_namespace(holder.user_namespace())?;
    let entered = Entered { network: name.to_string(), instance: holder.instance.clone(), holder: Some(holder) };
    *ENTERED.lock().expect("not poisoned") = Some(entered);
    Ok(pending)
}

/// Connects the container to its network, if it is on one, and records its address.
/// The returned membership keeps it connected: hold it as long as the container runs.
pub fn join(store: &Store, c: &mut Container, spec: &Spec) -> Result<Option<Membership>> {
    let Some(name) = network_of(c) else { return Ok(None) };
    let holder = entered_holder(store, &name)?;
    let netns = crate::ns::net::new_namespace()?;
    let path = c.dir.join(HOSTS);
    let hosts = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let request = JoinRequest {
        container: c.state.id.clone(),
        name: c.state.name.clone(),
        hostname: spec.hostname().clone().unwrap_or_else(|| c.short_id().to_string()),
    };
    let membership = holder.join(&request, netns, hosts.as_fd())?;
    let _l = c.lock()?;
    c.reload()?;
    c.state.endpoint = Some(membership.endpoint.clone());
    c.save()?;
    crate::util::trace("joined the network");
    Ok(Some(membership))
}

/// A connection to the holder this process's user namespace was made in: the one kept
/// since, or a new one (when several containers start from one process) to the same
/// holder, which their memberships keep alive.
fn entered_holder(store: &Store, network: &str) -> Result<Holder> {
    let mut entered = ENTERED.lock().expect("not poisoned");
    let Some(e) = entered.as_mut().filter(|e| e.network == network) else {
        bail!("internal error: husk did not enter the user namespace of network {}", network);
    };
    if let Some(h) = e.holder.take() {
        return Ok(h);
    }
    let h = holder::connect(&netdef::load(store, network)?, &netdef::dir(store, network))?;
    if h.instance != e.instance {
        bail!("network {} was restarted while husk started containers on it: start them again", network);
    }
    Ok(h)
}

/// The container's spec for this start: on a user-defined network, its /etc/hosts is
/// the file the holder keeps up to date.
pub fn spec_for<'a>(spec: &'a Spec, c: &Container) -> Result<Cow<'a, Spec>> {
    if network_of(c).is_none() {
        return Ok(Cow::Borrowed(spec));
    }
    let hosts = MountBuilder::default()
        .destination("/etc/hosts")
        .typ("bind")
        .source(c.dir.join(HOSTS))
        .options(vec!["rbind".to_string()])
        .build()
        .context("building the /etc/hosts mount")?;
    let mut spec = spec.clone();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(hosts);
    spec.set_mounts(Some(mounts));
    Ok(Cow::Owned(spec))
}

/// Runs `f` in a forked copy of this (single-threaded) process and returns its exit
/// code: for starting containers on different networks from one command, since a
/// process can only ever enter one user namespace.
pub fn in_own_process(f: impl FnOnce() -> Result<i32>) -> Result<i32> {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: the caller is single-threaded; the child runs `f` and leaves with exit.
    match unsafe { nix::unistd::fork() }.context("forking")? {
        nix::unistd::ForkResult::Child => {
            let code = f().unwrap_or_else(|e| {
                eprintln!("Error: {:#}", e);
                125
            });
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Ok(code),
            _ => Ok(125),
        },
    }
}
