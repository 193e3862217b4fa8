//! `husk cp`: files between the host and a container, as a tar stream through a pipe.
//!
//! The container's side runs in a forked child that has entered the container's
//! filesystem — a running container's user and mount namespaces (as `exec` joins them),
//! or for a stopped one its layers and writable layer mounted in namespaces of its own —
//! and chrooted into it. Every path it resolves, symlinks included, stays inside the
//! container whatever the container does meanwhile (CVE-2018-15664, CVE-2019-10152
//! class). The host's side reads or writes the stream as the user, and refuses entries
//! that would land outside the destination.
//!
//! Names follow Docker: `SRC` copies as `basename(SRC)` into an existing directory
//! `DST`, or becomes `DST`; `SRC/.` copies the directory's contents into `DST`.
use super::{launch, Container};
use crate::layers::store::Store;
use crate::ns::channel::Channel;
use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// What the stream's top level is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Top {
    /// `SRC/.`: the directory's contents.
    Contents,
    /// One entry with this name (and below it, a directory's tree).
    Named(String),
}

fn top_of(src: &str) -> Result<Top> {
    let trimmed = src.trim_end_matches('/');
    if trimmed.ends_with("/.") || trimmed == "." {
        return Ok(Top::Contents);
    }
    match Path::new(trimmed).file_name() {
        Some(n) => Ok(Top::Named(n.to_string_lossy().into_owned())),
        None => Ok(Top::Contents), // "/": the whole tree
    }
}

/// Copies `src` out of the container into `dst` on the host (`None`: a tar on stdout).
pub fn copy_out(store: &Store, c: &Container, src: &str, dst: Option<&Path>, follow: bool) -> Result<()> {
    let top = top_of(src)?;
    let in_ctr = format!("container {}", c.state.name);
    let (child, read) = in_container(store, c, |out| write_tar(out, Path::new(src), &top, follow, &in_ctr))?;
    let consumed = match dst {
        None => std::io::copy(&mut &read, &mut std::io::stdout().lock()).map(|_| ()).context("writing to stdout"),
        Some(dst) => unpack_to(read, dst, &top, "the host"),
    };
    child.finish().and(consumed)
}

/// Copies `src` from the host (`None`: a tar on stdin) into the container's `dst`.
pub fn copy_in(store: &Store, c: &Container, src: Option<&Path>, dst: &str) -> Result<()> {
    let top = match src {
        Some(s) => top_of(&s.to_string_lossy())?,
        None => Top::Contents,
    };
    if let Some(s) = src {
        fs::symlink_metadata(s).with_context(|| format!("{} on the host", s.display()))?;
    }
    let in_ctr = format!("container {}", c.state.name);
    let (child, write) = in_container(store, c, |input| unpack_to(input, Path::new(dst), &top, &in_ctr))?;
    // The container's side may stop reading (and report why): no SIGPIPE for that.
    let _ = ignore_sigpipe();
    let produced = match src {
        None => std::io::copy(&mut std::io::stdin().lock(), &mut &write).map(|_| ()).context("reading stdin"),
        Some(s) => write_tar(&write, s, &top, false, "the host"),
    };
    let _ = write.shutdown(std::net::Shutdown::Write);
    drop(write);
    child.finish().and(produced)
}

fn ignore_sigpipe() -> nix::Result<nix::sys::signal::SigHandler> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_IGN runs no handler code.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }
}

/// The forked child on the container's side.
struct Child {
    pid: nix::unistd::Pid,
    channel: Channel,
}

impl Child {
    /// Waits for the child; its failure (reported on the channel) wins over the
    /// host side's, which is usually only the broken stream.
    fn finish(mut self) -> Result<()> {
        let reported = self.channel.wait_until_done();
        let status = waitpid(self.pid, None).context("waiting for the copy")?;
        match reported? {
            Err(message) => bail!("{}", message),
            Ok(()) if status == WaitStatus::Exited(self.pid, 0) => Ok(()),
            Ok(()) => bail!("the copy in the container ended abnormally ({:?})", status),
        }
    }
}

/// Forks a child that enters the container's filesystem, chroots into it and runs
/// `work` there with its end of a socket; returns the other end.
fn in_container(
    store: &Store,
    c: &Container,
    work: impl FnOnce(UnixStream) -> Result<()>,
) -> Result<(Child, UnixStream)> {
    let running = c.is_up() && c.live_pid().is_some();
    let target = if running { c.state.pid } else { None };
    let plan = if running { None } else { Some(launch::run_options(store, c, &c.spec()?, false)?.rootfs) };
    let (parent_end, mut child_end) = Channel::pair()?;
    let (ours, theirs) = UnixStream::pair().context("creating a socket pair")?;
    // SAFETY: husk is single-threaded here; the child runs ordinary code and leaves
    // with process::exit.
    match unsafe { fork() }.context("forking the copy")? {
        ForkResult::Child => {
            drop(parent_end);
            drop(ours);
            let result = match (&target, &plan) {
                (Some(t), _) => crate::ns::join::enter_filesystem(t),
                (None, Some(plan)) => crate::ns::rootfs::enter_stopped(plan),
                (None, None) => unreachable!("a plan or a target"),
            }
            .and_then(|()| work(theirs));
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_end.report_container_failure(125, &format!("{:#}", e));
                    125
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            Ok((Child { pid: child, channel: parent_end }, ours))
        }
    }
}

/// Archives `src` under the name `top` says; symlinks are archived as symlinks (with
/// `follow`, a symlink `src` itself is archived as what it points to).
fn write_tar(out: impl Write, src: &Path, top: &Top, follow: bool, side: &str) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let meta = if follow { fs::metadata(src) } else { fs::symlink_metadata(src) }
        .with_context(|| format!("{} in {}", src.display(), side))?;
    match top {
        Top::Contents => {
            if !meta.is_dir() {
                bail!("{} in {}: not a directory", src.display(), side);
            }
            tar.append_dir_all(".", src).with_context(|| format!("archiving {}", src.display()))?;
        }
        Top::Named(name) if meta.is_dir() => {
            tar.append_dir_all(name, src).with_context(|| format!("archiving {}", src.display()))?
        }
        Top::Named(name) if meta.is_file() && follow => {
            let mut f = File::open(src).with_context(|| format!("{}", src.display()))?;
            tar.append_file(name, &mut f).with_context(|| format!("archiving {}", src.display()))?
        }
        Top::Named(name) => {
            tar.append_path_with_name(src, name).with_context(|| format!("archiving {}", src.display()))?
        }
    }
    tar.into_inner().context("finishing the archive")?.flush().context("writing the archive")?;
    Ok(())
}

/// Unpacks the stream at `dst` with Docker's naming (see the module's notes).
fn unpack_to(stream: impl Read, dst: &Path, top: &Top, side: &str) -> Result<()> {
    let dst_meta = fs::metadata(dst).ok();
    match top {
        Top::Contents => {
            match &dst_meta {
                Some(m) if !m.is_dir() => bail!("{} in {} is not a directory", dst.display(), side),
                Some(_) => {}
                None => fs::create_dir(dst).with_context(|| format!("creating {} in {}", dst.display(), side))?,
            }
            unpack_into(stream, dst)
        }
        Top::Named(_) if dst_meta.as_ref().is_some_and(|m| m.is_dir()) => unpack_into(stream, dst),
        Top::Named(name) => {
            // Unpacked beside the destination, then renamed into place.
            let parent = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !fs::metadata(parent).is_ok_and(|m| m.is_dir()) {
                bail!("{} in {}: no such directory", parent.display(), side);
            }
            let scratch = parent.join(format!(".husk-cp-{}", std::process::id()));
            fs::create_dir(&scratch)
                .with_context(|| format!("creating a directory in {} in {}", parent.display(), side))?;
            let result = unpack_into(stream, &scratch).and_then(|()| {
                let unpacked = scratch.join(name);
                let is_dir = fs::symlink_metadata(&unpacked).map(|m| m.is_dir()).unwrap_or(false);
                if is_dir && dst_meta.is_some() {
                    bail!("cannot copy a directory onto the file {} in {}", dst.display(), side);
                }
                fs::rename(&unpacked, dst).with_context(|| format!("writing {} in {}", dst.display(), side))
            });
            let _ = crate::util::remove_tree(&scratch);
            result
        }
    }
}

/// Unpacks every entry inside `dir`. An entry whose path leaves `dir` (absolute, `..`,
/// or through a symlink the stream made) is refused; device nodes are skipped.
fn unpack_into(stream: impl Read, dir: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        if matches!(entry.header().entry_type(), tar::EntryType::Block | tar::EntryType::Char) {
            continue;
        }
        let path: PathBuf = entry.path().context("reading the archive")?.into_owned();
        if !entry.unpack_in(dir).with_context(|| format!("writing {}", dir.join(&path).display()))? {
            bail!("refusing {}: it leads outside {}", path.display(), dir.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        assert_eq!(top_of("/etc/hosts").unwrap(), Top::Named("hosts".into()));
        assert_eq!(top_of("/etc/").unwrap(), Top::Named("etc".into()));
        assert_eq!(top_of("/etc/.").unwrap(), Top::Contents);
        assert_eq!(top_of("/").unwrap(), Top::Contents);
        assert_eq!(top_of("rel/dir").unwrap(), Top::Named("dir".into()));
    }

    #[test]
    fn round_trip_and_renames() {
        let base = std::env::temp_dir().join(format!("husk-copy-test-{}", std::process::id()));
        let src = base.join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "data").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let archive = |top: &Top, p: &Path| {
            let mut buf = Vec::new();
            write_tar(&mut buf, p, top, false, "t").unwrap();
            buf
        };
        // a directory into an existing directory, then as a new name
        fs::create_dir(base.join("into")).unwrap();
        unpack_to(&archive(&Top::Named("src".into()), &src)[..], &base.join("into"), &Top::Named("src".into()), "t")
            .unwrap();
        assert_eq!(fs::read_to_string(base.join("into/src/sub/f")).unwrap(), "data");
        assert_eq!(fs::read_link(base.join("into/src/link")).unwrap(), Path::new("/etc/passwd"));
        unpack_to(&archive(&Top::Named("src".into()), &src)[..], &base.join("new"), &Top::Named("src".into()), "t")
            .unwrap();
        assert!(base.join("new/sub/f").is_file());
        // contents into a new directory; a file onto a new name
        unpack_to(&archive(&Top::Contents, &src)[..], &base.join("contents"), &Top::Contents, "t").unwrap();
        assert!(base.join("contents/sub/f").is_file());
        let f = src.join("sub/f");
        unpack_to(&archive(&Top::Named("f".into()), &f)[..], &base.join("g"), &Top::Named("f".into()), "t").unwrap();
        assert_eq!(fs::read_to_string(base.join("g")).unwrap(), "data");
        // a directory onto a file is refused
        assert!(unpack_to(
            &archive(&Top::Named("src".into()), &src)[..],
            &base.join("g"),
            &Top::Named("src".into()),
            "t"
        )
        .is_err());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn entries_through_a_symlink_are_refused() {
        let base = std::env::temp_dir().join(format!("husk-copy-evil-{}", std::process::id()));
        let outside = base.join("outside");
        let dst = base.join("dst");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(&dst).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "evil", &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "evil/pwned", &b"bad"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(unpack_into(&data[..], &dst).is_err());
        assert!(!outside.join("pwned").exists(), "nothing written outside");
        fs::remove_dir_all(&base).unwrap();
    }
}
