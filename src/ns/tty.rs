//! -t: a pseudo-terminal for the container. husk keeps the master, relays it to its own
//! stdin/stdout, puts the caller's terminal in raw mode and restores it on every exit
//! path (a guard), and passes window-size changes on.
use anyhow::{Context, Result};
use nix::pty::{openpty, OpenptyResult, Winsize};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use std::io::IsTerminal;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// Opens a pty sized like the caller's terminal.
pub fn open() -> Result<OpenptyResult> {
    let size = window_size(std::io::stdin().as_raw_fd());
    openpty(size.as_ref(), None).context("opening a pseudo-terminal")
}

fn window_size(fd: RawFd) -> Option<Winsize> {
    let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one struct winsize into `ws`, which we own.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(ws)
}

/// Copies the caller's window size to the pty (on start and on SIGWINCH).
pub fn sync_window_size(master: &OwnedFd) {
    if let Some(ws) = window_size(std::io::stdin().as_raw_fd()) {
        // SAFETY: TIOCSWINSZ reads one struct winsize from `ws`.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

/// Sets the pty's size to an attached client's (a detached container's monitor).
pub fn set_window_size(master: &OwnedFd, rows: u16, cols: u16) {
    let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one struct winsize from `ws`.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// The size of the terminal on `fd`, if it is one: (rows, columns).
pub fn size_of(fd: RawFd) -> Option<(u16, u16)> {
    window_size(fd).map(|w| (w.ws_row, w.ws_col))
}

/// The path of the pty's slave side (/dev/pts/N).
pub fn slave_path(slave: &OwnedFd) -> Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).context("finding the pty's path")
}

/// In the container child: makes the slave its controlling terminal and stdio.
pub fn become_controlling(slave: &OwnedFd) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    // SAFETY: TIOCSCTTY takes an int argument and touches no memory of ours.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).context("making the pty the controlling terminal");
    }
    for fd in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), fd).context("attaching the pty")?;
    }
    Ok(())
}

/// The caller's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode { saved: None };
        }
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copies what is ready on `from` to `to`; false at end of input (EOF, or EIO from a
/// pty master whose slave side is all closed).
pub fn pump(from: BorrowedFd, to: BorrowedFd) -> bool {
    let mut buf = [0u8; 16384];
    match nix::unistd::read(from.as_raw_fd(), &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match nix::unistd::write(to, rest) {
                    Ok(w) => rest = &rest[w..],
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return false,
                }
            }
            true
        }
    }
}
