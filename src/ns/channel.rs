//! Typed messages between a process and the children it forks, over one socket.
//! Each step of a protocol is a method named for its intent; nothing else writes bytes.
use anyhow::{bail, Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// The process has unshared its user namespace and waits for its id maps.
    UserNamespaceReady,
    /// The container's process could not be set up or started: the exit code to
    /// report (125 setup, 126 not executable, 127 not found) and why.
    ContainerFailed { code: i32, message: String },
    /// From a detached container's monitor: the command runs and its state is recorded.
    MonitorStarted,
    /// To the container's process: the user namespace's id maps are written.
    IdMapsWritten,
    /// To the container's process: its network namespace carries traffic.
    NetworkReady,
}

/// What became of the container's process.
pub enum StartOutcome {
    /// The command replaced the child (the channel closed on exec).
    Started,
    Failed {
        code: i32,
        message: String,
    },
}

pub struct Channel {
    stream: UnixStream,
}

impl std::os::fd::AsRawFd for Channel {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }
}

impl Channel {
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = UnixStream::pair().context("creating a socket pair")?;
        Ok((Channel { stream: a }, Channel { stream: b }))
    }

    fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let body = serde_json::to_vec(msg)?;
        let len = u32::try_from(body.len()).context("message too large")?;
        self.stream.write_all(&len.to_le_bytes())?;
        self.stream.write_all(&body)?;
        Ok(())
    }

    fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        self.recv_or_eof()?.context("the other side of the channel went away")
    }

    /// The next message, or None when the other side closed the channel.
    fn recv_or_eof<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("reading from the channel"),
            Ok(()) => {}
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > 1 << 20 {
            bail!("channel message of {} bytes refused", len);
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(Some(serde_json::from_slice(&body)?))
    }

    /// Tells an id-map helper that the user namespace exists.
    pub fn request_id_maps(&mut self) -> Result<()> {
        self.send(&Message::UserNamespaceReady)
    }

    pub fn wait_for_id_map_request(&mut self) -> Result<()> {
        match self.recv()? {
            Message::UserNamespaceReady => Ok(()),
            other => bail!("unexpected message {:?} while waiting for the id map request", other),
        }
    }

    /// To the container child, forked while the map tools ran: its ids are mapped now.
    pub fn report_id_maps_written(&mut self) -> Result<()> {
        self.send(&Message::IdMapsWritten)
    }

    /// In the container child, before it creates files: waits until its ids are mapped.
    pub fn wait_for_id_maps(&mut self) -> Result<()> {
        match self.recv_or_eof()? {
            Some(Message::IdMapsWritten) => Ok(()),
            None => bail!("husk went away before the user namespace's id maps were written"),
            Some(other) => bail!("unexpected message {:?} while waiting for the id maps", other),
        }
    }

    /// Closes this process's copy of the socket (a forked init must not keep the
    /// parent from seeing the command's exec).
    /// (`shutdown` would not do: it acts on the socket shared with the other copies.)
    pub fn close_in_this_process(&mut self) {
        if let Ok(devnull) = std::fs::File::open("/dev/null") {
            use std::os::fd::AsRawFd;
            let _ = nix::unistd::dup2(devnull.as_raw_fd(), self.stream.as_raw_fd());
        }
    }

    /// To the container child: the network tool has configured its namespace.
    pub fn report_network_ready(&mut self) -> Result<()> {
        self.send(&Message::NetworkReady)
    }

    /// In the container child, before its command: waits until its network is usable.
    pub fn wait_for_network(&mut self) -> Result<()> {
        match self.recv_or_eof()? {
            Some(Message::NetworkReady) => Ok(()),
            None => bail!("the network tool failed before the container's network was ready"),
            Some(other) => bail!("unexpected message {:?} while waiting for the network", other),
        }
    }

    /// From the container child: it cannot go on.
    pub fn report_container_failure(&mut self, code: i32, message: &str) -> Result<()> {
        self.send(&Message::ContainerFailed { code, message: message.to_string() })
    }

    /// In the parent: waits until the child has exec'd (its end closes) or failed.
    pub fn wait_for_exec(&mut self) -> Result<StartOutcome> {
        match self.recv_or_eof().context("waiting for the container to start")? {
            None => Ok(StartOutcome::Started),
            Some(Message::ContainerFailed { code, message }) => Ok(StartOutcome::Failed { code, message }),
            Some(other) => bail!("unexpected message {:?} while the container starts", other),
        }
    }

    /// From a monitor to the husk that forked it: the container runs.
    pub fn report_monitor_started(&mut self) -> Result<()> {
        self.send(&Message::MonitorStarted)
    }

    /// In the husk that forked a monitor: waits until the container runs or failed.
    pub fn wait_for_monitor(&mut self) -> Result<StartOutcome> {
        match self.recv_or_eof().context("waiting for the container's monitor")? {
            Some(Message::MonitorStarted) => Ok(StartOutcome::Started),
            Some(Message::ContainerFailed { code, message }) => Ok(StartOutcome::Failed { code, message }),
            None => bail!("the container's monitor ended before the container started"),
            Some(other) => bail!("unexpected message {:?} from the monitor", other),
        }
    }

    /// In a parent whose child reports only a failure: Ok when the child closed the
    /// channel without a word.
    pub fn wait_until_done(&mut self) -> Result<Result<(), String>> {
        match self.recv_or_eof()? {
            None => Ok(Ok(())),
            Some(Message::ContainerFailed { message, .. }) => Ok(Err(message)),
            Some(other) => bail!("unexpected message {:?} from the child", other),
        }
    }
}
