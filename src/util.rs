//! Small filesystem helpers shared by the store and the command layer.
use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static NONCE: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call, for temp files beside their final place.
pub fn unique_suffix() -> String {
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{}-{:x}", std::process::id(), n, t)
}

/// Writes `data` to `path` through a temp file in the same directory, fsynced and renamed,
/// so readers see either the old or the new content, never a torn one.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    atomic_write_mode(path, data, 0o644)
}

/// `atomic_write` without the fsync: readers and a killed writer still only ever see
/// whole files, but a power loss may lose the update. For per-container runtime files.
pub fn atomic_replace(path: &Path, data: &[u8]) -> Result<()> {
    write_via_temp(path, data, 0o644, false)
}

/// `atomic_write` with the file created at `mode` (before the umask) from the start,
/// so a secret is never readable by others, not even for a moment.
pub fn atomic_write_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_via_temp(path, data, mode, true)
}

fn write_via_temp(path: &Path, data: &[u8], mode: u32, durable: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("atomic_write: path has no parent")?;
    let name = path.file_name().context("atomic_write: path has no file name")?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), unique_suffix()));
    let result = (|| -> Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// What [`FileLock::probe`] found.
pub enum LockProbe {
    /// Another process holds the lock.
    Held,
    /// Nobody held it; now this process does, on the file still at the path.
    Free(FileLock),
    /// No file at the path (any more).
    Gone,
}

/// An flock(2) held on a lock file until dropped.
pub struct FileLock {
    _lock: Flock<File>,
}

impl FileLock {
    fn open(path: &Path) -> Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock {}", path.display()))
    }

    pub fn exclusive(path: &Path) -> Result<FileLock> {
        Self::take(path, FlockArg::LockExclusive)
    }

    pub fn shared(path: &Path) -> Result<FileLock> {
        Self::take(path, FlockArg::LockShared)
    }

    /// Locks the directory itself (no lock file to create or delete). The lock follows
    /// the directory through renames.
    pub fn directory(path: &Path) -> Result<FileLock> {
        Self::take_with(path, FlockArg::LockExclusive, |p| {
            File::open(p).with_context(|| format!("opening {}", p.display()))
        })
    }

    /// Takes the lock without waiting; `None` when another process holds it.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>> {
        match Flock::lock(Self::open(path)?, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(FileLock { _lock: l })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// Whether the lock file at `path` is held, without creating it. A checker races
    /// with owners that remove their lock file and then release it: a file gone before
    /// it is opened, or unlinked (or replaced) while it is being locked, is `Gone`, never
    /// `Free`.
    pub fn probe(path: &Path) -> Result<LockProbe> {
        let file = match OpenOptions::new().read(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockProbe::Gone),
            Err(e) => return Err(e).with_context(|| format!("opening lock {}", path.display())),
        };
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(LockProbe::Held),
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        };
        let locked = lock.metadata().with_context(|| format!("reading {}", path.display()))?;
        match fs::symlink_metadata(path) {
            Ok(m) if (m.dev(), m.ino()) == (locked.dev(), locked.ino()) => {
                Ok(LockProbe::Free(FileLock { _lock: lock }))
            }
            Ok(_) => Ok(LockProbe::Gone),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockProbe::Gone),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn take(path: &Path, arg: FlockArg) -> Result<FileLock> {
        Self::take_with(path, arg, Self::open)
    }

    /// Opens `path` with `open` and waits for the lock (again after a signal).
    fn take_with(path: &Path, arg: FlockArg, open: impl Fn(&Path) -> Result<File>) -> Result<FileLock> {
        loop {
            match Flock::lock(open(path)?, arg) {
                Ok(l) => return Ok(FileLock { _lock: l }),
                Err((_, nix::errno::Errno::EINTR)) => continue,
                Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
            }
        }
    }
}

/// `$XDG_<kind>_HOME` or `$HOME/<fallback>`.
pub fn xdg_dir(var: &str, fallback: &str) -> Result<PathBuf> {
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("HOME is not set; set HOME, XDG_DATA_HOME or --root")?;
    Ok(PathBuf::from(home).join(fallback))
}

/// Removes a tree that may hold read-only directories.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(path) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

/// `s` on one line and harmless on a terminal, for messages that quote what others
/// wrote (a tar header's bytes, a registry's error text): control characters (newlines,
/// escape sequences) and bidirectional-text overrides become Rust escapes (`\n`,
/// `\u{1b}`); everything else stays as it is.
pub fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Human size as Docker prints it (base 1000): "5.59MB", "121MB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{}B", bytes)
    } else if v < 10.0 {
        format!("{:.2}{}", v, UNITS[u])
    } else if v < 100.0 {
        format!("{:.1}{}", v, UNITS[u])
    } else {
        format!("{:.0}{}", v, UNITS[u])
    }
}

/// "2 minutes ago" as Docker prints it.
pub fn human_ago(then: std::time::SystemTime) -> String {
    let secs = std::time::SystemTime::now().duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    let (n, unit) = match secs {
        0 => return "Less than a second ago".into(),
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86400 => (s / 3600, "hour"),
        s if s < 86400 * 7 => (s / 86400, "day"),
        s if s < 86400 * 30 => (s / (86400 * 7), "week"),
        s if s < 86400 * 365 => (s / (86400 * 30), "month"),
        s => (s / (86400 * 365), "year"),
    };
    match n {
        1 if unit == "hour" => "About an hour ago".into(),
        1 => format!("1 {} ago", unit),
        n => format!("{} {}s ago", n, unit),
    }
}

pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_probe_neither_creates_nor_mistakes_a_held_lock() {
        let dir = std::env::temp_dir().join(format!("husk-probe-{}", unique_suffix()));
        fs::create_dir(&dir).unwrap();
        let path = dir.join("x.lock");
        assert!(matches!(FileLock::probe(&path).unwrap(), LockProbe::Gone));
        assert!(!path.exists(), "probing made the lock file");
        let held = FileLock::exclusive(&path).unwrap();
        assert!(matches!(FileLock::probe(&path).unwrap(), LockProbe::Held));
        // removed and then released, as a scratch area ends
        fs::remove_file(&path).unwrap();
        drop(held);
        assert!(matches!(FileLock::probe(&path).unwrap(), LockProbe::Gone));
        drop(FileLock::exclusive(&path).unwrap());
        assert!(matches!(FileLock::probe(&path).unwrap(), LockProbe::Free(_)));
        fs::remove_dir_all(&dir).unwrap();
    }
    #[test]
    fn sizes_print_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(5_590_000), "5.59MB");
        assert_eq!(human_size(121_000_000), "121MB");
        assert_eq!(human_size(45_500_000), "45.5MB");
    }

    #[test]
    fn one_line_escapes_what_a_terminal_would_act_on() {
        assert!(matches!(one_line("plain: ünïcode ok"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(one_line("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(one_line("\u{1b}[31mred\u{7f}\u{85}"), "\\u{1b}[31mred\\u{7f}\\u{85}");
        assert_eq!(one_line("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
    }
}

/// Parses an RFC 3339 time ("2024-05-01T12:00:00.123Z", "...+02:00") to a SystemTime.
pub fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r[1..3].parse::<i64>().ok()? * 3600 + r[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + se - offset;
    if secs >= 0 {
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
    } else {
        Some(std::time::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_to_epoch() {
        let t = super::parse_rfc3339("2024-05-01T12:00:00.5Z").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1714564800);
        let t = super::parse_rfc3339("2024-05-01T14:00:00+02:00").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1714564800);
        assert!(super::parse_rfc3339("yesterday").is_none());
    }
}

/// RFC 3339 in UTC with nanoseconds, as Docker writes times.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod rfc3339_tests {
    #[test]
    fn round_trips() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1714564800, 5);
        assert_eq!(super::rfc3339(t), "2024-05-01T12:00:00.000000005Z");
        assert_eq!(
            super::parse_rfc3339(&super::rfc3339(t)).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            1714564800
        );
    }
}

/// With `HUSK_TRACE=1`, prints the time since start-up at named points (to stderr).
pub fn trace(point: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<Option<std::time::Instant>> = OnceLock::new();
    let start = START.get_or_init(|| std::env::var_os("HUSK_TRACE").map(|_| std::time::Instant::now()));
    if let Some(s) = start {
        eprintln!("husk-trace {:>8.3} ms  {}", s.elapsed().as_secs_f64() * 1000.0, point);
    }
}

/// The names in directory `dir` (none if it is missing) that do not start with a dot
/// (those are being made or removed), sorted.
pub fn visible_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| !n.starts_with('.'));
    names.sort();
    names
}

/// What killed husks left in `dir`: entries half-made (`.new-…`) or half-removed
/// (`.rm-…`). Only leftovers while the lock that covers making and removing them is
/// held exclusively.
pub fn half_done_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    rd.flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            name.starts_with(b".new-") || name.starts_with(b".rm-")
        })
        .map(|e| e.path())
        .collect()
}

/// `half_done_entries` of `dir` with the exclusive `lock` that keeps them leftovers;
/// None while another husk holds the lock (they may be in the making).
pub fn locked_half_done_entries(lock: &Path, dir: &Path) -> Result<Option<(FileLock, Vec<PathBuf>)>> {
    let Some(lock) = FileLock::try_exclusive(lock)? else { return Ok(None) };
    Ok(Some((lock, half_done_entries(dir))))
}
