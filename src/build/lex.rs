//! The Dockerfile shell lexer: quote removal, escapes and `$VAR` substitution,
//! as BuildKit's `frontend/dockerfile/shell` does them (not a real shell: no
//! command substitution, no globbing, no arithmetic).
//!
//! Supported forms: `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`,
//! `${NAME:+word}`, `${NAME+word}`, `${NAME:?msg}`, `${NAME?msg}`,
//! `${NAME#pat}`, `${NAME##pat}`, `${NAME%pat}`, `${NAME%%pat}`,
//! `${NAME/pat/repl}`, `${NAME//pat/repl}` (patterns take `*`, `?` and
//! `\`-escapes). Positional (`$1`) and special (`$@ $* $# $? $- $$ $! $0`)
//! parameters are never set. Single quotes keep everything literal, double
//! quotes allow `$` and escape only `"`, `$` and the escape character; outside
//! quotes the escape character (`\`, or `` ` `` with `# escape=`) makes the
//! next character literal.

use std::collections::BTreeSet;

/// Where variable values come from.
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

/// No variables at all.
pub struct NoVars;

impl Lookup for NoVars {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

/// A lexer configuration. [`Lexer::new`] gives the one instructions use.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the result (quoted text is still not split or expanded inside `'…'`).
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (used for heredoc contents).
    pub skip_quotes: bool,
    /// Leave references to unset variables as written instead of making them empty.
    pub keep_unset: bool,
}

/// The result of processing one word.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Processed {
    /// The word with quotes removed and variables substituted, not split.
    pub value: String,
    /// The same, split into words on unquoted white space (after substitution).
    pub words: Vec<String>,
    /// The variables that were looked up and found.
    pub used: BTreeSet<String>,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape, raw_quotes: false, raw_escapes: false, skip_quotes: false, keep_unset: false }
    }

    /// Processes `word` into one string.
    pub fn word(&self, word: &str, env: &dyn Lookup) -> Result<String, String> {
        Ok(self.process(word, env)?.value)
    }

    /// Processes `word` and splits the result into words.
    pub fn words(&self, word: &str, env: &dyn Lookup) -> Result<Vec<String>, String> {
        Ok(self.process(word, env)?.words)
    }

    /// Processes `word`; errors read `failed to process "WORD": CAUSE`.
    pub fn process(&self, word: &str, env: &dyn Lookup) -> Result<Processed, String> {
        let mut sc = Scanner {
            chars: word.chars().collect(),
            pos: 0,
            lex: self,
            env,
            raw_escapes: self.raw_escapes,
            used: BTreeSet::new(),
        };
        let raw = self.raw_escapes;
        match sc.until(None, raw) {
            Ok((value, words)) => Ok(Processed { value, words, used: sc.used }),
            Err(e) => Err(format!("failed to process {:?}: {}", word, e)),
        }
    }
}

/// Words being split: white space outside quotes separates them.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    lex: &'a Lexer,
    env: &'a dyn Lookup,
    raw_escapes: bool,
    used: BTreeSet<String>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get(&mut self, name: &str) -> Option<String> {
        let v = self.env.lookup(name).map(str::to_string);
        if v.is_some() {
            self.used.insert(name.to_string());
        }
        v
    }

    /// Processes up to `stop` (consumed) or the end of the input.
    fn until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.until_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let quotes = !self.lex.skip_quotes;
            if ch == '$' {
                let s = self.dollar()?;
                result.push_str(&s);
                words.add_string(&s);
            } else if ch == '<' {
                let s = self.possible_heredoc();
                result.push_str(&s);
                words.add_raw_string(&s);
            } else if quotes && ch == '\'' {
                let s = self.single_quote()?;
                result.push_str(&s);
                words.add_raw_string(&s);
            } else if quotes && ch == '"' {
                let s = self.double_quote()?;
                result.push_str(&s);
                words.add_raw_string(&s);
            } else {
                self.next();
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(c) = self.next() else { break };
                    words.add_raw_char(c);
                    result.push(c);
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {}", stop));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let q = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            out.push(q);
        }
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // The loop then reports the missing quote.
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = self.next().unwrap_or_default();
                            }
                            // Other escapes stay as written.
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.keep_unset => format!("${}", name),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let Some(mut ch) = self.next() else { return Err("syntax error: missing '}'".into()) };
        match ch {
            '}' => Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.keep_unset => format!("${{{}}}", name),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = ch.to_string();
                let null_is_unset = ch == ':';
                if null_is_unset {
                    ch = self.next().ok_or("syntax error: missing '}'")?;
                    modifier.push(ch);
                }
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({}) in substitution", modifier));
                }
                let word = self.until_brace('}', raw, "syntax error: missing '}'")?;
                let value = self.get(&name);
                if self.lex.keep_unset && value.is_none() {
                    return Ok(format!("${{{}{}{}}}", name, modifier, word));
                }
                let empty = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match ch {
                    '-' => Ok(if empty { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!("{}: {}", name, or(word, "is not allowed to be unset"))),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(format!("{}: {}", name, or(word, "is not allowed to be empty")))
                        }
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let pat = Glob::parse(&pat)?;
                        let value = value.unwrap_or_default();
                        Ok(if ch == '#' { pat.trim_prefix(&value, greedy) } else { pat.trim_suffix(&value, greedy) })
                    }
                    _ => Err(format!("unsupported modifier ({}) in substitution", modifier)),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = self.until_brace('/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.until_brace('}', true, "syntax error: missing '}'")?;
                let value = self.get(&name);
                let Some(value) = value else {
                    if self.lex.keep_unset {
                        return Ok(format!("${{{}/{}/{}}}", name, pattern, replacement));
                    }
                    return Ok(String::new());
                };
                Ok(Glob::parse(&pattern)?.replace(&value, &replacement, all))
            }
            c => Err(format!("unsupported modifier ({}) in substitution", c)),
        }
    }

    /// The text of a `${…}` part up to `stop`; at the end of input the error is `eof_err`.
    fn until_brace(&mut self, stop: char, raw: bool, eof_err: &str) -> Result<String, String> {
        match self.until(Some(stop), raw) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(eof_err.to_string()),
            Err(e) => Err(e),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if is_digit(c) => {
                while let Some(c) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(c);
                    self.next();
                }
                return name;
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')) => {
                self.next();
                return c.to_string();
            }
            _ => {}
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphabetic() || is_digit(*c) || *c == '_') {
            name.push(c);
            self.next();
        }
        name
    }

    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, ' ' | '\t' | '\r')) {
            out.push(c);
            self.next();
        }
        out
    }
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

fn or(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_string()
    } else {
        word
    }
}

/// A `${VAR#pattern}`-style pattern: `*` any string, `?` any character, `\x` a literal x.
struct Glob(Vec<GlobTok>);

#[derive(Clone, Copy, PartialEq)]
enum GlobTok {
    Lit(char),
    Any,
    Star,
}

impl Glob {
    fn parse(pattern: &str) -> Result<Glob, String> {
        let mut toks = Vec::new();
        let mut it = pattern.chars().peekable();
        while let Some(c) = it.next() {
            toks.push(match c {
                '*' => GlobTok::Star,
                '?' => GlobTok::Any,
                '\\' => {
                    // `\}` and `\/` were only needed to get past the ${} parser.
                    if matches!(it.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match it.next() {
                        Some(e @ ('*' | '?' | '\\')) => GlobTok::Lit(e),
                        Some(e) => {
                            return Err(format!(
                                "invalid pattern ({}) in substitution: invalid escape '\\{}'",
                                pattern, e
                            ))
                        }
                        None => return Err(format!("invalid pattern ({}) in substitution: trailing '\\'", pattern)),
                    }
                }
                c => GlobTok::Lit(c),
            });
        }
        Ok(Glob(toks))
    }

    /// Every `e` such that the pattern matches `v[s..e]`, in increasing order.
    fn ends_from(&self, v: &[char], s: usize) -> Vec<usize> {
        let n = self.0.len();
        // The token positions reachable before reading v[j]; a star may match nothing.
        let close = |set: &mut Vec<bool>| {
            for i in 0..n {
                if set[i] && self.0[i] == GlobTok::Star {
                    set[i + 1] = true;
                }
            }
        };
        let mut states = vec![false; n + 1];
        states[0] = true;
        close(&mut states);
        let mut ends = Vec::new();
        for j in s..=v.len() {
            if states[n] {
                ends.push(j);
            }
            if j == v.len() || !states.contains(&true) {
                break;
            }
            let mut next = vec![false; n + 1];
            for i in (0..n).filter(|i| states[*i]) {
                match self.0[i] {
                    GlobTok::Star => next[i] = true,
                    GlobTok::Any => next[i + 1] = true,
                    GlobTok::Lit(c) if c == v[j] => next[i + 1] = true,
                    GlobTok::Lit(_) => {}
                }
            }
            close(&mut next);
            states = next;
        }
        ends
    }

    fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let ends = self.ends_from(&v, 0);
        match if longest { ends.last() } else { ends.first() } {
            Some(&e) => v[e..].iter().collect(),
            None => value.to_string(),
        }
    }

    fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let whole = |s: &usize| self.ends_from(&v, *s).last() == Some(&v.len());
        let mut starts = 0..=v.len();
        let start = if longest { starts.find(whole) } else { starts.rev().find(whole) };
        match start {
            Some(s) => v[..s].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Replaces the leftmost-longest match (every one with `all`).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let v: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        let mut prev_end = None;
        while i <= v.len() {
            let found = (i..=v.len()).find_map(|s| self.ends_from(&v, s).last().map(|e| (s, *e)));
            let Some((s, e)) = found else { break };
            if s == e && prev_end == Some(s) {
                // An empty match right after a match is not another match.
                if s < v.len() {
                    out.push(v[s]);
                }
                i = s + 1;
                continue;
            }
            out.extend(&v[i..s]);
            out.push_str(replacement);
            prev_end = Some(e);
            if e == s {
                if s < v.len() {
                    out.push(v[s]);
                }
                i = s + 1;
            } else {
                i = e;
            }
            if !all {
                break;
            }
        }
        if i < v.len() {
            out.extend(&v[i..]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, &'static str>);

    impl Lookup for Env {
        fn lookup(&self, name: &str) -> Option<&str> {
            self.0.get(name).copied()
        }
    }

    fn env() -> Env {
        Env(HashMap::from([("HOME", "/root"), ("EMPTY", ""), ("SH", "dash"), ("LANG", "한국어"), ("F", "a.tar.gz")]))
    }

    /// (input, expected; None for an error)
    fn check(lexer: Lexer, cases: &[(&str, Option<&str>)]) {
        for (input, want) in cases {
            let got = lexer.word(input, &env());
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "input {:?}", input),
                None => assert!(got.is_err(), "input {:?} gave {:?}, wanted an error", input, got),
            }
        }
    }

    #[test]
    fn quotes_and_escapes() {
        check(
            Lexer::new('\\'),
            &[
                ("plain", Some("plain")),
                ("sp'li't", Some("split")),
                ("open'quote", None),
                ("it\\'s", Some("it's")),
                ("two\\\\'x", None),
                ("t\\ab", Some("tab")),
                ("\"t\\ab\"", Some("t\\ab")),
                ("\"t\\\\ab\"", Some("t\\ab")),
                ("'t\\ab'", Some("t\\ab")),
                ("end\\", Some("end")),
                ("end\\\\", Some("end\\")),
                ("\"open", None),
                ("\"esc quote\\\"", None),
                ("\"mixed'quote\"", Some("mixed'quote")),
                ("'back\\'", Some("back\\")),
                ("\"''\"", Some("''")),
                ("'\"dq\"'", Some("\"dq\"")),
                ("다'국'어", Some("다국어")),
            ],
        );
    }

    #[test]
    fn dollar_forms() {
        check(
            Lexer::new('\\'),
            &[
                ("$HOME/x", Some("/root/x")),
                ("${HOME}x", Some("/rootx")),
                ("a$.b", Some("a$.b")),
                ("end$", Some("end$")),
                ("$UNSET-x", Some("-x")),
                ("\\$HOME", Some("$HOME")),
                ("\\\\$HOME", Some("\\/root")),
                ("\"\\$HOME\"", Some("$HOME")),
                ("\"\\\\$HOME\"", Some("\\/root")),
                ("'$HOME'", Some("$HOME")),
                ("\"'$HOME'\"", Some("'/root'")),
                ("\\${}", Some("${}")),
                ("${}", None),
                ("${.}", None),
                ("${HOME", None),
                ("${{x}", None),
                ("${:-x}", None),
                ("${x}}", Some("}")),
                ("$LANG!", Some("한국어!")),
                ("${UNSET:-def}", Some("def")),
                ("${EMPTY:-def}", Some("def")),
                ("${EMPTY-def}", Some("")),
                ("${UNSET-def}", Some("def")),
                ("${HOME:-def}", Some("/root")),
                ("${UNSET:-$HOME}", Some("/root")),
                ("${UNSET:-${ALSO:-deep}}", Some("deep")),
                ("${UNSET:-a b {c}", Some("a b {c")),
                ("${UNSET:-a ${b}", None),
                ("${HOME:+set}", Some("set")),
                ("${EMPTY:+set}", Some("")),
                ("${EMPTY+set}", Some("set")),
                ("${UNSET+set}", Some("")),
                ("${HOME:+$SH}", Some("dash")),
                ("${HOME:+${HOME}:}x", Some("/root:x")),
                ("${UNSET:-\\$HOME:}", Some("$HOME:")),
                ("${UNSET?}", None),
                ("${EMPTY?}", Some("")),
                ("${EMPTY:?}", None),
                ("${HOME:?}", Some("/root")),
                ("${HOME:=x}", None),
                ("${HOME:x}", None),
                ("${HOME:#x}", None),
                ("$1", Some("")),
                ("${12:-pos}", Some("pos")),
                ("$999tail", Some("tail")),
                ("$@@@", Some("@@")),
                ("$$", Some("")),
                ("${#:-hash}", Some("hash")),
                ("${F%.*}", Some("a.tar")),
                ("${F%%.*}", Some("a")),
                ("${F#*.}", Some("tar.gz")),
                ("${F##*.}", Some("gz")),
                ("${F#?}", Some(".tar.gz")),
                ("${F%nomatch}", Some("a.tar.gz")),
                ("${F/./_}", Some("a_tar.gz")),
                ("${F//./_}", Some("a_tar_gz")),
                ("${F//[/x}", Some("a.tar.gz")),
                ("${F/\\*/x}", Some("a.tar.gz")),
                ("${F/t*/T}", Some("a.T")),
                ("${F/./}", Some("atar.gz")),
                ("${F/a", None),
                ("${F/\\q/x}", None),
            ],
        );
    }

    #[test]
    fn backtick_escape() {
        check(
            Lexer::new('`'),
            &[("a`$HOME", Some("a$HOME")), ("C:\\dir", Some("C:\\dir")), ("\"q`\"x\"", Some("q\"x")), ("`", Some(""))],
        );
    }

    #[test]
    fn splitting_into_words() {
        let lex = Lexer::new('\\');
        let e = Env(HashMap::from([("SP", "abc  def"), ("LEAD", "  ab c"), ("TRAIL", "ab c   ")]));
        let cases: &[(&str, &[&str])] = &[
            ("one", &["one"]),
            ("a${SP}b", &["aabc", "defb"]),
            ("a\"${SP}\"b", &["aabc  defb"]),
            ("a \"${SP}\"b", &["a", "abc  defb"]),
            ("x${LEAD}y", &["x", "ab", "cy"]),
            ("x\"${LEAD}\" y", &["x  ab c", "y"]),
            ("x${TRAIL}d", &["xab", "c", "d"]),
            ("x\"${TRAIL}\"", &["xab c   "]),
            ("a\\ b", &["a b"]),
            ("a\\\" b", &["a\"", "b"]),
            ("a'$SP'", &["a$SP"]),
            ("\"\" x", &["x"]),
            ("  lots   of\tspace  ", &["lots", "of", "space"]),
            ("8080/tcp $UNSET 53/udp", &["8080/tcp", "53/udp"]),
        ];
        for (input, want) in cases {
            assert_eq!(lex.words(input, &e).unwrap(), *want, "input {:?}", input);
        }
        assert!(lex.words("a \"b", &e).is_err());
    }

    #[test]
    fn raw_modes_for_heredoc_detection() {
        let lex = Lexer { raw_quotes: true, raw_escapes: true, keep_unset: true, ..Lexer::new('\\') };
        assert_eq!(
            lex.words("RUN <<'EOF' cat \"$X\" ${Y:-z} a\\ b", &NoVars).unwrap(),
            ["RUN", "<<'EOF'", "cat", "\"$X\"", "${Y:-z}", "a\\ b"]
        );
        assert_eq!(lex.words("RUN 3<<  EOF x", &NoVars).unwrap(), ["RUN", "3<<  EOF", "x"]);
        let skip = Lexer { skip_quotes: true, ..Lexer::new('\\') };
        assert_eq!(skip.word("'$HOME' \"x\"", &env()).unwrap(), "'/root' \"x\"");
    }

    #[test]
    fn used_variables_are_reported() {
        let p = Lexer::new('\\').process("$HOME ${UNSET:-x} ${SH:+y}", &env()).unwrap();
        assert_eq!(p.used.into_iter().collect::<Vec<_>>(), ["HOME", "SH"]);
    }

    #[test]
    fn error_names_the_word() {
        let e = Lexer::new('\\').word("${HOME", &env()).unwrap_err();
        assert_eq!(e, "failed to process \"${HOME\": syntax error: missing '}'");
        let e = Lexer::new('\\').word("${UNSET:?must be set}", &env()).unwrap_err();
        assert!(e.ends_with("UNSET: must be set"), "{}", e);
    }
}
