//! `attach`: a detached container's monitor listens on `attach.sock` in the container's
//! directory (0700, never mounted into the container). A client gets the container's
//! output from the moment it connects and the exit status at the end, and sends input,
//! window sizes and signals. Typed frames, one method per intent, as on the fork
//! sequence's channel; output is binary, so each frame is a tag, a length and bytes.
use super::log::Stream;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

const SOCKET: &str = "attach.sock";
/// Output and input travel in pieces of at most this size.
pub const PIECE: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Monitor → client: what the container wrote.
    Output(Stream, Vec<u8>),
    /// Monitor → client: the container ended with this status.
    Exit(i32),
    /// Client → monitor: input for the container (with -i).
    Input(Vec<u8>),
    /// Client → monitor: the client's terminal size (with -t).
    Resize { rows: u16, cols: u16 },
    /// Client → monitor: a signal the client received, for the container (--sig-proxy).
    Signal(i32),
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, std::borrow::Cow<[u8]>) = match self {
            Frame::Output(Stream::Stdout, b) => (1, b.into()),
            Frame::Output(Stream::Stderr, b) => (2, b.into()),
            Frame::Exit(code) => (3, code.to_le_bytes().to_vec().into()),
            Frame::Input(b) => (4, b.into()),
            Frame::Resize { rows, cols } => (5, [rows.to_le_bytes(), cols.to_le_bytes()].concat().into()),
            Frame::Signal(sig) => (6, sig.to_le_bytes().to_vec().into()),
        };
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(tag);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(tag: u8, body: Vec<u8>) -> Result<Frame> {
        let int = |b: &[u8]| -> Result<i32> { Ok(i32::from_le_bytes(b.try_into().context("bad attach frame")?)) };
        Ok(match tag {
            1 => Frame::Output(Stream::Stdout, body),
            2 => Frame::Output(Stream::Stderr, body),
            3 => Frame::Exit(int(&body)?),
            4 => Frame::Input(body),
            5 if body.len() == 4 => Frame::Resize {
                rows: u16::from_le_bytes([body[0], body[1]]),
                cols: u16::from_le_bytes([body[2], body[3]]),
            },
            6 => Frame::Signal(int(&body)?),
            _ => bail!("unknown attach frame {}", tag),
        })
    }
}

/// One attach connection, seen from either end.
pub struct Connection {
    stream: UnixStream,
}

impl Connection {
    fn send(&mut self, frame: &Frame) -> Result<()> {
        self.stream.write_all(&frame.encode()).context("writing to the attach socket")
    }

    /// The next frame, or None when the other end closed the connection.
    pub fn recv(&mut self) -> Result<Option<Frame>> {
        let mut head = [0u8; 5];
        match self.stream.read_exact(&mut head) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("reading from the attach socket"),
            Ok(()) => {}
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > PIECE {
            bail!("attach frame of {} bytes refused", len);
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).context("reading from the attach socket")?;
        Frame::decode(head[0], body).map(Some)
    }

    pub fn send_output(&mut self, stream: Stream, bytes: &[u8]) -> Result<()> {
        self.send(&Frame::Output(stream, bytes.to_vec()))
    }

    pub fn send_exit(&mut self, code: i32) -> Result<()> {
        self.send(&Frame::Exit(code))
    }

    pub fn send_input(&mut self, bytes: &[u8]) -> Result<()> {
        self.send(&Frame::Input(bytes.to_vec()))
    }

    pub fn send_window_size(&mut self, rows: u16, cols: u16) -> Result<()> {
        self.send(&Frame::Resize { rows, cols })
    }

    pub fn send_signal(&mut self, signal: i32) -> Result<()> {
        self.send(&Frame::Signal(signal))
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.stream.as_fd()
    }
}

/// The socket's path through an O_PATH descriptor of its directory, so a deep store
/// never hits the 108-byte limit of a socket address.
fn short_path(dir: &Path) -> Result<(OwnedFd, String)> {
    use nix::fcntl::{open, OFlag};
    let fd = open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .with_context(|| format!("opening {}", dir.display()))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let path = format!("/proc/self/fd/{}/{}", fd.as_raw_fd(), SOCKET);
    Ok((fd, path))
}

/// In the monitor: listens on the container's attach socket (replacing one a killed
/// monitor left behind).
pub fn listen(container_dir: &Path) -> Result<UnixListener> {
    let (_dir, path) = short_path(container_dir)?;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).context("creating the attach socket")?;
    listener.set_nonblocking(true).context("creating the attach socket")?;
    Ok(listener)
}

/// In the monitor: takes a client that connected. A client that stops reading is
/// dropped after a while rather than stalling the container's output.
pub fn accept(listener: &UnixListener) -> Option<Connection> {
    let (stream, _) = listener.accept().ok()?;
    stream.set_nonblocking(false).ok()?;
    stream.set_write_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
    Some(Connection { stream })
}

/// In `husk attach`: connects to the container's monitor.
pub fn connect(container_dir: &Path) -> Result<Connection> {
    let (_dir, path) = short_path(container_dir)?;
    let stream = UnixStream::connect(&path).context("connecting to the container's monitor")?;
    Ok(Connection { stream })
}

/// `--detach-keys`: "ctrl-p,ctrl-q" (Docker's default), letters, or ctrl-@, ctrl-[ … ctrl-_.
/// An empty string turns detaching off.
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    if spec.is_empty() {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|key| {
            let key = key.trim();
            let lower = key.to_ascii_lowercase();
            match lower.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let c = c.as_bytes()[0].to_ascii_uppercase();
                    match c {
                        b'@'..=b'_' => Ok(c - b'@'),
                        _ => bail!("detach keys {:?}: unknown key {:?}", spec, key),
                    }
                }
                _ if key.len() == 1 && key.is_ascii() => Ok(key.as_bytes()[0]),
                _ => bail!("detach keys {:?}: unknown key {:?}", spec, key),
            }
        })
        .collect()
}

/// Finds the detach sequence in what the user types, across reads. Bytes that might
/// begin the sequence are held back until it is clear they do not.
pub struct DetachWatch {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachWatch {
    pub fn new(keys: Vec<u8>) -> DetachWatch {
        DetachWatch { keys, matched: 0 }
    }

    /// What of `input` goes to the container, and whether the sequence is complete.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
            } else if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// How `husk attach` attaches.
pub struct AttachOptions {
    /// Send this terminal's input (only to a container started with -i).
    pub stdin: bool,
    /// Pass the signals husk receives on to the container (without -t).
    pub sig_proxy: bool,
    /// The sequence that detaches, leaving the container running.
    pub detach_keys: Vec<u8>,
}

/// Attaches to a running container: its output from now on, the caller's input (with
/// -i), until it exits (its exit status is returned) or the user detaches (0).
pub fn attach(c: &super::Container, opts: AttachOptions) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use std::io::IsTerminal;
    use std::os::fd::AsFd;

    let mut conn = connect(&c.dir).with_context(|| format!("attaching to container {}", c.state.name))?;
    let tty = c.state.settings.tty;
    let stdin = std::io::stdin();
    let mut stdin_open = opts.stdin && c.state.settings.interactive;
    let _raw = (tty && stdin_open).then(crate::ns::tty::RawMode::enter);
    let send_size = |conn: &mut Connection| match crate::ns::tty::size_of(stdin.as_raw_fd()) {
        Some((rows, cols)) if tty => conn.send_window_size(rows, cols),
        _ => Ok(()),
    };
    send_size(&mut conn)?;
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        signals.add(s);
    }
    signals.add(Signal::SIGWINCH);
    signals.thread_block().context("blocking signals")?;
    let signalfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).context("creating a signalfd")?;
    let mut watch = DetachWatch::new(if stdin_open && stdin.is_terminal() { opts.detach_keys } else { Vec::new() });
    loop {
        let mut fds = vec![PollFd::new(conn.fd(), PollFlags::POLLIN), PollFd::new(signalfd.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for the container"),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            match conn.recv()? {
                Some(Frame::Output(stream, bytes)) => write_out(stream, &bytes),
                Some(Frame::Exit(code)) => return Ok(code),
                Some(other) => bail!("unexpected {:?} from the container's monitor", other),
                None => bail!("the container's monitor went away"),
            }
        }
        if ready[1] {
            if let Some(info) = signalfd.read_signal().context("reading a signal")? {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => send_size(&mut conn)?,
                    Ok(sig) if opts.sig_proxy && !tty => conn.send_signal(sig as i32)?,
                    // Not passed on: the signal ends the attachment, not the container.
                    Ok(sig) => return Ok(128 + sig as i32),
                    Err(_) => {}
                }
            }
        }
        if stdin_open && ready[2] {
            let mut buf = [0u8; PIECE];
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let (input, detach) = watch.feed(&buf[..n]);
                    if !input.is_empty() {
                        conn.send_input(&input)?;
                    }
                    if detach {
                        return Ok(0);
                    }
                }
            }
        }
    }
}

fn write_out(stream: Stream, bytes: &[u8]) {
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(bytes).and_then(|()| std::io::stdout().flush()),
        Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Connection { stream: a }, Connection { stream: b });
        a.send_output(Stream::Stderr, b"oops\n").unwrap();
        a.send_exit(-3).unwrap();
        a.send_input(b"").unwrap();
        a.send_window_size(24, 80).unwrap();
        a.send_signal(15).unwrap();
        drop(a);
        assert_eq!(b.recv().unwrap(), Some(Frame::Output(Stream::Stderr, b"oops\n".to_vec())));
        assert_eq!(b.recv().unwrap(), Some(Frame::Exit(-3)));
        assert_eq!(b.recv().unwrap(), Some(Frame::Input(vec![])));
        assert_eq!(b.recv().unwrap(), Some(Frame::Resize { rows: 24, cols: 80 }));
        assert_eq!(b.recv().unwrap(), Some(Frame::Signal(15)));
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut b = Connection { stream: b };
        a.write_all(&[1, 0, 0, 1, 0]).unwrap();
        assert!(b.recv().is_err());
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut b = Connection { stream: b };
        a.write_all(&[99, 0, 0, 0, 0]).unwrap();
        assert!(b.recv().is_err());
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-@,a,ctrl-_").unwrap(), vec![0, b'a', 0x1f]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("shift-a").is_err());
        assert!(parse_detach_keys("").unwrap().is_empty());
        let mut w = DetachWatch::new(vec![0x10, 0x11]);
        assert_eq!(w.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(w.feed(b"c\x10\x10"), (b"\x10c\x10".to_vec(), false));
        assert_eq!(w.feed(b"\x11rest"), (vec![], true));
        let mut none = DetachWatch::new(vec![]);
        assert_eq!(none.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
