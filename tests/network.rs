//! `--network pasta|slirp4netns` and `-p`: a server in a container reached from the
//! host's loopback, the host's loopback reached from inside, `husk port`, ps and inspect,
//! no tool left running after the container, and the one-line refusals; the default
//! network (pasta, else slirp4netns, else none with a warning) and its outbound
//! connectivity from the command's first instruction. Traffic stays on loopback and the
//! test's own namespaces.
mod common;

use common::{shared_registry, Husk, TestUser};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

fn setup(user: TestUser) -> Husk {
    common::husk_with_tun(user)
}

fn busybox() -> String {
    format!("{}/busybox:latest", shared_registry().host())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// pasta or slirp4netns processes whose parent chain holds this Husk's HOME.
fn tools(h: &Husk) -> Vec<i32> {
    let mine = h.leftover_processes();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| common::alive(*p as i64))
        .filter(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            let ppid = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<i32>().ok());
            (comm.trim().starts_with("pas") || comm.trim() == "slirp4netns")
                && ppid.map(|pp| mine.contains(&pp)).unwrap_or(false)
        })
        .collect()
}

/// pasta or slirp4netns processes started by this Husk's husk (they carry its HOME),
/// reparented or not.
fn tools_anywhere(h: &Husk) -> Vec<i32> {
    h.leftover_processes()
        .into_iter()
        .filter(|p| {
            let c = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            c.trim().starts_with("pas") || c.trim() == "slirp4netns"
        })
        .collect()
}

/// GET / on 127.0.0.1:port, retried until it answers (the server may still start).
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match r {
            Ok(body) if body.contains("200") => return body,
            _ if Instant::now() > deadline => panic!("no answer on 127.0.0.1:{port}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn serve_and_fetch(user: TestUser, mode: &str) {
    let h = setup(user);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let id = h
        .run(&[
            "run",
            "-q",
            "-d",
            "--network",
            mode,
            "-p",
            &publish,
            &busybox(),
            "sh",
            "-c",
            "mkdir /www && echo hello-from-container > /www/index.html && exec httpd -f -p 8080 -h /www",
        ])
        .assert_ok()
        .stdout
        .trim()
        .to_string();
    // The host's side of the port is open when run -d returns (the server may still start).
    TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{mode}: port {port} not published yet: {e}"));
    assert!(http_get(port).contains("hello-from-container"));
    let out = h.run(&["port", &id]).assert_ok().stdout.clone();
    assert_eq!(out.trim(), format!("8080/tcp -> 127.0.0.1:{port}"));
    assert_eq!(h.run(&["port", &id, "8080"]).assert_ok().stdout.trim(), format!("127.0.0.1:{port}"));
    let ps = h.run(&["ps"]).assert_ok().stdout.clone();
    assert!(ps.contains(&format!("127.0.0.1:{port}->8080/tcp")), "{ps}");
    let inspect = h.run(&["inspect", &id]).assert_ok().stdout.clone();
    assert!(inspect.contains("\"8080/tcp\"") && inspect.contains(&format!("\"{port}\"")), "{inspect}");
    assert_eq!(tools(&h).len(), 1, "one {mode} for the container");
    h.run(&["stop", "-t", "1", &id]).assert_ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tools(&h).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(tools(&h).is_empty(), "{mode} left running after stop");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the port outlived the container");
}

#[test]
fn pasta_publishes_a_port_detached() {
    serve_and_fetch(TestUser::Sub, "pasta");
}

#[test]
fn slirp4netns_publishes_a_port_detached() {
    serve_and_fetch(TestUser::NoSub, "slirp4netns");
}

/// A server on the host's loopback, reached from inside through the mode's address
/// for it (host.containers.internal), in a foreground run; no tool left afterwards.
fn reach_host_loopback(user: TestUser, mode: &str) {
    let h = setup(user);
    let (port, server) = common::answer_once_on_loopback(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nhello-host");
    let script = format!(
        "grep -q \"$(hostname)\" /etc/hosts && grep host.containers.internal /etc/hosts >&2 && {{ printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc $(awk '/host.containers.internal/{{print $1}}' /etc/hosts) {port}; true; }} | grep -o hello-host"
    );
    // The pasta of Debian 12 does not pass the host side's close on to the container
    // (nc would wait for ever): nc gets 5 s, then the answer is checked.
    let net = format!("{mode}:allow_host_loopback=true");
    let out = h.run(&["run", "-q", "--rm", "--network", &net, &busybox(), "sh", "-c", &script]);
    out.assert_ok();
    // (Debian 12's pasta may deliver the answer more than once after the host closes)
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| *l == "hello-host"), "{out:?}");
    server.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tools_anywhere(&h).is_empty() {
        assert!(Instant::now() < deadline, "{mode} left running after a foreground run: {:?}", tools_anywhere(&h));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Without the option the host's loopback stays out of reach.
    let script = format!("! grep -q host.containers.internal /etc/hosts && ! nc -w 3 10.0.2.2 {port} </dev/null");
    h.run(&["run", "-q", "--rm", "--network", mode, &busybox(), "sh", "-c", &script]).assert_ok();
}

#[test]
fn pasta_reaches_host_loopback() {
    reach_host_loopback(TestUser::Sub, "pasta");
}

#[test]
fn slirp4netns_reaches_host_loopback() {
    reach_host_loopback(TestUser::Sub, "slirp4netns");
}

#[test]
fn resolv_conf_matches_the_mode() {
    let h = setup(TestUser::NoSub);
    let out = h.run(&["run", "-q", "--rm", "--network", "slirp4netns", &busybox(), "cat", "/etc/resolv.conf"]);
    assert_eq!(out.assert_ok().stdout.trim(), "nameserver 10.0.2.3");
    // pasta: a default route and an address in the container's own namespace.
    let out = h.run(&[
        "run",
        "-q",
        "--rm",
        "--network",
        "pasta",
        &busybox(),
        "sh",
        "-c",
        "cat /proc/net/route | wc -l; cat /etc/resolv.conf",
    ]);
    let text = out.assert_ok().stdout.clone();
    assert!(text.lines().next().unwrap().trim().parse::<u32>().unwrap() >= 2, "{text}");
    assert!(text.contains("nameserver"), "{text}");
}

#[test]
fn publish_without_a_tool_mode_is_refused() {
    let h = setup(TestUser::Sub);
    for mode in ["host", "none"] {
        let out = h.run(&["run", "-q", "--rm", "--network", mode, "-p", "8080", &busybox(), "true"]);
        out.assert_fail();
        assert_eq!(out.status, 125);
        assert!(
            out.stderr.trim().lines().count() == 1 && out.stderr.contains("--network pasta or slirp4netns"),
            "{}",
            out.stderr
        );
    }
    let out = h.run(&["run", "-q", "--rm", "--network", "pasta", "-p", "1:2:3:4", &busybox(), "true"]);
    assert_eq!(out.status, 125);
}

#[test]
fn missing_tool_names_the_package() {
    let h = setup(TestUser::Sub);
    // A PATH without /usr/bin: neither tool is found (husk itself is run by path).
    for (mode, package) in [("pasta", "passt"), ("slirp4netns", "slirp4netns")] {
        let out = h.run_env(&[("PATH", "/nonexistent")], &["run", "-q", "--rm", "--network", mode, &busybox(), "true"]);
        assert_eq!(out.status, 125, "{}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(&format!("Debian package {package}")), "{}", out.stderr);
    }
}

#[test]
fn free_host_port_is_chosen_and_shown() {
    let h = setup(TestUser::Sub);
    let id = h
        .run(&[
            "run",
            "-q",
            "-d",
            "--network",
            "pasta",
            "-p",
            "127.0.0.1::8080",
            &busybox(),
            "sh",
            "-c",
            "mkdir /www && echo chosen > /www/index.html && exec httpd -f -p 8080 -h /www",
        ])
        .assert_ok()
        .stdout
        .trim()
        .to_string();
    let line = h.run(&["port", &id]).assert_ok().stdout.trim().to_string();
    let port: u16 = line.strip_prefix("8080/tcp -> 127.0.0.1:").expect(&line).parse().unwrap();
    assert!(http_get(port).contains("chosen"));
    h.run(&["rm", "-f", &id]).assert_ok();
    assert!(tools(&h).is_empty());
}

/// The tool dies with the husk that started it, even when that husk gets SIGKILL
/// (foreground run: parent-death signal), and a foreground -p works too.
#[test]
fn tool_dies_with_a_killed_foreground_husk() {
    for (user, mode) in [(TestUser::Sub, "pasta"), (TestUser::NoSub, "slirp4netns")] {
        let h = setup(user);
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:8080");
        let mut child = h
            .cmd(&[
                "run",
                "-q",
                "--network",
                mode,
                "-p",
                &publish,
                &busybox(),
                "sh",
                "-c",
                "mkdir /www && echo fg > /www/index.html && exec httpd -f -p 8080 -h /www",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(http_get(port).contains("fg"));
        let started = tools(&h);
        assert_eq!(started.len(), 1, "{mode}");
        for pid in h.leftover_processes() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "husk" {
                // SAFETY: kill(2) with a pid read from /proc.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Reparented when husk died: follow the pid itself.
        while common::alive(started[0] as i64) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!common::alive(started[0] as i64), "{mode} outlived a killed husk");
    }
}

// ---------------------------------------------------------------------------
// the default network
// ---------------------------------------------------------------------------

/// The address of the server in `in_test_netns`; the namespace's other address,
/// 10.99.0.1/24, is the one pasta copies into the container.
const SERVER_ADDR: &str = "10.99.0.2";

/// Runs `f` on a thread in a network namespace of the test's own, which husk started
/// from there takes for the host's: a veth pair with 10.99.0.1/24 and SERVER_ADDR/24,
/// and a default route. Nothing sent there leaves it.
fn in_test_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(2) with a flag only; it moves this thread alone.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare(CLONE_NEWNET)");
            let script = format!(
                "ip link set lo up && ip link add tv0 type veth peer name tv1 && \
                 ip addr add 10.99.0.1/24 dev tv0 && ip addr add {SERVER_ADDR}/24 dev tv1 && \
                 ip link set tv0 up && ip link set tv1 up && ip route add default via 10.99.0.254 dev tv0"
            );
            let st = Command::new("sh").args(["-c", &script]).status().unwrap();
            assert!(st.success(), "setting up the test's network namespace");
            f()
        })
        .join()
        .unwrap()
    })
}

/// A server on SERVER_ADDR that reads one line and answers `hello-in`; returns its
/// port and a handle giving what it read.
fn line_server() -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind((SERVER_ADDR, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return format!("no connection: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
            got.push(b[0]);
        }
        s.write_all(b"hello-in\n").unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (port, server)
}

/// With the default network, the command's very first connection reaches a server
/// outside the container: one attempt, no retry, so the namespace is configured before
/// the command runs. `env` picks the tool (PATH). Returns the mode inspect shows.
fn default_reaches_out_at_once(h: &Husk, env: &[(&str, &str)]) -> String {
    let image = busybox();
    h.run(&["pull", "-q", &image]).assert_ok();
    let out = in_test_netns(|| {
        let (port, server) = line_server();
        // Debian 12's pasta may keep the connection open after the server closes:
        // nc gets 5 s (timeout's "Terminated" discarded), then what it printed is checked.
        let script =
            format!("{{ echo hello-out | timeout 5 nc {SERVER_ADDR} {port}; }} 2>&1 | grep -v ^Terminated; true");
        let out = h.run_env(env, &["run", "--pull", "never", "--name", "out", &image, "sh", "-c", &script]);
        let got = server.join().unwrap();
        (out, got)
    });
    let (out, got) = out;
    out.assert_ok();
    assert_eq!(got, "hello-out", "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| *l == "hello-in"), "{out:?}");
    assert_eq!(out.stderr, "", "no warning: {out:?}");
    let inspect: serde_json::Value = serde_json::from_str(&h.run(&["inspect", "out"]).assert_ok().stdout).unwrap();
    let mode = inspect[0]["HostConfig"]["NetworkMode"].as_str().unwrap().to_string();
    let ps: serde_json::Value =
        serde_json::from_str(&h.run(&["ps", "-a", "--format", "json"]).assert_ok().stdout).unwrap();
    assert_eq!(ps[0]["Networks"][0].as_str(), Some(mode.as_str()), "{ps}");
    h.run(&["rm", "out"]).assert_ok();
    mode
}

/// A directory for PATH holding only `program`, a script that starts the real one
/// (/usr/bin/PROGRAM) after 0.3 s: husk finds that tool and not the other, and a
/// command that ran before the tool had configured its namespace could not connect.
/// (The uid map tools are found in /usr/bin anyway.)
fn path_with_slow(program: &str) -> common::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::TempDir::new("path");
    let script = dir.path().join(program);
    std::fs::write(&script, format!("#!/bin/sh\n/bin/sleep 0.3\nexec /usr/bin/{program} \"$@\"\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The default with a slow `tool`: its own namespace, reached out of at once.
fn default_is(user: TestUser, tool: &str) {
    let h = setup(user);
    let dir = path_with_slow(tool);
    let path = dir.path().display().to_string();
    assert_eq!(default_reaches_out_at_once(&h, &[("PATH", &path)]), tool);
}

#[test]
fn default_is_pasta_and_reaches_out_at_once() {
    default_is(TestUser::Sub, "pasta");
}

#[test]
fn default_without_pasta_is_slirp4netns() {
    default_is(TestUser::NoSub, "slirp4netns");
}

#[test]
fn default_as_root_is_pasta_and_reaches_out_at_once() {
    default_is(TestUser::Root, "pasta");
}

/// stderr is one line: husk's warning, naming `naming`.
fn one_warning(out: &common::Output, naming: &str) {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(lines.len() == 1 && lines[0].starts_with("Warning: ") && lines[0].contains(naming), "{out:?}");
}

#[test]
fn default_without_any_tool_is_none_with_a_warning() {
    let h = setup(TestUser::Sub);
    let out =
        h.run_env(&[("PATH", "/nonexistent")], &["run", "-q", "--name", "nonet", &busybox(), "cat", "/proc/net/dev"]);
    out.assert_ok();
    one_warning(&out, "neither pasta (Debian package passt) nor slirp4netns");
    let devices: Vec<&str> = out.stdout.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(devices, ["lo"], "{out:?}");
    let inspect = h.run(&["inspect", "nonet"]).assert_ok().stdout.clone();
    assert!(inspect.contains("\"NetworkMode\": \"none\""), "{inspect}");
    // -p cannot be honoured then: refused, saying why
    let out = h.run_env(&[("PATH", "/nonexistent")], &["run", "-q", "--rm", "-p", "8080", &busybox(), "true"]);
    assert_eq!(out.status, 125, "{out:?}");
    assert!(out.stderr.trim().lines().count() == 1 && out.stderr.contains("fell back to none"), "{out:?}");
}

/// `cmd` in a mount namespace of its own where /dev/net/tun is a file only root may
/// open (as on a system without udev).
fn without_tun(cmd: Command, root_only: &std::path::Path) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped.args([
        "-m",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "mount --bind \"$0\" /dev/net/tun && exec \"$@\"",
    ]);
    wrapped.arg(root_only).arg(cmd.get_program()).args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

#[test]
fn default_without_usable_tun_is_none_with_a_warning() {
    let h = setup(TestUser::Sub);
    h.run(&["pull", "-q", &busybox()]).assert_ok();
    let dir = common::TempDir::new("tun");
    let root_only = dir.path().join("tun");
    std::fs::write(&root_only, "").unwrap();
    std::fs::set_permissions(&root_only, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = common::run_output(without_tun(h.cmd(&["run", "--rm", &busybox(), "true"]), &root_only), None);
    out.assert_ok();
    one_warning(&out, "cannot open /dev/net/tun (permission denied)");
    // asked for, the tool is refused with the reason
    let out = common::run_output(
        without_tun(h.cmd(&["run", "--rm", "--network", "pasta", &busybox(), "true"]), &root_only),
        None,
    );
    assert_eq!(out.status, 125, "{out:?}");
    assert!(out.stderr.trim().lines().count() == 1 && out.stderr.contains("/dev/net/tun"), "{out:?}");
}
