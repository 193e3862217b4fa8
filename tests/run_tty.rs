//! `husk run -t` driven through a real pseudo-terminal, and `--init`.
mod common;

use common::{ensure_prereqs, shared_registry, Husk, TestUser};
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn reg(image: &str) -> String {
    format!("{}/{}", shared_registry().host(), image)
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one struct winsize that outlives the call.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Reads from the pty master until `needle` shows up (or panics after 20 s).
fn read_until(master: &mut std::fs::File, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        assert!(Instant::now() < deadline, "timed out waiting for {:?}; the terminal showed:\n{}", needle, seen);
        match master.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(20)),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("reading the pty: {e}; it showed:\n{seen}"),
        }
    }
}

#[test]
fn interactive_tty_session() {
    ensure_prereqs();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    let pty = openpty(None, None).unwrap();
    set_size(&pty.master, 24, 80);
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON));
    let mut cmd = h.cmd(&["run", "--rm", "-it", &reg("busybox:latest"), "sh"]);
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
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
    let mut child = cmd.spawn().unwrap();
    let flags = nix::fcntl::fcntl(pty.master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::fcntl(
        pty.master.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut master = std::fs::File::from(pty.master.try_clone().unwrap());
    let mut seen = String::new();
    master.write_all(b"echo marker-$((6*7)); stty size; tty\n").unwrap();
    read_until(&mut master, &mut seen, "marker-42");
    read_until(&mut master, &mut seen, "24 80");
    read_until(&mut master, &mut seen, "/dev/console");
    // While husk runs, the caller's terminal is raw.
    let during = tcgetattr(&pty.slave).unwrap();
    assert!(!during.local_flags.contains(LocalFlags::ICANON), "raw mode while the container runs");
    // A window-size change reaches the container.
    set_size(&pty.master, 40, 120);
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGWINCH);
    std::thread::sleep(Duration::from_millis(300));
    master.write_all(b"stty size\n").unwrap();
    read_until(&mut master, &mut seen, "40 120");
    master.write_all(b"exit 7\n").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "the shell's exit status: {seen}");
    let after = tcgetattr(&pty.slave).unwrap();
    assert!(after.local_flags.contains(LocalFlags::ICANON), "terminal restored after exit");
    assert_eq!(after.local_flags, before.local_flags, "terminal modes restored exactly");
}

#[test]
fn init_reaps_zombies_and_forwards_signals() {
    ensure_prereqs();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    // An orphan that exits becomes a child of pid 1; the init must reap it.
    let out = h.run(&[
        "run",
        "--rm",
        "--init",
        &reg("busybox:latest"),
        "sh",
        "-c",
        "(sh -c 'exit 0' &); sleep 1; echo pid=$$; cat /proc/[0-9]*/stat | cut -d' ' -f3 | sort | uniq -c; readlink /proc/1/exe || echo exe-hidden",
    ]);
    out.assert_ok();
    assert!(out.stdout.contains("pid=2"), "the command is pid 2 under --init: {:?}", out);
    assert!(!out.stdout.contains(" Z"), "no zombie under --init: {:?}", out);
    assert!(out.stdout.contains("exe-hidden"), "/proc/1/exe (husk) is not reachable: {:?}", out);
    // SIGTERM to husk reaches the command, which dies of it: 128+15.
    let mut child = h
        .cmd(&["run", "--rm", "--init", &reg("busybox:latest"), "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = std::process::Command::new("pkill").args(["-TERM", "-P", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "SIGTERM forwarded through the init");
    // Exit codes pass through the init, and exec failures still say why.
    assert_eq!(h.run(&["run", "--rm", "--init", &reg("busybox:latest"), "sh", "-c", "exit 9"]).status, 9);
    let nf = h.run(&["run", "--rm", "--init", &reg("busybox:latest"), "no-such-command"]);
    assert_eq!(nf.status, 127, "{:?}", nf);
}
