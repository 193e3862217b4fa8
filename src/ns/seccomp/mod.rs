//! Seccomp: profiles in Docker's JSON format, resolved into the OCI config's
//! `linux.seccomp` when a container is created, and compiled to a classic BPF program
//! that the container's processes install just before they exec.
//!
//! The compiler is husk's own (no libseccomp): for the native architecture it checks
//! `seccomp_data.arch` (anything else, i386 and x32 calls included, gets the default
//! action, or EPERM when that would allow it), then finds the system call number among
//! those that have rules (a binary search, about 10 comparisons for Docker's profile
//! instead of 350 one by one), and within one syscall tries
//! its rules in profile order: the first whose argument conditions all hold gives its
//! action, and none the default action. 64-bit argument comparisons are done on the
//! two 32-bit halves, as libseccomp does.
//!
//! `default.json` is husk's default profile, in Docker's format: what Docker's default
//! profile allows (everything else fails with EPERM; clone with namespace flags and
//! unshare, mount, keyctl, add_key, ... included), with clone3 failing with ENOSYS so
//! that the C library falls back to clone, whose flags the filter can see. Which rules
//! apply depends on the container's capabilities (`includes`/`excludes`), as in Docker.
use anyhow::{bail, Context, Result};
use libc::sock_filter;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;
use std::collections::BTreeMap;

#[cfg(target_arch = "x86_64")]
mod x86_64;

/// The default profile, in Docker's format.
pub const DEFAULT_PROFILE: &str = include_str!("default.json");

/// The native architecture: its AUDIT_ARCH value, its name in Docker's profiles
/// (Go's GOARCH) and its system call numbers.
type Arch = (u32, &'static str, &'static [(&'static str, u32)]);

#[cfg(target_arch = "x86_64")]
const NATIVE: Option<Arch> = Some((0xc000_003e, "amd64", x86_64::SYSCALLS));
#[cfg(not(target_arch = "x86_64"))]
const NATIVE: Option<Arch> = None;

/// A Docker seccomp profile (the fields husk reads; `architectures` and `archMap` are
/// accepted and ignored: only the native architecture is filtered, others are denied).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Profile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<serde_json::Value>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Condition {
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Where the container's filter comes from (`--security-opt seccomp=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Default,
    Unconfined,
    File(std::path::PathBuf),
}

/// The `linux.seccomp` of a container with capabilities `caps`, or None (unconfined).
/// Errors are one line, naming the profile.
pub fn for_container(choice: &Choice, caps: &[String]) -> Result<Option<LinuxSeccomp>> {
    let (name, text) = match choice {
        Choice::Unconfined => return Ok(None),
        Choice::Default => ("default".to_string(), DEFAULT_PROFILE.to_string()),
        Choice::File(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).with_context(|| format!("reading seccomp profile {}", p.display()))?,
        ),
    };
    let seccomp =
        parse(&text, caps, &kernel_release()).map_err(|e| anyhow::anyhow!("seccomp profile {}: {:#}", name, e))?;
    // Everything that can be checked before the container starts is.
    compile(&seccomp).map_err(|e| anyhow::anyhow!("seccomp profile {}: {:#}", name, e))?;
    Ok(Some(seccomp))
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// Parses a Docker profile and keeps the rules that apply to this architecture, kernel
/// and capability set, as Docker does when it writes the OCI config.
fn parse(text: &str, caps: &[String], kernel: &str) -> Result<LinuxSeccomp> {
    let p: Profile = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{}", e))?;
    let _ = (&p.architectures, &p.arch_map, &p.listener_metadata);
    if p.listener_path.is_some() || p.default_action == LinuxSeccompAction::ScmpActNotify {
        bail!("seccomp agents (listenerPath, SCMP_ACT_NOTIFY) are not supported");
    }
    let arch = NATIVE.map(|n| n.1).unwrap_or("");
    let mut syscalls = Vec::new();
    for (i, r) in p.syscalls.unwrap_or_default().into_iter().enumerate() {
        let mut names = r.names.clone().unwrap_or_default();
        names.extend(r.name.clone());
        if names.is_empty() {
            bail!("syscalls[{}] names no system call", i);
        }
        if r.action == LinuxSeccompAction::ScmpActNotify {
            bail!("syscalls[{}]: SCMP_ACT_NOTIFY (a seccomp agent) is not supported", i);
        }
        let _ = &r.comment;
        if !applies(&r, arch, caps, kernel)? {
            continue;
        }
        let mut b = LinuxSyscallBuilder::default().names(names).action(r.action);
        if let Some(e) = r.errno_ret {
            b = b.errno_ret(e);
        }
        if let Some(a) = r.args.filter(|a| !a.is_empty()) {
            if let Some(bad) = a.iter().find(|a| a.index() > 5) {
                bail!("syscalls[{}]: argument index {} (a system call has 6)", i, bad.index());
            }
            b = b.args(a);
        }
        syscalls.push(b.build()?);
    }
    let mut b = LinuxSeccompBuilder::default().default_action(p.default_action).syscalls(syscalls);
    if let Some(e) = p.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    if let Some(f) = p.flags.filter(|f| !f.is_empty()) {
        b = b.flags(f);
    }
    Ok(b.build()?)
}

/// Docker's `includes` (all must hold) and `excludes` (any one excludes).
fn applies(r: &Rule, arch: &str, caps: &[String], kernel: &str) -> Result<bool> {
    let has_cap = |c: &String| caps.iter().any(|k| k.eq_ignore_ascii_case(c));
    if let Some(inc) = &r.includes {
        if let Some(a) = inc.arches.as_ref().filter(|a| !a.is_empty()) {
            if !a.iter().any(|x| x == arch) {
                return Ok(false);
            }
        }
        if let Some(c) = &inc.caps {
            if !c.iter().all(has_cap) {
                return Ok(false);
            }
        }
        if let Some(min) = &inc.min_kernel {
            let want = version(min).with_context(|| format!("minKernel {:?}", min))?;
            if version(kernel).map(|v| v < want).unwrap_or(false) {
                return Ok(false);
            }
        }
    }
    if let Some(exc) = &r.excludes {
        if exc.arches.iter().flatten().any(|x| x == arch) || exc.caps.iter().flatten().any(has_cap) {
            return Ok(false);
        }
        if let Some(min) = &exc.min_kernel {
            let want = version(min).with_context(|| format!("minKernel {:?}", min))?;
            if version(kernel).map(|v| v >= want).unwrap_or(false) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// "6.1.0-13-amd64" -> (6, 1)
fn version(s: &str) -> Result<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|m| m.parse().ok()).context("not a kernel version")?;
    let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Ok((major, minor))
}

// Classic BPF.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JA: u16 = 0x05;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;
const MAX_INSNS: usize = 4096;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn op(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn ret(k: u32) -> sock_filter {
    op(RET_K, k, 0, 0)
}

/// The return value of an action (errno actions carry `errno`, EPERM by default).
fn action_value(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    let errno = errno.unwrap_or(libc::EPERM as u32) & 0xffff;
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => 0,
        LinuxSeccompAction::ScmpActKillProcess => 0x8000_0000,
        LinuxSeccompAction::ScmpActTrap => 0x0003_0000,
        LinuxSeccompAction::ScmpActErrno => 0x0005_0000 | errno,
        LinuxSeccompAction::ScmpActTrace => 0x7ff0_0000 | errno,
        LinuxSeccompAction::ScmpActLog => 0x7ffc_0000,
        LinuxSeccompAction::ScmpActAllow => 0x7fff_0000,
        LinuxSeccompAction::ScmpActNotify => bail!("SCMP_ACT_NOTIFY (a seccomp agent) is not supported"),
    })
}

/// A jump to "this rule does not match", patched once the rule's length is known.
const FAIL: u8 = 0xff;

/// The instructions testing one argument condition; a jump offset of FAIL leaves the
/// rule, and a jump to the block's end means the condition holds.
fn condition(a: &LinuxSeccompArg) -> Vec<sock_filter> {
    let lo_off = 16 + 8 * a.index() as u32;
    let (ld_lo, ld_hi) = (op(LD_W_ABS, lo_off, 0, 0), op(LD_W_ABS, lo_off + 4, 0, 0));
    let v = a.value();
    let (hi, lo) = ((v >> 32) as u32, v as u32);
    match a.op() {
        LinuxSeccompOperator::ScmpCmpEq => vec![ld_hi, op(JEQ_K, hi, 0, FAIL), ld_lo, op(JEQ_K, lo, 0, FAIL)],
        LinuxSeccompOperator::ScmpCmpNe => vec![ld_hi, op(JEQ_K, hi, 0, 2), ld_lo, op(JEQ_K, lo, FAIL, 0)],
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let w = a.value_two().unwrap_or(0);
            vec![
                ld_hi,
                op(AND_K, hi, 0, 0),
                op(JEQ_K, (w >> 32) as u32, 0, FAIL),
                ld_lo,
                op(AND_K, lo, 0, 0),
                op(JEQ_K, w as u32, 0, FAIL),
            ]
        }
        LinuxSeccompOperator::ScmpCmpGt => {
            vec![ld_hi, op(JGT_K, hi, 3, 0), op(JEQ_K, hi, 0, FAIL), ld_lo, op(JGT_K, lo, 0, FAIL)]
        }
        LinuxSeccompOperator::ScmpCmpGe => {
            vec![ld_hi, op(JGT_K, hi, 3, 0), op(JEQ_K, hi, 0, FAIL), ld_lo, op(JGE_K, lo, 0, FAIL)]
        }
        LinuxSeccompOperator::ScmpCmpLt => {
            vec![ld_hi, op(JGT_K, hi, FAIL, 0), op(JEQ_K, hi, 0, 2), ld_lo, op(JGE_K, lo, FAIL, 0)]
        }
        LinuxSeccompOperator::ScmpCmpLe => {
            vec![ld_hi, op(JGT_K, hi, FAIL, 0), op(JEQ_K, hi, 0, 2), ld_lo, op(JGT_K, lo, FAIL, 0)]
        }
    }
}

/// One rule: its conditions, then its action; a failed condition jumps past it.
fn rule(s: &LinuxSyscall) -> Result<Vec<sock_filter>> {
    let mut out: Vec<sock_filter> = Vec::new();
    for a in s.args().iter().flatten() {
        out.extend(condition(a));
    }
    out.push(ret(action_value(s.action(), s.errno_ret())?));
    let len = out.len();
    for (i, ins) in out.iter_mut().enumerate() {
        let to_end = u8::try_from(len - (i + 1)).map_err(|_| anyhow::anyhow!("a rule has too many conditions"))?;
        if ins.code != RET_K && ins.code != LD_W_ABS && ins.code != AND_K {
            if ins.jt == FAIL {
                ins.jt = to_end;
            }
            if ins.jf == FAIL {
                ins.jf = to_end;
            }
        }
    }
    Ok(out)
}

/// The BPF program of `seccomp` for the native architecture. System calls the
/// architecture does not have are left out, as libseccomp does.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Vec<sock_filter>> {
    let Some((audit_arch, _, table)) = NATIVE else {
        bail!("seccomp filters are only supported on x86_64 (use --security-opt seccomp=unconfined)");
    };
    let default = action_value(seccomp.default_action(), seccomp.default_errno_ret())?;
    // Calls of another ABI never get more than the default, and never "allow".
    let foreign = if default >= 0x7ffc_0000 { 0x0005_0000 | libc::EPERM as u32 } else { default };
    let numbers: BTreeMap<&str, u32> = table.iter().copied().collect();
    // Per system call: its rules, and whether one of them always applies (then the
    // rules after it can never apply, and the default is never reached).
    let mut bodies: BTreeMap<u32, (Vec<sock_filter>, bool)> = BTreeMap::new();
    for s in seccomp.syscalls().iter().flatten() {
        let r = rule(s)?;
        let always = s.args().iter().flatten().next().is_none();
        for n in s.names() {
            if let Some(nr) = numbers.get(n.as_str()) {
                let (body, complete) = bodies.entry(*nr).or_default();
                if !*complete {
                    body.extend_from_slice(&r);
                    *complete = always;
                }
            }
        }
    }
    let mut prog = vec![
        op(LD_W_ABS, 4, 0, 0),
        op(JEQ_K, audit_arch, 1, 0),
        ret(foreign),
        op(LD_W_ABS, 0, 0, 0),
        op(JGE_K, X32_SYSCALL_BIT, 0, 1),
        ret(foreign),
    ];
    let groups = bodies.into_iter().map(|(nr, (mut body, complete))| {
        // Every rule ends in a return: past the last, the default action.
        if !complete {
            body.push(ret(default));
        }
        (nr, body)
    });
    prog.extend(dispatch(&ranges(groups, default)));
    if prog.len() > MAX_INSNS {
        bail!("the filter has {} instructions, more than the kernel's {}", prog.len(), MAX_INSNS);
    }
    Ok(prog)
}

/// The system call numbers from 0 up as ranges (first number, code): consecutive
/// numbers with the same code share one range, numbers no rule names get the default.
/// Docker's allow list is mostly long runs, so this keeps the program small, which is
/// what the kernel's checks and JIT at every container start are paid by.
fn ranges(groups: impl Iterator<Item = (u32, Vec<sock_filter>)>, default: u32) -> Vec<(u32, Vec<sock_filter>)> {
    fn push(out: &mut Vec<(u32, Vec<sock_filter>)>, first: u32, code: Vec<sock_filter>) {
        let key = |c: &[sock_filter]| c.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect::<Vec<_>>();
        if out.last().is_some_and(|(_, last)| key(last) == key(&code)) {
            return;
        }
        out.push((first, code));
    }
    let mut out = Vec::new();
    let mut next = 0;
    for (nr, code) in groups {
        if nr > next {
            push(&mut out, next, vec![ret(default)]);
        }
        push(&mut out, nr, code);
        next = nr + 1;
    }
    push(&mut out, next, vec![ret(default)]);
    out
}

/// Finds the range of the system call (in the accumulator) by binary search; every
/// path ends in its range's code.
fn dispatch(ranges: &[(u32, Vec<sock_filter>)]) -> Vec<sock_filter> {
    if let [(_, code)] = ranges {
        return code.clone();
    }
    let mid = ranges.len() / 2;
    let (low, high) = (dispatch(&ranges[..mid]), dispatch(&ranges[mid..]));
    // nr >= the first of the high half: over the low half
    let mut out = match u8::try_from(low.len()) {
        Ok(n) => vec![op(JGE_K, ranges[mid].0, n, 0)],
        Err(_) => vec![op(JGE_K, ranges[mid].0, 0, 1), op(JA, low.len() as u32, 0, 0)],
    };
    out.extend(low);
    out.extend(high);
    out
}

/// The filter flags of the spec, as seccomp(2) takes them.
pub fn flags(seccomp: &LinuxSeccomp) -> u32 {
    seccomp
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
        })
        .fold(0, |a, b| a | b)
}

/// The filter a container process (run, start, exec) installs, and when.
///
/// seccomp(2) takes a filter from a process that has no_new_privs set or CAP_SYS_ADMIN
/// in its user namespace. Docker does not set no_new_privs by default (setuid programs
/// keep working in the container), so without `no-new-privileges` the filter goes in
/// while the process still holds every capability of the container's user namespace:
/// after the bounding set and supplementary groups, before setresgid/setresuid (which
/// take all capabilities from a non-root user, -u 1000) and before the effective set
/// is cut to the container's (where CAP_SYS_ADMIN is not, even for root). What husk
/// does after that (setresgid, setresuid, capset, prctl, chdir, close_range, fork for
/// --init, execve) the default profile allows; a custom profile that denies one of
/// them makes the start fail with that step's error. With `no-new-privileges`, which
/// makes seccomp(2) need nothing else, it goes in last, just before the exec (and the
/// fork of --init: the init is filtered as well as the command), as runc does.
pub struct Filter {
    prog: Option<(Vec<sock_filter>, u32)>,
    no_new_privileges: bool,
}

impl Filter {
    /// Compiles the spec's `linux.seccomp` (no filter when it has none).
    pub fn of(spec: &oci_spec::runtime::Spec) -> Result<Filter> {
        let no_new_privileges = spec.process().as_ref().and_then(|p| p.no_new_privileges()).unwrap_or(false);
        let prog = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            None => None,
            Some(s) => Some((compile(s)?, flags(s))),
        };
        Ok(Filter { prog, no_new_privileges })
    }

    /// Called with all capabilities of the user namespace, before the id switch.
    pub fn before_id_switch(&self) -> Result<()> {
        match &self.prog {
            Some((p, f)) if !self.no_new_privileges => install(p, *f),
            _ => Ok(()),
        }
    }

    /// Called last before the exec (and the fork of --init).
    pub fn before_exec(&self) -> Result<()> {
        if !self.no_new_privileges {
            return Ok(());
        }
        nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
        match &self.prog {
            Some((p, f)) => install(p, *f),
            None => Ok(()),
        }
    }
}

/// Installs `prog` in this process (and so in what it execs and forks). Needs
/// no_new_privs or CAP_SYS_ADMIN in the process's user namespace.
pub fn install(prog: &[sock_filter], flags: u32) -> Result<()> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut sock_filter };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(libc::SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, flags, &fprog)
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("installing the seccomp filter");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
