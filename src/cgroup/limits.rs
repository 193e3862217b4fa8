//! Resource limits in Docker's syntax (`--memory 512m --cpus 1.5 ...`) and the cgroup v2
//! file writes that carry them out.
use anyhow::{bail, Result};

/// The CFS period husk writes to cpu.max, in microseconds (Docker's and the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Limits as Docker's flags give them. `parse` turns Docker's "no limit" spellings
/// (`--memory 0`, `--pids-limit -1`, ...) into `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// `--memory`, bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap, bytes; -1 = unlimited swap.
    pub memory_swap: Option<i64>,
    /// `--cpus`, CPUs' worth of time per period.
    pub cpus: Option<f64>,
    /// `--cpu-shares`, relative weight 2..=262144 (Docker's default is 1024).
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`; 0 or less = unlimited.
    pub pids_limit: Option<i64>,
}

impl Limits {
    pub fn parse(
        memory: Option<&str>,
        memory_swap: Option<&str>,
        cpus: Option<&str>,
        cpu_shares: Option<u64>,
        pids_limit: Option<i64>,
    ) -> Result<Limits> {
        let memory = match memory {
            Some(s) => Some(parse_size("--memory", s)?).filter(|&m| m > 0),
            None => None,
        };
        let memory_swap = match memory_swap.map(str::trim) {
            None => None,
            Some("-1") => Some(-1).filter(|_| memory.is_some()),
            Some(s) => {
                let total = parse_size("--memory-swap", s)?;
                let total = i64::try_from(total).map_err(|_| anyhow::anyhow!("--memory-swap {:?}: too large", s))?;
                match memory {
                    _ if total == 0 => None,
                    None => bail!("--memory-swap {:?} needs --memory too: it is the total of memory and swap", s),
                    Some(m) if (total as u64) < m => bail!(
                        "--memory-swap {:?} is less than --memory ({} bytes): it is the total of memory and swap, so it must be at least the memory limit (-1 for unlimited swap)",
                        s,
                        m
                    ),
                    Some(_) => Some(total),
                }
            }
        };
        let cpus = match cpus.map(str::trim) {
            None => None,
            Some(s) => match s.parse::<f64>() {
                Ok(0.0) => None,
                Ok(c) if c.is_finite() && c >= 0.01 && c * CPU_PERIOD_US as f64 <= u64::MAX as f64 => Some(c),
                Ok(c) if c.is_finite() && c > 0.0 => {
                    bail!("--cpus {:?}: the smallest limit is 0.01", s)
                }
                _ => bail!("--cpus {:?}: expected a positive number of CPUs such as 0.5 or 1.5", s),
            },
        };
        let cpu_shares = match cpu_shares {
            None | Some(0) => None,
            Some(n) if (2..=262_144).contains(&n) => Some(n),
            Some(n) => bail!("--cpu-shares {}: must be between 2 and 262144 (the default weight is 1024)", n),
        };
        let pids_limit = pids_limit.filter(|&n| n > 0);
        Ok(Limits { memory, memory_swap, cpus, cpu_shares, pids_limit })
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The cgroup v2 controllers the limits need ("memory", "cpu", "pids"), each once.
    pub fn required_controllers(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (file, _) in self.files() {
            let controller = file.split('.').next().unwrap_or(file);
            if !out.contains(&controller) {
                out.push(controller);
            }
        }
        out
    }

    /// The cgroup v2 files to write, with their contents.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(m) = self.memory {
            out.push(("memory.max", m.to_string()));
        }
        match (self.memory, self.memory_swap) {
            (_, Some(t)) if t < 0 => out.push(("memory.swap.max", "max".into())),
            (Some(m), Some(t)) => out.push(("memory.swap.max", (t as u64).saturating_sub(m).to_string())),
            // Docker's default: as much swap as memory.
            (Some(m), None) => out.push(("memory.swap.max", m.to_string())),
            (None, _) => {}
        }
        if let Some(c) = self.cpus {
            let quota = (c * CPU_PERIOD_US as f64).round() as u64;
            out.push(("cpu.max", format!("{} {}", quota, CPU_PERIOD_US)));
        }
        if let Some(s) = self.cpu_shares {
            out.push(("cpu.weight", shares_to_weight(s).to_string()));
        }
        if let Some(p) = self.pids_limit {
            out.push(("pids.max", if p > 0 { p.to_string() } else { "max".into() }));
        }
        out
    }
}

/// cgroup v1 cpu.shares (2..=262144) to cgroup v2 cpu.weight (1..=10000), the linear
/// mapping runc and crun use.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// Docker's size syntax: a number, an optional space, an optional unit k/m/g/t/p (any
/// case, powers of 1024), an optional `i` after the unit and an optional `b`: "512m",
/// "1g", "1.5GiB", "1024k", "100b", "100".
pub fn parse_size(flag: &str, s: &str) -> Result<u64> {
    let bad = || anyhow::anyhow!("{} {:?}: expected a size such as 512m, 1g or 1024k (bytes without a unit)", flag, s);
    let t = s.trim();
    let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let (letter, rest) = unit.split_at(unit.len().min(1));
    let shift = match letter {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    if !(rest.is_empty() || (rest == "i" && shift > 0)) {
        return Err(bad());
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut bytes = whole.checked_mul(1u64 << shift).ok_or_else(|| anyhow::anyhow!("{} {:?}: too large", flag, s))?;
    if !frac.is_empty() {
        let f: f64 = format!("0.{}", frac).parse().map_err(|_| bad())?;
        bytes = bytes.saturating_add((f * (1u64 << shift) as f64) as u64);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(memory: &str, swap: Option<&str>) -> Result<Limits> {
        Limits::parse(Some(memory), swap, None, None, None)
    }

    fn file(l: &Limits, name: &str) -> Option<String> {
        l.files().into_iter().find(|(f, _)| *f == name).map(|(_, v)| v)
    }

    #[test]
    fn sizes_use_dockers_units() {
        let p = |s| parse_size("--memory", s).unwrap();
        assert_eq!(p("100"), 100);
        assert_eq!(p("100b"), 100);
        assert_eq!(p("1024k"), 1024 * 1024);
        assert_eq!(p("512m"), 512 << 20);
        assert_eq!(p("512M"), 512 << 20);
        assert_eq!(p("512MB"), 512 << 20);
        assert_eq!(p("512 MiB"), 512 << 20);
        assert_eq!(p("1g"), 1 << 30);
        assert_eq!(p("1.5g"), 3 << 29);
        assert_eq!(p("2t"), 2 << 40);
        assert_eq!(p("1p"), 1 << 50);
    }

    #[test]
    fn bad_sizes_name_the_flag_and_value() {
        for s in ["", "m", "12x", "-5", "1.g", "1..5m", ".5g", "5ib", "5mbb", "5 5m", "1e3"] {
            let e = parse_size("--memory", s).map(|v| format!("parsed as {}", v)).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--memory {:?}:", s)), "{:?}: {}", s, e);
            assert!(!e.contains('\n'));
        }
        let e = parse_size("--memory", "99999999999p").unwrap_err().to_string();
        assert!(e.contains("too large"), "{}", e);
    }

    #[test]
    fn memory_alone_gets_dockers_default_swap() {
        let l = mem("512m", None).unwrap();
        assert_eq!(l.memory, Some(512 << 20));
        assert_eq!(l.memory_swap, None);
        assert_eq!(file(&l, "memory.max").unwrap(), (512u64 << 20).to_string());
        assert_eq!(file(&l, "memory.swap.max").unwrap(), (512u64 << 20).to_string());
        assert_eq!(l.required_controllers(), vec!["memory"]);
    }

    #[test]
    fn memory_swap_is_the_total() {
        let l = mem("512m", Some("1g")).unwrap();
        assert_eq!(l.memory_swap, Some(1 << 30));
        assert_eq!(file(&l, "memory.swap.max").unwrap(), (512u64 << 20).to_string());
        let equal = mem("1g", Some("1g")).unwrap();
        assert_eq!(file(&equal, "memory.swap.max").unwrap(), "0");
        let unlimited = mem("1g", Some("-1")).unwrap();
        assert_eq!(unlimited.memory_swap, Some(-1));
        assert_eq!(file(&unlimited, "memory.swap.max").unwrap(), "max");
    }

    #[test]
    fn memory_swap_errors_are_dockers() {
        let e = mem("1g", Some("512m")).unwrap_err().to_string();
        assert!(e.starts_with("--memory-swap \"512m\" is less than --memory"), "{}", e);
        let e = Limits::parse(None, Some("1g"), None, None, None).unwrap_err().to_string();
        assert!(e.contains("needs --memory"), "{}", e);
        let e = mem("1g", Some("-2")).unwrap_err().to_string();
        assert!(e.starts_with("--memory-swap \"-2\":"), "{}", e);
        // -1 or 0 without a memory limit changes nothing, as in Docker.
        assert!(Limits::parse(None, Some("-1"), None, None, None).unwrap().is_empty());
        assert!(Limits::parse(None, Some("0"), None, None, None).unwrap().is_empty());
    }

    #[test]
    fn zero_means_no_limit() {
        let l = Limits::parse(Some("0"), Some("0"), Some("0"), Some(0), Some(0)).unwrap();
        assert!(l.is_empty());
        assert!(l.files().is_empty());
        assert!(l.required_controllers().is_empty());
        assert!(Limits::parse(None, None, None, None, Some(-1)).unwrap().is_empty());
        assert!(!mem("1m", None).unwrap().is_empty());
    }

    #[test]
    fn cpus_become_a_quota_per_100ms() {
        let c = |s| file(&Limits::parse(None, None, Some(s), None, None).unwrap(), "cpu.max").unwrap();
        assert_eq!(c("1.5"), "150000 100000");
        assert_eq!(c("0.5"), "50000 100000");
        assert_eq!(c("2"), "200000 100000");
        assert_eq!(c("0.01"), "1000 100000");
        assert_eq!(c("0.333"), "33300 100000");
        for bad in ["-1", "abc", "NaN", "inf", "0.001", ""] {
            let e = Limits::parse(None, None, Some(bad), None, None).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--cpus {:?}:", bad)), "{}", e);
        }
    }

    #[test]
    fn cpu_shares_map_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        let l = Limits::parse(None, None, None, Some(1024), None).unwrap();
        assert_eq!(l.files(), vec![("cpu.weight", "39".to_string())]);
        assert_eq!(l.required_controllers(), vec!["cpu"]);
        for bad in [1, 262_145] {
            let e = Limits::parse(None, None, None, Some(bad), None).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--cpu-shares {}:", bad)), "{}", e);
        }
    }

    #[test]
    fn pids_limit() {
        let l = Limits::parse(None, None, None, None, Some(100)).unwrap();
        assert_eq!(l.files(), vec![("pids.max", "100".to_string())]);
        let unlimited = Limits { pids_limit: Some(-1), ..Limits::default() };
        assert_eq!(unlimited.files(), vec![("pids.max", "max".to_string())]);
    }

    #[test]
    fn everything_at_once() {
        let l = Limits::parse(Some("1g"), Some("-1"), Some("1.5"), Some(512), Some(64)).unwrap();
        assert_eq!(
            l.files(),
            vec![
                ("memory.max", (1u64 << 30).to_string()),
                ("memory.swap.max", "max".to_string()),
                ("cpu.max", "150000 100000".to_string()),
                ("cpu.weight", "20".to_string()),
                ("pids.max", "64".to_string()),
            ]
        );
        assert_eq!(l.required_controllers(), vec!["memory", "cpu", "pids"]);
    }
}
