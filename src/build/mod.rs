//! `husk build`: the front end (pure code, no execution).
//!
//! # How an executor uses it
//!
//! ```text
//! let text = fs::read_to_string(dockerfile)?;                    // not UTF-8: refuse
//! let df = parser::parse(&text, "Dockerfile")?;                 // DockerfileError: "Dockerfile:12: unknown instruction: FOO"
//! for w in &df.warnings { eprintln!("WARNING: Dockerfile:{}: {}", w.line, w.message) }
//! let target = df.target(opt_target)?;                          // --target, else the last stage
//! let globals = expand::Globals::new(&df, &build_args, &PlatformSpec::host(), opt_target)?;
//! for name in globals.unconsumed(&df) { warn "build-arg {name} was not consumed" }
//!
//! // Stages needed: the target, the stages its FROM (globals.base) and its
//! // COPY --from (df.copy_source) name, recursively; build them in index order.
//! for stage in needed {
//!     let base = globals.base(&df, stage)?;        // StageRef::{Stage(i), Image(ref), Scratch}
//!     let platform = globals.platform(&df, stage)?; // FROM --platform, if any
//!     // a base image's ONBUILD triggers run first: parser::parse_trigger(expr) for each
//!     let mut vars = globals.stage_vars(&base_config.env);
//!     for step in &df.stages[stage].steps {
//!         let ins = vars.evaluate(step)?;          // variables substituted, ENV/ARG applied to `vars`
//!         match ins {
//!             Instruction::Run(run) => run.script() with vars.run_env(), history "|N {vars.history_args()} …",
//!             Instruction::Copy(c) / Add(c) => sources from the context (dockerignore::context_files),
//!                                              c.from via df.copy_source(stage, from), c.inline files,
//!             Instruction::Env(_) => config Env = vars.config_env(),
//!             Instruction::Arg(_) => nothing in the config (history "ARG K=V"),
//!             Instruction::Maintainer(m) => config author = m,
//!             Instruction::Onbuild(o) => push o.expression to config OnBuild,
//!             …metadata instructions change the config only…
//!         }
//!     }
//! }
//! ```
//!
//! Errors for a step are `DockerfileError`s naming `step.line`; executors
//! should make their own (missing COPY source, failing RUN) the same way with
//! [`DockerfileError::at`].
//!
//! # What is deliberately not supported
//!
//! * `RUN --mount`, `--security`, `--device`; `COPY --parents`, `--exclude`;
//!   `ADD --checksum`, `--keep-git-dir`, `--unpack`, `--exclude`: the parser
//!   refuses them with "`RUN --mount is not supported by husk`" and the line.
//! * `# syntax=` is recorded but no external frontend is ever fetched; `#
//!   check=` is recorded, no lint rules run.
//! * Windows semantics (backslash paths, `cmd /S /C`).
//!
//! Differences from BuildKit: ONBUILD triggers are parsed (and refused when
//! malformed) when the Dockerfile that declares them is built, not only in the
//! child build; unknown flags are refused on every instruction (BuildKit
//! ignores them on ARG and STOPSIGNAL); `${VAR/pat/repl}` takes the
//! replacement literally.

pub mod cache;
pub mod copy;
pub mod dockerignore;
pub mod exec;
pub mod expand;
pub mod instruction;
pub mod lex;
pub mod parser;
pub mod run_step;

pub use instruction::*;

use std::fmt;

/// An error located in the Dockerfile: `NAME:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileError {
    /// The Dockerfile's name as messages show it.
    pub file: String,
    /// 1-based line of the instruction (its first line); none for whole-file errors.
    pub line: Option<usize>,
    pub message: String,
}

impl DockerfileError {
    /// An error at the first line of `step`.
    pub fn at(df: &Dockerfile, step: &Step, message: impl Into<String>) -> DockerfileError {
        DockerfileError { file: df.name.clone(), line: Some(step.line), message: message.into() }
    }
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for DockerfileError {}
