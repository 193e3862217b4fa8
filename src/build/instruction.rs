//! The typed form of a Dockerfile: what [`super::parser::parse`] gives and
//! what the executor works through. Values are as written (quotes, escapes and
//! `$VAR`s untouched) except where a field says otherwise;
//! [`super::expand`] substitutes variables in the instructions that allow it.

use std::time::Duration;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The name used in messages (`Dockerfile`, or what `-f` named).
    pub name: String,
    /// The escape character: `\`, or `` ` `` after `# escape=`` ` ``.
    pub escape: char,
    /// The `# syntax=` directive, recorded only: husk has one built-in frontend.
    pub syntax: Option<String>,
    /// The `# check=` directive, recorded only: husk runs no lint checks.
    pub check: Option<String>,
    /// `ARG`s before the first `FROM`: they may be used in `FROM` lines only,
    /// and inside a stage once declared again there with `ARG NAME`.
    pub meta_args: Vec<ArgStep>,
    pub stages: Vec<Stage>,
    /// Things Docker also lets pass with a warning (empty continuation lines, MAINTAINER).
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// One `ARG` line before the first `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgStep {
    pub line: usize,
    pub args: Vec<ArgDecl>,
}

/// `FROM [--platform=P] BASE [AS NAME]` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub line: usize,
    /// The FROM line as written (continuations joined, trimmed).
    pub original: String,
    /// An image reference, `scratch`, or an earlier stage's name; may hold `$VAR`s of the meta args.
    pub base: String,
    /// The stage name, lowercased.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    pub steps: Vec<Step>,
}

/// One instruction inside a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The line the instruction starts on (1-based): the one errors name.
    pub line: usize,
    /// Its last line, heredoc bodies included.
    pub end_line: usize,
    /// The instruction as written, continuations joined, trimmed, without heredoc bodies.
    pub original: String,
    pub instruction: Instruction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    /// `COPY`; `from` may be set.
    Copy(CopySpec),
    /// `ADD`; `from` is always `None`. Sources may be URLs or local tar archives (to extract).
    Add(CopySpec),
    /// `ENV`: variables for the following instructions and the image config.
    Env(Vec<KeyValue>),
    /// `ARG`: build arguments declared for the rest of the stage.
    Arg(Vec<ArgDecl>),
    Workdir(String),
    User(String),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Label(Vec<KeyValue>),
    /// Port specs as written (`80`, `53/udp`, `8000-8010/tcp`); expansion normalizes them to `port/proto`.
    Expose(Vec<String>),
    Volume(Vec<String>),
    /// `SHELL ["exe", "arg"…]`: the JSON form is the only one accepted.
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Onbuild(Onbuild),
    /// Deprecated; Docker and BuildKit store it as the image config's `author`.
    Maintainer(String),
}

impl Instruction {
    /// The instruction's name in capitals.
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Shell(_) => "SHELL",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// A command in exec (JSON) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `["exe", "arg"]`: run as is.
    Exec(Vec<String>),
    /// Anything else: run as the stage's SHELL (default `/bin/sh -c`) followed by this one string.
    Shell(String),
}

/// `RUN [--network=MODE] COMMAND`, with its heredocs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    /// Heredocs in the order their `<<WORD`s appear (shell form only).
    pub heredocs: Vec<Heredoc>,
    pub network: RunNetwork,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNetwork {
    /// As the build's `--network`.
    Default,
    None,
    Host,
}

/// What a `RUN` executes, heredocs accounted for ([`Run::script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Run this argv as is.
    Exec(Vec<String>),
    /// Run the stage's SHELL followed by this string.
    Shell(String),
    /// `RUN <<EOF` whose body starts with `#!`: write the body to a file called
    /// `name` (mode 0755, outside the image, e.g. `/dev/pipes/NAME` as BuildKit
    /// does) and execute that file with no shell.
    File { name: String, content: String },
}

impl Run {
    /// The command to execute, as BuildKit builds it: a RUN that is only one
    /// heredoc runs that body (as a script file when it has a `#!` line,
    /// otherwise through the shell); other heredocs are appended to the shell
    /// command so the shell reads them itself.
    pub fn script(&self) -> RunScript {
        let cmd = match &self.command {
            CommandLine::Exec(argv) => return RunScript::Exec(argv.clone()),
            CommandLine::Shell(cmd) => cmd,
        };
        let Some(first) = self.heredocs.first() else { return RunScript::Shell(cmd.clone()) };
        if super::parser::heredoc_word(cmd).is_some() {
            let body = first.text();
            if body.starts_with("#!") {
                return RunScript::File { name: first.name.clone(), content: body };
            }
            return RunScript::Shell(body);
        }
        let mut s = cmd.clone();
        for h in &self.heredocs {
            s.push('\n');
            s.push_str(&h.content);
            s.push_str(&h.name);
        }
        RunScript::Shell(s)
    }
}

/// A heredoc: `[N]<<[-]WORD` and the lines up to `WORD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminating word, quotes removed.
    pub name: String,
    /// The body as written: every line with its newline, leading tabs kept.
    pub content: String,
    /// `<<-`: leading tabs are stripped from the body lines (and the terminator).
    pub chomp: bool,
    /// No part of the word was quoted: `$VAR`s in the body are to be substituted.
    pub expand: bool,
    /// The `N` of `N<<WORD`, if given.
    pub fd: Option<u32>,
}

impl Heredoc {
    /// The body with leading tabs stripped when `chomp` is set.
    pub fn text(&self) -> String {
        if self.chomp {
            chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// Strips leading tabs from every line.
pub(crate) fn chomp(s: &str) -> String {
    s.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

/// `COPY`/`ADD [--from=…] [--chown=…] [--chmod=…] [--link] SRC… DEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// Source paths (globs allowed) relative to the context or the `from` stage/image; URLs for ADD.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`): files whose body is in the Dockerfile.
    pub inline: Vec<InlineFile>,
    pub dest: String,
    /// COPY only: a stage name, a stage index, or an image reference; never has variables.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// `--link`: may be built as an independent layer; copying normally gives the same files.
    pub link: bool,
}

/// A file given inline by a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The heredoc word, used as the file name.
    pub name: String,
    /// The body, tabs already stripped for `<<-`.
    pub content: String,
    /// Substitute variables in the body (done by [`super::expand`]).
    pub expand: bool,
}

/// One `KEY=VALUE` of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written as `ENV KEY VALUE` (the rest of the line is the value).
    pub legacy: bool,
}

/// One `NAME[=DEFAULT]` of ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: turn off a check inherited from the base image (config test `["NONE"]`).
    Disable,
    Check(HealthcheckConfig),
}

/// As the image config's `Healthcheck`: zero durations and retries mean "not set".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthcheckConfig {
    /// `["CMD", exe, args…]` (exec form) or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

/// `ONBUILD INSTRUCTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as it goes into the image config's `OnBuild` list (heredoc bodies included).
    pub expression: String,
    /// The trigger parsed (checked now, rather than when a child image is built).
    pub trigger: Box<Instruction>,
}

/// What a `COPY --from` or a `FROM` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRef {
    /// An earlier stage of this Dockerfile, by index.
    Stage(usize),
    /// An image reference, to pull or find in the store.
    Image(String),
    /// `FROM scratch`: an empty file system.
    Scratch,
}

impl Dockerfile {
    /// The index of the stage with this name (case-insensitive; the last one if
    /// several share it, as BuildKit does).
    pub fn find_stage(&self, name: &str) -> Option<usize> {
        let name = name.to_lowercase();
        self.stages.iter().rposition(|s| s.name.as_deref() == Some(name.as_str()))
    }

    /// The stage `--target` names, or the last one.
    pub fn target(&self, target: Option<&str>) -> Result<usize, String> {
        match target {
            None => Ok(self.stages.len() - 1),
            Some(t) => self.find_stage(t).ok_or_else(|| format!("target stage {:?} could not be found", t)),
        }
    }

    /// What `COPY --from=FROM` in stage `current` copies from: an earlier stage
    /// (by name or index) or else an image.
    pub fn copy_source(&self, current: usize, from: &str) -> Result<StageRef, String> {
        let idx = match from.parse::<usize>() {
            Ok(i) if i < self.stages.len() => i,
            Ok(i) => return Err(format!("invalid stage index {}", i)),
            Err(_) => match self.find_stage(from) {
                Some(i) => i,
                None => return Ok(StageRef::Image(from.to_string())),
            },
        };
        if idx >= current {
            let cur = self.stages[current].name.clone().unwrap_or_else(|| current.to_string());
            return Err(format!(
                "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                from, cur
            ));
        }
        Ok(StageRef::Stage(idx))
    }
}
