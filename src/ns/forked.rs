//! Running a piece of work as root of husk's user namespace in a forked child, while
//! the calling process keeps the user's own credentials (to signal or thaw a
//! container's processes afterwards, say). The result comes back as JSON on a pipe.
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};

/// Runs `work` in a forked child that first enters husk's user namespace. Call while
/// single-threaded.
pub fn in_user_namespace<T: Serialize + DeserializeOwned>(
    work: impl FnOnce(&crate::ns::idmap::IdMapping) -> Result<T>,
) -> Result<T> {
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().context("creating a socket pair")?;
    // SAFETY: the caller is single-threaded; the child runs ordinary code and leaves
    // with process::exit.
    match unsafe { fork() }.context("forking")? {
        ForkResult::Child => {
            drop(ours);
            let result = crate::ns::userns::enter_user_namespace().and_then(|ids| work(&ids));
            let reply = match result {
                Ok(v) => serde_json::json!({ "ok": v }),
                Err(e) => serde_json::json!({ "error": format!("{:#}", e) }),
            };
            let mut theirs = theirs;
            let sent = serde_json::to_vec(&reply).map(|b| theirs.write_all(&b).is_ok()).unwrap_or(false);
            std::process::exit(if sent { 0 } else { 125 });
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let mut reply = Vec::new();
            let read = ours.read_to_end(&mut reply);
            let status = waitpid(child, None).context("waiting for the child")?;
            read.context("reading the child's result")?;
            if status != WaitStatus::Exited(child, 0) || reply.is_empty() {
                bail!("the work in husk's user namespace ended abnormally ({:?})", status);
            }
            let mut v: serde_json::Value = serde_json::from_slice(&reply).context("reading the child's result")?;
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                return Err(anyhow!("{}", e));
            }
            Ok(serde_json::from_value(v["ok"].take())?)
        }
    }
}
