//! A real pseudo-terminal for driving husk as a user at a terminal would: the command
//! gets the slave side as its stdio and controlling terminal, the test types into and
//! reads from the master side.
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, Termios};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Terminal {
    master: std::fs::File,
    slave: OwnedFd,
    /// Everything the terminal has shown so far.
    pub seen: String,
}

impl Terminal {
    pub fn new(rows: u16, cols: u16) -> Terminal {
        let pty = openpty(None, None).unwrap();
        let flags = nix::fcntl::fcntl(pty.master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        nix::fcntl::fcntl(
            pty.master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let t = Terminal { master: std::fs::File::from(pty.master), slave: pty.slave, seen: String::new() };
        t.set_size(rows, cols);
        t
    }

    pub fn set_size(&self, rows: u16, cols: u16) {
        let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one struct winsize that outlives the call.
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }

    /// The terminal's current modes, as the program on it sets them.
    pub fn modes(&self) -> Termios {
        tcgetattr(&self.slave).unwrap()
    }

    /// Starts `cmd` in a new session with this terminal as its controlling terminal.
    pub fn spawn(&self, mut cmd: Command) -> Child {
        cmd.stdin(Stdio::from(self.slave.try_clone().unwrap()))
            .stdout(Stdio::from(self.slave.try_clone().unwrap()))
            .stderr(Stdio::from(self.slave.try_clone().unwrap()));
        // SAFETY: setsid and TIOCSCTTY are async-signal-safe; nothing else runs in pre_exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// Types `bytes`.
    pub fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Reads until `needle` shows up (or panics after 20 s).
    #[track_caller]
    pub fn read_until(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?}; the terminal showed:\n{}", self.seen);
            match self.master.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                // EIO: every slave side closed; what was shown stays in `seen`.
                Err(e) => panic!("reading the pty: {e}; it showed:\n{}", self.seen),
            }
        }
    }

    /// Tells the session of `child` that the window size changed.
    pub fn resize(&self, child: &Child, rows: u16, cols: u16) {
        self.set_size(rows, cols);
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGWINCH);
    }
}
