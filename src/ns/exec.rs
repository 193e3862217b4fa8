//! Finding the command inside the container, with the container's own PATH, and the
//! exit codes Docker uses when it cannot be run (127 not found, 126 not executable).
use nix::errno::Errno;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const NOT_FOUND: i32 = 127;
pub const NOT_EXECUTABLE: i32 = 126;

/// Why the command could not be started, with the exit code to report.
pub struct ExecError {
    pub code: i32,
    pub message: String,
}

fn env_path(env: &[String]) -> String {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string()
}

/// Resolves `cmd` like execvp would, but with the container's PATH.
pub fn find(cmd: &str, env: &[String]) -> Result<PathBuf, ExecError> {
    if cmd.is_empty() {
        return Err(ExecError { code: NOT_FOUND, message: "no command given".into() });
    }
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    let mut denied = None;
    for dir in env_path(env).split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(cmd);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
            denied.get_or_insert(p);
        }
    }
    match denied {
        Some(p) => Ok(p),
        None => {
            Err(ExecError { code: NOT_FOUND, message: format!("exec: {:?}: executable file not found in $PATH", cmd) })
        }
    }
}

/// Checks, before a container is made, that the kernel will take this command line and
/// environment: no string with a NUL byte (it would end the string there), none longer
/// than MAX_ARG_STRLEN, and all of them together (with their pointers and the program's
/// path) within a quarter of the stack size limit, as execve(2) counts. An image's
/// config can ask for megabytes; refused here it is one clear line, not an exec failure.
pub fn check_limits(args: &[String], env: &[String]) -> anyhow::Result<()> {
    // SAFETY: sysconf and getrlimit only read process-wide values.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let max_string = 32 * page;
    let stack = {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid out-parameter.
        if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } == 0 {
            lim.rlim_cur
        } else {
            8 << 20
        }
    };
    // fs/exec.c: at most 3/4 of _STK_LIM (8 MiB), at most a quarter of the stack
    // limit, at least ARG_MAX (32 pages).
    let limit = (6u64 << 20).min(stack / 4).max(32 * page);
    let name = |e: &str| e.split('=').next().unwrap_or(e).to_string();
    for (i, a) in args.iter().enumerate() {
        if a.contains('\0') {
            anyhow::bail!("argument {} of the command ({:?}) contains a NUL byte; refused", i, a);
        }
        if a.len() as u64 + 1 > max_string {
            anyhow::bail!(
                "argument {} of the command is too long: {} bytes, the kernel takes at most {} per string; refused",
                i,
                a.len(),
                max_string
            );
        }
    }
    for e in env {
        if e.contains('\0') {
            anyhow::bail!("environment variable {} contains a NUL byte; refused", name(e));
        }
        if e.len() as u64 + 1 > max_string {
            anyhow::bail!(
                "environment variable {} is too long: {} bytes, the kernel takes at most {} per string; refused",
                name(e),
                e.len(),
                max_string
            );
        }
    }
    let strings: u64 = args.iter().chain(env).map(|s| s.len() as u64 + 1).sum();
    // the pointers, and the program's path (up to PATH_MAX) copied beside them
    let total = strings + (args.len() + env.len()) as u64 * 8 + 4096;
    if total > limit {
        anyhow::bail!(
            "the command's arguments and environment are too long together: {} bytes, the kernel takes at most {} \
             (a quarter of the stack size limit); refused",
            total,
            limit
        );
    }
    Ok(())
}

/// Replaces the process with the command; returns only on failure.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> ExecError {
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let cpath = to_c(&path.to_string_lossy());
    let cargs: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let cenv: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    let err = match nix::unistd::execve(&cpath, &cargs, &cenv) {
        Err(e) => e,
        Ok(_) => unreachable!(),
    };
    let code = match err {
        Errno::ENOENT | Errno::ENOTDIR => NOT_FOUND,
        _ => NOT_EXECUTABLE,
    };
    let what = match err {
        Errno::ENOENT => "no such file or directory".to_string(),
        Errno::EACCES => "permission denied".to_string(),
        Errno::ENOEXEC => "exec format error".to_string(),
        other => other.desc().to_lowercase(),
    };
    ExecError { code, message: format!("exec {}: {}", path.display(), what) }
}
