//! `husk run -t` driven through a real pseudo-terminal, and `--init`.
mod common;
use common::reg;

use common::pty::Terminal;
use common::{ensure_prereqs, Husk, TestUser};
use nix::sys::termios::LocalFlags;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn interactive_tty_session() {
    ensure_prereqs();
    let h = Husk::new(TestUser::Sub);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    let mut term = Terminal::new(24, 80);
    let before = term.modes();
    assert!(before.local_flags.contains(LocalFlags::ICANON));
    let mut child = term.spawn(h.cmd(&["run", "--rm", "-it", &reg("busybox:latest"), "sh"]));
    term.type_in(b"echo marker-$((6*7)); stty size; tty\n");
    term.read_until("marker-42");
    term.read_until("24 80");
    term.read_until("/dev/console");
    // While husk runs, the caller's terminal is raw.
    assert!(!term.modes().local_flags.contains(LocalFlags::ICANON), "raw mode while the container runs");
    // A window-size change reaches the container.
    term.resize(&child, 40, 120);
    std::thread::sleep(Duration::from_millis(300));
    term.type_in(b"stty size\n");
    term.read_until("40 120");
    term.type_in(b"exit 7\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "the shell's exit status: {}", term.seen);
    let after = term.modes();
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
