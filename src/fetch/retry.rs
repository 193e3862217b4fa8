//! What a registry may fail at for a moment, and how long to wait before asking again.
//!
//! Transient, retried with exponential backoff (at most [`ATTEMPTS`] tries in all): a
//! connection reset or closed before the answer or its body ended, a stalled or
//! trickling transfer ([`io_timeout`]), and the statuses 408, 429, 500, 502, 503, 504
//! (a `Retry-After` of up to [`MAX_RETRY_AFTER`] is waited for instead of the backoff;
//! a longer one ends the retries at once). Permanent, never retried: no connection at
//! all (refused, unknown host), every other status, and content that does not match its
//! digest or size (the callers check those).
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use std::io::Read;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Tries of one request or one blob download, the first one included.
pub const ATTEMPTS: u32 = 5;
/// The wait before the first retry; it doubles with each retry after that.
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(8);
/// The longest `Retry-After` husk waits for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// A transfer must bring at least this many bytes in each [`io_timeout`].
pub const MIN_BYTES_PER_TIMEOUT: u64 = 1024;
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long husk waits for an answer and for the next bytes of a body
/// (`HUSK_REGISTRY_TIMEOUT`, seconds, default 30); a body must also bring at least
/// [`MIN_BYTES_PER_TIMEOUT`] bytes in that time.
pub fn io_timeout() -> Duration {
    timeout_from(std::env::var("HUSK_REGISTRY_TIMEOUT").ok().as_deref())
}

/// A timeout in seconds (fractions allowed, under a day); the default otherwise.
fn timeout_from(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 86400.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_IO_TIMEOUT)
}

/// An error worth trying again (a transport failure); its text is the whole message.
#[derive(Debug)]
pub struct Transient(pub String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transient {}

pub fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Transient>().is_some()
}

pub fn transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The attempts left for one request or one blob: each failure asks [`Retry::next_delay`]
/// how long to wait, or gets `None` when it was the last try.
#[derive(Debug, Clone)]
pub struct Retry {
    tries: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new()
    }
}

impl Retry {
    pub fn new() -> Retry {
        Retry { tries: 1 }
    }

    /// The tries made so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Counts a failed try: the wait before the next one (`hint`, the server's
    /// `Retry-After`, when it gave one), or `None` when no try is left or the server
    /// asks for a longer wait than [`MAX_RETRY_AFTER`].
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Option<Duration> {
        if self.tries >= ATTEMPTS {
            return None;
        }
        let delay = match hint {
            Some(d) if d > MAX_RETRY_AFTER => return None,
            Some(d) => d,
            None => backoff(self.tries),
        };
        self.tries += 1;
        Some(delay)
    }
}

/// The wait after the `n`th failed try (n ≥ 1): 0.5 s, 1 s, 2 s, 4 s, … capped at 8 s.
pub fn backoff(n: u32) -> Duration {
    FIRST_DELAY.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(MAX_DELAY)
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP-date (a date in
/// the past is no wait); `None` without a header or with one that is neither.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, now)
}

pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(v)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form
/// RFC 9110 requires senders to use.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let num = |t: &str, len: usize| -> Option<u64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit())).then(|| t.parse().ok())?
    };
    let day = num(day, 2)?;
    let year = num(year, 4)?;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let hms: Vec<&str> = time.split(':').collect();
    let [h, m, sec] = hms[..] else {
        return None;
    };
    let (h, m, sec) = (num(h, 2)?, num(m, 2)?, num(sec, 2)?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 || year < 1970 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + sec)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (year ≥ 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The innermost cause of an error, which says what happened ("connection reset by
/// peer", "end of file before message length reached") where the outer ones say where.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    cause
}

/// A body that must keep coming: fails with `TimedOut` when fewer than
/// [`MIN_BYTES_PER_TIMEOUT`] bytes arrived in the last `window` (the socket's own read
/// timeout catches a body that stops altogether).
pub struct SlowGuard<R> {
    inner: R,
    window: Duration,
    since: Instant,
    bytes: u64,
}

impl<R> SlowGuard<R> {
    pub fn new(inner: R, window: Duration) -> SlowGuard<R> {
        SlowGuard { inner, window, since: Instant::now(), bytes: 0 }
    }
}

impl<R: Read> Read for SlowGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes >= MIN_BYTES_PER_TIMEOUT || n == 0 {
            self.since = Instant::now();
            self.bytes = 0;
        } else if self.since.elapsed() > self.window {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the registry sends too slowly: {} bytes in {:.0?} (less than {})",
                    self.bytes,
                    self.since.elapsed(),
                    MIN_BYTES_PER_TIMEOUT
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let waits: Vec<u64> = (1..=6).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn retries_are_bounded_and_honour_retry_after() {
        let mut r = Retry::new();
        assert_eq!(r.next_delay(None), Some(Duration::from_millis(500)));
        assert_eq!(r.next_delay(Some(Duration::from_secs(3))), Some(Duration::from_secs(3)));
        assert_eq!(r.next_delay(None), Some(Duration::from_secs(2)));
        assert_eq!(r.next_delay(None), Some(Duration::from_secs(4)));
        assert_eq!(r.tries(), ATTEMPTS);
        assert_eq!(r.next_delay(None), None, "no sixth try");
        let mut r = Retry::new();
        assert_eq!(r.next_delay(Some(MAX_RETRY_AFTER + Duration::from_secs(1))), None, "too long a wait ends it");
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_767); // Sun, 06 Nov 1994 08:49:27 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO), "past");
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
        for bad in ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates_match_the_calendar() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600));
        assert_eq!(parse_http_date("Fri, 31 Dec 2100 23:59:59 GMT"), Some(4_133_980_799));
    }

    #[test]
    fn timeouts_default_to_30_seconds() {
        assert_eq!(timeout_from(None), Duration::from_secs(30));
        assert_eq!(timeout_from(Some("2")), Duration::from_secs(2));
        assert_eq!(timeout_from(Some(" 0.5 ")), Duration::from_millis(500));
        for bad in ["", "0", "-1", "inf", "NaN", "1e9", "soon"] {
            assert_eq!(timeout_from(Some(bad)), DEFAULT_IO_TIMEOUT, "{bad:?}");
        }
    }

    #[test]
    fn statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 206, 400, 401, 403, 404, 416, 501, 505] {
            assert!(!transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    /// A reader that hands out one byte per call, `gap` apart.
    struct Trickle(Duration);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.0);
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn slow_guard_stops_a_trickle_and_lets_a_stream_pass() {
        let mut g = SlowGuard::new(Trickle(Duration::from_millis(20)), Duration::from_millis(200));
        let mut buf = [0u8; 64];
        let t = Instant::now();
        let err = loop {
            if let Err(e) = g.read(&mut buf) {
                break e;
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let mut fast = SlowGuard::new(std::io::repeat(7).take(1 << 20), Duration::from_millis(1));
        assert_eq!(std::io::copy(&mut fast, &mut std::io::sink()).unwrap(), 1 << 20);
    }
}
