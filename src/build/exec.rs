//! Building: the stages the target needs, one instruction at a time. RUN, COPY and ADD
//! each add a layer; the other instructions change the config only and get a history
//! entry marked `empty_layer`, as Docker writes them. Each step's image is stored
//! (unnamed) and remembered in the build cache under the step's key; the final one is
//! named after `-t`.
use super::cache::{self, Cache};
use super::copy::{self, Context, Source};
use super::expand::{Globals, StageVars};
use super::run_step::{self, Outcome, RunInput};
use super::{
    parser, CommandLine, Dockerfile, DockerfileError, Healthcheck, Instruction, RunNetwork, RunScript, StageRef, Step,
};
use crate::container::network::NetworkMode;
use crate::fetch::manifest::PlatformSpec;
use crate::fetch::pull::{extract_options, pull, PullOptions};
use crate::fetch::reference::Reference;
use crate::layers::author::{History, ImageDraft};
use crate::layers::changes::{string_list, Command, ConfigChange};
use crate::layers::gc::remove_unnamed_images;
use crate::layers::images::{record_manifest, resolve, tag_manifest, ImageRecord};
use crate::layers::newlayer::store_tar_layer;
use crate::layers::stack::Stack;
use crate::layers::store::{Store, TmpArea};
use crate::ns::idmap::IdMapping;
use anyhow::{anyhow, bail, Context as _, Result};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

pub struct Options {
    /// The Dockerfile's text and the name its messages use.
    pub dockerfile: String,
    pub dockerfile_name: String,
    /// Normalized names for the image.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
    pub network: NetworkMode,
}

/// A RUN that failed: the build ends with its status.
#[derive(Debug)]
pub struct StepFailed {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepFailed {}

pub struct Built {
    /// The image id (config digest).
    pub id: String,
}

/// A stage being built: its image so far and the cache key of its last step.
#[derive(Clone)]
struct StageState {
    draft: ImageDraft,
    /// The image after the last step (an unnamed manifest), None until a step ran or
    /// when it is the base image itself.
    manifest: Option<String>,
    base_manifest: Option<(String, u64, String)>,
    key: String,
}

impl StageState {
    fn chains(&self) -> Vec<String> {
        crate::layers::store::chain_ids(&self.draft.diff_ids())
    }

    fn config_str(&self, key: &str) -> String {
        self.draft.config().get(key).and_then(Value::as_str).unwrap_or("").to_string()
    }
}

struct Builder<'a> {
    store: &'a Store,
    tmp: &'a TmpArea,
    ids: &'a IdMapping,
    ctx: &'a Context,
    df: &'a Dockerfile,
    opts: &'a Options,
    cache: Cache<'a>,
    images: HashMap<String, ImageRecord>,
    done: HashMap<usize, StageState>,
    step: usize,
    total: usize,
    /// Step images the cache named before this build replaced them.
    superseded: Vec<String>,
}

/// Builds the image. Call inside husk's user namespace, single-threaded.
pub fn build(store: &Store, ids: &IdMapping, ctx: &Context, opts: &Options) -> Result<Built> {
    let started = Instant::now();
    let df = parser::parse(&opts.dockerfile, &opts.dockerfile_name).map_err(|e| anyhow!(e))?;
    for w in &df.warnings {
        eprintln!("WARNING: {}:{}: {}", df.name, w.line, w.message);
    }
    let target = df.target(opts.target.as_deref()).map_err(|e| anyhow!(e))?;
    let globals =
        Globals::new(&df, &opts.build_args, &PlatformSpec::host(), opts.target.as_deref()).map_err(|e| anyhow!(e))?;
    for name in globals.unconsumed(&df) {
        eprintln!("WARNING: the build argument {} was not consumed", name);
    }
    let stages = needed_stages(&df, &globals, target)?;
    let total = stages.iter().map(|&s| 1 + df.stages[s].steps.len()).sum();

    // Images come first: a pull takes the store's locks its own way.
    let mut images = HashMap::new();
    for &s in &stages {
        let mut refs: Vec<(String, usize)> = Vec::new();
        if let StageRef::Image(r) = globals.base(&df, s).map_err(|e| anyhow!(e))? {
            refs.push((r, df.stages[s].line));
        }
        for step in &df.stages[s].steps {
            if let Some(from) = copy_from(step) {
                if let Ok(StageRef::Image(r)) = df.copy_source(s, from) {
                    refs.push((r, step.line));
                }
            }
        }
        for (r, line) in refs {
            if let std::collections::hash_map::Entry::Vacant(slot) = images.entry(r) {
                let image = image_for(store, ids, slot.key(), opts).with_context(|| format!("{}:{}", df.name, line))?;
                slot.insert(image);
            }
        }
    }

    let _writers = store.lock_writers()?;
    for (name, image) in &images {
        if let Some(layer) = image.missing_layer(store) {
            bail!("image {} was removed while the build started (its layer {} is gone)", name, layer);
        }
    }
    let tmp = store.tmp_area()?;
    let mut b = Builder {
        store,
        tmp: &tmp,
        ids,
        ctx,
        df: &df,
        opts,
        cache: Cache::open(store)?,
        images,
        done: HashMap::new(),
        step: 0,
        total,
        superseded: Vec::new(),
    };
    for &s in &stages {
        let state = b.stage(&globals, s)?;
        b.done.insert(s, state);
    }
    let last = b.done.remove(&target).expect("the target was built");
    let (digest, size, config_digest) = match (&last.manifest, &last.base_manifest) {
        (Some(m), _) => {
            let image = cache::load_unnamed(store, m)?;
            (m.clone(), store.read_blob(m)?.len() as u64, image.config_digest)
        }
        (None, Some(base)) => base.clone(),
        (None, None) => {
            let mut draft = last.draft.clone();
            let written = draft.write_blobs(store)?;
            let size = store.read_blob(&written.manifest_digest)?.len() as u64;
            (written.manifest_digest, size, written.config_digest)
        }
    };
    let desc = Descriptor::new(MediaType::ImageManifest, size, digest.parse::<oci_spec::image::Digest>()?);
    if opts.tags.is_empty() {
        record_manifest(store, desc.clone(), None)?;
    }
    for name in &opts.tags {
        tag_manifest(store, desc.clone(), name)?;
    }
    drop(_writers);
    collect_superseded(store, &tmp, &b.cache, &b.superseded)?;
    if !opts.quiet {
        for name in &opts.tags {
            println!("Successfully tagged {}", name);
        }
        crate::util::trace(&format!("build done in {:?}", started.elapsed()));
    }
    Ok(Built { id: config_digest })
}

/// Removes the step images a rebuild replaced in the cache, under the gc lock: a
/// concurrent build that took one from the cache has named what it uses by then.
fn collect_superseded(store: &Store, tmp: &TmpArea, cache: &Cache, manifests: &[String]) -> Result<()> {
    if manifests.is_empty() {
        return Ok(());
    }
    let _gc = store.lock_gc()?;
    let gone: Vec<ImageRecord> = manifests.iter().filter_map(|m| cache::load_unnamed(store, m).ok()).collect();
    remove_unnamed_images(store, tmp, &gone, &cache.images()?)
}

/// The stages the target needs (its base and `COPY --from` stages, recursively), in order.
fn needed_stages(df: &Dockerfile, globals: &Globals, target: usize) -> Result<Vec<usize>> {
    let mut need = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(s) = todo.pop() {
        if !need.insert(s) {
            continue;
        }
        if let StageRef::Stage(i) = globals.base(df, s).map_err(|e| anyhow!(e))? {
            todo.push(i);
        }
        for step in &df.stages[s].steps {
            if let Some(from) = copy_from(step) {
                match df.copy_source(s, from) {
                    Ok(StageRef::Stage(i)) => todo.push(i),
                    Ok(_) => {}
                    Err(e) => return Err(anyhow!(DockerfileError::at(df, step, e))),
                }
            }
        }
    }
    Ok(need.into_iter().collect())
}

fn copy_from(step: &Step) -> Option<&str> {
    match &step.instruction {
        Instruction::Copy(c) => c.from.as_deref(),
        _ => None,
    }
}

/// A base or `--from` image: from the store, pulled when missing (always with --pull).
fn image_for(store: &Store, ids: &IdMapping, name: &str, opts: &Options) -> Result<ImageRecord> {
    if !opts.pull {
        if let Ok(image) = resolve(store, name) {
            return Ok(image);
        }
    }
    let reference = Reference::parse(name).with_context(|| format!("invalid image name {:?}", name))?;
    pull(store, ids, &reference, &PullOptions { platform: None, quiet: opts.quiet })
        .with_context(|| format!("pulling {}", name))
}

impl Builder<'_> {
    fn say(&self, line: &str) {
        if !self.opts.quiet {
            println!("{}", line);
            let _ = std::io::stdout().flush();
        }
    }

    fn next_step(&mut self, text: &str) {
        self.step += 1;
        self.say(&format!("STEP {}/{}: {}", self.step, self.total, text));
    }

    fn stage(&mut self, globals: &Globals, index: usize) -> Result<StageState> {
        let df = self.df;
        let stage = &df.stages[index];
        self.next_step(&stage.original);
        let at = |msg: String| anyhow!(DockerfileError { file: df.name.clone(), line: Some(stage.line), message: msg });
        let mut state = match globals.base(df, index).map_err(|e| anyhow!(e))? {
            StageRef::Scratch => {
                StageState { draft: ImageDraft::scratch(), manifest: None, base_manifest: None, key: "scratch".into() }
            }
            StageRef::Stage(i) => self.done.get(&i).cloned().ok_or_else(|| at(format!("stage {} was not built", i)))?,
            StageRef::Image(r) => {
                let image = &self.images[&r];
                let size = self.store.read_blob(&image.manifest_digest)?.len() as u64;
                StageState {
                    draft: ImageDraft::from_image(self.store, image).map_err(|e| at(format!("{:#}", e)))?,
                    manifest: None,
                    base_manifest: Some((image.manifest_digest.clone(), size, image.config_digest.clone())),
                    key: image.config_digest.clone(),
                }
            }
        };
        // A base image's ONBUILD triggers run first, and are not inherited further.
        let triggers = string_list(state.draft.config().get("OnBuild"));
        if !triggers.is_empty() {
            state.draft.config_mut().remove("OnBuild");
        }
        let env = string_list(state.draft.config().get("Env"));
        let mut vars = globals.stage_vars(&env);
        for t in triggers {
            let step = parser::parse_trigger(&t).map_err(|e| at(format!("ONBUILD {}: {}", t, e)))?;
            let step = Step { line: stage.line, end_line: stage.line, ..step };
            self.say(&format!("ONBUILD {}", t));
            self.run_step(index, &mut state, &mut vars, &step)?;
        }
        for step in &stage.steps {
            self.next_step(&step.original);
            self.run_step(index, &mut state, &mut vars, step)?;
        }
        Ok(state)
    }

    fn run_step(&mut self, stage: usize, state: &mut StageState, vars: &mut StageVars, step: &Step) -> Result<()> {
        let df = self.df;
        let at = |e: anyhow::Error| anyhow!(DockerfileError::at(df, step, format!("{:#}", e)));
        let ins = vars.evaluate(step).map_err(|e| anyhow!(e))?;
        let args = vars.history_args();

        // COPY/ADD: what to copy is worked out before the cache is asked (its content is in the key).
        let mut copy_plan = None;
        let content = match &ins {
            Instruction::Copy(c) | Instruction::Add(c) => {
                let layers = self.layer_dirs(state)?;
                let (source, source_key) = self.copy_source(stage, c.from.as_deref(), step)?;
                let workdir = state.config_str("WorkingDir");
                let req = copy::Request {
                    spec: c,
                    add: matches!(ins, Instruction::Add(_)),
                    source,
                    image_layers: &layers,
                    workdir: if workdir.is_empty() { "/" } else { &workdir },
                };
                let plan = copy::plan(&req).map_err(|e| at(e.context(ins.name())))?;
                let content = format!("{} {}", source_key, plan.content_hash);
                copy_plan = Some(plan);
                Some(content)
            }
            _ => None,
        };
        let key = cache::key(&state.key, &format!("{:?}", ins), &args, content.as_deref());
        if !self.opts.no_cache {
            if let Some((entry, image)) = self.cache.get(&key) {
                state.draft = ImageDraft::from_image(self.store, &image)?;
                state.draft.set_cmd_set(entry.cmd_set);
                state.manifest = Some(entry.manifest);
                state.key = key;
                self.say(&format!("--> Using cache {}", &image.config_digest[7..]));
                return Ok(());
            }
        }

        match &ins {
            Instruction::Run(run) => {
                self.run(state, vars, run, &args).map_err(|e| match e.downcast::<StepFailed>() {
                    Ok(failed) => anyhow!(StepFailed {
                        code: failed.code,
                        message: format!("{}:{}: {}", df.name, step.line, failed.message)
                    }),
                    Err(e) => at(e),
                })?
            }
            Instruction::Copy(c) | Instruction::Add(c) => {
                let plan = copy_plan.take().expect("planned above");
                let parent = state.chains().last().cloned();
                let ctx = self.ctx;
                let layer = store_tar_layer(self.store, self.tmp, parent.as_deref(), &extract_options(self.ids), |w| {
                    plan.write_tar(Some(ctx), w)
                })
                .map_err(|e| at(e.context(format!("{}: storing the layer", ins.name()))))?;
                let mut text = step.original.clone();
                if c.from.is_none() {
                    text.push_str(" # buildkit");
                }
                state.draft.add_layer(&layer, History { created_by: text, ..Default::default() });
            }
            other => self.metadata(state, other, step)?,
        }
        let written = state.draft.write_blobs(self.store)?;
        let entry = cache::Entry { manifest: written.manifest_digest.clone(), cmd_set: state.draft.cmd_set() };
        self.superseded.extend(self.cache.put(&key, &entry)?);
        state.manifest = Some(written.manifest_digest);
        state.key = key;
        self.say(&format!("--> {}", short(&written.config_digest)));
        Ok(())
    }

    fn layer_dirs(&self, state: &StageState) -> Result<Vec<PathBuf>> {
        state.chains().iter().rev().map(|c| self.store.layer_diff(c)).collect()
    }

    /// Where a COPY reads from, and what identifies that source in the cache key.
    fn copy_source(&self, stage: usize, from: Option<&str>, step: &Step) -> Result<(Source<'_>, String)> {
        let Some(from) = from else { return Ok((Source::Context(self.ctx), "context".into())) };
        let refd = self.df.copy_source(stage, from).map_err(|e| anyhow!(DockerfileError::at(self.df, step, e)))?;
        Ok(match refd {
            StageRef::Stage(i) => {
                let s = &self.done[&i];
                (Source::Layers(Stack::of_layers(&self.layer_dirs(s)?)), s.key.clone())
            }
            StageRef::Image(r) => {
                let image = &self.images[&r];
                let dirs: Vec<PathBuf> =
                    image.chain_ids.iter().rev().map(|c| self.store.layer_diff(c)).collect::<Result<_>>()?;
                (Source::Layers(Stack::of_layers(&dirs)), image.config_digest.clone())
            }
            StageRef::Scratch => (Source::Layers(Stack::default()), "scratch".into()),
        })
    }

    fn run(&self, state: &mut StageState, vars: &StageVars, run: &super::Run, args: &[String]) -> Result<()> {
        let shell: Vec<String> = match string_list(state.draft.config().get("Shell")) {
            s if s.is_empty() => vec!["/bin/sh".into(), "-c".into()],
            s => s,
        };
        let (argv, script) = match run.script() {
            RunScript::Exec(argv) => (argv, None),
            RunScript::Shell(cmd) => ([shell.clone(), vec![cmd]].concat(), None),
            RunScript::File { name, content } => (vec![name.clone()], Some((name, content))),
        };
        if argv.is_empty() {
            bail!("RUN: no command given");
        }
        let network = match run.network {
            RunNetwork::Default => self.opts.network.clone(),
            RunNetwork::None => NetworkMode::None,
            RunNetwork::Host => NetworkMode::Host,
        };
        let chains = state.chains();
        let input = RunInput {
            argv: argv.clone(),
            env: vars.run_env(),
            workdir: state.config_str("WorkingDir"),
            user: state.config_str("User"),
            layers: &chains,
            network: &network,
            script,
            quiet: self.opts.quiet,
        };
        let outcome = run_step::run(self.store, self.tmp, self.ids, &input);
        let shown = match &run.command {
            CommandLine::Exec(v) => serde_json::to_string(v)?,
            CommandLine::Shell(s) => s.clone(),
        };
        let history = {
            let prefix = if args.is_empty() { String::new() } else { format!("|{} {} ", args.len(), args.join(" ")) };
            let cmd = match &run.command {
                CommandLine::Exec(_) => shown.clone(),
                CommandLine::Shell(_) => argv.join(" "),
            };
            History { created_by: format!("RUN {}{} # buildkit", prefix, cmd), ..Default::default() }
        };
        match outcome? {
            Outcome::Interrupted(sig) => {
                Err(anyhow!(StepFailed { code: 128 + sig as i32, message: format!("interrupted by {}", sig) }))
            }
            Outcome::Failed(code) => {
                Err(anyhow!(StepFailed { code, message: format!("RUN {}: returned a non-zero code: {}", shown, code) }))
            }
            Outcome::Layer(Some(layer)) => {
                state.draft.add_layer(&layer, history);
                Ok(())
            }
            Outcome::Layer(None) => {
                state.draft.add_empty_layer_history(history);
                Ok(())
            }
        }
    }

    /// Instructions that change the config only.
    fn metadata(&self, state: &mut StageState, ins: &Instruction, step: &Step) -> Result<()> {
        let kv = |kvs: &[super::KeyValue]| kvs.iter().map(|k| (k.key.clone(), k.value.clone())).collect::<Vec<_>>();
        let command = |c: &CommandLine| match c {
            CommandLine::Exec(v) => Command::Exec(v.clone()),
            CommandLine::Shell(s) => Command::Shell(s.clone()),
        };
        let kv_text = |kvs: &[super::KeyValue]| {
            kvs.iter().map(|k| format!("{}={}", k.key, k.value)).collect::<Vec<_>>().join(" ")
        };
        let mut created_by = step.original.clone();
        let change = match ins {
            Instruction::Env(kvs) => {
                created_by = format!("ENV {}", kv_text(kvs));
                Some(ConfigChange::Env(kv(kvs)))
            }
            Instruction::Label(kvs) => {
                created_by = format!("LABEL {}", kv_text(kvs));
                Some(ConfigChange::Label(kv(kvs)))
            }
            Instruction::Arg(decls) => {
                let parts: Vec<String> = decls
                    .iter()
                    .map(|d| match &d.default {
                        Some(v) => format!("{}={}", d.name, v),
                        None => d.name.clone(),
                    })
                    .collect();
                created_by = format!("ARG {}", parts.join(" "));
                None
            }
            Instruction::Workdir(p) => Some(ConfigChange::WorkingDir(p.clone())),
            Instruction::User(u) => Some(ConfigChange::User(u.clone())),
            Instruction::Cmd(c) => Some(ConfigChange::Cmd(command(c))),
            Instruction::Entrypoint(c) => Some(ConfigChange::Entrypoint(command(c))),
            Instruction::Expose(p) => Some(ConfigChange::Expose(p.clone())),
            Instruction::Volume(v) => Some(ConfigChange::Volume(v.clone())),
            Instruction::Shell(v) => Some(ConfigChange::Shell(v.clone())),
            Instruction::StopSignal(s) => Some(ConfigChange::StopSignal(s.clone())),
            Instruction::Healthcheck(h) => Some(ConfigChange::Healthcheck(healthcheck(h))),
            Instruction::Onbuild(o) => Some(ConfigChange::OnBuild(o.expression.clone())),
            Instruction::Maintainer(m) => {
                state.draft.set_author(m);
                None
            }
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) => unreachable!("layer instructions"),
        };
        if let Some(change) = change {
            state.draft.apply(&change);
        }
        state.draft.add_empty_layer_history(History { created_by, ..Default::default() });
        Ok(())
    }
}

/// The config's `Healthcheck` as Docker writes it (durations in nanoseconds, zero ones left out).
fn healthcheck(h: &Healthcheck) -> Value {
    match h {
        Healthcheck::Disable => json!({"Test": ["NONE"]}),
        Healthcheck::Check(c) => {
            let mut v = json!({"Test": c.test});
            for (k, d) in [
                ("Interval", c.interval),
                ("Timeout", c.timeout),
                ("StartPeriod", c.start_period),
                ("StartInterval", c.start_interval),
            ] {
                if !d.is_zero() {
                    v[k] = json!(d.as_nanos() as u64);
                }
            }
            if c.retries != 0 {
                v["Retries"] = json!(c.retries);
            }
            v
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}
