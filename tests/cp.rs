//! `husk cp` between the host and running or stopped containers, as unprivileged users:
//! files, directories, contents (`DIR/.`), tar streams (`-`), owners on each side, and
//! symlinks in the container that point at host paths — fixed and swapped during the
//! copy — never reaching the host (CVE-2018-15664 / CVE-2019-10152 class).
mod common;
use common::reg;

use common::{run_output, Husk, TempDir, TestUser};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn setup(user: TestUser) -> Husk {
    common::husk_with_busybox(user)
}

/// A directory the test user owns, for the host side of the copies.
fn host_dir(h: &Husk, label: &str) -> std::path::PathBuf {
    let d = h.home.join(label);
    fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(h.user.uid()), Some(h.user.gid())).unwrap();
    d
}

#[track_caller]
fn husk_ok(h: &Husk, args: &[&str]) -> String {
    let out = h.run(args);
    out.assert_ok();
    out.stdout
}

/// Both directions, running and stopped, with Docker's naming rules.
#[test]
fn copies_both_ways_running_and_stopped() {
    for user in [TestUser::Sub, TestUser::NoSub] {
        let h = setup(user);
        husk_ok(
            &h,
            &[
                "run",
                "-d",
                "--name",
                "box",
                &reg("busybox:latest"),
                "sh",
                "-c",
                "mkdir -p /data/sub; echo hi > /data/sub/f; echo top > /data/t; touch /ready; sleep 300",
            ],
        );
        let start = std::time::Instant::now();
        while h.run(&["exec", "box", "test", "-e", "/ready"]).status != 0 {
            assert!(start.elapsed().as_secs() < 20, "container never got ready");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = host_dir(&h, "out");
        let o = |p: &str| out.join(p).display().to_string();
        // a file as a new name; a directory into an existing directory; its contents
        husk_ok(&h, &["cp", "box:/data/sub/f", &o("f")]);
        assert_eq!(fs::read_to_string(out.join("f")).unwrap(), "hi\n");
        husk_ok(&h, &["cp", "box:/data", &o("")]);
        assert_eq!(fs::read_to_string(out.join("data/sub/f")).unwrap(), "hi\n");
        husk_ok(&h, &["cp", "box:/data/.", &o("contents")]);
        assert_eq!(fs::read_to_string(out.join("contents/t")).unwrap(), "top\n");
        // owned by the user on the host
        assert_eq!(fs::metadata(out.join("data/sub/f")).unwrap().uid(), h.user.uid());
        // a tar stream on stdout
        let tar = husk_ok(&h, &["cp", "box:/data/t", "-"]);
        assert!(tar.contains("top\n") && tar.len() >= 1024, "a tar archive: {:?}", &tar[..tar.len().min(200)]);

        // into the container: a file, a directory, a tar on stdin; owned by its root
        fs::write(out.join("hostfile"), "from host\n").unwrap();
        husk_ok(&h, &["cp", &o("hostfile"), "box:/data/"]);
        husk_ok(&h, &["cp", &o("data"), "box:/copied"]);
        let tarball = h.run(&["cp", "box:/data/t", "-"]);
        let out_in = run_output(h.cmd(&["cp", "-", "box:/fromtar"]), Some(tarball.stdout.as_bytes()));
        out_in.assert_ok();
        let seen = husk_ok(
            &h,
            &["exec", "box", "sh", "-c", "cat /data/hostfile /copied/sub/f /fromtar/t; stat -c %u:%g /data/hostfile"],
        );
        assert_eq!(seen, "from host\nhi\ntop\n0:0\n");

        // stopped: the same, through its layers and writable layer
        husk_ok(&h, &["stop", "-t", "0", "box"]);
        husk_ok(&h, &["cp", &o("hostfile"), "box:/data/later"]);
        husk_ok(&h, &["cp", "box:/copied/sub/f", &o("g")]);
        assert_eq!(fs::read_to_string(out.join("g")).unwrap(), "hi\n");
        husk_ok(&h, &["start", "box"]);
        assert_eq!(husk_ok(&h, &["exec", "box", "cat", "/data/later"]), "from host\n");
        husk_ok(&h, &["rm", "-f", "box"]);
    }
}

/// A container's symlinks to host paths are resolved inside the container, in both
/// directions, also while the container swaps them during the copies.
#[test]
fn container_symlinks_never_reach_the_host() {
    let h = setup(TestUser::Sub);
    // The host paths the container points at: a directory the copy must not write into,
    // a file whose contents must not come out.
    let victim = TempDir::new("cp-victim");
    fs::set_permissions(victim.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let secret = victim.path().join("secret");
    fs::write(&secret, "host secret\n").unwrap();
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let v = victim.path().display().to_string();
    let script = format!(
        "ln -s {v} /evil; mkdir -p /data; ln -s {v}/secret /data/link; ln -s {v} /data/dirlink; \
         while true; do rm -rf /swap; mkdir /swap; echo inside > /swap/secret; rm -rf /swap; ln -s {v} /swap; done"
    );
    husk_ok(&h, &["run", "-d", "--name", "evil", &reg("busybox:latest"), "sh", "-c", &script]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = host_dir(&h, "out");
    fs::write(out.join("payload"), "payload\n").unwrap();
    let payload = out.join("payload").display().to_string();

    // in: /evil -> victim on the host, which does not exist in the container
    let r = h.run(&["cp", &payload, "evil:/evil/x"]);
    assert!(!Path::new(&v).join("x").exists(), "written through the container's symlink onto the host: {r:?}");
    // out: the symlink itself, not the host file it names; -L resolves in the container
    husk_ok(&h, &["cp", "evil:/data/link", &out.join("link").display().to_string()]);
    assert_eq!(fs::read_link(out.join("link")).unwrap(), secret);
    let r = h.run(&["cp", "-L", "evil:/data/link", &out.join("followed").display().to_string()]);
    assert!(!out.join("followed").exists() || fs::read_to_string(out.join("followed")).unwrap() != "host secret\n");
    assert_eq!(r.status, 125, "the link's target does not exist in the container: {r:?}");
    let r = h.run(&["cp", "evil:/data/dirlink/.", &out.join("dl").display().to_string()]);
    assert_eq!(r.status, 125, "the directory it names does not exist in the container: {r:?}");
    assert!(!out.join("dl/secret").exists());

    // swapped while copying, both ways
    let (mut copied_in, mut copied_out) = (0, 0);
    for i in 0..40 {
        copied_in += h.run(&["cp", &payload, &format!("evil:/swap/in{i}")]).success() as u32;
        let dst = out.join(format!("swap{i}"));
        copied_out += h.run(&["cp", "evil:/swap/.", &dst.display().to_string()]).success() as u32;
        // (the container may be caught writing its own file: empty then)
        if let Ok(text) = fs::read_to_string(dst.join("secret")) {
            assert_ne!(text, "host secret\n", "host file came out through a swapped symlink");
        }
    }
    // The swaps really raced the copies: some found a directory, some the symlink.
    assert!(copied_in > 0 && copied_out > 0, "no copy succeeded: in {copied_in}, out {copied_out}");
    assert!(copied_in < 40 || copied_out < 40, "no copy met the symlink");
    let left: Vec<_> = fs::read_dir(victim.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("secret")], "nothing written into the host directory");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host secret\n");
    husk_ok(&h, &["rm", "-f", "evil"]);
}

/// Bad arguments: one line, 125.
#[test]
fn refusals() {
    let h = setup(TestUser::NoSub);
    husk_ok(&h, &["create", "--name", "made", &reg("busybox:latest"), "true"]);
    let out = host_dir(&h, "out");
    let o = out.display().to_string();
    let line = h.run(&["cp", "made:/nope", &o]);
    assert!(line.error_line("missing source").contains("/nope"), "{line:?}");
    assert!(line.error_line("missing source").contains("made"), "names the container: {line:?}");
    let line = h.run(&["cp", "made:/etc", "made:/tmp"]);
    assert!(line.error_line("two containers").contains("host"), "{line:?}");
    let line = h.run(&["cp", &o, &o]);
    assert!(line.error_line("no container").contains("CONTAINER:PATH"), "{line:?}");
    let line = h.run(&["cp", "nosuch:/etc", &o]);
    assert!(line.error_line("unknown container").contains("nosuch"), "{line:?}");
    let line = h.run(&["cp", &format!("{o}/missing"), "made:/tmp"]);
    assert!(line.error_line("missing host file").contains("missing"), "{line:?}");
    let line = h.run(&["cp", &o, "made:/no/such/dir/x"]);
    assert!(line.error_line("missing parent").contains("/no/such/dir"), "{line:?}");
    husk_ok(&h, &["rm", "made"]);
}
