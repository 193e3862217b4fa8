//! Dockerfile text → [`Dockerfile`], following BuildKit's
//! `frontend/dockerfile/parser` (lines, continuations, directives, heredocs)
//! and `instructions` (what each instruction accepts).
//!
//! Line rules, as BuildKit's: parser directives (`# syntax=`, `# escape=`,
//! `# check=`) count only in the comment lines at the very top; a line whose
//! last non-blank character is the escape character (not itself escaped)
//! continues on the next one, the escape removed and nothing added; inside a
//! continuation, comment lines and blank lines are skipped (the latter with a
//! warning); a continuation may end the file. Continuation lines keep their
//! indentation. Comments are whole lines starting with `#`; there are no
//! trailing comments. Instruction names are case-insensitive.

use std::collections::HashMap;
use std::time::Duration;

use super::instruction::*;
use super::lex::{Lexer, NoVars};
use super::DockerfileError;

/// The instructions that may carry heredocs.
const HEREDOC_INSTRUCTIONS: [&str; 3] = ["run", "copy", "add"];

const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Parses a Dockerfile; `name` is how messages call it (`Dockerfile`).
pub fn parse(text: &str, name: &str) -> Result<Dockerfile, DockerfileError> {
    Parser::new(text, name).run()
}

/// Parses one ONBUILD trigger of a base image (as stored in its config) with
/// the default escape character, as BuildKit does when a child image is built.
pub fn parse_trigger(expression: &str) -> Result<Step, String> {
    let mut p = Parser::new(expression, "ONBUILD");
    let node = p.next_node().map_err(|e| e.message)?.ok_or("empty ONBUILD trigger")?;
    let instruction = match p.instruction(&node.cmd, &node.flags, &node.rest, &node.heredocs, &node.line)? {
        Parsed::From(_) => return Err("FROM isn't allowed as an ONBUILD trigger".into()),
        Parsed::Other(i) => i,
    };
    if let Instruction::Onbuild(_) | Instruction::Maintainer(_) = instruction {
        return Err(format!("{} isn't allowed as an ONBUILD trigger", instruction.name()));
    }
    Ok(Step { line: node.start, end_line: node.end, original: node.line.trim().to_string(), instruction })
}

/// One instruction's text, before typing.
struct Node {
    start: usize,
    end: usize,
    /// The joined logical line.
    line: String,
    cmd: String,
    flags: Vec<String>,
    /// What follows the flags, trimmed.
    rest: String,
    heredocs: Vec<Heredoc>,
}

enum Parsed {
    From(Stage),
    Other(Instruction),
}

struct Parser<'a> {
    name: String,
    lines: Vec<&'a str>,
    /// Lines consumed so far; also the number of the last one read.
    pos: usize,
    escape: char,
    directives: Directives,
    warnings: Vec<Warning>,
}

#[derive(Default)]
struct Directives {
    done: bool,
    syntax: Option<String>,
    check: Option<String>,
    escape: Option<String>,
}

impl Directives {
    /// Looks at one line of the top of the file; returns the escape token when it sets one.
    fn line(&mut self, line: &str) -> Result<Option<char>, String> {
        if self.done {
            return Ok(None);
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let slot = match key.as_str() {
            "syntax" => &mut self.syntax,
            "check" => &mut self.check,
            "escape" => &mut self.escape,
            _ => {
                self.done = true;
                return Ok(None);
            }
        };
        if slot.is_some() {
            return Err(format!("only one {} parser directive can be used", key));
        }
        *slot = Some(value.clone());
        if key != "escape" {
            return Ok(None);
        }
        match value.as_str() {
            "\\" => Ok(Some('\\')),
            "`" => Ok(Some('`')),
            _ => Err(format!("invalid escape token '{}' does not match ` or \\", value)),
        }
    }
}

/// `# key = value` with a key of letters and digits (lowercased).
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.strip_prefix('#')?.trim_start();
    let key_len = body.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(body.len());
    let key = &body[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = body[key_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.to_string()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a continuation escape at the end of `line`; `true` when the line
/// does not continue. An escape preceded by another escape is not a continuation.
fn trim_continuation(line: &str, esc: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(esc) {
        if before.is_empty() || !before.ends_with(esc) {
            return (before, false);
        }
    }
    (line, true)
}

/// The runs of white space Dockerfile arguments are split on.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn split_blank(s: &str) -> Vec<String> {
    s.split(is_blank).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// Splits at the first run of blanks.
fn split_first(s: &str) -> (&str, Option<&str>) {
    match s.find(is_blank) {
        None => (s, None),
        Some(i) => (&s[..i], Some(s[i..].trim_start_matches(is_blank))),
    }
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, name: &str) -> Parser<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Parser {
            name: name.to_string(),
            lines: text.split_inclusive('\n').collect(),
            pos: 0,
            escape: '\\',
            directives: Directives::default(),
            warnings: Vec::new(),
        }
    }

    fn err(&self, line: usize, message: impl Into<String>) -> DockerfileError {
        DockerfileError { file: self.name.clone(), line: Some(line), message: message.into() }
    }

    fn next_line(&mut self) -> Option<&'a str> {
        let l = self.lines.get(self.pos).copied();
        if l.is_some() {
            self.pos += 1;
        }
        l
    }

    /// A line with its newline removed (and leading blanks for a first line),
    /// after looking for a directive in it; comments become empty.
    fn process_line(&mut self, raw: &'a str, strip_left: bool) -> Result<&'a str, DockerfileError> {
        let mut t = trim_newline(raw);
        if strip_left {
            t = t.trim_start();
        }
        if let Some(esc) = self.directives.line(t).map_err(|m| self.err(self.pos, m))? {
            self.escape = esc;
        }
        Ok(if is_comment(t) { "" } else { t })
    }

    /// The next instruction's text, continuations joined and heredoc bodies read.
    fn next_node(&mut self) -> Result<Option<Node>, DockerfileError> {
        let (start, mut buf, mut done) = loop {
            let Some(raw) = self.next_line() else { return Ok(None) };
            let t = self.process_line(raw, true)?;
            let (t, end) = trim_continuation(t, self.escape);
            if !(end && t.is_empty()) {
                break (self.pos, t.to_string(), end);
            }
        };
        let mut empty_continuation = false;
        while !done {
            let Some(raw) = self.next_line() else { break };
            let t = self.process_line(raw, false)?;
            if is_comment(raw) {
                continue;
            }
            if t.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (t, end) = trim_continuation(t, self.escape);
            buf.push_str(t);
            done = end;
        }
        if empty_continuation {
            self.warnings.push(Warning {
                line: self.pos,
                message: "empty continuation line (Docker will make this an error in a future release)".into(),
            });
        }

        let (cmd, flags, rest) = split_command(&buf, self.escape);
        let mut node = Node { start, end: self.pos, line: buf, cmd, flags, rest, heredocs: Vec::new() };
        if self.may_have_heredocs(&node).map_err(|m| self.err(start, m))? && node.line.contains("<<") {
            for spec in heredocs_in_line(&node.line).map_err(|m| self.err(start, m))? {
                let heredoc = self.heredoc_body(spec).ok_or_else(|| self.err(start, "unterminated heredoc"))?;
                node.heredocs.push(heredoc);
            }
            node.end = self.pos;
        }
        Ok(Some(node))
    }

    /// RUN, COPY and ADD (also under ONBUILD) take heredocs, but not in JSON form.
    fn may_have_heredocs(&self, node: &Node) -> Result<bool, String> {
        let (mut cmd, mut rest) = (node.cmd.to_lowercase(), node.rest.clone());
        if cmd == "onbuild" {
            let (c, _, r) = split_command(&rest, self.escape);
            (cmd, rest) = (c.to_lowercase(), r);
        }
        Ok(HEREDOC_INSTRUCTIONS.contains(&cmd.as_str()) && json_array(&rest)?.is_none())
    }

    /// Reads lines up to the heredoc's terminator; `None` if the file ends first.
    fn heredoc_body(&mut self, mut h: Heredoc) -> Option<Heredoc> {
        while let Some(raw) = self.next_line() {
            let mut t = trim_newline(raw);
            if h.chomp {
                t = t.trim_start_matches('\t');
            }
            if t == h.name {
                return Some(h);
            }
            h.content.push_str(raw);
        }
        None
    }

    fn run(mut self) -> Result<Dockerfile, DockerfileError> {
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut any = false;
        while let Some(node) = self.next_node()? {
            any = true;
            let err = |m: String| self.err(node.start, m);
            let parsed =
                self.instruction(&node.cmd, &node.flags, &node.rest, &node.heredocs, &node.line).map_err(err)?;
            let instruction = match parsed {
                Parsed::From(mut stage) => {
                    stage.line = node.start;
                    stage.original = node.line.trim().to_string();
                    stages.push(stage);
                    continue;
                }
                Parsed::Other(i) => i,
            };
            if let Instruction::Maintainer(_) = instruction {
                let message = "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors=…".into();
                self.warnings.push(Warning { line: node.start, message });
            }
            let Some(stage) = stages.last_mut() else {
                if let Instruction::Arg(args) = instruction {
                    meta_args.push(ArgStep { line: node.start, args });
                    continue;
                }
                let message =
                    format!("no build stage in current context: {} before the first FROM", instruction.name());
                return Err(self.err(node.start, message));
            };
            let original = node.line.trim().to_string();
            stage.steps.push(Step { line: node.start, end_line: node.end, original, instruction });
        }
        if !any {
            return Err(DockerfileError { file: self.name, line: None, message: "file with no instructions".into() });
        }
        if stages.is_empty() {
            let message = "dockerfile contains no stages to build (no FROM)".to_string();
            return Err(DockerfileError { file: self.name, line: None, message });
        }
        Ok(Dockerfile {
            name: self.name,
            escape: self.escape,
            syntax: self.directives.syntax,
            check: self.directives.check,
            meta_args,
            stages,
            warnings: self.warnings,
        })
    }

    /// Types one instruction (messages without the location).
    fn instruction(
        &self,
        cmd: &str,
        flags: &[String],
        rest: &str,
        heredocs: &[Heredoc],
        line: &str,
    ) -> Result<Parsed, String> {
        let lower = cmd.to_lowercase();
        if cmd.is_empty() {
            // Only a continuation that runs into the end of the file leaves nothing.
            return Err("line continuation at the end of the file with no instruction".into());
        }
        if !INSTRUCTIONS.contains(&lower.as_str()) {
            return Err(unknown_instruction(cmd));
        }
        let upper = lower.to_uppercase();
        let esc = self.escape;
        let one_arg = |flags: &[String]| -> Result<String, String> {
            Flags::parse(flags, &[])?;
            if rest.is_empty() {
                return Err(format!("{} requires exactly one argument", upper));
            }
            Ok(rest.to_string())
        };
        Ok(Parsed::Other(match lower.as_str() {
            "from" => return self.from(flags, rest).map(Parsed::From),
            "run" => Instruction::Run(self.run_instruction(flags, rest, heredocs)?),
            "cmd" => {
                Flags::parse(flags, &[])?;
                Instruction::Cmd(command_line(rest)?)
            }
            "entrypoint" => {
                Flags::parse(flags, &[])?;
                Instruction::Entrypoint(command_line(rest)?)
            }
            "shell" => {
                Flags::parse(flags, &[])?;
                match json_array(rest)? {
                    Some(v) if !v.is_empty() => Instruction::Shell(v),
                    Some(_) => return Err("SHELL requires at least one argument".into()),
                    None if rest.is_empty() => return Err("SHELL requires at least one argument".into()),
                    None => return Err("SHELL requires the arguments to be in JSON form".into()),
                }
            }
            "copy" | "add" => self.copy(&upper, flags, rest, heredocs)?,
            "env" | "label" => {
                Flags::parse(flags, &[])?;
                let kvs = name_values(rest, &upper, esc)?;
                if kvs.is_empty() {
                    return Err(format!("{} requires at least one argument", upper));
                }
                if kvs.iter().any(|kv| kv.key.is_empty()) {
                    return Err(format!("{} names can not be blank", upper));
                }
                if lower == "env" {
                    Instruction::Env(kvs)
                } else {
                    Instruction::Label(kvs)
                }
            }
            "arg" => {
                Flags::parse(flags, &[])?;
                let words = parse_words(rest, esc);
                if words.is_empty() {
                    return Err("ARG requires at least one argument".into());
                }
                let mut args = Vec::new();
                for w in words {
                    args.push(match w.split_once('=') {
                        Some(("", _)) => return Err("ARG names can not be blank".into()),
                        Some((k, v)) => ArgDecl { name: k.into(), default: Some(v.into()) },
                        None => ArgDecl { name: w, default: None },
                    });
                }
                Instruction::Arg(args)
            }
            "workdir" => Instruction::Workdir(one_arg(flags)?),
            "user" => Instruction::User(one_arg(flags)?),
            "stopsignal" => Instruction::StopSignal(one_arg(flags)?),
            "maintainer" => Instruction::Maintainer(one_arg(flags)?),
            "expose" => {
                Flags::parse(flags, &[])?;
                let ports = split_blank(rest);
                if ports.is_empty() {
                    return Err("EXPOSE requires at least one argument".into());
                }
                Instruction::Expose(ports)
            }
            "volume" => {
                Flags::parse(flags, &[])?;
                let vols = json_or_list(rest)?;
                if vols.is_empty() {
                    return Err("VOLUME requires at least one argument".into());
                }
                if vols.iter().any(|v| v.trim().is_empty()) {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                Instruction::Volume(vols.iter().map(|v| v.trim().to_string()).collect())
            }
            "healthcheck" => Instruction::Healthcheck(healthcheck(flags, rest)?),
            "onbuild" => Instruction::Onbuild(self.onbuild(flags, rest, heredocs, line)?),
            _ => unreachable!("every name of INSTRUCTIONS is handled"),
        }))
    }

    fn from(&self, flags: &[String], rest: &str) -> Result<Stage, String> {
        let f = Flags::parse(flags, &[("platform", Kind::Str)])?;
        let args = split_blank(rest);
        let name = match args.as_slice() {
            [_] => None,
            [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                let lower = name.to_lowercase();
                let mut chars = lower.chars();
                let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                if !valid {
                    return Err(format!(
                        "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                        name
                    ));
                }
                Some(lower)
            }
            _ => return Err("FROM requires either one or three arguments".into()),
        };
        // The caller fills in the line and the text.
        Ok(Stage {
            line: 0,
            original: String::new(),
            base: args[0].clone(),
            name,
            platform: f.string("platform"),
            steps: Vec::new(),
        })
    }

    fn run_instruction(&self, flags: &[String], rest: &str, heredocs: &[Heredoc]) -> Result<Run, String> {
        let spec = [("network", Kind::Str), ("mount", Kind::Strs), ("security", Kind::Str), ("device", Kind::Strs)];
        let f = Flags::parse(flags, &spec)?;
        f.unsupported("RUN", &["mount", "security", "device"])?;
        let network = match f.string("network").as_deref() {
            None | Some("default") => RunNetwork::Default,
            Some("none") => RunNetwork::None,
            Some("host") => RunNetwork::Host,
            Some(other) => return Err(format!("invalid network mode {:?}", other)),
        };
        Ok(Run { command: command_line(rest)?, heredocs: heredocs.to_vec(), network })
    }

    fn copy(&self, upper: &str, flags: &[String], rest: &str, heredocs: &[Heredoc]) -> Result<Instruction, String> {
        let add = upper == "ADD";
        let common = [("chown", Kind::Str), ("chmod", Kind::Str), ("link", Kind::Bool), ("exclude", Kind::Strs)];
        let f = if add {
            let extra = [("keep-git-dir", Kind::Bool), ("checksum", Kind::Str), ("unpack", Kind::Bool)];
            let f = Flags::parse(flags, &[&common[..], &extra[..]].concat())?;
            f.unsupported(upper, &["exclude", "keep-git-dir", "checksum", "unpack"])?;
            f
        } else {
            let f = Flags::parse(flags, &[&common[..], &[("from", Kind::Str), ("parents", Kind::Bool)]].concat())?;
            f.unsupported(upper, &["exclude", "parents"])?;
            f
        };
        let mut args = json_or_list(rest)?;
        let Some(dest) = args.pop().filter(|_| !args.is_empty()) else {
            return Err(format!(
                "{} requires at least two arguments, but only one was provided. Destination could not be determined",
                upper
            ));
        };
        if heredoc_word(&dest).is_some() {
            return Err(format!("{} cannot accept a heredoc as a destination", upper));
        }
        let mut c = CopySpec {
            sources: Vec::new(),
            inline: Vec::new(),
            dest,
            from: f.string("from"),
            chown: f.string("chown"),
            chmod: f.string("chmod"),
            link: f.bool("link"),
        };
        for src in args {
            match heredoc_word(&src) {
                Some(h) => {
                    let body = heredocs.iter().find(|d| d.name == h.name).map(|d| d.content.as_str()).unwrap_or("");
                    let content = if h.chomp { chomp(body) } else { body.to_string() };
                    c.inline.push(InlineFile { name: h.name, content, expand: h.expand });
                }
                None => c.sources.push(src),
            }
        }
        if let Some(from) = &c.from {
            if Lexer::new(self.escape).word(from, &NoVars).as_ref() != Ok(from) {
                return Err("variable expansion is not supported for --from, define a new stage with FROM using ARG \
                            from global scope as a workaround"
                    .into());
            }
        }
        Ok(if add { Instruction::Add(c) } else { Instruction::Copy(c) })
    }

    fn onbuild(&self, flags: &[String], rest: &str, heredocs: &[Heredoc], line: &str) -> Result<Onbuild, String> {
        Flags::parse(flags, &[])?;
        if rest.is_empty() {
            return Err("ONBUILD requires at least one argument".into());
        }
        let (cmd, child_flags, child_rest) = split_command(rest, self.escape);
        match cmd.to_uppercase().as_str() {
            "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
            c @ ("MAINTAINER" | "FROM") => return Err(format!("{} isn't allowed as an ONBUILD trigger", c)),
            _ => {}
        }
        let trigger = match self.instruction(&cmd, &child_flags, &child_rest, heredocs, rest)? {
            Parsed::Other(i) => i,
            Parsed::From(_) => unreachable!("FROM is refused above"),
        };
        let mut expression = strip_onbuild(line).to_string();
        for h in heredocs {
            expression.push('\n');
            expression.push_str(&h.content);
            expression.push_str(&h.name);
        }
        Ok(Onbuild { expression, trigger: Box::new(trigger) })
    }
}

/// `line` without its leading `ONBUILD` and the blanks after it.
fn strip_onbuild(line: &str) -> &str {
    let t = line.trim_start();
    match t.get(..7) {
        Some(w) if w.eq_ignore_ascii_case("onbuild") => t[7..].trim_start(),
        _ => t,
    }
}

fn unknown_instruction(cmd: &str) -> String {
    let lower = cmd.to_lowercase();
    // BuildKit's suggestion: the nearest name within two edits, in the case the user wrote.
    let near = INSTRUCTIONS.iter().map(|i| (edit_distance(i, &lower), *i)).min().filter(|(d, _)| *d < 3);
    match near {
        Some((_, i)) if cmd == lower => format!("unknown instruction: {} (did you mean {}?)", cmd, i),
        Some((_, i)) => format!("unknown instruction: {} (did you mean {}?)", cmd, i.to_uppercase()),
        None => format!("unknown instruction: {}", cmd),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Splits a logical line into the instruction name, its `--flags` and the rest.
fn split_command(line: &str, esc: char) -> (String, Vec<String>, String) {
    let (cmd, args) = split_first(line.trim());
    match args {
        None => (cmd.to_string(), Vec::new(), String::new()),
        Some(args) => {
            let (rest, flags) = extract_flags(args, esc);
            (cmd.to_string(), flags, rest.trim().to_string())
        }
    }
}

/// Takes the leading `--flag[=value]` words (quotes and escapes processed) off `line`.
fn extract_flags(line: &str, esc: char) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = line.chars().collect();
    let rest_from = |pos: usize| chars[pos..].iter().collect::<String>();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let at_end = pos == chars.len();
        let mut ch = chars.get(pos).copied().unwrap_or_default();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || chars.get(pos + 1) != Some(&'-') {
                return (rest_from(pos), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word if ch.is_whitespace() => {
                if word == "--" {
                    return (rest_from(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                phase = Phase::Spaces;
                blank_ok = false;
            }
            Phase::Word if ch == '\'' || ch == '"' => {
                phase = Phase::Quote(ch);
                blank_ok = true;
            }
            Phase::Quote(q) if ch == q => phase = Phase::Word,
            _ => {
                if ch == esc {
                    if pos + 1 == chars.len() {
                        if let Phase::Quote(_) = phase {
                            phase = Phase::Word;
                        }
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    ch = chars[pos];
                }
                word.push(ch);
            }
        }
        pos += 1;
    }
    (String::new(), words)
}

/// Splits into words on white space, keeping quotes and escapes in the words
/// (they are processed later, by variable expansion); ENV, LABEL and ARG.
fn parse_words(rest: &str, esc: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos < chars.len() {
        let mut ch = chars[pos];
        // Whether the escape character works here: not inside single quotes.
        let escapes = match quote {
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                q != '\''
            }
            None if ch.is_whitespace() => {
                if in_word && (blank_ok || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                blank_ok = false;
                pos += 1;
                continue;
            }
            None => {
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                true
            }
        };
        if escapes && ch == esc {
            if pos + 1 == chars.len() {
                break;
            }
            word.push(ch);
            pos += 1;
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV and LABEL: `KEY VALUE…` (legacy) or `KEY=VALUE…`.
fn name_values(rest: &str, upper: &str, esc: char) -> Result<Vec<KeyValue>, String> {
    let words = parse_words(rest, esc);
    let Some(first) = words.first() else { return Ok(Vec::new()) };
    if !first.contains('=') {
        let (key, value) = split_first(rest);
        let value = value.ok_or_else(|| format!("{} must have two arguments", upper))?;
        return Ok(vec![KeyValue { key: key.into(), value: value.into(), legacy: true }]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok(KeyValue { key: k.into(), value: v.into(), legacy: false }),
            None => Err(format!("Syntax error - can't find = in {:?}. Must be of the form: name=value", w)),
        })
        .collect()
}

/// A JSON array of strings, `None` when `rest` is not JSON (then it is shell form).
fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    let t = rest.trim_start();
    if !t.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(t) else { return Ok(None) };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err("when using JSON array syntax, arrays must be comprised of strings only".to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn json_or_list(rest: &str) -> Result<Vec<String>, String> {
    Ok(json_array(rest)?.unwrap_or_else(|| split_blank(rest)))
}

fn command_line(rest: &str) -> Result<CommandLine, String> {
    Ok(match json_array(rest)? {
        Some(v) => CommandLine::Exec(v),
        None => CommandLine::Shell(rest.to_string()),
    })
}

fn healthcheck(flags: &[String], rest: &str) -> Result<Healthcheck, String> {
    let (typ, cmd) = split_first(rest);
    let typ = typ.to_uppercase();
    let cmd = cmd.unwrap_or("");
    if typ.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".into());
    }
    if typ == "NONE" {
        if !cmd.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        // BuildKit does not look at the flags of HEALTHCHECK NONE.
        return Ok(Healthcheck::Disable);
    }
    let spec = ["interval", "timeout", "start-period", "start-interval", "retries"].map(|n| (n, Kind::Str));
    let f = Flags::parse(flags, &spec)?;
    if typ != "CMD" {
        return Err(format!("Unknown type {:?} in HEALTHCHECK (try CMD)", typ));
    }
    let test = match command_line(cmd)? {
        CommandLine::Exec(v) if !v.is_empty() => [vec!["CMD".to_string()], v].concat(),
        CommandLine::Shell(s) if !s.is_empty() => vec!["CMD-SHELL".into(), s],
        _ => return Err("Missing command after HEALTHCHECK CMD".into()),
    };
    let interval = |name: &str| -> Result<Duration, String> {
        let Some(v) = f.string(name) else { return Ok(Duration::ZERO) };
        let nanos = go_duration(&v)?;
        if nanos != 0 && nanos < 1_000_000 {
            return Err(format!("Interval {:?} cannot be less than 1ms", name));
        }
        Ok(Duration::from_nanos(nanos as u64))
    };
    let retries = match f.string("retries") {
        None => 0,
        Some(v) => match v.parse::<i32>() {
            Ok(n) if n < 0 => return Err(format!("--retries cannot be negative ({})", n)),
            Ok(n) => n as u32,
            Err(_) => return Err(format!("--retries: invalid number {:?}", v)),
        },
    };
    Ok(Healthcheck::Check(HealthcheckConfig {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration` (`1h30m`, `1.5s`, `300ms`, `-2us`), in nanoseconds.
fn go_duration(s: &str) -> Result<i128, String> {
    let bad = || format!("time: invalid duration {:?}", s);
    let (neg, mut t) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !t.is_empty() {
        let num_len = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
        let num = &t[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        t = &t[num_len..];
        let unit_len = t.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(t.len());
        let scale: f64 = match &t[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {:?}", s)),
            u => return Err(format!("time: unknown unit {:?} in duration {:?}", u, s)),
        };
        t = &t[unit_len..];
        total += num.parse::<f64>().map_err(|_| bad())? * scale;
    }
    let nanos = total.round() as i128;
    Ok(if neg { -nanos } else { nanos })
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Str,
    Strs,
}

/// An instruction's `--flags`, checked as BuildKit's `BFlags` does.
struct Flags(HashMap<String, Vec<String>>);

impl Flags {
    fn parse(flags: &[String], spec: &[(&str, Kind)]) -> Result<Flags, String> {
        let mut used: HashMap<String, Vec<String>> = HashMap::new();
        for a in flags {
            if a == "--" {
                break;
            }
            let Some(body) = a.strip_prefix("--") else { return Err(format!("arg should start with -- : {}", a)) };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(_, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(format!("unknown flag: --{}", name));
            };
            if used.contains_key(name) && kind != Kind::Strs {
                return Err(format!("duplicate flag specified: --{}", name));
            }
            let v = match (kind, value) {
                (Kind::Bool, Some("")) | (Kind::Str | Kind::Strs, None) => {
                    return Err(format!("missing a value on flag: --{}", name));
                }
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) => match v.to_lowercase().as_str() {
                    "true" | "false" => v.to_lowercase(),
                    _ => return Err(format!("expecting boolean value for flag --{}, not: {}", name, v)),
                },
                (_, Some(v)) => v.to_string(),
            };
            used.entry(name.to_string()).or_default().push(v);
        }
        Ok(Flags(used))
    }

    fn string(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(|v| v.last().cloned())
    }

    fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    /// Flags Docker knows that husk does not implement.
    fn unsupported(&self, cmd: &str, names: &[&str]) -> Result<(), String> {
        match names.iter().find(|n| self.0.contains_key(**n)) {
            Some(n) => Err(format!("{} --{} is not supported by husk", cmd, n)),
            None => Ok(()),
        }
    }
}

/// The heredocs a line announces: its `[N]<<[-]WORD` words, found as
/// BuildKit does (quotes kept, unset variables left alone).
fn heredocs_in_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lex = Lexer { raw_quotes: true, raw_escapes: true, keep_unset: true, ..Lexer::new('\\') };
    // A line the lexer cannot split (an open quote) has no heredocs.
    let Ok(words) = lex.words(line, &NoVars) else { return Ok(Vec::new()) };
    let mut docs = Vec::new();
    for w in words {
        if let Some(h) = parse_heredoc(&w)? {
            docs.push(h);
        }
    }
    Ok(docs)
}

/// The heredoc `word` announces, if it is one; malformed ones are not.
pub(crate) fn heredoc_word(word: &str) -> Option<Heredoc> {
    parse_heredoc(word).ok().flatten()
}

/// `^(\d*)<<(-?)\s*([^<]*)$` with a single-word terminator; an error for a
/// terminator with an unmatched quote.
fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, String> {
    let digits = src.len() - src.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = src[digits..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\u{c}', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let lex = Lexer { keep_unset: true, ..Lexer::new('\\') };
    let words = lex.words(rest, &NoVars)?;
    let [name] = words.as_slice() else { return Ok(None) };
    let raw = Lexer { raw_quotes: true, ..lex }.words(rest, &NoVars)?;
    let [raw] = raw.as_slice() else {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {}", rest));
    };
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        chomp,
        expand: quotes(name) == quotes(raw),
        fd: if digits > 0 { src[..digits].parse().ok() } else { None },
    }))
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
