//! Where `husk save` writes: FILE, through a temp file beside it that is renamed over
//! it once complete, or standard output, which must not be a terminal.
use crate::util::unique_suffix;
use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub struct Output {
    out: BufWriter<Box<dyn Write>>,
    file: Option<TempFile>,
}

/// A temp file, removed unless it was renamed into place.
struct TempFile {
    tmp: PathBuf,
    dest: PathBuf,
    handle: File,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Output {
    pub fn file(dest: &Path) -> Result<Output> {
        let name = dest.file_name().with_context(|| format!("{}: not a file name", dest.display()))?;
        let tmp = dest.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), unique_suffix()));
        let handle = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", dest.display()))?;
        remove_on_signal(&tmp);
        let out = BufWriter::with_capacity(1 << 20, Box::new(handle.try_clone()?) as Box<dyn Write>);
        Ok(Output { out, file: Some(TempFile { tmp, dest: dest.to_path_buf(), handle }) })
    }

    pub fn stdout() -> Result<Output> {
        if io::stdout().is_terminal() {
            bail!("refusing to write an archive to a terminal: use -o FILE or redirect standard output");
        }
        Ok(Output { out: BufWriter::with_capacity(1 << 20, Box::new(io::stdout())), file: None })
    }

    /// Makes the archive visible: flushed, and for a file synced and renamed into place.
    pub fn commit(mut self) -> Result<()> {
        self.out.flush().context("writing the archive")?;
        if let Some(f) = &self.file {
            f.handle.sync_all().with_context(|| format!("writing {}", f.dest.display()))?;
            fs::rename(&f.tmp, &f.dest).with_context(|| format!("writing {}", f.dest.display()))?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The temp file a signal handler removes; set once, before the handlers are installed.
static SIGNAL_TEMP: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// Makes SIGINT, SIGTERM and SIGHUP remove `tmp` before they end the process as usual,
/// so that an interrupted save leaves nothing beside FILE.
fn remove_on_signal(tmp: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(tmp.as_os_str().as_bytes()) else { return };
    if SIGNAL_TEMP.set(path).is_err() {
        return;
    }
    extern "C" fn handler(sig: libc::c_int) {
        if let Some(p) = SIGNAL_TEMP.get() {
            // SAFETY: unlink, signal and raise are async-signal-safe; the path is a
            // CString that lives as long as the process and is never written again.
            unsafe {
                libc::unlink(p.as_ptr());
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only makes async-signal-safe calls; a signal
        // the process was started ignoring (a background job's SIGINT) stays ignored.
        unsafe {
            if libc::signal(sig, handler as *const () as libc::sighandler_t) == libc::SIG_IGN {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
    }
}
