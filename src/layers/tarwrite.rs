//! A deterministic tar writer in the shape Go's archive/tar gives Docker's layers: ustar
//! headers (uid/gid numeric, no user or group names, mtime in whole seconds, no atime or
//! ctime), a PAX header first when a name, link target, size, id or time does not fit
//! ustar or an entry has xattrs, and two zero blocks at the end (no record padding).
use std::io::{self, Read, Write};

const BLOCK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Fifo,
    CharDevice,
    BlockDevice,
}

impl Kind {
    fn flag(self) -> u8 {
        match self {
            Kind::File => b'0',
            Kind::HardLink => b'1',
            Kind::Symlink => b'2',
            Kind::CharDevice => b'3',
            Kind::BlockDevice => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        }
    }
}

/// One member's header. `name` is relative, without a leading `/` or `./`; a directory's
/// gets a trailing `/` here.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub name: &'a [u8],
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Data size (regular files only).
    pub size: u64,
    /// Symlink target or hard link's first name.
    pub link: &'a [u8],
    pub device: (u32, u32),
    /// Written as `SCHILY.xattr.NAME` PAX records, in this order.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<'a> Entry<'a> {
    pub fn new(name: &'a [u8], kind: Kind) -> Entry<'a> {
        Entry { name, kind, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 0, link: b"", device: (0, 0), xattrs: &[] }
    }
}

pub struct TarWriter<W: Write> {
    out: W,
    /// Data bytes still owed by the last file entry.
    owed: u64,
}

const MAX_OCTAL_8: u64 = 0o7777777;
const MAX_OCTAL_12: u64 = 0o77777777777;

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter { out, owed: 0 }
    }

    /// Writes a header; a regular file's data must follow through `data`.
    pub fn entry(&mut self, e: &Entry) -> io::Result<()> {
        debug_assert_eq!(self.owed, 0, "data of the previous file not written");
        let mut name = e.name.to_vec();
        if e.kind == Kind::Dir && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let split = split_ustar_name(&name);
        if split.is_none() {
            pax.push((b"path".to_vec(), name.clone()));
        }
        if e.link.len() > 100 || !e.link.is_ascii() {
            pax.push((b"linkpath".to_vec(), e.link.to_vec()));
        }
        let size = if e.kind == Kind::File { e.size } else { 0 };
        if size > MAX_OCTAL_12 {
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
        }
        if e.uid > MAX_OCTAL_8 {
            pax.push((b"uid".to_vec(), e.uid.to_string().into_bytes()));
        }
        if e.gid > MAX_OCTAL_8 {
            pax.push((b"gid".to_vec(), e.gid.to_string().into_bytes()));
        }
        if e.mtime < 0 || e.mtime as u64 > MAX_OCTAL_12 {
            pax.push((b"mtime".to_vec(), e.mtime.to_string().into_bytes()));
        }
        for (k, v) in e.xattrs {
            pax.push(([b"SCHILY.xattr.".as_slice(), k].concat(), v.clone()));
        }
        if !pax.is_empty() {
            self.pax_header(&name, &pax)?;
        }
        let mut h = [0u8; BLOCK];
        match split {
            Some((prefix, rest)) => {
                h[345..345 + prefix.len()].copy_from_slice(prefix);
                h[..rest.len()].copy_from_slice(rest);
            }
            None => {
                let ascii = to_ascii(&name);
                let n = ascii.len().min(100);
                h[..n].copy_from_slice(&ascii[..n]);
            }
        }
        octal(&mut h[100..108], (e.mode & 0o7777) as u64);
        octal(&mut h[108..116], e.uid.min(MAX_OCTAL_8));
        octal(&mut h[116..124], e.gid.min(MAX_OCTAL_8));
        octal(&mut h[124..136], size.min(MAX_OCTAL_12));
        octal(&mut h[136..148], e.mtime.clamp(0, MAX_OCTAL_12 as i64) as u64);
        h[156] = e.kind.flag();
        let link = to_ascii(e.link);
        let n = link.len().min(100);
        h[157..157 + n].copy_from_slice(&link[..n]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if matches!(e.kind, Kind::CharDevice | Kind::BlockDevice) {
            octal(&mut h[329..337], e.device.0 as u64);
            octal(&mut h[337..345], e.device.1 as u64);
        }
        finish_header(&mut h);
        self.out.write_all(&h)?;
        self.owed = size;
        Ok(())
    }

    /// Copies exactly the announced size from `data`: a source that grew is cut at that
    /// size; one that shrank is an error (the header already promised more).
    pub fn data(&mut self, data: impl Read) -> io::Result<()> {
        let want = self.owed;
        let copied = io::copy(&mut data.take(want), &mut self.out)?;
        if copied != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file shrank while being archived ({} of {} bytes)", copied, want),
            ));
        }
        self.owed = 0;
        self.pad(want)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn pax_header(&mut self, name: &[u8], records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            body.extend_from_slice(&pax_record(k, v));
        }
        let trimmed = name.strip_suffix(b"/").unwrap_or(name);
        let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
            None => (&b""[..], trimmed),
        };
        let pax_name = [dir, b"PaxHeaders.0/", base].concat();
        let pax_name = to_ascii(&pax_name);
        let mut h = [0u8; BLOCK];
        let n = pax_name.len().min(100);
        h[..n].copy_from_slice(&pax_name[..n]);
        octal(&mut h[100..108], 0);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], body.len() as u64);
        octal(&mut h[136..148], 0);
        h[156] = b'x';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        finish_header(&mut h);
        self.out.write_all(&h)?;
        self.out.write_all(&body)?;
        self.pad(body.len() as u64)
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// `len key=value\n`, where len counts the whole record, its own digits included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + base.to_string().len();
    if len.to_string().len() + base != len {
        len = base + len.to_string().len();
    }
    let mut r = format!("{} ", len).into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// (prefix, name) when `name` fits ustar's two fields (ASCII only, as Go requires).
fn split_ustar_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if !name.is_ascii() {
        return None;
    }
    if name.len() <= 100 {
        return Some((b"", name));
    }
    // The prefix ends at a slash, which is not stored; the rest must fit 100 bytes.
    let limit = name.len().min(156);
    let i = name[..limit].iter().rposition(|&b| b == b'/')?;
    let (prefix, rest) = (&name[..i], &name[i + 1..]);
    (i > 0 && rest.len() <= 100 && !rest.is_empty()).then_some((prefix, rest))
}

fn to_ascii(b: &[u8]) -> Vec<u8> {
    b.iter().copied().filter(u8::is_ascii).collect()
}

/// Zero-padded octal, NUL-terminated, filling the field.
fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{:0w$o}", v, w = w);
    field[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
    field[w] = 0;
}

fn finish_header(h: &mut [u8; BLOCK]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{:06o}\0 ", sum);
    h[148..156].copy_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// name, type, data, link target, xattrs
    type Member = (String, tar::EntryType, Vec<u8>, Option<String>, Vec<(String, Vec<u8>)>);

    fn read_back(data: &[u8]) -> Vec<Member> {
        let mut a = tar::Archive::new(data);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let link = e.link_name_bytes().map(|l| String::from_utf8(l.into_owned()).unwrap());
                let ty = e.header().entry_type();
                let xattrs = e
                    .pax_extensions()
                    .unwrap()
                    .into_iter()
                    .flatten()
                    .map(|x| x.unwrap())
                    .filter(|x| x.key_bytes().starts_with(b"SCHILY.xattr."))
                    .map(|x| (x.key().unwrap()[13..].to_string(), x.value_bytes().to_vec()))
                    .collect();
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (name, ty, body, link, xattrs)
            })
            .collect()
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for n in [0usize, 1, 5, 90, 94, 95, 96, 97, 990, 995, 996, 997, 5000] {
            let v = vec![b'x'; n];
            let r = pax_record(b"path", &v);
            let len: usize =
                std::str::from_utf8(&r[..r.iter().position(|&b| b == b' ').unwrap()]).unwrap().parse().unwrap();
            assert_eq!(len, r.len(), "value of {} bytes", n);
        }
    }

    #[test]
    fn entries_read_back_with_long_names_links_and_xattrs() {
        let long_dir = "d".repeat(120);
        let long_file = format!("{}/{}", long_dir, "f".repeat(150));
        let xattrs = vec![(b"user.k".to_vec(), b"\x00\x01bin".to_vec())];
        let mut w = TarWriter::new(Vec::new());
        w.entry(&Entry { mode: 0o755, mtime: 1_700_000_000, ..Entry::new(long_dir.as_bytes(), Kind::Dir) }).unwrap();
        let mut f = Entry::new(long_file.as_bytes(), Kind::File);
        f.size = 5;
        f.xattrs = &xattrs;
        f.uid = 5_000_000;
        w.entry(&f).unwrap();
        w.data(&b"hello world"[..]).unwrap();
        let target = "t".repeat(200);
        w.entry(&Entry { link: target.as_bytes(), ..Entry::new("é-link".as_bytes(), Kind::Symlink) }).unwrap();
        w.entry(&Entry { link: long_file.as_bytes(), ..Entry::new(b"hard", Kind::HardLink) }).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 512, 0);
        assert!(out.ends_with(&[0u8; 1024]));
        let got = read_back(&out);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].0, format!("{}/", long_dir));
        assert_eq!(got[0].1, tar::EntryType::Directory);
        assert_eq!(got[1].0, long_file);
        assert_eq!(got[1].2, b"hello");
        assert_eq!(got[1].4, vec![("user.k".to_string(), b"\x00\x01bin".to_vec())]);
        assert_eq!(got[2].0, "é-link");
        assert_eq!(got[2].3.as_deref(), Some(target.as_str()));
        assert_eq!(got[3].1, tar::EntryType::Link);
        assert_eq!(got[3].3.as_deref(), Some(long_file.as_str()));
        let mut a = tar::Archive::new(&out[..]);
        let second = a.entries().unwrap().nth(1).unwrap().unwrap();
        assert_eq!(second.header().uid().unwrap(), 5_000_000, "a large uid travels in PAX");
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let mut w = TarWriter::new(Vec::new());
        let mut f = Entry::new(b"f", Kind::File);
        f.size = 10;
        w.entry(&f).unwrap();
        assert!(w.data(&b"short"[..]).is_err());
    }

    #[test]
    fn output_is_deterministic() {
        let make = || {
            let mut w = TarWriter::new(Vec::new());
            w.entry(&Entry { mtime: 42, ..Entry::new(b"a", Kind::Dir) }).unwrap();
            w.finish().unwrap()
        };
        assert_eq!(make(), make());
    }
}
