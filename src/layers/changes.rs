//! Changes to an image's runtime config in Dockerfile terms: what `commit --change` and
//! `import --change` take (one instruction a string), and what a build's metadata
//! instructions do to the config.
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// CMD, ENTRYPOINT and SHELL-run commands: exec form, or shell form run by the
/// config's `Shell` (default `/bin/sh -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange {
    Cmd(Command),
    /// Also clears Cmd unless a CMD came earlier for this image (as Docker's builder does).
    Entrypoint(Command),
    Env(Vec<(String, String)>),
    /// Relative paths are taken from the current working directory.
    WorkingDir(String),
    User(String),
    /// `PORT/PROTO` keys (ranges expanded).
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    Volume(Vec<String>),
    StopSignal(String),
    Shell(Vec<String>),
    /// The `Healthcheck` object as Docker writes it.
    Healthcheck(Value),
    OnBuild(String),
}

/// Parses one `--change` string (`CMD ["x"]`, `ENV A=1`, `EXPOSE 80/tcp`, ...).
pub fn parse_change(line: &str) -> Result<ConfigChange> {
    let line = line.trim();
    let (word, rest) = match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    let what = || format!("invalid change {:?}", line);
    let instruction = word.to_ascii_uppercase();
    if rest.is_empty() && !instruction.is_empty() {
        bail!("{}: {} needs an argument", what(), instruction);
    }
    Ok(match instruction.as_str() {
        "CMD" => ConfigChange::Cmd(command(rest)),
        "ENTRYPOINT" => ConfigChange::Entrypoint(command(rest)),
        "ENV" => ConfigChange::Env(key_values(rest).with_context(what)?),
        "LABEL" => ConfigChange::Label(key_values(rest).with_context(what)?),
        "WORKDIR" => ConfigChange::WorkingDir(rest.to_string()),
        "USER" => {
            if rest.split_whitespace().count() != 1 {
                bail!("{}: USER takes one user[:group]", what());
            }
            ConfigChange::User(rest.to_string())
        }
        "EXPOSE" => ConfigChange::Expose(
            words(rest)
                .with_context(what)?
                .iter()
                .map(|p| expose(p))
                .collect::<Result<Vec<_>>>()
                .with_context(what)?
                .concat(),
        ),
        "VOLUME" => {
            let v = match json_array(rest) {
                Some(v) => v,
                None => words(rest).with_context(what)?,
            };
            if v.iter().any(|p| p.is_empty()) {
                bail!("{}: VOLUME paths cannot be empty", what());
            }
            ConfigChange::Volume(v)
        }
        "STOPSIGNAL" => {
            check_signal(rest).with_context(what)?;
            ConfigChange::StopSignal(rest.to_string())
        }
        "ONBUILD" => ConfigChange::OnBuild(rest.to_string()),
        "" => bail!("invalid change: empty"),
        _ => bail!("{}: {} is not a valid change command", what(), word),
    })
}

fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    }
}

/// A JSON array of strings (the exec form); anything else is the shell form.
pub fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s.trim()).ok()
}

/// Words split at blanks, quotes ('…', "…") and backslash escapes removed.
pub fn words(s: &str) -> Result<Vec<String>> {
    Ok(raw_words(s)?.iter().map(|w| unquote(w)).collect())
}

/// Words split at blanks outside quotes, quotes kept.
fn raw_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), _) => {}
            (_, '\\') => {
                cur.push(c);
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if let Some(q) = quote {
        bail!("unterminated {} quote", q);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn unquote(w: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut chars = w.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}

/// `K=V K2="v 2"`, or the old form `K value with blanks`.
pub fn key_values(s: &str) -> Result<Vec<(String, String)>> {
    let raw = raw_words(s)?;
    let Some(first) = raw.first() else { bail!("missing a key") };
    if !first.contains('=') {
        let (key, value) = match s.find(char::is_whitespace) {
            Some(i) => (&s[..i], s[i..].trim()),
            None => bail!("{:?} has no value (expected KEY=VALUE or KEY VALUE)", s),
        };
        return Ok(vec![(unquote(key), value.to_string())]);
    }
    raw.iter()
        .map(|w| {
            let (k, v) = w.split_once('=').with_context(|| format!("{:?} is not of the form KEY=VALUE", w))?;
            let k = unquote(k);
            if k.is_empty() {
                bail!("{:?}: the key is empty", w);
            }
            Ok((k, unquote(v)))
        })
        .collect()
}

/// `80`, `80/tcp`, `53/udp`, `8000-8002` → `PORT/PROTO` keys.
fn expose(spec: &str) -> Result<Vec<String>> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid protocol {:?} in {:?}", proto, spec);
    }
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("invalid port {:?}", spec),
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(ports)?, port(ports)?),
    };
    if hi < lo {
        bail!("invalid port range {:?}", spec);
    }
    Ok((lo..=hi).map(|p| format!("{}/{}", p, proto)).collect())
}

fn check_signal(s: &str) -> Result<()> {
    let ok = match s.parse::<i32>() {
        Ok(n) => nix::sys::signal::Signal::try_from(n).is_ok(),
        Err(_) => {
            let upper = s.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") { upper } else { format!("SIG{}", upper) };
            name.parse::<nix::sys::signal::Signal>().is_ok()
                || name.starts_with("SIGRTMIN")
                || name.starts_with("SIGRTMAX")
        }
    };
    if !ok {
        bail!("invalid signal {:?}", s);
    }
    Ok(())
}

/// Applies a change to the runtime config object (the image config's `config`).
/// `cmd_set`: whether a CMD was set since the image was begun (ENTRYPOINT keeps Cmd then).
pub fn apply(config: &mut Map<String, Value>, change: &ConfigChange, cmd_set: &mut bool) {
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    let command = |config: &Map<String, Value>, c: &Command| match c {
        Command::Exec(v) => strings(v),
        Command::Shell(s) => {
            let mut argv: Vec<String> = config
                .get("Shell")
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.push(s.clone());
            strings(&argv)
        }
    };
    match change {
        ConfigChange::Cmd(c) => {
            let v = command(config, c);
            config.insert("Cmd".into(), v);
            *cmd_set = true;
        }
        ConfigChange::Entrypoint(c) => {
            let v = command(config, c);
            config.insert("Entrypoint".into(), v);
            if !*cmd_set {
                config.insert("Cmd".into(), Value::Null);
            }
        }
        ConfigChange::Env(kvs) => {
            let mut env: Vec<String> = string_list(config.get("Env"));
            for (k, v) in kvs {
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{}={}", k, v));
            }
            config.insert("Env".into(), strings(&env));
        }
        ConfigChange::WorkingDir(dir) => {
            let current = config.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("/");
            let dir =
                if dir.starts_with('/') { dir.clone() } else { format!("{}/{}", current.trim_end_matches('/'), dir) };
            config.insert("WorkingDir".into(), Value::String(dir));
        }
        ConfigChange::User(u) => {
            config.insert("User".into(), Value::String(u.clone()));
        }
        ConfigChange::Expose(ports) => set_keys(config, "ExposedPorts", ports),
        ConfigChange::Volume(paths) => set_keys(config, "Volumes", paths),
        ConfigChange::Label(kvs) => {
            let labels = object(config, "Labels");
            for (k, v) in kvs {
                labels.insert(k.clone(), Value::String(v.clone()));
            }
        }
        ConfigChange::StopSignal(s) => {
            config.insert("StopSignal".into(), Value::String(s.clone()));
        }
        ConfigChange::Shell(v) => {
            config.insert("Shell".into(), strings(v));
        }
        ConfigChange::Healthcheck(h) => {
            config.insert("Healthcheck".into(), h.clone());
        }
        ConfigChange::OnBuild(s) => {
            let mut v = string_list(config.get("OnBuild"));
            v.push(s.clone());
            config.insert("OnBuild".into(), strings(&v));
        }
    }
}

pub fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok()).unwrap_or_default()
}

fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = config.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object")
}

/// `{"KEY": {}}` sets (ExposedPorts, Volumes).
fn set_keys(config: &mut Map<String, Value>, key: &str, keys: &[String]) {
    let set = object(config, key);
    for k in keys {
        set.insert(k.clone(), Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(changes: &[&str]) -> Value {
        let mut config = json!({"Env": ["PATH=/bin", "A=old"], "Cmd": ["sh"], "WorkingDir": "/srv"});
        let map = config.as_object_mut().unwrap();
        let mut cmd_set = false;
        for c in changes {
            apply(map, &parse_change(c).unwrap(), &mut cmd_set);
        }
        config
    }

    #[test]
    fn changes_parse_like_dockerfile_instructions() {
        assert_eq!(
            parse_change(r#"CMD ["a", "b c"]"#).unwrap(),
            ConfigChange::Cmd(Command::Exec(vec!["a".into(), "b c".into()]))
        );
        assert_eq!(parse_change("cmd echo hi").unwrap(), ConfigChange::Cmd(Command::Shell("echo hi".into())));
        assert_eq!(parse_change("CMD [oops").unwrap(), ConfigChange::Cmd(Command::Shell("[oops".into())));
        assert_eq!(
            parse_change(r#"ENV A=1 B="two words" C=x\ y"#).unwrap(),
            ConfigChange::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x y".into())
            ])
        );
        assert_eq!(parse_change("ENV A  one two").unwrap(), ConfigChange::Env(vec![("A".into(), "one two".into())]));
        assert_eq!(
            parse_change("EXPOSE 80 53/udp 8000-8001").unwrap(),
            ConfigChange::Expose(vec!["80/tcp".into(), "53/udp".into(), "8000/tcp".into(), "8001/tcp".into()])
        );
        assert_eq!(
            parse_change(r#"VOLUME ["/a", "/b"]"#).unwrap(),
            ConfigChange::Volume(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(parse_change("VOLUME /a /b").unwrap(), ConfigChange::Volume(vec!["/a".into(), "/b".into()]));
        assert_eq!(
            parse_change("LABEL a=b 'c d'=e").unwrap(),
            ConfigChange::Label(vec![("a".into(), "b".into()), ("c d".into(), "e".into())])
        );
        assert_eq!(parse_change("STOPSIGNAL SIGTERM").unwrap(), ConfigChange::StopSignal("SIGTERM".into()));
    }

    #[test]
    fn bad_changes_are_refused_with_a_reason() {
        for (bad, why) in [
            ("RUN echo", "not a valid change command"),
            ("CMD", "needs an argument"),
            ("EXPOSE 99999", "invalid port"),
            ("EXPOSE 80/xyz", "invalid protocol"),
            ("STOPSIGNAL SIGNOPE", "invalid signal"),
            ("ENV A=1 B", "KEY=VALUE"),
            ("ENV A=\"x", "unterminated"),
            ("USER a b", "one user"),
            ("", "empty"),
        ] {
            let e = format!("{:#}", parse_change(bad).unwrap_err());
            assert!(e.contains(why), "{:?}: {}", bad, e);
        }
    }

    #[test]
    fn changes_apply_to_the_config() {
        let c = applied(&["ENV A=new B=2", "WORKDIR app", "USER nobody", "EXPOSE 80", "LABEL x=y", "VOLUME /data"]);
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=new", "B=2"]));
        assert_eq!(c["WorkingDir"], json!("/srv/app"));
        assert_eq!(c["User"], json!("nobody"));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(c["Labels"], json!({"x": "y"}));
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["Cmd"], json!(["sh"]));
        // ENTRYPOINT clears an inherited CMD, not one set before it.
        assert_eq!(applied(&["ENTRYPOINT [\"/x\"]"])["Cmd"], Value::Null);
        let c = applied(&["CMD [\"-v\"]", "ENTRYPOINT /x"]);
        assert_eq!(c["Cmd"], json!(["-v"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/x"]));
        let mut c = json!({"Shell": ["/bin/bash", "-lc"]});
        apply(c.as_object_mut().unwrap(), &ConfigChange::Cmd(Command::Shell("echo".into())), &mut false);
        assert_eq!(c["Cmd"], json!(["/bin/bash", "-lc", "echo"]));
    }
}
