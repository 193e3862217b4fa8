//! Variable substitution in instructions, and the scopes variables come from.
//!
//! Which instructions are expanded, as BuildKit's dispatcher does it: `FROM`
//! (base and `--platform`, from the global scope only), `ADD`/`COPY`
//! (sources, destination, `--chown`, `--chmod`; heredoc bodies whose word was
//! not quoted, without quote processing), `ENV` and `LABEL` (keys and values),
//! `ARG` (defaults), `EXPOSE` (each entry, then split into words), `STOPSIGNAL`,
//! `USER`, `VOLUME`, `WORKDIR`. Not expanded: `RUN`, `CMD`, `ENTRYPOINT`,
//! `SHELL`, `HEALTHCHECK` (the shell does it at run time), `ONBUILD`,
//! `MAINTAINER`, and `COPY --from` (refused by the parser).
//!
//! Scopes:
//! * the global scope, for `FROM` lines and the defaults of meta `ARG`s: the
//!   predefined platform args, then the meta `ARG`s in order (a `--build-arg`
//!   value wins over a default; an `ARG` without either stays unset);
//! * a stage's scope: the base image's `Env` (with Docker's default `PATH`
//!   when it has none), then `ARG` and `ENV` in instruction order, the later
//!   one winning for a name set by both (BuildKit's behaviour). A stage `ARG`
//!   takes its `--build-arg` value, else its default, else (no default) the
//!   global scope's value, so `ARG VERSION` re-imports a meta arg and
//!   `ARG TARGETARCH` a platform arg. Declared args are in the `RUN`
//!   environment but not in the image config.
//!
//! Predefined args (no `ARG` needed for `FROM` lines; `ARG NAME` brings one
//! into a stage; `--build-arg` overrides them): `BUILDPLATFORM`, `BUILDOS`,
//! `BUILDOSVERSION`, `BUILDARCH`, `BUILDVARIANT`, `TARGETPLATFORM`,
//! `TARGETOS`, `TARGETOSVERSION`, `TARGETARCH`, `TARGETVARIANT` (the host's
//! platform for both: husk does not cross-build) and `TARGETSTAGE`.
//! The proxy args (`HTTP_PROXY`, `HTTPS_PROXY`, `FTP_PROXY`, `NO_PROXY`,
//! `ALL_PROXY`, upper and lower case) given with `--build-arg` are in every
//! `RUN`'s environment without an `ARG`, are not substituted unless declared,
//! and stay out of the history. `SOURCE_DATE_EPOCH` and the `BUILDKIT_*`
//! args have no special meaning in husk.

use std::collections::BTreeMap;

use super::instruction::*;
use super::lex::{Lexer, Lookup};
use super::DockerfileError;
use crate::fetch::manifest::PlatformSpec;

/// `PATH` for images whose config has none, as Docker's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const PLATFORM_ARGS: [&str; 11] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// Ordered variables; setting one that exists replaces it in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(Vec<(String, String)>);

impl Vars {
    /// From `KEY=VALUE` strings (an image config's `Env`).
    pub fn from_env(env: &[String]) -> Vars {
        let mut v = Vars::default();
        for e in env {
            let (k, val) = e.split_once('=').unwrap_or((e, ""));
            v.set(k, val);
        }
        v
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((key.to_string(), value.to_string())),
        }
    }

    /// As `KEY=VALUE` strings, in order.
    pub fn to_env(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{}={}", k, v)).collect()
    }
}

impl Lookup for Vars {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

/// The global scope of a build: what `FROM` lines see.
#[derive(Debug, Clone)]
pub struct Globals {
    file: String,
    escape: char,
    vars: Vars,
    build_args: BTreeMap<String, String>,
}

impl Globals {
    /// `build_args` are the `--build-arg` values; `target` the `--target` stage, if any.
    pub fn new(
        df: &Dockerfile,
        build_args: &BTreeMap<String, String>,
        platform: &PlatformSpec,
        target: Option<&str>,
    ) -> Result<Globals, DockerfileError> {
        let target = target.map(str::to_string).or_else(|| df.stages.last().and_then(|s| s.name.clone()));
        let mut g =
            Globals { file: df.name.clone(), escape: df.escape, vars: Vars::default(), build_args: build_args.clone() };
        let platform_str = platform_args_string(platform);
        let variant = platform_variant(platform);
        let predefined = [
            ("BUILDPLATFORM", platform_str.as_str()),
            ("BUILDOS", platform.os.as_str()),
            ("BUILDOSVERSION", ""),
            ("BUILDARCH", platform.arch.as_str()),
            ("BUILDVARIANT", variant),
            ("TARGETPLATFORM", platform_str.as_str()),
            ("TARGETOS", platform.os.as_str()),
            ("TARGETOSVERSION", ""),
            ("TARGETARCH", platform.arch.as_str()),
            ("TARGETVARIANT", variant),
            ("TARGETSTAGE", target.as_deref().unwrap_or("default")),
        ];
        for (k, v) in predefined {
            g.vars.set(k, build_args.get(k).map(String::as_str).unwrap_or(v));
        }
        for step in &df.meta_args {
            for arg in &step.args {
                let value = match (build_args.get(&arg.name), &arg.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(g.word(d, &g.vars, step.line)?),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    g.vars.set(&arg.name, &v);
                }
            }
        }
        Ok(g)
    }

    fn err(&self, line: usize, message: String) -> DockerfileError {
        DockerfileError { file: self.file.clone(), line: Some(line), message }
    }

    fn word(&self, word: &str, vars: &dyn Lookup, line: usize) -> Result<String, DockerfileError> {
        Lexer::new(self.escape).word(word, vars).map_err(|m| self.err(line, m))
    }

    /// A global variable (predefined or meta arg).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name)
    }

    /// What stage `index` starts from: its `FROM` base expanded, then looked up
    /// among the earlier stages' names before being taken as an image.
    pub fn base(&self, df: &Dockerfile, index: usize) -> Result<StageRef, DockerfileError> {
        let stage = &df.stages[index];
        let name = self.word(&stage.base, &self.vars, stage.line)?;
        if name.is_empty() {
            return Err(self.err(stage.line, format!("base name ({}) should not be blank", stage.base)));
        }
        let lower = name.to_lowercase();
        if let Some(i) = df.stages[..index].iter().rposition(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Ok(StageRef::Stage(i));
        }
        if name == "scratch" {
            return Ok(StageRef::Scratch);
        }
        Ok(StageRef::Image(name))
    }

    /// Stage `index`'s `--platform`, expanded and parsed.
    pub fn platform(&self, df: &Dockerfile, index: usize) -> Result<Option<PlatformSpec>, DockerfileError> {
        let stage = &df.stages[index];
        let Some(p) = &stage.platform else { return Ok(None) };
        let value = self.word(p, &self.vars, stage.line)?;
        if value.is_empty() {
            return Err(self.err(stage.line, format!("empty platform value from expression {}", p)));
        }
        PlatformSpec::parse(&value).map(Some).map_err(|e| self.err(stage.line, e.to_string()))
    }

    /// The proxy variables given with `--build-arg`, for every `RUN`.
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        self.build_args
            .iter()
            .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `--build-arg` names that no `ARG` of the Dockerfile declares and that are
    /// not predefined (Docker warns that they "were not consumed").
    pub fn unconsumed(&self, df: &Dockerfile) -> Vec<String> {
        let declared = |name: &str| {
            let meta = df.meta_args.iter().flat_map(|s| &s.args);
            let staged = df.stages.iter().flat_map(|s| &s.steps).flat_map(|s| match &s.instruction {
                Instruction::Arg(a) => a.as_slice(),
                Instruction::Onbuild(Onbuild { trigger, .. }) => match trigger.as_ref() {
                    Instruction::Arg(a) => a.as_slice(),
                    _ => &[],
                },
                _ => &[],
            });
            meta.chain(staged).any(|a| a.name == name)
        };
        self.build_args
            .keys()
            .filter(|k| !PROXY_ARGS.contains(&k.as_str()) && !PLATFORM_ARGS.contains(&k.as_str()) && !declared(k))
            .cloned()
            .collect()
    }

    /// A fresh scope for a stage whose base image config has `image_env`.
    pub fn stage_vars(&self, image_env: &[String]) -> StageVars {
        let mut config = Vars::from_env(image_env);
        if config.get("PATH").is_none() {
            config.set("PATH", DEFAULT_PATH);
        }
        StageVars { globals: self.clone(), env: config.clone(), config_env: config, args: Vec::new() }
    }
}

/// `os/arch[/variant]` as Docker gives it in `TARGETPLATFORM`.
fn platform_args_string(p: &PlatformSpec) -> String {
    match platform_variant(p) {
        "" => format!("{}/{}", p.os, p.arch),
        v => format!("{}/{}/{}", p.os, p.arch, v),
    }
}

/// The variant, except arm64's implied `v8`.
fn platform_variant(p: &PlatformSpec) -> &str {
    match p.variant.as_deref() {
        Some("v8") if p.arch == "arm64" => "",
        Some(v) => v,
        None => "",
    }
}

/// The variables of one stage while its instructions are worked through.
#[derive(Debug, Clone)]
pub struct StageVars {
    globals: Globals,
    /// What instructions and `RUN` see: image env, declared args and ENV.
    env: Vars,
    /// The image config's `Env`.
    config_env: Vars,
    /// Declared args and their values, in order.
    args: Vec<(String, Option<String>)>,
}

impl Lookup for StageVars {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.get(name)
    }
}

impl StageVars {
    /// The step's instruction with its variables substituted; `ENV` and `ARG`
    /// also change the scope for the following steps. An `ARG` comes back
    /// with each `default` holding the value it took (`None`: unset).
    pub fn evaluate(&mut self, step: &Step) -> Result<Instruction, DockerfileError> {
        self.evaluate_instruction(&step.instruction).map_err(|message| DockerfileError {
            file: self.globals.file.clone(),
            line: Some(step.line),
            message,
        })
    }

    fn word(&self, w: &str) -> Result<String, String> {
        Lexer::new(self.globals.escape).word(w, &self.env)
    }

    fn opt_word(&self, w: &Option<String>) -> Result<Option<String>, String> {
        w.as_deref().map(|w| self.word(w)).transpose()
    }

    fn key_values(&self, kvs: &[KeyValue]) -> Result<Vec<KeyValue>, String> {
        kvs.iter()
            .map(|kv| Ok(KeyValue { key: self.word(&kv.key)?, value: self.word(&kv.value)?, legacy: kv.legacy }))
            .collect()
    }

    fn evaluate_instruction(&mut self, ins: &Instruction) -> Result<Instruction, String> {
        Ok(match ins {
            Instruction::Env(kvs) => {
                let kvs = self.key_values(kvs)?;
                for kv in &kvs {
                    self.env.set(&kv.key, &kv.value);
                    self.config_env.set(&kv.key, &kv.value);
                }
                Instruction::Env(kvs)
            }
            Instruction::Arg(decls) => {
                let mut out = Vec::new();
                for d in decls {
                    let value = match (self.globals.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(self.word(def)?),
                        (None, None) => self.globals.get(&d.name).map(str::to_string),
                    };
                    if let Some(v) = &value {
                        self.env.set(&d.name, v);
                    }
                    self.args.push((d.name.clone(), value.clone()));
                    out.push(ArgDecl { name: d.name.clone(), default: value });
                }
                Instruction::Arg(out)
            }
            Instruction::Label(kvs) => Instruction::Label(self.key_values(kvs)?),
            Instruction::Copy(c) => Instruction::Copy(self.copy(c)?),
            Instruction::Add(c) => Instruction::Add(self.copy(c)?),
            Instruction::Workdir(p) => Instruction::Workdir(self.word(p)?),
            Instruction::User(u) => Instruction::User(self.word(u)?),
            Instruction::StopSignal(s) => Instruction::StopSignal(self.word(s)?),
            Instruction::Volume(v) => Instruction::Volume(v.iter().map(|p| self.word(p)).collect::<Result<_, _>>()?),
            Instruction::Expose(ports) => {
                let lex = Lexer::new(self.globals.escape);
                let mut out = Vec::new();
                for p in ports {
                    for w in lex.words(p, &self.env)? {
                        out.extend(port_spec(&w)?);
                    }
                }
                Instruction::Expose(out)
            }
            other => other.clone(),
        })
    }

    fn copy(&self, c: &CopySpec) -> Result<CopySpec, String> {
        let raw = Lexer { skip_quotes: true, ..Lexer::new('\\') };
        let mut inline = Vec::new();
        for f in &c.inline {
            let content = if f.expand { raw.word(&f.content, &self.env)? } else { f.content.clone() };
            inline.push(InlineFile { content, ..f.clone() });
        }
        Ok(CopySpec {
            sources: c.sources.iter().map(|s| self.word(s)).collect::<Result<_, _>>()?,
            inline,
            dest: self.word(&c.dest)?,
            from: c.from.clone(),
            chown: self.opt_word(&c.chown)?,
            chmod: self.opt_word(&c.chmod)?,
            link: c.link,
        })
    }

    /// The environment of a `RUN` step: the scope's variables, then the proxy
    /// `--build-arg`s not already set.
    pub fn run_env(&self) -> Vec<String> {
        let mut env = self.env.clone();
        for (k, v) in self.globals.proxy_env() {
            if env.get(&k).is_none() {
                env.set(&k, &v);
            }
        }
        env.to_env()
    }

    /// The image config's `Env` so far.
    pub fn config_env(&self) -> Vec<String> {
        self.config_env.to_env()
    }

    /// The stage's declared args as `KEY=VALUE` (the current value, an ENV of
    /// the same name included; empty when unset), each once, in declaration
    /// order: BuildKit writes them before a `RUN`'s command in the history
    /// (`RUN |2 A=1 B=2 /bin/sh -c …`), and they belong in its cache key.
    pub fn history_args(&self) -> Vec<String> {
        let mut seen = Vars::default();
        for (k, v) in &self.args {
            seen.set(k, self.env.get(k).or(v.as_deref()).unwrap_or(""));
        }
        seen.to_env()
    }
}

/// One EXPOSE entry (`[ip:][hostport:]port[-end][/proto]`) as `port/proto` keys.
fn port_spec(raw: &str) -> Result<Vec<String>, String> {
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let (range, proto) = container.split_once('/').unwrap_or((container, "tcp"));
    let proto = match proto.to_lowercase().as_str() {
        "" | "tcp" => "tcp",
        "udp" => "udp",
        "sctp" => "sctp",
        _ => return Err(format!("invalid port {:?}: invalid proto: {}", raw, proto)),
    };
    if range.is_empty() {
        return Err(format!("invalid port {:?}: no port specified", raw));
    }
    let port = |s: &str| s.parse::<u16>().map_err(|_| format!("invalid containerPort: {}", range));
    let (start, end) = match range.split_once('-') {
        Some((a, b)) if a != b => (port(a)?, port(b)?),
        Some((a, _)) => (port(a)?, port(a)?),
        None => (port(range)?, port(range)?),
    };
    if end < start {
        return Err(format!("invalid port range: {}", range));
    }
    Ok((start..=end).map(|p| format!("{}/{}", p, proto)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::parser::parse;

    fn amd64() -> PlatformSpec {
        PlatformSpec { os: "linux".into(), arch: "amd64".into(), variant: None }
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn setup(text: &str, build_args: &[(&str, &str)]) -> (Dockerfile, Globals) {
        let df = parse(text, "Dockerfile").unwrap();
        let g = Globals::new(&df, &args(build_args), &amd64(), None).unwrap();
        (df, g)
    }

    /// Every step of stage `stage` evaluated in order, on a base image with `env`.
    fn evaluate(df: &Dockerfile, g: &Globals, stage: usize, env: &[&str]) -> (Vec<Instruction>, StageVars) {
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        let mut vars = g.stage_vars(&env);
        let out = df.stages[stage].steps.iter().map(|s| vars.evaluate(s).unwrap()).collect();
        (out, vars)
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue { key: k.into(), value: v.into(), legacy: false }
    }

    #[test]
    fn predefined_and_meta_args_in_from() {
        let text = concat!(
            "ARG REPO=library\n",
            "ARG IMAGE=${REPO}/alpine\n",
            "ARG TAG\n",
            "FROM --platform=$BUILDPLATFORM ${IMAGE}:${TAG:-latest} AS build\n",
            "FROM build\n",
            "FROM scratch\n",
            "FROM ${UNSET}\n",
            "FROM --platform=${NOPE} busybox\n",
        );
        let (df, g) = setup(text, &[]);
        assert_eq!(g.get("TARGETPLATFORM"), Some("linux/amd64"));
        assert_eq!(g.get("TARGETARCH"), Some("amd64"));
        assert_eq!(g.get("TARGETVARIANT"), Some(""));
        assert_eq!(g.get("TARGETSTAGE"), Some("default"));
        assert_eq!(g.get("TAG"), None);
        assert_eq!(g.base(&df, 0), Ok(StageRef::Image("library/alpine:latest".into())));
        assert_eq!(g.platform(&df, 0), Ok(Some(amd64())));
        assert_eq!(g.base(&df, 1), Ok(StageRef::Stage(0)));
        assert_eq!(g.base(&df, 2), Ok(StageRef::Scratch));
        assert_eq!(g.base(&df, 3).unwrap_err().to_string(), "Dockerfile:7: base name (${UNSET}) should not be blank");
        assert_eq!(
            g.platform(&df, 4).unwrap_err().to_string(),
            "Dockerfile:8: empty platform value from expression ${NOPE}"
        );

        let (df, g) = setup(text, &[("TAG", "3.20"), ("REPO", "me"), ("TARGETARCH", "arm64")]);
        assert_eq!(g.base(&df, 0), Ok(StageRef::Image("me/alpine:3.20".into())));
        assert_eq!(g.get("TARGETARCH"), Some("arm64"));
    }

    #[test]
    fn a_stage_base_is_only_an_earlier_stage() {
        let (df, g) = setup("FROM later AS first\nFROM alpine AS later\n", &[]);
        assert_eq!(g.base(&df, 0), Ok(StageRef::Image("later".into())));
        let arm = PlatformSpec { os: "linux".into(), arch: "arm".into(), variant: Some("v7".into()) };
        let g = Globals::new(&df, &BTreeMap::new(), &arm, Some("first")).unwrap();
        assert_eq!((g.get("TARGETPLATFORM"), g.get("TARGETSTAGE")), (Some("linux/arm/v7"), Some("first")));
        let arm64 = PlatformSpec { os: "linux".into(), arch: "arm64".into(), variant: Some("v8".into()) };
        let g = Globals::new(&df, &BTreeMap::new(), &arm64, None).unwrap();
        assert_eq!((g.get("TARGETPLATFORM"), g.get("TARGETVARIANT")), (Some("linux/arm64"), Some("")));
        assert_eq!(g.get("TARGETSTAGE"), Some("later"));
    }

    #[test]
    fn env_values_are_unquoted_and_expanded_against_the_scope_before_the_instruction() {
        let text = concat!(
            "FROM x\n",
            "ENV name=\"value value1\" legacy_ok=1\n",
            "ENV esc=value\\ value2 sq='a $name b' dq=\"a $name b\"\n",
            "ENV LEGACY spaced out \"value\"\n",
            "ENV A=1\n",
            "ENV A=2 B=$A\n",
            "ENV PATH=$PATH:/opt/bin HOME_DIR=${HOME:-/root}\n",
            "ENV \"quoted key\"=v\n",
        );
        let (df, g) = setup(text, &[]);
        let (out, vars) = evaluate(&df, &g, 0, &["HOME=/home/u"]);
        assert_eq!(
            out,
            [
                Instruction::Env(vec![kv("name", "value value1"), kv("legacy_ok", "1")]),
                Instruction::Env(vec![kv("esc", "value value2"), kv("sq", "a $name b"), kv("dq", "a value value1 b")]),
                Instruction::Env(vec![KeyValue {
                    key: "LEGACY".into(),
                    value: "spaced out value".into(),
                    legacy: true
                }]),
                Instruction::Env(vec![kv("A", "1")]),
                Instruction::Env(vec![kv("A", "2"), kv("B", "1")]),
                Instruction::Env(vec![kv("PATH", &format!("{}:/opt/bin", DEFAULT_PATH)), kv("HOME_DIR", "/home/u")]),
                Instruction::Env(vec![kv("quoted key", "v")]),
            ]
        );
        assert_eq!(vars.config_env()[0], "HOME=/home/u");
        assert!(vars.config_env().contains(&"B=1".to_string()));
    }

    #[test]
    fn stage_args_scope() {
        let text = concat!(
            "ARG VERSION=1.0\n",
            "ARG OTHER=meta\n",
            "FROM x\n",
            "RUN echo $VERSION\n",
            "WORKDIR /v$VERSION\n",
            "ARG VERSION\n",
            "WORKDIR /v$VERSION\n",
            "ARG TARGETOS TARGETARCH\n",
            "ARG LOCAL=${VERSION}-local UNSET\n",
            "ENV LOCAL=from-env\n",
            "ARG LOCAL=again\n",
            "ARG GIVEN=default\n",
            "LABEL os=$TARGETOS arch=$TARGETARCH local=$LOCAL given=$GIVEN unset=${UNSET-none} other=${OTHER:-no}\n",
            "FROM y\n",
            "LABEL v=${VERSION:-gone}\n",
        );
        let (df, g) = setup(text, &[("GIVEN", "cli"), ("http_proxy", "http://proxy:3128"), ("NOT_DECLARED", "x")]);
        let (out, vars) = evaluate(&df, &g, 0, &[]);
        // RUN is not expanded; a meta arg is invisible until declared in the stage.
        assert_eq!(out[0], df.stages[0].steps[0].instruction);
        assert_eq!(out[1], Instruction::Workdir("/v".into()));
        assert_eq!(out[3], Instruction::Workdir("/v1.0".into()));
        assert_eq!(
            out[5],
            Instruction::Arg(vec![
                ArgDecl { name: "LOCAL".into(), default: Some("1.0-local".into()) },
                ArgDecl { name: "UNSET".into(), default: None },
            ])
        );
        assert_eq!(
            out[9],
            Instruction::Label(vec![
                kv("os", "linux"),
                kv("arch", "amd64"),
                kv("local", "again"),
                kv("given", "cli"),
                kv("unset", "none"),
                kv("other", "no"),
            ])
        );
        let run_env = vars.run_env();
        assert!(run_env.contains(&"VERSION=1.0".to_string()), "{:?}", run_env);
        assert!(run_env.contains(&"http_proxy=http://proxy:3128".to_string()));
        assert!(!vars.config_env().iter().any(|e| e.starts_with("VERSION=")));
        assert!(vars.config_env().contains(&"LOCAL=from-env".to_string()));
        assert_eq!(
            vars.history_args(),
            ["VERSION=1.0", "TARGETOS=linux", "TARGETARCH=amd64", "LOCAL=again", "UNSET=", "GIVEN=cli"]
        );
        // The next stage starts afresh.
        let (out, _) = evaluate(&df, &g, 1, &[]);
        assert_eq!(out[0], Instruction::Label(vec![kv("v", "gone")]));
        assert_eq!(g.unconsumed(&df), ["NOT_DECLARED"]);
    }

    #[test]
    fn env_after_arg_wins_and_arg_after_env_wins() {
        let (df, g) = setup("FROM x\nARG V\nENV V=v1.0.0\nRUN x\nENV W=env\nARG W=arg\n", &[("V", "v2.0.1")]);
        let (_, vars) = evaluate(&df, &g, 0, &[]);
        let env = vars.run_env();
        assert!(env.contains(&"V=v1.0.0".to_string()) && env.contains(&"W=arg".to_string()), "{:?}", env);
    }

    #[test]
    fn copy_add_and_metadata_expansion() {
        let text = concat!(
            "FROM x\n",
            "ENV SRC=src DEST=/app OWNER=1000 MODE=0755 NAME=world P=8080\n",
            "COPY --chown=$OWNER:$OWNER --chmod=${MODE} ${SRC}/*.go \"$DEST\"/\n",
            "ADD --link $SRC.tar.gz $DEST\n",
            "COPY <<EOF <<'RAW' /etc/\n",
            "hello $NAME \"quoted\" \\$NAME\n",
            "EOF\n",
            "hello $NAME\n",
            "RAW\n",
            "USER ${OWNER}:${OWNER}\n",
            "VOLUME [\"$DEST/data\", \"/logs\"]\n",
            "STOPSIGNAL ${SIG:-SIGTERM}\n",
            "EXPOSE $P 53/UDP 9000-9002/tcp 127.0.0.1:8443:443\n",
            "CMD echo $NAME\n",
            "HEALTHCHECK CMD curl localhost:$P\n",
            "ONBUILD RUN echo $NAME\n",
        );
        let (df, g) = setup(text, &[]);
        let (out, _) = evaluate(&df, &g, 0, &[]);
        assert_eq!(
            out[1],
            Instruction::Copy(CopySpec {
                sources: vec!["src/*.go".into()],
                inline: vec![],
                dest: "/app/".into(),
                from: None,
                chown: Some("1000:1000".into()),
                chmod: Some("0755".into()),
                link: false,
            })
        );
        let Instruction::Add(add) = &out[2] else { panic!("{:?}", out[2]) };
        assert_eq!(
            (add.sources.as_slice(), add.dest.as_str(), add.link),
            (&["src.tar.gz".to_string()][..], "/app", true)
        );
        let Instruction::Copy(c) = &out[3] else { panic!("{:?}", out[3]) };
        assert_eq!(
            c.inline.iter().map(|f| f.content.as_str()).collect::<Vec<_>>(),
            ["hello world \"quoted\" $NAME\n", "hello $NAME\n"]
        );
        assert_eq!(out[4], Instruction::User("1000:1000".into()));
        assert_eq!(out[5], Instruction::Volume(vec!["/app/data".into(), "/logs".into()]));
        assert_eq!(out[6], Instruction::StopSignal("SIGTERM".into()));
        assert_eq!(
            out[7],
            Instruction::Expose(
                ["8080/tcp", "53/udp", "9000/tcp", "9001/tcp", "9002/tcp", "443/tcp"].map(String::from).to_vec()
            )
        );
        for (got, step) in out.iter().zip(&df.stages[0].steps).skip(8) {
            assert_eq!(got, &step.instruction, "{} is not expanded", step.original);
        }
    }

    #[test]
    fn expansion_errors_name_the_line() {
        let (df, g) = setup("FROM x\nENV A=1\n\nWORKDIR ${A\nEXPOSE 80/xtp\n", &[]);
        let mut vars = g.stage_vars(&[]);
        let steps = &df.stages[0].steps;
        vars.evaluate(&steps[0]).unwrap();
        assert_eq!(
            vars.evaluate(&steps[1]).unwrap_err().to_string(),
            "Dockerfile:4: failed to process \"${A\": syntax error: missing '}'"
        );
        assert_eq!(
            vars.evaluate(&steps[2]).unwrap_err().to_string(),
            "Dockerfile:5: invalid port \"80/xtp\": invalid proto: xtp"
        );
        let df = parse("ARG A=\"${B:?B is required}\"\nFROM x\n", "Dockerfile").unwrap();
        let e = Globals::new(&df, &BTreeMap::new(), &amd64(), None).unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:1: failed to process \"\\\"${B:?B is required}\\\"\": B: B is required");
    }

    #[test]
    fn port_specs() {
        assert_eq!(port_spec("80"), Ok(vec!["80/tcp".to_string()]));
        assert_eq!(port_spec("7000-7001/SCTP"), Ok(vec!["7000/sctp".to_string(), "7001/sctp".to_string()]));
        assert_eq!(port_spec("5000-5000"), Ok(vec!["5000/tcp".to_string()]));
        assert!(port_spec("").is_err());
        assert!(port_spec("/udp").is_err());
        assert!(port_spec("70000").is_err());
        assert!(port_spec("9-1").is_err());
        assert!(port_spec("http").is_err());
    }

    #[test]
    fn default_path_only_when_missing() {
        let (_, g) = setup("FROM x\n", &[]);
        assert_eq!(g.stage_vars(&[]).config_env(), [format!("PATH={}", DEFAULT_PATH)]);
        assert_eq!(g.stage_vars(&["PATH=/bin".into()]).config_env(), ["PATH=/bin"]);
    }
}
