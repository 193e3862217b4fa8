//! Progress for long work: indicatif bars on a terminal, plain lines otherwise, nothing when quiet.
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Read;

pub enum Progress {
    Bars(MultiProgress),
    Plain,
    Quiet,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if crate::util::stderr_is_terminal() {
            Progress::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Plain
        }
    }

    pub fn message(&self, line: &str) {
        match self {
            Progress::Bars(mp) => {
                let _ = mp.println(line);
            }
            Progress::Plain => eprintln!("{}", line),
            Progress::Quiet => {}
        }
    }

    /// A progress handle for one transfer of `size` bytes; `action` ("downloading")
    /// starts its plain line.
    pub fn transfer(&self, label: &str, size: u64, action: &str) -> Transfer {
        let bar = match self {
            Progress::Bars(mp) => {
                let bar = mp.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template("{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_prefix(label.to_string());
                Some(bar)
            }
            _ => None,
        };
        if matches!(self, Progress::Plain) {
            eprintln!("{}: {} ({})", label, action, crate::util::human_size(size));
        }
        Transfer { bar, plain: matches!(self, Progress::Plain), label: label.to_string() }
    }
}

#[derive(Clone)]
pub struct Transfer {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
}

impl Transfer {
    pub fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Sets how far the transfer is (a request sent again starts over).
    pub fn set_position(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    pub fn finish(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(msg.to_string());
        } else if self.plain {
            eprintln!("{}: {}", self.label, msg);
        }
    }
}

/// Advances a transfer as bytes are read.
pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub transfer: &'a Transfer,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.advance(n as u64);
        Ok(n)
    }
}
