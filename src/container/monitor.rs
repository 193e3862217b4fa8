//! A detached container's monitor: a fork of the husk that started the container (never
//! a new exec of a binary on disk, so nothing the container can reach is ever run by it).
//! It leaves the caller's session, becomes the container's parent, writes the
//! container's output to the log and to attached clients, feeds its stdin from them
//! (-i), records the exit and applies --rm, then exits with the container. Each
//! container has its own; no process is shared between containers.
//!
//! Its loop is single-threaded (a process that unshared its pid namespace may not start
//! threads) and never blocks on the container: input waits in a buffer until the
//! container reads it, and a client that stops reading is dropped.
use super::attach::{self, Connection, Frame};
use super::launch::{record_exit, record_started};
use super::log::{LogWriter, Stream};
use super::Container;
use crate::layers::store::Store;
use crate::ns::channel::Channel;
use crate::ns::run::{reap, set_nonblocking, spawn, RunOptions, Running, Spawned};
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use oci_spec::runtime::Spec;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

/// Input for the container held while it does not read; clients are not read beyond it.
const INPUT_BUFFER: usize = 64 * 1024;

/// The monitor's life, from the fork to the container's end; returns the monitor's own
/// exit code. Whatever happens, the container's state ends up recording it.
pub fn run(store: &Store, mut c: Container, spec: &Spec, opts: &RunOptions, channel: &mut Channel) -> i32 {
    let me = nix::unistd::getpid();
    let dir = c.dir.clone();
    let _ = nix::unistd::setsid();
    let prepared = stdio_to_null()
        .and_then(|()| Ok((attach::listen(&dir)?, LogWriter::open(&c.log_path())?)))
        .and_then(|(listener, log)| Ok((listener, log, spawn(spec, opts, None)?)));
    let (listener, log, running) = match prepared {
        Ok((listener, log, Spawned::Running(r))) => (listener, log, r),
        Ok((_, _, Spawned::NotStarted { code, message })) => {
            let _ = channel.report_container_failure(code, &message);
            let _ = record_exit(store, c, code);
            return 0;
        }
        Err(e) => {
            let _ = channel.report_container_failure(125, &format!("{:#}", e));
            let _ = record_exit(store, c, 125);
            return 0;
        }
    };
    if let Err(e) = record_started(&mut c, running.child, me).and_then(|()| channel.report_monitor_started()) {
        let _ = channel.report_container_failure(125, &format!("{:#}", e));
        let _ = kill(running.child, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(running.child, None);
        let _ = record_exit(store, c, 125);
        return 0;
    }
    let mut relay = Relay { running, log, listener, clients: Vec::new(), pending: Vec::new(), interactive: opts.stdin };
    let code = relay.until_exit().unwrap_or(125);
    // The network tool ends with the container (process::exit runs no destructors).
    drop(relay.running.net.take());
    let _ = std::fs::remove_file(dir.join("attach.sock"));
    let _ = record_exit(store, c, code);
    0
}

fn stdio_to_null() -> Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").context("opening /dev/null")?;
    for fd in 0..=2 {
        nix::unistd::dup2(null.as_raw_fd(), fd).context("redirecting the monitor's stdio")?;
    }
    Ok(())
}

struct Relay {
    running: Running,
    log: LogWriter,
    listener: UnixListener,
    clients: Vec<Connection>,
    /// Input from clients that the container has not read yet.
    pending: Vec<u8>,
    /// -i: client input goes to the container.
    interactive: bool,
}

/// What a poll entry stands for.
#[derive(Clone, Copy)]
enum Source {
    Signals,
    Output(Stream, usize),
    Pty,
    Listener,
    Client(usize),
    InputWritable,
}

impl Relay {
    fn until_exit(&mut self) -> Result<i32> {
        let signals =
            SignalFd::with_flags(&self.running.waited, SfdFlags::SFD_CLOEXEC).context("creating a signalfd")?;
        for fd in self.running.master.iter().chain(self.running.stdin.iter()) {
            set_nonblocking(fd);
        }
        let mut outputs_open = [true; 2];
        let mut pty_open = true;
        loop {
            let mut sources = vec![Source::Signals];
            let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if let Some(outs) = &self.running.outputs {
                for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                    if outputs_open[i] {
                        sources.push(Source::Output(stream, i));
                        fds.push(PollFd::new(outs[i].as_fd(), PollFlags::POLLIN));
                    }
                }
            }
            if let (Some(m), true) = (&self.running.master, pty_open) {
                let mut flags = PollFlags::POLLIN;
                if !self.pending.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                sources.push(Source::Pty);
                fds.push(PollFd::new(m.as_fd(), flags));
            }
            if let (Some(input), false) = (&self.running.stdin, self.pending.is_empty()) {
                sources.push(Source::InputWritable);
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLOUT));
            }
            sources.push(Source::Listener);
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            if self.pending.len() < INPUT_BUFFER {
                for (i, client) in self.clients.iter().enumerate() {
                    sources.push(Source::Client(i));
                    fds.push(PollFd::new(client.fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("waiting for the container"),
                Ok(_) => {}
            }
            let ready: Vec<(Source, PollFlags)> =
                sources.into_iter().zip(fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty()))).collect();
            drop(fds);
            let mut gone = Vec::new();
            for (source, revents) in ready {
                if revents.is_empty() {
                    continue;
                }
                match source {
                    Source::Output(stream, i) => {
                        let fd = &self.running.outputs.as_ref().expect("outputs")[i];
                        outputs_open[i] = still_open(copy_out(fd, stream, &mut self.log, &mut self.clients));
                    }
                    Source::Pty => {
                        if revents.contains(PollFlags::POLLOUT) {
                            self.feed_input();
                        }
                        if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                            let pty = self.running.master.as_ref().expect("pty");
                            pty_open = still_open(copy_out(pty, Stream::Stdout, &mut self.log, &mut self.clients));
                        }
                    }
                    Source::InputWritable => self.feed_input(),
                    Source::Listener => {
                        while let Some(client) = attach::accept(&self.listener) {
                            self.clients.push(client);
                        }
                    }
                    Source::Client(i) => {
                        if !self.serve_client(i) {
                            gone.push(i);
                        }
                    }
                    Source::Signals => {
                        let Some(info) = signals.read_signal().context("reading a signal")? else { continue };
                        match Signal::try_from(info.ssi_signo as i32) {
                            Ok(Signal::SIGCHLD) => {}
                            Ok(sig) => {
                                let _ = kill(self.running.child, sig);
                                continue;
                            }
                            Err(_) => continue,
                        }
                        if let Some(code) = reap(self.running.child)? {
                            self.drain(outputs_open, pty_open);
                            for client in &mut self.clients {
                                let _ = client.send_exit(code);
                            }
                            return Ok(code);
                        }
                    }
                }
            }
            for i in gone.into_iter().rev() {
                self.clients.remove(i);
            }
        }
    }

    /// One frame from client `i`; false when the client is gone.
    fn serve_client(&mut self, i: usize) -> bool {
        let tty = self.running.master.is_some();
        match self.clients[i].recv() {
            Ok(Some(Frame::Input(bytes))) => {
                self.pending.extend_from_slice(&bytes);
                self.feed_input();
                true
            }
            Ok(Some(Frame::Resize { rows, cols })) => {
                if let Some(m) = &self.running.master {
                    crate::ns::tty::set_window_size(m, rows, cols);
                }
                true
            }
            Ok(Some(Frame::Signal(sig))) => {
                if let (false, Ok(sig)) = (tty, Signal::try_from(sig)) {
                    let _ = kill(self.running.child, sig);
                }
                true
            }
            Ok(Some(_)) | Ok(None) | Err(_) => false,
        }
    }

    /// Writes as much pending input as the container takes now: to its stdin pipe, or
    /// to the pty with -i -t. Without -i input is dropped, as Docker does.
    fn feed_input(&mut self) {
        let target = match (&self.running.stdin, &self.running.master) {
            (Some(pipe), _) => pipe,
            (None, Some(pty)) if self.interactive => pty,
            _ => {
                self.pending.clear();
                return;
            }
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(target, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // The container closed its stdin: what it did not take is dropped.
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// After the end: what is left in the pipes or the pty (every writer is gone with
    /// the pid namespace, so this does not wait).
    fn drain(&mut self, outputs_open: [bool; 2], pty_open: bool) {
        let mut rest = Vec::new();
        if let Some(outs) = self.running.outputs.take() {
            let [out, err] = outs;
            rest.extend([(out, Stream::Stdout, outputs_open[0]), (err, Stream::Stderr, outputs_open[1])]);
        }
        if let Some(pty) = self.running.master.take() {
            rest.push((pty, Stream::Stdout, pty_open));
        }
        for (fd, stream, _) in rest.into_iter().filter(|(_, _, open)| *open) {
            set_nonblocking(&fd);
            while matches!(copy_out(&fd, stream, &mut self.log, &mut self.clients), Ok(n) if n > 0) {}
        }
        self.log.flush();
    }
}

/// Copies what the container wrote on `fd` to the log and every client (dropping a
/// client that cannot take it); the number of bytes, 0 at the end of the stream.
fn copy_out(fd: &OwnedFd, stream: Stream, log: &mut LogWriter, clients: &mut Vec<Connection>) -> nix::Result<usize> {
    let mut buf = [0u8; attach::PIECE];
    let n = nix::unistd::read(fd.as_raw_fd(), &mut buf)?;
    log.write(stream, &buf[..n]);
    clients.retain_mut(|c| n == 0 || c.send_output(stream, &buf[..n]).is_ok());
    Ok(n)
}

/// Whether a stream read from is still open (EIO: a pty master whose slave side is all
/// closed).
fn still_open(read: nix::Result<usize>) -> bool {
    matches!(read, Ok(1..) | Err(Errno::EINTR) | Err(Errno::EAGAIN))
}
