//! RUN: a container on the layers built so far, made and run in the foreground by the
//! same machinery as `husk run` (its process setup, seccomp, capabilities, network),
//! whose writable layer then becomes the step's layer (`layers::diff`). The container
//! is removed afterwards whatever happened; the build context is not mounted in it.
use crate::container::network::NetworkMode;
use crate::container::snapshot::writable_layer;
use crate::container::spec::{build as build_spec, set_env, SpecInput};
use crate::container::user::{read_image_file, resolve as resolve_user};
use crate::container::{launch, Container, NewContainer, Settings};
use crate::fetch::pull::extract_options;
use crate::layers::diff::Diff;
use crate::layers::newlayer::{store_tar_layer, NewLayer};
use crate::layers::store::{Store, TmpArea};
use crate::ns::idmap::IdMapping;
use anyhow::anyhow;
use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The image name a RUN step's container records (its image id is empty): such a
/// container exists only while its build runs (which holds the store's writers lock).
pub const STEP_IMAGE: &str = "husk-build";

/// What one RUN runs, and on what.
pub struct RunInput<'a> {
    pub argv: Vec<String>,
    /// The step's environment: the image's, ENV and ARG values (build args only here).
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    /// The image's layers by chain id, bottom first.
    pub layers: &'a [String],
    pub network: &'a NetworkMode,
    /// A heredoc script run as a file (`RUN <<EOF` with `#!`): its name and body.
    pub script: Option<(String, String)>,
    /// Keep the step's output, and show it only if the step fails (`-q`).
    pub quiet: bool,
}

pub enum Outcome {
    /// The step's layer (None: the step changed no file).
    Layer(Option<NewLayer>),
    /// The command's exit status (128+N for signal N).
    Failed(i32),
    /// husk was told to stop (Ctrl-C): the container was killed and removed.
    Interrupted(Signal),
}

/// Runs the step and stores what it changed. Call inside husk's user namespace, with
/// the store's writers lock held, from a single thread.
///
/// While the step's container exists, the signals that would end husk are held: one
/// that comes kills the container (whose first process, pid 1 of its namespace, may
/// ignore it), which is then removed, and the step ends as `Interrupted`.
pub fn run(store: &Store, tmp: &TmpArea, ids: &IdMapping, input: &RunInput) -> Result<Outcome> {
    let held = HeldSignals::hold()?;
    let outcome = run_held(store, tmp, ids, input, &held);
    match held.release() {
        Some(sig) => Ok(Outcome::Interrupted(sig)),
        None => outcome,
    }
}

fn run_held(store: &Store, tmp: &TmpArea, ids: &IdMapping, input: &RunInput, held: &HeldSignals) -> Result<Outcome> {
    if input.layers.is_empty() {
        bail!("RUN needs files to run: the image has no layers (FROM scratch)");
    }
    let top_first: Vec<PathBuf> = input.layers.iter().rev().map(|c| store.layer_diff(c)).collect::<Result<_>>()?;
    let passwd = read_image_file(&top_first, "/etc/passwd")?;
    let group = read_image_file(&top_first, "/etc/group")?;
    let user = resolve_user(&input.user, passwd.as_deref(), group.as_deref())?;
    if ids.host_uid(user.uid).is_none() || ids.host_gid(user.gid).is_none() {
        bail!(
            "user {} (uid {}, gid {}) is not mapped in husk's user namespace ({}); add a range to /etc/subuid and /etc/subgid",
            input.user,
            user.uid,
            user.gid,
            ids.describe()
        );
    }
    let mut binds = Vec::new();
    let mut argv = input.argv.clone();
    if let Some((name, body)) = &input.script {
        // As BuildKit: the script is a file outside the image, in /dev (a tmpfs).
        let host = tmp.path(&format!("script-{}", crate::util::unique_suffix()));
        crate::util::atomic_write_mode(&host, body.as_bytes(), 0o755)?;
        let inside = format!("/dev/pipes/{}", name.replace('/', "_"));
        binds.push((host.to_string_lossy().into_owned(), inside.clone(), true));
        argv = vec![inside];
    }
    let mut env = input.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = if input.workdir.is_empty() { "/".to_string() } else { input.workdir.clone() };
    let capabilities = crate::ns::caps::resolve(&[], &[])?;
    let security = crate::container::security::from_flags(&[], false, &capabilities)?;
    let settings = Settings {
        own_network: input.network.own_namespace(),
        network: input.network.name().to_string(),
        ..Settings::default()
    };
    let (container, spec) = Container::create(
        store,
        NewContainer {
            name: None,
            image: STEP_IMAGE,
            image_id: "",
            layers: input.layers.to_vec(),
            command: argv.clone(),
            status: "created",
            settings,
            volumes: Vec::new(),
            starting: true,
        },
        |c| {
            let mut env = env.clone();
            set_env(&mut env, &format!("HOSTNAME={}", c.short_id()));
            let spec = build_spec(&SpecInput {
                args: argv.clone(),
                env,
                cwd: cwd.clone(),
                uid: user.uid,
                gid: user.gid,
                additional_gids: user.additional_gids.iter().copied().filter(|g| ids.host_gid(*g).is_some()).collect(),
                hostname: c.short_id().to_string(),
                capabilities: capabilities.clone(),
                read_only: false,
                own_network: input.network.own_namespace(),
                tty_gid_mapped: ids.host_gid(5).is_some(),
                binds: binds.clone(),
                tmpfs: Vec::new(),
                security: security.clone(),
            })?;
            crate::util::atomic_replace(&c.dir.join("config.json"), &serde_json::to_vec(&spec)?)?;
            Ok(spec)
        },
    )?;
    let _remove = RemoveOnDrop { store, id: container.state.id.clone() };
    let output = input.quiet.then(|| tmp.path(&format!("output-{}", crate::util::unique_suffix())));
    // In a child: a process may enter only one new pid namespace for its children, and a
    // build runs many steps.
    let id = container.state.id.clone();
    let stop = || {
        let pid = Container::load(store, &id).ok().and_then(|c| c.live_pid());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    };
    let code = in_child(held, output.as_deref(), stop, || launch::foreground(store, container, &spec, None))?;
    if held.came.get().is_some() {
        return Ok(Outcome::Failed(128 + Signal::SIGKILL as i32));
    }
    if code != 0 {
        if let Some(out) = output {
            eprint!("{}", String::from_utf8_lossy(&std::fs::read(out).unwrap_or_default()));
        }
        return Ok(Outcome::Failed(code));
    }
    // The writable layer as the rootfs mode left it (overlay upper dir, or a copy).
    let c = Container::load(store, &id)?;
    let diff = Diff::scan(&writable_layer(store, &c)?).context("reading what the step changed")?;
    if diff.is_empty() {
        return Ok(Outcome::Layer(None));
    }
    let parent = input.layers.last().map(String::as_str);
    let layer = store_tar_layer(store, tmp, parent, &extract_options(ids), |w| {
        diff.write_tar(w)?;
        Ok(())
    })
    .context("storing the step's layer")?;
    Ok(Outcome::Layer(Some(layer)))
}

/// Removes the step's container when the step ends, however it ends.
struct RemoveOnDrop<'a> {
    store: &'a Store,
    id: String,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(c) = Container::load(self.store, &self.id) {
            let _ = c.remove(self.store);
        }
    }
}

/// Runs `work` in a forked child (its output to `output` when given) and returns
/// what it returned; a held signal that comes meanwhile calls `stop`. Call while
/// single-threaded.
fn in_child(
    held: &HeldSignals,
    output: Option<&Path>,
    stop: impl Fn(),
    work: impl FnOnce() -> Result<i32>,
) -> Result<i32> {
    let (mut ours, mut theirs) = UnixStream::pair().context("creating a socket pair")?;
    // SAFETY: husk is single-threaded here; the child runs ordinary code and leaves with
    // process::exit.
    match unsafe { fork() }.context("forking the step's runner")? {
        ForkResult::Child => {
            drop(ours);
            let result = output
                .map(|path| -> Result<()> {
                    let f = File::create(path).context("creating the step's output file")?;
                    for fd in [1, 2] {
                        nix::unistd::dup2(f.as_raw_fd(), fd).context("redirecting the step's output")?;
                    }
                    Ok(())
                })
                .transpose()
                .and_then(|_| work());
            let reply = match result {
                Ok(code) => format!("ok {}", code),
                Err(e) => format!("error {:#}", e),
            };
            let _ = theirs.write_all(reply.as_bytes());
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let read = read_reply(&mut ours, held, &stop);
            let status = waitpid(child, None).context("waiting for the step's runner")?;
            let reply = read.context("reading the step's result")?;
            match reply.split_once(' ') {
                Some(("ok", code)) => Ok(code.parse().context("reading the step's result")?),
                Some(("error", e)) => Err(anyhow!("{}", e)),
                _ => bail!("the step's runner ended abnormally ({:?})", status),
            }
        }
    }
}

/// While a step's container exists, the signals that would end husk wait: they reach
/// the container (husk run forwards them), and the build stops once the container is
/// removed.
struct HeldSignals {
    set: SigSet,
    old: SigSet,
    came: Cell<Option<Signal>>,
}

impl HeldSignals {
    fn hold() -> Result<HeldSignals> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
            set.add(s);
        }
        let mut old = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .context("blocking signals")?;
        Ok(HeldSignals { set, old, came: Cell::new(None) })
    }

    fn signalfd(&self) -> Result<SignalFd> {
        SignalFd::with_flags(&self.set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).context("creating a signalfd")
    }

    /// Takes the signals that came (without waiting); true if any did.
    fn take(&self, fd: &SignalFd) -> bool {
        let mut any = false;
        while let Ok(Some(info)) = fd.read_signal() {
            any = true;
            self.came.set(self.came.get().or(Signal::try_from(info.ssi_signo as i32).ok()));
        }
        any
    }

    /// Lets the signals through again; the one that came meanwhile, if any.
    fn release(self) -> Option<Signal> {
        if let Ok(fd) = self.signalfd() {
            self.take(&fd);
        }
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
        self.came.get()
    }
}

/// Reads the runner's reply to its end, calling `stop` when a held signal comes.
fn read_reply(sock: &mut UnixStream, held: &HeldSignals, stop: &dyn Fn()) -> Result<String> {
    let signals = held.signalfd()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN), PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for the step"),
            Ok(_) => {}
        }
        let signalled = fds[1].revents().is_some_and(|r| !r.is_empty());
        let readable = fds[0].revents().is_some_and(|r| !r.is_empty());
        if signalled && held.take(&signals) {
            stop();
        }
        if readable {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
