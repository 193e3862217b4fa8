//! Killing husk with SIGKILL at a chosen moment of a command, with no fault hooks in
//! husk: the command runs in the background and husk itself (the child of runuser, not
//! runuser) gets the signal that long after it started running.
use super::{husk_bin, Husk};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One husk command run in the background, perhaps killed.
pub struct Shot {
    /// husk died of the SIGKILL (it had not finished)
    pub landed: bool,
    /// how long husk ran (until it exited or was killed)
    pub ran: Duration,
    /// runuser's exit status: husk's, or 137 when husk was killed
    pub status: i32,
    pub stderr: String,
}

/// The husk process among the children of `parent` (runuser), once it has exec'd.
fn husk_child(parent: u32, husk_exe: &Path) -> Option<i32> {
    for task in fs::read_dir(format!("/proc/{parent}/task")).ok()?.flatten() {
        let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            if fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == Some(husk_exe) {
                return Some(pid);
            }
        }
    }
    None
}

/// Runs husk with `args` in the background and, with `delay`, sends husk itself (not
/// runuser) SIGKILL that long after it started running; without, lets it finish.
pub fn shoot(h: &Husk, args: &[String], delay: Option<Duration>) -> Shot {
    let husk_exe = fs::canonicalize(husk_bin()).unwrap();
    // stderr to a file: a monitor forked by husk may hold it for a moment
    let err_path = h.home.join(".shot-stderr");
    let err = fs::File::create(&err_path).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = h.cmd(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(err).spawn().unwrap();
    let runuser = child.id();
    let spawned = Instant::now();
    let mut found = None;
    while found.is_none() {
        found = husk_child(runuser, &husk_exe).map(|pid| (pid, Instant::now()));
        if found.is_none() && child.try_wait().unwrap().is_some() {
            break; // done before it was seen
        }
        assert!(spawned.elapsed() < Duration::from_secs(20), "husk {args:?} did not start");
        std::thread::yield_now();
    }
    let mut killed_at = None;
    if let (Some(d), Some((pid, t0))) = (delay, found) {
        std::thread::sleep(d.saturating_sub(t0.elapsed()));
        unsafe { libc::kill(pid, libc::SIGKILL) };
        killed_at = Some(t0.elapsed());
    }
    let st = child.wait().unwrap();
    let ran = killed_at.unwrap_or_else(|| found.map(|(_, t0)| t0.elapsed()).unwrap_or_default());
    let status = st.code().unwrap_or(-1);
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    // runuser reports a child killed by a signal as 128+N and prints its name
    Shot { landed: status == 137 && stderr.contains("Killed"), ran, status, stderr }
}
