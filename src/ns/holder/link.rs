//! The holder's socket, `holder.sock` in the network's directory: typed messages on a
//! SOCK_SEQPACKET unix socket (one message a packet), descriptors passed along with
//! them (SCM_RIGHTS). Each step of the protocol is a method named for its intent.
use crate::container::netdef::Endpoint;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    accept4, bind, connect, listen, recvmsg, sendmsg, socket, AddressFamily, Backlog, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub const SOCKET: &str = "holder.sock";
/// Far more than any message needs; a longer one is refused.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// From the holder to every new connection, its user namespace attached.
    Welcome {
        instance: String,
    },
    /// From a starting container, its network namespace and /etc/hosts attached.
    Join(JoinRequest),
    Joined(Endpoint),
    Refused {
        message: String,
    },
}

/// Who a starting container is, for its address and for every /etc/hosts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub container: String,
    pub name: String,
    pub hostname: String,
}

/// One connection to the holder.
pub struct Link {
    fd: OwnedFd,
}

impl Link {
    /// Connects to the holder listening in `dir`.
    pub fn connect(dir: &Path) -> std::result::Result<Link, Errno> {
        let fd = socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
        // The socket's full path may exceed sun_path: reach it through a directory fd.
        let d = std::fs::File::open(dir).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let addr = UnixAddr::new(format!("/proc/self/fd/{}/{}", d.as_raw_fd(), SOCKET).as_str())?;
        connect(fd.as_raw_fd(), &addr)?;
        Ok(Link { fd })
    }

    fn send(&self, msg: &Message, fds: &[RawFd]) -> Result<()> {
        let body = serde_json::to_vec(msg)?;
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(self.fd.as_raw_fd(), &[IoSlice::new(&body)], cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
                Err(Errno::EINTR) => continue,
                r => return r.map(drop).context("writing to the network's holder socket"),
            }
        }
    }

    /// The next message and the descriptors that came with it; None at the end.
    fn recv(&self) -> Result<Option<(Message, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let (len, fds, truncated) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("reading from the network's holder socket"),
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().context("reading passed descriptors")? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these descriptors for us.
                            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                    let truncated = msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                    break (msg.bytes, fds, truncated);
                }
            }
        };
        if len == 0 && fds.is_empty() {
            return Ok(None);
        }
        if truncated {
            bail!("a message on the network's holder socket was too long");
        }
        let msg = serde_json::from_slice(&buf[..len]).context("reading a message of the network's holder")?;
        Ok(Some((msg, fds)))
    }

    /// From the holder: who it is, and its user namespace.
    pub fn welcome(&self, instance: &str, userns: BorrowedFd) -> Result<()> {
        self.send(&Message::Welcome { instance: instance.to_string() }, &[userns.as_raw_fd()])
    }

    /// The holder's instance and user namespace.
    pub fn wait_for_welcome(&self) -> Result<(String, OwnedFd)> {
        match self.recv()? {
            Some((Message::Welcome { instance }, mut fds)) if fds.len() == 1 => Ok((instance, fds.remove(0))),
            Some((other, _)) => bail!("unexpected message {:?} from the network's holder", other),
            None => bail!("the network's holder closed the connection"),
        }
    }

    /// Asks the holder to connect the container; its address comes back.
    pub fn join(&self, request: &JoinRequest, netns: BorrowedFd, hosts: BorrowedFd) -> Result<Endpoint> {
        self.send(&Message::Join(request.clone()), &[netns.as_raw_fd(), hosts.as_raw_fd()])?;
        match self.recv()? {
            Some((Message::Joined(endpoint), _)) => Ok(endpoint),
            Some((Message::Refused { message }, _)) => bail!("{}", message),
            Some((other, _)) => bail!("unexpected message {:?} from the network's holder", other),
            None => bail!("the network's holder closed the connection"),
        }
    }

    /// In the holder: the next join request with the container's network namespace and
    /// /etc/hosts; None when the other side has closed the connection.
    pub fn next_request(&self) -> Result<Option<(JoinRequest, OwnedFd, std::fs::File)>> {
        match self.recv()? {
            None => Ok(None),
            Some((Message::Join(request), fds)) if fds.len() == 2 => {
                let mut fds = fds.into_iter();
                let netns = fds.next().expect("two");
                let hosts = std::fs::File::from(fds.next().expect("two"));
                Ok(Some((request, netns, hosts)))
            }
            Some((other, _)) => bail!("unexpected message {:?} to the network's holder", other),
        }
    }

    pub fn answer_joined(&self, endpoint: &Endpoint) -> Result<()> {
        self.send(&Message::Joined(endpoint.clone()), &[])
    }

    pub fn answer_refused(&self, message: &str) -> Result<()> {
        self.send(&Message::Refused { message: message.to_string() }, &[])
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The holder's listening socket.
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Listens on `holder.sock` in the current directory (the network's).
    pub fn bind_here() -> Result<Listener> {
        let fd =
            socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
                .context("creating the holder's socket")?;
        let _ = std::fs::remove_file(SOCKET);
        bind(fd.as_raw_fd(), &UnixAddr::new(SOCKET)?).context("binding the holder's socket")?;
        listen(&fd, Backlog::new(64)?).context("listening on the holder's socket")?;
        Ok(Listener { fd })
    }

    /// A waiting connection, if any (the socket does not block).
    pub fn accept(&self) -> Option<Link> {
        loop {
            match accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                Err(Errno::EINTR) => continue,
                // SAFETY: accept4 returned a new descriptor that nothing else owns.
                Ok(fd) => return Some(Link { fd: unsafe { OwnedFd::from_raw_fd(fd) } }),
                Err(_) => return None,
            }
        }
    }

    /// Whether a connection waits to be accepted.
    pub fn has_pending(&self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
