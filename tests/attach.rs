//! `husk attach` to detached containers, as unprivileged users: output with the streams
//! kept apart and the exit status, stdin of `run -d -i`, a `-t` session through a real
//! pty with window size and the detach keys, signal proxying, several clients, refusals.
mod common;
use common::reg;

use common::pty::Terminal;
use common::{run_output, Husk, TestUser};
use nix::sys::signal::{kill, Signal};
use nix::sys::termios::LocalFlags;
use nix::unistd::Pid;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn setup(user: TestUser) -> Husk {
    common::husk_with_busybox(user)
}

#[track_caller]
fn detach(h: &Husk, opts: &[&str], cmd: &[&str]) {
    let image = reg("busybox:latest");
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(opts);
    args.push(&image);
    args.extend_from_slice(cmd);
    h.run(&args).assert_ok();
}

#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_of(h: &Husk, name: &str) -> String {
    let out = h.run(&["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    v[0]["State"]["Status"].as_str().unwrap_or("").to_string()
}

/// Waits for a spawned husk with a deadline, so a hang fails the test instead of CI.
#[track_caller]
fn wait_child(child: &mut Child) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("husk attach did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a container writes after the client attached arrives on the client's stdout
/// and stderr, apart; the client ends with the container's exit status. Two clients
/// at once both get everything.
#[test]
fn output_streams_and_exit_status() {
    for user in [TestUser::Sub, TestUser::NoSub] {
        let h = setup(user);
        // The container waits until both clients are there (a file created by exec).
        detach(
            &h,
            &["--name", "talk"],
            &["sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; echo out; echo err >&2; echo out2; exit 7"],
        );
        let spawn = || h.cmd(&["attach", "talk"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (a, b) = (spawn(), spawn());
        std::thread::sleep(Duration::from_millis(500));
        h.run(&["exec", "talk", "touch", "/go"]).assert_ok();
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(7), "attach ends with the container's status: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nout2\n");
            assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        }
        // The log has it too, and attaching to the exited container is refused.
        assert_eq!(h.run(&["logs", "talk"]).stdout, "out\nout2\n");
        let out = h.run(&["attach", "talk"]);
        assert!(out.error_line("attach").contains("not running"), "{out:?}");
        h.run(&["rm", "talk"]).assert_ok();
    }
}

/// `run -d -i`: the container's stdin stays open, fed by whoever attaches; a client's
/// end of input does not close it (Docker's behaviour without --attach stdin).
#[test]
fn stdin_of_a_detached_interactive_container() {
    let h = setup(TestUser::Sub);
    detach(&h, &["-i", "--name", "cat"], &["cat"]);
    let mut deaf =
        h.cmd(&["attach", "--no-stdin", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    deaf.stdin.as_mut().unwrap().write_all(b"ignored\n").unwrap();
    let mut first = h.cmd(&["attach", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    first.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    // The client's stdin is closed now; cat keeps running and a second client feeds it.
    wait_for("hello in the log", || h.run(&["logs", "cat"]).stdout.contains("hello\n"));
    assert_eq!(status_of(&h, "cat"), "running", "EOF of one client does not end the container");
    let mut second = h.cmd(&["attach", "cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    second.stdin.take().unwrap().write_all(b"again\n").unwrap();
    wait_for("again in the log", || h.run(&["logs", "cat"]).stdout.contains("again\n"));
    h.run(&["kill", "cat"]).assert_ok();
    for child in [deaf, first, second] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(137), "killed: {out:?}");
    }
    assert_eq!(h.run(&["logs", "cat"]).stdout, "hello\nagain\n", "nothing typed with --no-stdin reached cat");
    h.run(&["rm", "cat"]).assert_ok();
}

/// `run -d -it` then attach from a real terminal: raw mode, the client's window size,
/// the detach keys (the container keeps running), and the terminal restored.
#[test]
fn tty_session_detach_keys_and_reattach() {
    let h = setup(TestUser::Sub);
    detach(&h, &["-it", "--name", "shell"], &["sh"]);
    let mut term = Terminal::new(30, 100);
    let before = term.modes();
    let mut child = term.spawn(h.cmd(&["attach", "shell"]));
    term.type_in(b"echo mark-$((6*7)); stty size\n");
    term.read_until("mark-42");
    term.read_until("30 100");
    assert!(!term.modes().local_flags.contains(LocalFlags::ICANON), "raw mode while attached");
    term.resize(&child, 33, 90);
    std::thread::sleep(Duration::from_millis(300));
    term.type_in(b"stty size\n");
    term.read_until("33 90");
    // ctrl-p ctrl-q
    term.type_in(&[0x10, 0x11]);
    assert_eq!(wait_child(&mut child), 0, "detaching ends attach with 0: {}", term.seen);
    assert_eq!(term.modes().local_flags, before.local_flags, "terminal modes restored");
    assert_eq!(status_of(&h, "shell"), "running", "the container goes on after a detach");

    // Other detach keys, then the shell's own exit status.
    let mut term = Terminal::new(24, 80);
    let mut child = term.spawn(h.cmd(&["attach", "--detach-keys", "ctrl-x", "shell"]));
    term.type_in(b"echo \x10\x11again-$((2+3))\n");
    term.read_until("again-5");
    term.type_in(b"exit 5\n");
    assert_eq!(wait_child(&mut child), 5, "the shell's status: {}", term.seen);
    wait_for("the container to end", || status_of(&h, "shell") == "exited");
    h.run(&["rm", "shell"]).assert_ok();
}

/// Signals husk attach receives reach the container (--sig-proxy, the default); with
/// --sig-proxy=false they end only the client.
#[test]
fn signals_are_proxied_unless_told_not_to() {
    let h = setup(TestUser::NoSub);
    detach(
        &h,
        &["--name", "trap"],
        &["sh", "-c", "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.05; done"],
    );
    wait_for("ready", || h.run(&["logs", "trap"]).stdout.contains("ready"));

    let mut quiet = h.cmd(&["attach", "--sig-proxy=false", "trap"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal_husk(&quiet, Signal::SIGTERM);
    assert_eq!(wait_child(&mut quiet), 143, "the client dies of SIGTERM");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_of(&h, "trap"), "running", "not passed on with --sig-proxy=false");

    let child = h.cmd(&["attach", "trap"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal_husk(&child, Signal::SIGTERM);
    let out = run_output_of(child);
    assert_eq!(out.0, 3, "the trap's exit status");
    assert_eq!(out.1, "got TERM\n");
    h.run(&["rm", "trap"]).assert_ok();
}

/// Signals husk itself: `child` is the runuser that runs it as the test user.
fn signal_husk(child: &Child, sig: Signal) {
    let kids = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    for pid in kids.split_whitespace() {
        kill(Pid::from_raw(pid.parse().unwrap()), sig).unwrap();
    }
}

fn run_output_of(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bad names and flags: one line, 125.
#[test]
fn refusals() {
    let h = setup(TestUser::Sub);
    let out = h.run(&["attach", "nosuch"]);
    assert!(out.error_line("attach").contains("nosuch"), "{out:?}");
    h.run(&["create", "--name", "made", &reg("busybox:latest"), "true"]).assert_ok();
    let out = h.run(&["attach", "made"]);
    assert!(out.error_line("attach to a created container").contains("not running"), "{out:?}");
    let out = run_output(h.cmd(&["attach", "--detach-keys", "shift-q", "made"]), None);
    assert!(out.error_line("detach keys").contains("shift-q"), "{out:?}");
    h.run(&["rm", "made"]).assert_ok();
}

/// `start -i` (without -a) attaches stdin and output, as Docker's does.
#[test]
fn start_interactive_attaches() {
    let h = setup(TestUser::NoSub);
    h.run(&["create", "-i", "--name", "cat", &reg("busybox:latest"), "sh", "-c", "cat; exit 4"]).assert_ok();
    let out = h.run_stdin(&["start", "-i", "cat"], b"typed\n");
    assert_eq!(out.status, 4, "{out:?}");
    assert_eq!(out.stdout, "typed\n");
    h.run(&["rm", "cat"]).assert_ok();
}
