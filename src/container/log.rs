//! A detached container's log: one JSON object per line, as Docker's json-file driver
//! writes it (`{"log":"hi\n","stream":"stdout","time":"2024-05-01T12:00:00.000000005Z"}`).
//! The monitor appends; `logs` reads, and follows while the container runs.
use crate::util::rfc3339;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends a container's output, a line at a time (a partial line waits for its end,
/// or for `flush`).
pub struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    pub fn open(path: &Path) -> Result<LogWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the log {}", path.display()))?;
        Ok(LogWriter { file, partial: [Vec::new(), Vec::new()] })
    }

    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        let i = stream as usize;
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            self.partial[i].extend_from_slice(&data[..=nl]);
            let line = std::mem::take(&mut self.partial[i]);
            self.emit(stream, &line);
            data = &data[nl + 1..];
        }
        self.partial[i].extend_from_slice(data);
        // A long line without a newline is written in pieces, as Docker does at 16 KiB.
        if self.partial[i].len() >= 16 * 1024 {
            let piece = std::mem::take(&mut self.partial[i]);
            self.emit(stream, &piece);
        }
    }

    /// Writes what is left of unfinished lines.
    pub fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
    }

    fn emit(&mut self, stream: Stream, bytes: &[u8]) {
        let entry = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream.name().into(),
            time: rfc3339(std::time::SystemTime::now()),
        };
        if let Ok(mut line) = serde_json::to_vec(&entry) {
            line.push(b'\n');
            // One write per entry (O_APPEND): readers never see half an entry.
            let _ = self.file.write_all(&line);
        }
    }
}

/// Reads complete entries from `offset` on; returns them and the offset after them.
pub fn read_from(path: &Path, offset: u64) -> Result<(Vec<Entry>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e).with_context(|| format!("opening the log {}", path.display())),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut pos = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // the end, or an entry still being written
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
            entries.push(e);
        }
    }
    Ok((entries, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_per_stream_and_partial_lines_wait() {
        let path = std::env::temp_dir().join(format!("husk-log-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut w = LogWriter::open(&path).unwrap();
        w.write(Stream::Stdout, b"one\ntw");
        w.write(Stream::Stderr, b"err\n");
        w.write(Stream::Stdout, b"o\nthree");
        let (entries, offset) = read_from(&path, 0).unwrap();
        let got: Vec<(&str, &str)> = entries.iter().map(|e| (e.stream.as_str(), e.log.as_str())).collect();
        assert_eq!(got, [("stdout", "one\n"), ("stderr", "err\n"), ("stdout", "two\n")]);
        w.flush();
        let (rest, _) = read_from(&path, offset).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].log, "three");
        assert!(crate::util::parse_rfc3339(&rest[0].time).is_some());
        std::fs::remove_file(&path).unwrap();
    }
}
