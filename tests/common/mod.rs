//! Shared helpers for husk integration tests (`mod common;` in tests/*.rs).
//!
//! * `ensure_prereqs()`  installs (as root) or demands the Debian packages the tests need.
//! * `fixtures()`        the OCI layout built by tests/fixtures/build-fixtures.sh (cached).
//! * `Registry`          a throw-away `docker-registry` on 127.0.0.1; `shared_registry()`
//!   has every fixture pushed.
//! * `Husk` / `TestUser` run the husk binary as root, as a user with subuid ranges, or as
//!   a user without any, each with a fresh HOME.
//! * `umoci_unpack()` / `compare_trees()` reference extraction and tree comparison.
//! * `fake_registry`     fake HTTP/1.1 registries in the test process and the images they serve.
//! * `hostile`           tar archives written header by header, OCI layouts written by hand
//!   and pushed with skopeo, a victim directory and snapshots (the hostile_* tests).
//! * `pty::Terminal`     a real pseudo-terminal to drive `-t` sessions through.
//! * `tls::Tls`, `tls::TlsFront` a test CA, and https + http on one port (tls-front.py).
//!
//! Everything panics with a clear message instead of skipping.
#![allow(dead_code)]

pub mod fake_registry;
pub mod hostile;
pub mod kill;
pub mod pty;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// small utilities
// ---------------------------------------------------------------------------

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Base directory for temp dirs that other users must be able to reach.
fn test_tmp_base() -> PathBuf {
    std::env::var_os("HUSK_TEST_TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// A directory removed (recursively, as whoever runs the tests) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        Self::new_in(&test_tmp_base(), label)
    }
    pub fn new_in(base: &Path, label: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
        for _ in 0..100 {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            let p = base.join(format!(
                "husk-test-{label}-{}-{}-{nanos:x}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&p) {
                Ok(()) => return TempDir { path: p },
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", p.display()),
            }
        }
        panic!("could not create a temp dir in {}", base.display());
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

/// `rm -rf --one-file-system` (handles files owned by subuids, read-only dirs etc. as root).
fn remove_tree(p: &Path) {
    if fs::symlink_metadata(p).is_err() {
        return;
    }
    for _ in 0..3 {
        let _ = Command::new("rm")
            .arg("-rf")
            .arg("--one-file-system")
            .arg("--")
            .arg(p)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if fs::symlink_metadata(p).is_err() {
            return;
        }
        // e.g. a container still writing; try to make everything writable and retry
        let _ = Command::new("chmod").args(["-R", "u+rwX"]).arg(p).status();
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("husk-test: warning: could not remove {}", p.display());
}

fn run_checked(cmd: &mut Command) -> std::process::Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "command failed ({}): {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn sha256_file(p: &Path) -> io::Result<String> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// splitmix64: a small seeded generator, for tests whose random choices a printed seed
/// repeats.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, max).
    pub fn below(&mut self, max: Duration) -> Duration {
        max.mul_f64((self.next() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// One of `from`, none if it is empty.
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> Option<&'a T> {
        (!from.is_empty()).then(|| &from[(self.next() % from.len() as u64) as usize])
    }
}

/// The seed in the environment variable `var`, or one made from the clock.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    })
}

// Cleanup at process exit (statics are never dropped). Functions registered here
// run from an atexit handler, i.e. when the test binary's main returns or calls exit().
static EXIT_HOOKS: Mutex<Vec<Box<dyn FnOnce() + Send>>> = Mutex::new(Vec::new());

/// Runs `f` when the test process exits (statics are never dropped).
pub fn at_exit(f: Box<dyn FnOnce() + Send>) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        extern "C" fn run_hooks() {
            let hooks = match EXIT_HOOKS.lock() {
                Ok(mut g) => std::mem::take(&mut *g),
                Err(p) => std::mem::take(&mut *p.into_inner()),
            };
            for h in hooks.into_iter().rev() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(h));
            }
        }
        unsafe { libc::atexit(run_hooks) };
    });
    EXIT_HOOKS.lock().unwrap_or_else(|p| p.into_inner()).push(f);
}

/// Spawn a child that must die with the test process: PR_SET_PDEATHSIG=SIGKILL.
/// The death signal fires when the *thread* that forked exits, so children are forked
/// from one dedicated thread that lives as long as the process.
fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    type Req = (Command, mpsc::Sender<io::Result<Child>>);
    static TX: OnceLock<Mutex<mpsc::Sender<Req>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Req>();
        std::thread::Builder::new()
            .name("husk-test-spawner".into())
            .spawn(move || {
                for (mut c, reply) in rx {
                    let _ = reply.send(c.spawn());
                }
            })
            .expect("spawn helper thread");
        Mutex::new(tx)
    });
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (rtx, rrx) = mpsc::channel();
    tx.lock().unwrap_or_else(|p| p.into_inner()).send((cmd, rtx)).expect("spawner thread gone");
    rrx.recv().expect("spawner thread gone")
}

// ---------------------------------------------------------------------------
// prerequisites
// ---------------------------------------------------------------------------

/// (Debian package, a file it provides that we use)
const PREREQS: &[(&str, &str)] = &[
    ("docker-registry", "/usr/bin/docker-registry"),
    ("skopeo", "/usr/bin/skopeo"),
    ("umoci", "/usr/bin/umoci"),
    ("busybox-static", "/bin/busybox"),
    ("debootstrap", "/usr/sbin/debootstrap"),
    ("uidmap", "/usr/bin/newuidmap"),
    ("python3", "/usr/bin/python3"),
    ("openssl", "/usr/bin/openssl"),
    ("passt", "/usr/bin/pasta"),
    ("slirp4netns", "/usr/bin/slirp4netns"),
    ("iproute2", "/sbin/ip"),
    ("fuse-overlayfs", "/usr/bin/fuse-overlayfs"),
    ("podman", "/usr/bin/podman"),
    ("runc", "/usr/sbin/runc"),
    ("apache2-utils", "/usr/bin/htpasswd"),
];

fn dpkg_installed(pkg: &str) -> Option<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", pkg])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "installed")
}

fn missing_prereqs() -> Vec<&'static str> {
    PREREQS
        .iter()
        .filter(|(pkg, file)| match dpkg_installed(pkg) {
            Some(installed) => !installed || !Path::new(file).exists(),
            None => !Path::new(file).exists(), // not a dpkg system: look for the file
        })
        .map(|(pkg, _)| *pkg)
        .collect()
}

/// Make sure every external tool the tests use is installed: installs the missing
/// Debian packages with apt-get when root, panics naming them otherwise. Once per process.
pub fn ensure_prereqs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let missing = missing_prereqs();
        if missing.is_empty() {
            return;
        }
        if !is_root() {
            panic!(
                "missing prerequisite: install the Debian package{} {} (apt-get install -y {})",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                missing.join(" ")
            );
        }
        let install = |update: bool| -> std::process::Output {
            if update {
                let _ = Command::new("apt-get")
                    .args(["update", "-q"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .stdin(Stdio::null())
                    .output();
            }
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .output()
                .expect("cannot run apt-get")
        };
        let mut out = install(false);
        if !out.status.success() {
            out = install(true);
        }
        let still = missing_prereqs();
        if !out.status.success() || !still.is_empty() {
            panic!(
                "missing prerequisite: apt-get install of {} failed ({})\n{}\n{}",
                still.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

// ---------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------

pub fn fixtures_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/build-fixtures.sh")
}

/// The OCI image layout with the fixture tags (busybox, busybox-zstd, layered, debian,
/// multi). Built by tests/fixtures/build-fixtures.sh once and cached under
/// /var/tmp/husk-test-fixtures/<sha256 of the script>/oci. Treat it as read-only.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        ensure_prereqs();
        let t = Instant::now();
        let out = Command::new("bash").arg(fixtures_script()).stdin(Stdio::null()).output().expect("cannot run bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            panic!("build-fixtures.sh failed ({}):\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), stderr);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
        assert!(
            dir.join("index.json").is_file(),
            "build-fixtures.sh printed {dir:?}, which has no index.json\n{stderr}"
        );
        if !stderr.is_empty() {
            eprintln!("husk-test: fixtures built in {:.1?}:\n{stderr}", t.elapsed());
        }
        dir
    })
}

/// Fixture tags in the layout and where `shared_registry()` pushes them.
pub const FIXTURE_PUSHES: &[(&str, &str)] = &[
    ("busybox", "busybox:latest"),
    ("busybox-zstd", "busybox:zstd"),
    ("layered", "layered:latest"),
    ("debian", "debian:bookworm"),
    ("multi", "multi:latest"),
    ("config", "config:latest"),
    ("evil-links", "evil-links:latest"),
    ("proc-symlink", "proc-symlink:latest"),
    ("dev-symlink", "dev-symlink:latest"),
    ("many", "many:latest"),
    ("volume", "volume:latest"),
];

// ---------------------------------------------------------------------------
// registry
// ---------------------------------------------------------------------------

/// How `Registry::start_with` configures a registry.
#[derive(Default)]
pub struct RegistryOptions {
    /// One line per request in `Registry::log()`.
    pub access_log: bool,
    /// `Location` headers as absolute paths instead of absolute URLs.
    pub relative_urls: bool,
    /// The `auth:` section's content, indented by two spaces (htpasswd or token).
    pub auth: Option<String>,
    /// https only, with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A `docker-registry serve` (CNCF distribution 2.8) on 127.0.0.1, plain HTTP,
/// storage in a temp dir. Killed, reaped and deleted on drop.
pub struct Registry {
    pub port: u16,
    child: Mutex<Option<Child>>,
    dir: Mutex<Option<TempDir>>,
}

fn http_get(port: u16, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&format!("127.0.0.1:{port}").parse().unwrap(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    Ok(String::from_utf8_lossy(&resp).into_owned())
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(&RegistryOptions::default())
    }

    /// A registry configured by `opts` (access log, relative Locations, authentication).
    pub fn start_with(opts: &RegistryOptions) -> Registry {
        ensure_prereqs();
        let dir = TempDir::new("registry");
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
                l.local_addr().unwrap().port()
            };
            // A unique response header proves we talk to *our* registry.
            let marker = format!("{}-{port}-{:?}", std::process::id(), Instant::now());
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n  accesslog:\n    disabled: {no_access_log}\n\
                     storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
                     maintenance:\n    uploadpurging:\n      enabled: false\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: husk-test-secret\n  relativeurls: {relative}\n  \
                     headers:\n    X-Husk-Test: [\"{marker}\"]\n{tls}{auth}",
                    data = dir.path().join("data").display(),
                    no_access_log = !opts.access_log,
                    relative = opts.relative_urls,
                    auth = opts.auth.as_deref().map(|a| format!("auth:\n{a}")).unwrap_or_default(),
                    tls = opts
                        .tls
                        .as_ref()
                        .map(|(c, k)| format!("  tls:\n    certificate: {}\n    key: {}\n", c.display(), k.display()))
                        .unwrap_or_default(),
                ),
            )
            .unwrap();
            let log = fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve").arg(&config).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
            let mut child = spawn_tied_to_process(cmd).expect("cannot start docker-registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(st) = child.try_wait().unwrap() {
                    last_err = format!(
                        "docker-registry exited ({st}):\n{}",
                        fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
                    );
                    break;
                }
                if let Ok(resp) = http_get(port, "/v2/") {
                    // 401: the registry wants credentials (`opts.auth`)
                    let status_ok =
                        resp.lines().next().is_some_and(|l| matches!(l.split(' ').nth(1), Some("200") | Some("401")));
                    // With TLS the marker cannot be read over plain http; Go's answer to
                    // plain http, from a child that is still running, has to do.
                    let tls_ok = opts.tls.is_some()
                        && resp.contains("Client sent an HTTP request to an HTTPS server")
                        && child.try_wait().unwrap().is_none();
                    if (status_ok && resp.contains(&marker)) || tls_ok {
                        return Registry { port, child: Mutex::new(Some(child)), dir: Mutex::new(Some(dir)) };
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = format!(
                        "docker-registry did not answer GET /v2/ on port {port} within 20 s:\n{}",
                        fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("cannot start a registry: {last_err}");
    }

    /// What the registry wrote (its access log too, with `RegistryOptions::access_log`).
    pub fn log(&self) -> String {
        let dir = self.storage_dir().expect("registry stopped");
        fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `skopeo copy --all --preserve-digests oci:FIXTURES:TAG docker://HOST/DEST`
    /// (DEST is "repo:tag"); digests in the registry equal those in the layout.
    pub fn push_fixture(&self, tag_in_layout: &str, dest_repo_and_tag: &str) {
        let src = format!("oci:{}:{}", fixtures().display(), tag_in_layout);
        let dst = format!("docker://{}/{}", self.host(), dest_repo_and_tag);
        run_checked(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--quiet", "--all", "--preserve-digests"])
                .args(["--dest-tls-verify=false", &src, &dst]),
        );
    }

    /// Stop (SIGKILL + reap) and delete the storage. Idempotent; also done on drop.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        drop(self.dir.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    pub fn storage_dir(&self) -> Option<PathBuf> {
        self.dir.lock().unwrap().as_ref().map(|d| d.path().to_path_buf())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Husk for tests whose containers use pasta or slirp4netns: the prerequisites, the
/// shared registry, and /dev/net/tun usable by everyone as udev-based distributions
/// make it (this machine has no udev).
pub fn husk_with_tun(user: TestUser) -> Husk {
    ensure_prereqs();
    shared_registry();
    let _ = Command::new("chmod").args(["0666", "/dev/net/tun"]).status();
    Husk::new(user)
}

/// A server on the host's loopback that reads what its one client sends and answers
/// `reply`: its port, and the thread to join once the client is done.
pub fn answer_once_on_loopback(reply: &'static [u8]) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        s.write_all(reply).unwrap();
    });
    (port, server)
}

/// One registry per test process with every fixture pushed (see FIXTURE_PUSHES):
/// 127.0.0.1:PORT/{busybox:latest, busybox:zstd, layered:latest, debian:bookworm, multi:latest}.
/// Killed and deleted when the test process exits.
/// A husk for `user` whose store holds the shared registry's busybox:latest.
pub fn husk_with_busybox(user: TestUser) -> Husk {
    ensure_prereqs();
    let h = Husk::new(user);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    h
}

/// `image` ("busybox:latest") in the shared registry.
pub fn reg(image: &str) -> String {
    format!("{}/{}", shared_registry().host(), image)
}

pub fn shared_registry() -> &'static Registry {
    static REG: OnceLock<&'static Registry> = OnceLock::new();
    REG.get_or_init(|| {
        fixtures();
        let reg: &'static Registry = Box::leak(Box::new(Registry::start()));
        at_exit(Box::new(move || reg.stop()));
        for (tag, dest) in FIXTURE_PUSHES {
            reg.push_fixture(tag, dest);
        }
        reg
    })
}

// ---------------------------------------------------------------------------
// users and the husk binary
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TestUser {
    /// `husk-sub`: system user with a 65536-id range in /etc/subuid and /etc/subgid
    Sub,
    /// `husk-nosub`: system user without any subordinate ids
    NoSub,
    /// the (root) test process itself
    Root,
}

impl TestUser {
    pub fn name(self) -> &'static str {
        match self {
            TestUser::Sub => "husk-sub",
            TestUser::NoSub => "husk-nosub",
            TestUser::Root => "root",
        }
    }
    /// Creates the user if needed (root only) and returns (uid, gid).
    pub fn ids(self) -> (u32, u32) {
        ensure_user(self);
        lookup_user(self.name()).expect("user exists after ensure_user")
    }
    pub fn uid(self) -> u32 {
        self.ids().0
    }
    pub fn gid(self) -> u32 {
        self.ids().1
    }
}

/// (uid, gid) of `name` in /etc/passwd. The tests are static binaries like husk (see
/// .cargo/config.toml): they read the files useradd writes, never getpwnam, whose
/// name-service modules a static program must not load.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    })
}

fn group_exists(name: &str) -> bool {
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    group.lines().any(|l| l.split(':').next() == Some(name))
}

/// (name-or-uid, start, count) entries of /etc/subuid or /etc/subgid
fn read_subid_file(path: &str) -> Vec<(String, u64, u64)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut it = l.split(':');
            let (n, s, c) = (it.next()?, it.next()?, it.next()?);
            Some((n.to_string(), s.trim().parse().ok()?, c.trim().parse().ok()?))
        })
        .collect()
}

/// Start of the subordinate uid range of `user` in /etc/subuid (panics if it has none).
pub fn subid_base(user: &str) -> u32 {
    subid_start("/etc/subuid", user)
}

/// Same for /etc/subgid.
pub fn subgid_base(user: &str) -> u32 {
    subid_start("/etc/subgid", user)
}

fn subid_start(file: &str, user: &str) -> u32 {
    let uid = lookup_user(user).map(|(u, _)| u.to_string());
    read_subid_file(file)
        .into_iter()
        .find(|(n, _, _)| n == user || Some(n) == uid.as_ref())
        .map(|(_, s, _)| s as u32)
        .unwrap_or_else(|| panic!("{user} has no range in {file}"))
}

struct FileLock(fs::File);
impl FileLock {
    fn new(path: &str) -> FileLock {
        let f =
            fs::OpenOptions::new().create(true).append(true).open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        use std::os::fd::AsRawFd;
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            panic!("flock {path}: {}", io::Error::last_os_error());
        }
        FileLock(f)
    }
}

fn ensure_user(user: TestUser) {
    static DONE: Mutex<Vec<TestUser>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if done.contains(&user) {
        return;
    }
    if user == TestUser::Root {
        assert!(is_root(), "TestUser::Root needs the tests to run as root (uid 0)");
        done.push(user);
        return;
    }
    let name = user.name();
    if !is_root() {
        // usable without root only if everything is already in place
        let ok = lookup_user(name).is_some()
            && match user {
                TestUser::Sub => {
                    read_subid_file("/etc/subuid").iter().any(|e| e.0 == name)
                        && read_subid_file("/etc/subgid").iter().any(|e| e.0 == name)
                }
                _ => !read_subid_file("/etc/subuid").iter().any(|e| e.0 == name),
            };
        assert!(ok, "test user {name} ({user:?}) is not set up and creating it needs root: run the tests as root");
        done.push(user);
        return;
    }
    let _lock = FileLock::new("/var/tmp/.husk-test-users.lock");
    if lookup_user(name).is_none() {
        let mut cmd = Command::new("useradd");
        cmd.args(["--system", "--shell", "/bin/sh", "--home-dir", "/nonexistent", "--no-create-home"]);
        if group_exists(name) {
            cmd.args(["--gid", name]);
        } else {
            cmd.arg("--user-group");
        }
        run_checked(cmd.arg(name));
    }
    let (uid, _) = lookup_user(name).unwrap();
    let uid_s = uid.to_string();
    for file in ["/etc/subuid", "/etc/subgid"] {
        let entries = read_subid_file(file);
        let mine = |n: &str| n == name || n == uid_s;
        match user {
            TestUser::Sub => {
                if entries.iter().any(|e| mine(&e.0)) {
                    continue;
                }
                // first 65536-aligned range >= 200000 that overlaps nothing in this file
                let mut base: u64 = 200_000;
                while entries.iter().any(|(_, s, c)| base < s + c && *s < base + 65536) {
                    base += 65536;
                }
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .unwrap_or_else(|e| panic!("open {file}: {e}"));
                let cur = fs::read_to_string(file).unwrap_or_default();
                let nl = if cur.is_empty() || cur.ends_with('\n') { "" } else { "\n" };
                writeln!(f, "{nl}{name}:{base}:65536").unwrap();
                let _ = fs::set_permissions(file, fs::Permissions::from_mode(0o644));
            }
            TestUser::NoSub => {
                if !entries.iter().any(|e| mine(&e.0)) {
                    continue;
                }
                let cur = fs::read_to_string(file).unwrap();
                let kept: String = cur
                    .lines()
                    .filter(|l| !mine(l.split(':').next().unwrap_or("")))
                    .map(|l| format!("{l}\n"))
                    .collect();
                fs::write(file, kept).unwrap();
            }
            TestUser::Root => unreachable!(),
        }
    }
    done.push(user);
}

/// The husk binary, copied once per process into a 0755 temp dir so any user can run it.
pub fn husk_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_BIN_EXE_husk"));
        let dir: &'static TempDir = Box::leak(Box::new(TempDir::new("bin")));
        at_exit(Box::new(move || remove_tree(dir.path())));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dst = dir.path().join("husk");
        fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
        dst
    })
}

/// Environment variables passed through to husk when set in the test process.
const FORWARD_ENV: &[&str] = &["RUST_BACKTRACE", "RUST_LOG", "HUSK_LOG", "HUSK_DEBUG"];

/// Result of running husk.
pub struct Output {
    /// exit code; 128+N when killed by signal N; -1 when the test harness timed it out
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
    /// Panics with the full output unless the exit status is 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "husk failed: {self:?}");
        self
    }
    /// Panics with the full output if the exit status is 0.
    #[track_caller]
    pub fn assert_fail(&self) -> &Self {
        assert!(!self.success(), "husk unexpectedly succeeded: {self:?}");
        self
    }
    /// The one line of a failed husk command, after checking that the failure is clean:
    /// exit status 125, nothing on stdout, exactly one non-empty line on stderr, no panic.
    #[track_caller]
    pub fn error_line(&self, what: &str) -> &str {
        assert_eq!(self.status, 125, "{what}: expected exit status 125\n{self:?}");
        assert!(self.stdout.trim().is_empty(), "{what}: printed on stdout although it failed\n{self:?}");
        let text = self.stderr.trim_end_matches(['\n', '\r']);
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(
            lines.len() == 1 && !lines[0].trim().is_empty(),
            "{what}: stderr must be exactly one non-empty line, it has {} line(s)\n{self:?}",
            if text.is_empty() { 0 } else { lines.len() }
        );
        assert!(!text.contains("panicked"), "{what}: husk panicked\n{self:?}");
        lines[0]
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Output {{ status: {} }}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i64) -> bool {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !s.is_empty() && !s.contains("State:\tZ")
}

/// Processes (not zombies) with `needle` (KEY=VALUE) in their environment.
pub fn pids_with_env(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me && alive(p as i64))
        .filter(|p| {
            fs::read(format!("/proc/{p}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// husk as a given user with a fresh, private HOME (removed on drop).
/// On drop, every husk process still running with that HOME (a detached container's
/// monitor a failed test left behind) is killed; its container dies with it.
pub struct Husk {
    pub user: TestUser,
    pub home: PathBuf,
    _home: TempDir,
}

impl Drop for Husk {
    fn drop(&mut self) {
        for pid in self.leftover_processes() {
            // SAFETY: kill(2) with a pid read from /proc touches no memory.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.remove_container_cgroups();
    }
}

impl Husk {
    /// The cgroups husk made for this store's containers and could not remove itself (a
    /// test killed it): the one each state records, and `husk-<id>` at the top of the
    /// cgroup2 tree, where root's husk makes them: their processes killed, then removed.
    fn remove_container_cgroups(&self) {
        let Ok(dirs) = fs::read_dir(self.store().join("containers")) else { return };
        for dir in dirs.flatten() {
            let id = dir.file_name().to_string_lossy().into_owned();
            let recorded = fs::read(dir.path().join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["cgroup"].as_str().map(PathBuf::from));
            let top = Path::new("/sys/fs/cgroup/unified").join(format!("husk-{id}"));
            for cg in recorded.into_iter().chain([top]).filter(|cg| cg.is_dir()) {
                let _ = fs::write(cg.join("cgroup.kill"), "1");
                let deadline = Instant::now() + Duration::from_secs(2);
                while fs::remove_dir(&cg).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// No udev here: make /dev/net/tun what every udev distribution makes it (mode 0666),
/// so that husk's default network (pasta) is the one its users get. Once per process.
fn make_tun_usable() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let tun = Path::new("/dev/net/tun");
        if let Err(e) = fs::set_permissions(tun, fs::Permissions::from_mode(0o666)) {
            panic!("chmod 0666 {}: {e}", tun.display());
        }
    });
}

impl Husk {
    pub fn new(user: TestUser) -> Husk {
        let (uid, gid) = user.ids();
        assert!(is_root(), "Husk::new({user:?}) needs the tests to run as root (HOME is chowned to the user and husk runs via runuser)");
        make_tun_usable();
        let home = TempDir::new(&format!("home-{}", user.name()));
        let p = home.path().to_path_buf();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        Husk { user, home: p, _home: home }
    }

    /// The husk processes (monitors included) still running with this HOME.
    pub fn leftover_processes(&self) -> Vec<i32> {
        pids_with_env(&format!("HOME={}", self.home.display()))
    }

    /// `$HOME/.local/share/husk`
    pub fn store(&self) -> PathBuf {
        self.home.join(".local/share/husk")
    }

    /// The entries of the store's containers/ (ids, and what a killed husk left), not the
    /// emptied directories husk keeps there as spares (`.spare-N`) for new containers.
    pub fn container_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.store().join("containers"))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.retain(|n| !n.starts_with(".spare-"));
        v.sort();
        v
    }

    /// Command running husk as the user, in a clean environment
    /// (HOME, PATH, USER, LOGNAME only; no XDG_* variables), cwd = HOME.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_env(&[], args)
    }

    /// Like `cmd`, with extra environment variables for husk.
    pub fn cmd_env(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = match self.user {
            TestUser::Root => Command::new("/usr/bin/env"),
            u => {
                let mut c = Command::new("runuser");
                c.args(["-u", u.name(), "--", "/usr/bin/env"]);
                c
            }
        };
        c.arg("-i")
            .arg(format!("HOME={}", self.home.display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg(format!("USER={}", self.user.name()))
            .arg(format!("LOGNAME={}", self.user.name()));
        for k in FORWARD_ENV {
            if let Ok(v) = std::env::var(k) {
                c.arg(format!("{k}={v}"));
            }
        }
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.arg(husk_bin()).args(args).current_dir(&self.home);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_output(self.cmd(args), None)
    }

    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        run_output(self.cmd_env(env, args), None)
    }

    /// Run with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_output(self.cmd(args), Some(input))
    }
}

fn test_timeout() -> Duration {
    Duration::from_secs(std::env::var("HUSK_TEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(600))
}

/// Runs `cmd` in its own process group with a timeout (HUSK_TEST_TIMEOUT seconds,
/// default 600). Does not hang if a background process keeps stdout/stderr open.
pub fn run_output(mut cmd: Command, input: Option<&[u8]>) -> Output {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    if let Some(data) = input {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    fn reader(mut r: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, mpsc::Receiver<()>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(());
        });
        (buf, rx)
    }
    let (out, out_done) = reader(child.stdout.take().unwrap());
    let (err, err_done) = reader(child.stderr.take().unwrap());
    let pgid = child.id() as libc::pid_t;
    let deadline = Instant::now() + test_timeout();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break match (st.code(), st.signal()) {
                (Some(c), _) => c,
                (None, Some(s)) => 128 + s,
                _ => -1,
            };
        }
        if Instant::now() > deadline {
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let grace = Instant::now() + Duration::from_secs(5);
    for (rx, name) in [(&out_done, "stdout"), (&err_done, "stderr")] {
        let left = grace.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            eprintln!(
                "husk-test: warning: {name} of {cmd:?} still open 5 s after exit (inherited by a background process?)"
            );
        }
    }
    let mut stderr = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
    if status == -1 {
        stderr.push_str(&format!("\n[husk-test: killed after timeout of {:?}]", test_timeout()));
    }
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    Output { status, stdout, stderr }
}

// ---------------------------------------------------------------------------
// reference extraction and tree comparison
// ---------------------------------------------------------------------------

/// A `umoci unpack` (as root, keeping real owners) of a fixture tag; deleted on drop.
pub struct Unpacked {
    dir: TempDir,
}

impl Unpacked {
    /// the extracted root filesystem
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("bundle/rootfs")
    }
    /// the OCI runtime bundle umoci created (config.json, rootfs/)
    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn umoci_unpack(tag: &str) -> Unpacked {
    assert!(is_root(), "umoci_unpack needs root (it keeps the real owners)");
    let layout = fixtures();
    let dir = TempDir::new(&format!("umoci-{tag}"));
    run_checked(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(dir.path().join("bundle")),
    );
    Unpacked { dir }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

struct Entry {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    rdev: u64,
    ino: (u64, u64),
    nlink: u64,
    link: Option<PathBuf>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn list_xattrs(p: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if n <= 0 {
        return out;
    }
    let mut names = vec![0u8; n as usize + 256];
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr() as *mut libc::c_char, names.len()) };
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        // only user.* metadata of the image; overlayfs bookkeeping is not content
        if !name.starts_with(b"user.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr() as *mut libc::c_void, val.len()) };
        if m >= 0 {
            val.truncate(m as usize);
            out.insert(name.to_vec(), val);
        }
    }
    out
}

fn scan_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => panic!("read_dir {}: {e}", dir.display()),
        };
        for de in rd {
            let de = de.unwrap();
            let r = rel.join(de.file_name());
            let full = root.join(&r);
            let md = fs::symlink_metadata(&full).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_file() {
                Kind::File
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else if ft.is_fifo() {
                Kind::Fifo
            } else if ft.is_socket() {
                Kind::Socket
            } else if ft.is_char_device() {
                Kind::CharDev
            } else {
                Kind::BlockDev
            };
            let link = if kind == Kind::Symlink { fs::read_link(&full).ok() } else { None };
            if kind == Kind::Dir {
                stack.push(r.clone());
            }
            out.insert(
                r,
                Entry {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    size: md.size(),
                    rdev: md.rdev(),
                    ino: (md.dev(), md.ino()),
                    nlink: md.nlink(),
                    link,
                    xattrs: list_xattrs(&full),
                },
            );
        }
    }
    out
}

fn show_xattrs(x: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let v: Vec<String> =
        x.iter().map(|(k, v)| format!("{}={:?}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))).collect();
    format!("{{{}}}", v.join(", "))
}

/// Compares two directory trees without following symlinks and returns one
/// human-readable line per difference (empty = equal): missing/extra paths, file
/// type, permission bits (incl. setuid/setgid/sticky), symlink targets, regular file
/// size + sha256, device numbers, `user.*` xattrs (except `user.overlay.*`), owners
/// (expected owner mapped through `map_owner`; `None` = don't compare that path's
/// owner) and hardlinks (paths hardlinked in `expected` must be hardlinked in
/// `actual`). Mtimes and the roots' own metadata are ignored.
pub fn compare_trees(
    expected: &Path,
    actual: &Path,
    map_owner: &dyn Fn(u32, u32) -> Option<(u32, u32)>,
) -> Vec<String> {
    let exp = scan_tree(expected);
    let act = scan_tree(actual);
    let mut diffs = Vec::new();
    for (p, e) in &exp {
        let d = p.display();
        let Some(a) = act.get(p) else {
            diffs.push(format!("missing: {d} ({:?})", e.kind));
            continue;
        };
        if e.kind != a.kind {
            diffs.push(format!("{d}: type: expected {:?}, got {:?}", e.kind, a.kind));
            continue;
        }
        if e.kind != Kind::Symlink && e.mode != a.mode {
            diffs.push(format!("{d}: mode: expected {:04o}, got {:04o}", e.mode, a.mode));
        }
        if let Some((u, g)) = map_owner(e.uid, e.gid) {
            if (u, g) != (a.uid, a.gid) {
                diffs
                    .push(format!("{d}: owner: expected {u}:{g} (image {}:{}), got {}:{}", e.uid, e.gid, a.uid, a.gid));
            }
        }
        match e.kind {
            Kind::Symlink if e.link != a.link => {
                diffs.push(format!("{d}: symlink target: expected {:?}, got {:?}", e.link, a.link));
            }
            Kind::File => {
                if e.size != a.size {
                    diffs.push(format!("{d}: size: expected {}, got {}", e.size, a.size));
                } else {
                    match (sha256_file(&expected.join(p)), sha256_file(&actual.join(p))) {
                        (Ok(x), Ok(y)) if x == y => {}
                        (Ok(x), Ok(y)) => diffs.push(format!("{d}: content: expected sha256 {x}, got {y}")),
                        (x, y) => diffs.push(format!("{d}: cannot read: expected {x:?}, actual {y:?}")),
                    }
                }
            }
            Kind::CharDev | Kind::BlockDev if e.rdev != a.rdev => {
                diffs.push(format!("{d}: device: expected {:#x}, got {:#x}", e.rdev, a.rdev));
            }
            _ => {}
        }
        if e.xattrs != a.xattrs {
            diffs.push(format!("{d}: xattrs: expected {}, got {}", show_xattrs(&e.xattrs), show_xattrs(&a.xattrs)));
        }
    }
    for (p, a) in &act {
        if !exp.contains_key(p) {
            diffs.push(format!("extra: {} ({:?})", p.display(), a.kind));
        }
    }
    // hardlinks
    let mut groups: HashMap<(u64, u64), Vec<&PathBuf>> = HashMap::new();
    for (p, e) in &exp {
        if e.kind != Kind::Dir && e.nlink > 1 {
            groups.entry(e.ino).or_default().push(p);
        }
    }
    let mut groups: Vec<Vec<&PathBuf>> = groups.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    for g in groups {
        let first = g[0];
        let Some(fa) = act.get(first) else { continue };
        for other in &g[1..] {
            if let Some(oa) = act.get(*other) {
                if oa.ino != fa.ino {
                    diffs.push(format!(
                        "hardlink: {} and {} are one file in expected, two in actual",
                        first.display(),
                        other.display()
                    ));
                }
            }
        }
    }
    diffs
}

/// Owner mapping for a rootless extraction by `user`: container 0 -> the user's
/// own uid/gid, container N (1..=65536) -> subid base + N - 1.
pub fn rootless_owner_map(user: TestUser) -> impl Fn(u32, u32) -> Option<(u32, u32)> {
    let (uid, gid) = user.ids();
    let (ub, gb) = match user {
        TestUser::Sub => (subid_base(user.name()), subgid_base(user.name())),
        _ => (0, 0),
    };
    move |u, g| {
        if user == TestUser::Root {
            return Some((u, g));
        }
        let mu = if u == 0 {
            uid
        } else if user == TestUser::Sub && u <= 65536 {
            ub + u - 1
        } else {
            return None;
        };
        let mg = if g == 0 {
            gid
        } else if user == TestUser::Sub && g <= 65536 {
            gb + g - 1
        } else {
            return None;
        };
        Some((mu, mg))
    }
}
