//! `.dockerignore`: which files of the build context a build sees, with the
//! rules of `moby/patternmatcher` and its `ignorefile` reader.
//!
//! * Lines starting with `#` (in the first column) are comments; blank lines
//!   are skipped; patterns are trimmed, cleaned like Go's `filepath.Clean`
//!   (`a//b/../c/` is `a/c`) and a leading `/` is dropped.
//! * `*` matches within one path component, `?` one character but `/`,
//!   `[a-z]`/`[^a-z]` a class, `\x` a literal `x`; `**` any number of
//!   components (`**/x`, `a/**`, `a/**/b`).
//! * A pattern excludes what it matches and everything below: `docs` hides
//!   `docs/a/b`.
//! * `!pattern` re-includes; the last pattern that matches a path (or one of
//!   its parent directories) decides.
//!
//! The ignore file is `<Dockerfile>.dockerignore` next to the Dockerfile when
//! that exists (BuildKit), else `.dockerignore` at the context root. As with
//! Docker, the rules may exclude the Dockerfile and the ignore file from what
//! `COPY`/`ADD` see, but both are still read.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    exclusion: bool,
    kind: MatchKind,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// `dir/**`: everything starting with `dir/`.
    Prefix(String),
    /// `**/x` (or `**x`): everything ending with `/x` (or `x`), and `x` itself.
    Suffix(String),
    Tokens(Vec<Tok>),
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` followed by more pattern: nothing, or anything ending with `/`.
    DirPrefix,
    /// A trailing `**` after other wildcards: anything.
    All,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Rules {
    /// Reads `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Rules> {
        Rules::from_patterns(&read_patterns(text))
    }

    /// Compiles patterns (already read from a file, or `COPY --exclude`-like lists).
    pub fn from_patterns(patterns: &[String]) -> Result<Rules> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let exclusion = p.starts_with('!');
            if exclusion {
                if p.len() == 1 {
                    anyhow::bail!("illegal exclusion pattern: \"!\"");
                }
                p.remove(0);
            }
            if !valid(&p) {
                anyhow::bail!("bad pattern {:?}: syntax error in pattern", p);
            }
            out.push(Pattern { kind: compile(&p), text: p, exclusion });
        }
        Ok(Rules { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether there are `!` patterns.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether the context path `path` (relative, `/`-separated, clean) is
    /// left out: the last pattern matching it or a parent directory decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for p in &self.patterns {
            // An inclusion cannot change an excluded path, nor an exception an included one.
            if p.exclusion != excluded {
                continue;
            }
            let hit = p.matches(path) || (1..=parents.len()).any(|n| p.matches(&parents[..n].join("/")));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether a walk must enter the excluded directory `dir` because an
    /// exception names something under it (Docker's rule: an exception whose
    /// text starts with `dir/`).
    fn must_enter(&self, dir: &str) -> bool {
        let prefix = format!("{}/", dir);
        self.patterns.iter().any(|p| p.exclusion && format!("{}/", p.text).starts_with(&prefix))
    }
}

/// The patterns of an ignore file, as `ignorefile.ReadAll` gives them.
pub fn read_patterns(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim();
        if p.is_empty() {
            continue;
        }
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut p = if p.is_empty() { String::new() } else { clean(p) };
        if p.len() > 1 && p.starts_with('/') {
            p.remove(0);
        }
        out.push(if invert { format!("!{}", p) } else { p });
    }
    out
}

/// Go's `path.Clean`.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&l) if l != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{}", joined),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Match` syntax check: classes closed and not empty, ranges
/// complete, no trailing `\`.
fn valid(p: &str) -> bool {
    let mut it = p.chars().peekable();
    while let Some(c) = it.next() {
        let ok = match c {
            '\\' => it.next().is_some(),
            '[' => parse_class(&mut it).is_some(),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The rest of a `[…]` class after its `[`; `None` if malformed.
fn parse_class(it: &mut std::iter::Peekable<std::str::Chars>) -> Option<Tok> {
    let negated = it.peek() == Some(&'^');
    if negated {
        it.next();
    }
    let mut ranges = Vec::new();
    loop {
        if it.peek() == Some(&']') && !ranges.is_empty() {
            it.next();
            return Some(Tok::Class { negated, ranges });
        }
        let lo = class_char(it)?;
        let hi = if it.peek() == Some(&'-') {
            it.next();
            class_char(it)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

fn class_char(it: &mut std::iter::Peekable<std::str::Chars>) -> Option<char> {
    let c = match it.next()? {
        '-' | ']' => return None,
        '\\' => it.next()?,
        c => c,
    };
    // A class must still be closed.
    it.peek()?;
    Some(c)
}

/// How a cleaned pattern matches, as `patternmatcher`'s compile decides.
fn compile(p: &str) -> MatchKind {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let mut detected = Detected::Exact;
    let mut toks = Vec::new();
    let mut it = p.chars().peekable();
    let mut first = true;
    while let Some(c) = it.next() {
        match c {
            '*' if it.peek() == Some(&'*') => {
                it.next();
                if it.peek() == Some(&'/') {
                    it.next();
                }
                if it.peek().is_none() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        toks.push(Tok::All);
                        detected = Detected::Regexp;
                    }
                } else {
                    toks.push(Tok::DirPrefix);
                    detected = Detected::Regexp;
                }
                if first {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                detected = Detected::Regexp;
            }
            '?' => {
                toks.push(Tok::One);
                detected = Detected::Regexp;
            }
            '\\' => match it.next() {
                Some(e) => {
                    toks.push(Tok::Lit(e));
                    detected = Detected::Regexp;
                }
                None => toks.push(Tok::Lit('\\')),
            },
            '[' => {
                // valid() has accepted the class.
                toks.push(parse_class(&mut it).unwrap_or(Tok::Lit('[')));
                detected = Detected::Regexp;
            }
            ']' => {
                toks.push(Tok::Lit(']'));
                detected = Detected::Regexp;
            }
            c => toks.push(Tok::Lit(c)),
        }
        first = false;
    }
    match detected {
        Detected::Exact => MatchKind::Exact,
        Detected::Prefix => MatchKind::Prefix(p[..p.len() - 2].to_string()),
        Detected::Suffix => MatchKind::Suffix(p[2..].to_string()),
        Detected::Regexp => MatchKind::Tokens(toks),
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.text,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                path.ends_with(suffix.as_str()) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Tokens(toks) => {
                let s: Vec<char> = path.chars().collect();
                tokens_match(toks, &s)
            }
        }
    }
}

/// Whether the tokens match all of `s` (dynamic programming over both).
fn tokens_match(toks: &[Tok], s: &[char]) -> bool {
    let (n, m) = (toks.len(), s.len());
    // can[i][j]: toks[i..] matches s[j..].
    let mut can = vec![vec![false; m + 1]; n + 1];
    can[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let next = |ok: bool| j < m && ok && can[i + 1][j + 1];
            let v = match &toks[i] {
                Tok::Lit(c) => next(j < m && s[j] == *c),
                Tok::One => next(j < m && s[j] != '/'),
                Tok::Class { negated, ranges } => {
                    next(j < m && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[j])) != *negated)
                }
                Tok::Star => can[i + 1][j] || (j < m && s[j] != '/' && can[i][j + 1]),
                Tok::All => can[i + 1][j] || (j < m && can[i][j + 1]),
                // Nothing, or any text through a `/`.
                Tok::DirPrefix => can[i + 1][j] || (j..m).any(|k| s[k] == '/' && can[i + 1][k + 1]),
            };
            can[i][j] = v;
        }
    }
    can[0][0]
}

/// Finds and reads the ignore file for a build: `<dockerfile>.dockerignore`
/// beside the Dockerfile if it exists, else `<context>/.dockerignore`, else none.
pub fn load(context: &Path, dockerfile: Option<&Path>) -> Result<Rules> {
    let mut candidates = Vec::new();
    if let Some(df) = dockerfile {
        let mut name = df.as_os_str().to_owned();
        name.push(".dockerignore");
        candidates.push(PathBuf::from(name));
    }
    candidates.push(context.join(".dockerignore"));
    for path in candidates {
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                return Rules::parse(&text).with_context(|| format!("{}", path.display()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    Ok(Rules::default())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Sockets, fifos, devices.
    Other,
}

/// One path of the build context that the rules keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root, `/`-separated.
    pub path: PathBuf,
    pub kind: EntryKind,
}

/// The context's paths the rules keep, parents before children, names in
/// byte order; symlinks are listed, not followed. An excluded directory is
/// not entered unless an exception names something under it; then only its
/// kept contents are listed (not the directory itself).
pub fn context_files(context: &Path, rules: &Rules) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(context, Path::new(""), rules, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, rel: &Path, rules: &Rules, out: &mut Vec<Entry>) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let path = rel.join(&name);
        let ft = fs::symlink_metadata(root.join(&path))
            .with_context(|| format!("reading {}", root.join(&path).display()))?
            .file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        let key = path.to_string_lossy();
        if rules.is_excluded(&key) {
            if kind == EntryKind::Dir && rules.must_enter(&key) {
                walk(root, &path, rules, out)?;
            }
            continue;
        }
        out.push(Entry { path: path.clone(), kind });
        if kind == EntryKind::Dir {
            walk(root, &path, rules, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rules(patterns: &[&str]) -> Rules {
        Rules::from_patterns(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn reading_the_file() {
        let text = "\u{feff}# comment\n  # not a comment\n\n/abs/path/\n!/keep/./me/\n  spaced  \r\na//b/../c\n!\n../up\n*.md\n";
        assert_eq!(
            read_patterns(text),
            ["# not a comment", "abs/path", "!keep/me", "spaced", "a/c", "!", "../up", "*.md"]
        );
        assert_eq!(Rules::parse("a\n!\n").unwrap_err().to_string(), "illegal exclusion pattern: \"!\"");
        assert!(Rules::parse("ok\n[\n").unwrap_err().to_string().contains("syntax error in pattern"));
        // A lone "/" stays "/" and so matches no context path (as in patternmatcher).
        assert!(!Rules::parse("/\n").unwrap().is_excluded("anything"));
    }

    #[test]
    fn clean_like_go() {
        let cases = [
            ("", "."),
            ("a/", "a"),
            ("./a/./b//", "a/b"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("//", "/"),
            ("a/b/../../c", "c"),
        ];
        for (p, want) in cases {
            assert_eq!(clean(p), want, "{:?}", p);
        }
    }

    #[test]
    fn single_patterns() {
        // (pattern, path, excluded)
        let cases = [
            ("*", "main.go", true),
            ("*", "dir/deep/file", true),
            ("*.go", "main.go", true),
            ("*.go", "pkg/main.go", false),
            ("*/*.go", "pkg/main.go", true),
            ("docs", "docs/README.md", true),
            ("docs", "docsy", false),
            ("docs/", "docs/a/b", true),
            ("a*", "ab/c", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("**", "x", true),
            ("**/", "dir/file", true),
            ("**/*.txt", "file.txt", true),
            ("**/*.txt", "a/b/file.txt", true),
            ("**/*.txt2", "a/b/file.txt", false),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir", false),
            ("dir/**", "dir/a/b", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "x/y/foo/bar", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("**file", "dir/file", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            ("a[\\]]e", "a]e", true),
            (".*", ".git", true),
            (".*", "git", false),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abc/def", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a(b)c/de+f", "a(b)c/de+f", true),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
        ];
        for (p, path, want) in cases {
            assert_eq!(rules(&[p]).is_excluded(path), want, "pattern {:?} path {:?}", p, path);
        }
    }

    #[test]
    fn exceptions_last_match_wins() {
        let r = rules(&["*.md", "!README.md", "docs/README.md"]);
        assert!(r.is_excluded("CHANGES.md"));
        assert!(!r.is_excluded("README.md"));
        assert!(r.is_excluded("docs/README.md"));
        assert!(r.has_exceptions());
        // An exception before the pattern it would undo does nothing.
        assert!(rules(&["!main.go", "*.go"]).is_excluded("main.go"));
        // A directory excludes its contents; an exception inside re-includes one path.
        let r = rules(&["docs", "!docs/README.md"]);
        assert!(!r.is_excluded("docs/README.md"));
        assert!(r.is_excluded("docs/other.md"));
        assert!(r.is_excluded("docs"));
        // Re-including a directory re-includes what is below it.
        let r = rules(&["**", "!src", "src/**/*.tmp"]);
        assert!(!r.is_excluded("src/a/b.rs"));
        assert!(r.is_excluded("src/a/b.tmp"));
        assert!(r.is_excluded("other"));
        assert!(!rules(&[]).is_excluded("x"));
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "husk-dockerignore-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            fs::create_dir(&p).unwrap();
            TempDir(p)
        }

        fn file(&self, rel: &str, content: &str) {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn listed(dir: &TempDir, r: &Rules) -> Vec<String> {
        context_files(&dir.0, r).unwrap().iter().map(|e| e.path.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn context_files_honour_the_rules() {
        let d = TempDir::new();
        for f in
            ["Dockerfile", "main.go", "README.md", "docs/a.md", "docs/keep.md", "node_modules/x/y.js", "build/out/bin"]
        {
            d.file(f, "x");
        }
        d.file(
            ".dockerignore",
            "# build context\nnode_modules\n*.md\n!README.md\ndocs\n!docs/keep.md\nDockerfile\n.dockerignore\nbuild/\n",
        );
        std::os::unix::fs::symlink("/etc/passwd", d.0.join("link")).unwrap();
        let r = load(&d.0, Some(&d.0.join("Dockerfile"))).unwrap();
        assert_eq!(listed(&d, &r), ["README.md", "docs/keep.md", "link", "main.go"]);
        let kinds: Vec<EntryKind> = context_files(&d.0, &r).unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::File, EntryKind::File, EntryKind::Symlink, EntryKind::File]);
        // Without an ignore file everything is there, directories before their contents.
        assert_eq!(
            listed(&d, &Rules::default()),
            [
                ".dockerignore",
                "Dockerfile",
                "README.md",
                "build",
                "build/out",
                "build/out/bin",
                "docs",
                "docs/a.md",
                "docs/keep.md",
                "link",
                "main.go",
                "node_modules",
                "node_modules/x",
                "node_modules/x/y.js",
            ]
        );
    }

    #[test]
    fn an_ignore_file_beside_the_dockerfile_wins() {
        let d = TempDir::new();
        d.file("app/app.Dockerfile", "FROM x\n");
        d.file("app/app.Dockerfile.dockerignore", "secret\n");
        d.file(".dockerignore", "*\n");
        d.file("secret", "x");
        d.file("public", "x");
        let r = load(&d.0, Some(&d.0.join("app/app.Dockerfile"))).unwrap();
        assert_eq!(
            listed(&d, &r),
            [".dockerignore", "app", "app/app.Dockerfile", "app/app.Dockerfile.dockerignore", "public"]
        );
        let r = load(&d.0, Some(&d.0.join("Dockerfile"))).unwrap();
        assert_eq!(listed(&d, &r), Vec::<String>::new());
        let none = TempDir::new();
        assert!(load(&none.0, None).unwrap().is_empty());
        d.file(".dockerignore", "[z-\n");
        let e = format!("{:#}", load(&d.0, None).unwrap_err());
        assert!(e.contains(".dockerignore") && e.contains("syntax error in pattern"), "{}", e);
    }
}
