//! A gzip reader (RFC 1952, any number of members) that skips the CRC-32: a layer's
//! integrity is already proven twice by sha256 (the blob digest and the diff id), and
//! the CRC costs an eighth of the decompression time. ISIZE is still checked.
use flate2::{Decompress, FlushDecompress, Status};
use std::io::{self, BufRead, Read};

pub struct GzipReader<R> {
    inner: R,
    inflate: Decompress,
    state: State,
    member_out: u64,
}

#[derive(PartialEq, Eq)]
enum State {
    Header,
    Body,
    Done,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt gzip stream: {}", msg))
}

impl<R: BufRead> GzipReader<R> {
    pub fn new(inner: R) -> Self {
        GzipReader { inner, inflate: Decompress::new(false), state: State::Header, member_out: 0 }
    }

    fn read_exact_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        self.inner.read_exact(&mut buf).map_err(|_| bad("truncated header or trailer"))?;
        Ok(buf)
    }

    fn skip_zero_terminated(&mut self) -> io::Result<()> {
        let mut byte = [0u8; 1];
        loop {
            self.inner.read_exact(&mut byte).map_err(|_| bad("truncated header"))?;
            if byte[0] == 0 {
                return Ok(());
            }
        }
    }

    /// Reads a member header; false at a clean end of input.
    fn read_header(&mut self) -> io::Result<bool> {
        if self.inner.fill_buf()?.is_empty() {
            return Ok(false);
        }
        let h = self.read_exact_bytes(10)?;
        if h[0] != 0x1f || h[1] != 0x8b {
            return Err(bad("not a gzip member"));
        }
        if h[2] != 8 {
            return Err(bad("unknown compression method"));
        }
        let flags = h[3];
        if flags & 0xe0 != 0 {
            return Err(bad("reserved header flags set"));
        }
        if flags & 0x04 != 0 {
            let len = self.read_exact_bytes(2)?;
            let len = u16::from_le_bytes([len[0], len[1]]) as usize;
            self.read_exact_bytes(len)?;
        }
        if flags & 0x08 != 0 {
            self.skip_zero_terminated()?;
        }
        if flags & 0x10 != 0 {
            self.skip_zero_terminated()?;
        }
        if flags & 0x02 != 0 {
            self.read_exact_bytes(2)?;
        }
        self.inflate.reset(false);
        self.member_out = 0;
        Ok(true)
    }

    fn read_trailer(&mut self) -> io::Result<()> {
        let t = self.read_exact_bytes(8)?;
        let isize = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if isize != self.member_out as u32 {
            return Err(bad("length in the trailer does not match"));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for GzipReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Header => {
                    self.state = if self.read_header()? { State::Body } else { State::Done };
                }
                State::Body => {
                    let input = self.inner.fill_buf()?;
                    let eof = input.is_empty();
                    let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
                    let status =
                        self.inflate.decompress(input, out, FlushDecompress::None).map_err(|e| bad(&e.to_string()))?;
                    let used = (self.inflate.total_in() - in_before) as usize;
                    let produced = (self.inflate.total_out() - out_before) as usize;
                    self.inner.consume(used);
                    self.member_out += produced as u64;
                    if status == Status::StreamEnd {
                        self.read_trailer()?;
                        self.state = State::Header;
                        if produced > 0 {
                            return Ok(produced);
                        }
                        continue;
                    }
                    if produced > 0 {
                        return Ok(produced);
                    }
                    if eof {
                        return Err(bad("incomplete deflate stream"));
                    }
                    if used == 0 {
                        return Err(bad("decompressor made no progress"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzipReader::new(std::io::BufReader::with_capacity(7, data)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_single_and_multiple_members() {
        let a: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(decode(&gz(&a)).unwrap(), a);
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        assert_eq!(decode(&two).unwrap(), b"hello world");
        assert_eq!(decode(b"").unwrap(), b"");
    }

    #[test]
    fn refuses_corrupt_and_truncated_streams() {
        let good = gz(&[7u8; 5000]);
        assert!(decode(&good[..good.len() - 3]).is_err(), "truncated trailer");
        assert!(decode(&good[..good.len() / 2]).is_err(), "truncated body");
        let mut bad_len = good.clone();
        let n = bad_len.len();
        bad_len[n - 1] ^= 1;
        assert!(decode(&bad_len).is_err(), "ISIZE mismatch");
        assert!(decode(b"not gzip at all").is_err());
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        assert!(decode(&trailing).is_err(), "trailing garbage");
    }
}
