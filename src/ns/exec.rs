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
