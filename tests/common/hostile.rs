//! Hostile images for tests/hostile_layers.rs and tests/hostile_configs.rs.
//!
//! * `Tar` writes tar archives header by header: every field (name, prefix, link name,
//!   mode, ids, declared size, type, device numbers) is the test's to choose, and PAX
//!   records and GNU long names are written as raw members, so that `..`, absolute
//!   names, NUL bytes and sizes that lie can all be expressed.
//! * `Layout` writes an OCI image layout by hand (blobs, manifests, index.json) around
//!   such layers, on top of the fixtures' busybox layer, and pushes every image with
//!   skopeo to a registry: husk itself never makes them.
//! * `Victim` is a host directory the images aim at (writable by the test users, with
//!   files each of them owns), `bait_home` puts files in a user's HOME, and `snapshot`
//!   records every detail of a tree (type, mode, owner, size, content, link target,
//!   mtime, xattrs) so that any change outside husk's store shows.
#![allow(dead_code)]

use super::fake_registry::{host_arch, sha256, MT_CONFIG, MT_GZIP, MT_MANIFEST};
use super::{fixtures, Husk, Registry, TempDir, TestUser};
use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const BLOCK: usize = 512;
/// The mtime of every entry unless a test says otherwise.
pub const MTIME: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------
// tar archives, header by header
// ---------------------------------------------------------------------------

/// One tar header; `Header::block` lays it out (ustar format, checksum computed).
#[derive(Clone, Debug)]
pub struct Header {
    pub name: Vec<u8>,
    /// The ustar prefix field (joined to the name with a `/` by readers).
    pub prefix: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The size the header declares (whatever data follows).
    pub size: u64,
    pub mtime: u64,
    pub typ: u8,
    pub major: u32,
    pub minor: u32,
    /// Raw bytes written over the numeric fields after they are laid out:
    /// (offset in the header, bytes), for garbage that no number can express.
    pub patches: Vec<(usize, Vec<u8>)>,
}

impl Header {
    pub fn new(typ: u8, name: &[u8]) -> Header {
        Header {
            name: name.to_vec(),
            prefix: Vec::new(),
            link: Vec::new(),
            mode: if typ == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: MTIME,
            typ,
            major: 0,
            minor: 0,
            patches: Vec::new(),
        }
    }

    /// A numeric field: octal when it fits, else GNU base-256 (high bit set).
    fn number(field: &mut [u8], v: u64) {
        let digits = field.len() - 1;
        let s = format!("{:0width$o}", v, width = digits);
        if s.len() <= digits {
            field[..digits].copy_from_slice(s.as_bytes());
            field[digits] = 0;
        } else {
            field.fill(0);
            let be = v.to_be_bytes();
            let n = field.len();
            field[n - 8..].copy_from_slice(&be);
            field[0] |= 0x80;
        }
    }

    fn text(field: &mut [u8], v: &[u8]) {
        assert!(v.len() <= field.len(), "{:?} does not fit a {}-byte field", String::from_utf8_lossy(v), field.len());
        field.fill(0);
        field[..v.len()].copy_from_slice(v);
    }

    pub fn block(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        Self::text(&mut b[0..100], &self.name);
        Self::number(&mut b[100..108], u64::from(self.mode));
        Self::number(&mut b[108..116], self.uid);
        Self::number(&mut b[116..124], self.gid);
        Self::number(&mut b[124..136], self.size);
        Self::number(&mut b[136..148], self.mtime);
        b[156] = self.typ;
        Self::text(&mut b[157..257], &self.link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        Self::text(&mut b[265..297], b"root");
        Self::text(&mut b[297..329], b"root");
        Self::number(&mut b[329..337], u64::from(self.major));
        Self::number(&mut b[337..345], u64::from(self.minor));
        Self::text(&mut b[345..500], &self.prefix);
        for (off, bytes) in &self.patches {
            b[*off..*off + bytes.len()].copy_from_slice(bytes);
        }
        b[148..156].fill(b' ');
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        let ck = format!("{:06o}\0 ", sum);
        b[148..156].copy_from_slice(ck.as_bytes());
        b
    }
}

/// A tar archive written member by member.
#[derive(Default)]
pub struct Tar {
    pub buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// A header followed by `data` (whatever size the header declares) and padding.
    pub fn raw(&mut self, h: &Header, data: &[u8]) -> &mut Tar {
        self.buf.extend_from_slice(&h.block());
        self.buf.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A header whose size is the data's.
    pub fn entry(&mut self, mut h: Header, data: &[u8]) -> &mut Tar {
        h.size = data.len() as u64;
        self.raw(&h, data)
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.entry(Header::new(b'0', name.as_bytes()), data)
    }

    pub fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Tar {
        let mut h = Header::new(b'0', name.as_bytes());
        h.mode = mode;
        self.entry(h, data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Tar {
        self.entry(Header::new(b'5', name.as_bytes()), b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        let mut h = Header::new(b'2', name.as_bytes());
        h.mode = 0o777;
        h.link = target.as_bytes().to_vec();
        self.entry(h, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        let mut h = Header::new(b'1', name.as_bytes());
        h.link = target.as_bytes().to_vec();
        self.entry(h, b"")
    }

    /// A device node: `typ` b'3' (character) or b'4' (block).
    pub fn device(&mut self, name: &str, typ: u8, major: u32, minor: u32) -> &mut Tar {
        let mut h = Header::new(typ, name.as_bytes());
        h.mode = 0o666;
        h.major = major;
        h.minor = minor;
        self.entry(h, b"")
    }

    /// A PAX extended header ('x') for the next member.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let data = pax_records(records);
        self.entry(Header::new(b'x', b"././@PaxHeader"), &data)
    }

    /// A GNU long name ('L') or long link name ('K') for the next member.
    pub fn gnu_long(&mut self, typ: u8, value: &[u8]) -> &mut Tar {
        let mut v = value.to_vec();
        v.push(0);
        self.entry(Header::new(typ, b"././@LongLink"), &v)
    }

    /// The archive with its end-of-archive marker (two zero blocks).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    /// The archive as written, without an end-of-archive marker.
    pub fn unfinished(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// A finished archive of what `build` writes.
pub fn tar(build: impl FnOnce(&mut Tar)) -> Vec<u8> {
    let mut t = Tar::new();
    build(&mut t);
    t.finish()
}

/// PAX records: "LEN key=value\n", LEN counting itself.
pub fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let body = k.len() + 1 + v.len() + 1;
        let mut len = body + 1;
        while format!("{} ", len).len() + body != len {
            len = format!("{} ", len).len() + body;
        }
        out.extend_from_slice(format!("{} {}=", len, k).as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// gzip of `data` (one member).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A gzip layer too big to hold in memory, made of `parts` (bytes, times repeated) in
/// order: one gzip member per distinct part (by address), repeated, since gzip readers
/// must accept concatenated members. A 10 GiB layer of zeros costs ~10 MB.
///
/// Its diff id is NOT computed: hashing gigabytes would take the test minutes on a
/// busy machine. It is a digest no stream has, which husk cannot tell before the end
/// of the stream; the layers made this way must be refused long before that, for the
/// cause the test names.
pub fn gzip_parts(parts: &[(&[u8], u64)]) -> LayerBlob {
    let mut members: std::collections::HashMap<(*const u8, usize), Vec<u8>> = std::collections::HashMap::new();
    let mut blob = Vec::new();
    for (part, count) in parts {
        let member = members.entry((part.as_ptr(), part.len())).or_insert_with(|| {
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(part).unwrap();
            gz.finish().unwrap()
        });
        for _ in 0..*count {
            blob.extend_from_slice(member);
        }
    }
    let len: u64 = parts.iter().map(|(p, n)| p.len() as u64 * n).sum();
    LayerBlob {
        media_type: MT_GZIP.into(),
        bytes: blob,
        diff_id: sha256(format!("not computed: a stream of {len} bytes").as_bytes()),
    }
}

// ---------------------------------------------------------------------------
// OCI images, written by hand and pushed with skopeo
// ---------------------------------------------------------------------------

/// A layer as stored in the registry.
#[derive(Clone)]
pub struct LayerBlob {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub diff_id: String,
}

impl LayerBlob {
    /// A gzip layer of this tar.
    pub fn gzip(tar: &[u8]) -> LayerBlob {
        LayerBlob { media_type: MT_GZIP.into(), bytes: gzip(tar), diff_id: sha256(tar) }
    }
}

/// The fixtures' busybox layer: its descriptor in the fixture layout and its diff id.
pub struct Base {
    pub descriptor: Value,
    pub diff_id: String,
    pub blob: PathBuf,
    /// The busybox image's config section (Env with PATH, Cmd).
    pub config: Value,
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    layout.join("blobs").join(alg).join(hex)
}

pub fn busybox_base() -> Base {
    let layout = fixtures();
    let index = read_json(&layout.join("index.json"));
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "busybox")
        .expect("the fixture layout has busybox")
        .clone();
    let manifest = read_json(&blob_path(layout, desc["digest"].as_str().unwrap()));
    let config = read_json(&blob_path(layout, manifest["config"]["digest"].as_str().unwrap()));
    let layer = manifest["layers"][0].clone();
    Base {
        blob: blob_path(layout, layer["digest"].as_str().unwrap()),
        descriptor: layer,
        diff_id: config["rootfs"]["diff_ids"][0].as_str().unwrap().to_string(),
        config: config["config"].clone(),
    }
}

/// One image: hostile layers (on busybox's unless `base` is false) and the config
/// section; `raw_config` replaces the whole config blob when set.
pub struct ImageSpec {
    pub tag: String,
    pub base: bool,
    pub layers: Vec<LayerBlob>,
    pub config: Value,
    pub raw_config: Option<Vec<u8>>,
}

impl ImageSpec {
    /// Busybox plus `layers`, with busybox's own config section.
    pub fn on_busybox(tag: &str, layers: Vec<LayerBlob>) -> ImageSpec {
        ImageSpec { tag: tag.into(), base: true, layers, config: busybox_base().config, raw_config: None }
    }
}

/// An OCI image layout in a temp dir, written blob by blob.
pub struct Layout {
    dir: TempDir,
    manifests: Vec<Value>,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    pub fn new() -> Layout {
        let dir = TempDir::new("hostile-layout");
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir, manifests: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn put(&self, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        fs::write(blob_path(self.path(), &digest), bytes).unwrap();
        digest
    }

    /// Adds an image under its tag; returns the manifest digest.
    pub fn add(&mut self, img: &ImageSpec) -> String {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        if img.base {
            let base = busybox_base();
            let dst = blob_path(self.path(), base.descriptor["digest"].as_str().unwrap());
            if !dst.exists() {
                fs::copy(&base.blob, &dst).unwrap();
            }
            layers.push(base.descriptor.clone());
            diff_ids.push(base.diff_id.clone());
        }
        for l in &img.layers {
            let digest = self.put(&l.bytes);
            layers.push(json!({"mediaType": l.media_type, "digest": digest, "size": l.bytes.len()}));
            diff_ids.push(l.diff_id.clone());
        }
        let config = match &img.raw_config {
            Some(raw) => raw.clone(),
            None => serde_json::to_vec(&json!({
                "created": "2024-01-01T00:00:00Z",
                "architecture": host_arch(),
                "os": "linux",
                "config": img.config,
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": diff_ids.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "husk tests/common/hostile.rs"})).collect::<Vec<_>>(),
            }))
            .unwrap(),
        };
        let config_digest = self.put(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        let digest = self.put(&manifest);
        self.manifests.push(json!({
            "mediaType": MT_MANIFEST, "digest": digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": img.tag},
        }));
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.manifests});
        fs::write(self.path().join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        digest
    }

    /// `skopeo copy --preserve-digests` of every tag to `REGISTRY/REPO:TAG`, a few at a time.
    pub fn push_all(&self, reg: &Registry, repo: &str) {
        let tags: Vec<String> = self
            .manifests
            .iter()
            .map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string())
            .collect();
        // The first push uploads the blobs the images share (busybox's layer); pushed
        // at once, they race in the registry.
        let (first, rest) = tags.split_first().expect("no images");
        self.push(reg, repo, std::slice::from_ref(first));
        for chunk in rest.chunks(4) {
            self.push(reg, repo, chunk);
        }
    }

    /// Pushes `tags` at once, each by its own skopeo.
    fn push(&self, reg: &Registry, repo: &str, tags: &[String]) {
        let children: Vec<(&String, std::process::Child)> = tags
            .iter()
            .map(|tag| {
                let child = Command::new("skopeo")
                    .args(["--insecure-policy", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"])
                    .arg(format!("oci:{}:{}", self.path().display(), tag))
                    .arg(format!("docker://{}/{}:{}", reg.host(), repo, tag))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("cannot run skopeo");
                (tag, child)
            })
            .collect();
        for (tag, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "skopeo could not push {tag}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The cases of a test file, made against a victim that lives as long as the process,
/// with their images pushed.
pub struct Pushed<C> {
    pub victim: &'static Victim,
    pub cases: Vec<C>,
}

impl<C> Pushed<C> {
    /// Makes the victim and the cases aimed at it, and pushes each case's image to `repo`.
    pub fn new(repo: &str, cases: impl FnOnce(&Victim) -> Vec<C>, image: impl Fn(&C) -> ImageSpec) -> Pushed<C> {
        let victim = Victim::for_process();
        let cases = cases(victim);
        push_images(repo, cases.iter().map(image));
        Pushed { victim, cases }
    }
}

/// A husk for `user` whose HOME has bait in it and whose store holds busybox.
pub fn husk_for_cases(user: TestUser) -> Husk {
    let h = super::husk_with_busybox(user);
    bait_home(&h);
    h
}

/// Writes `images` into a new layout and pushes them to `repo` in the shared registry.
pub fn push_images(repo: &str, images: impl IntoIterator<Item = ImageSpec>) {
    let mut layout = Layout::new();
    for img in images {
        layout.add(&img);
    }
    layout.push_all(super::shared_registry(), repo);
}

// ---------------------------------------------------------------------------
// what the images aim at, and snapshots of it
// ---------------------------------------------------------------------------

/// A host directory the images aim at: world-writable (so both test users could change
/// it), holding world-writable files and, per test user, a directory and files only that
/// user owns (so that chmod, chown and utimes through a link would work for husk).
pub struct Victim {
    dir: TempDir,
}

pub const VICTIM_FILE: &str = "file";
pub const VICTIM_CONTENT: &[u8] = b"the victim's own content\n";

impl Victim {
    pub fn new() -> Victim {
        let dir = TempDir::new("victim");
        let p = dir.path();
        fs::set_permissions(p, fs::Permissions::from_mode(0o777)).unwrap();
        let file = |rel: &str, content: &[u8], mode: u32| {
            let f = p.join(rel);
            fs::write(&f, content).unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
        };
        fs::create_dir(p.join("dir")).unwrap();
        fs::set_permissions(p.join("dir"), fs::Permissions::from_mode(0o777)).unwrap();
        file(VICTIM_FILE, VICTIM_CONTENT, 0o666);
        file("emptied", b"not empty\n", 0o666);
        file("dir/inner", b"inner\n", 0o666);
        file("passwd", b"evil:x:4242:4242:from the host:/evil:/bin/sh\n", 0o666);
        file("group", b"evil:x:4242:\n", 0o666);
        for user in [TestUser::Sub, TestUser::NoSub] {
            let (uid, gid) = user.ids();
            let own = p.join(user.name());
            fs::create_dir(&own).unwrap();
            file(&format!("{}/perm400", user.name()), b"read-only\n", 0o400);
            file(&format!("{}/owned", user.name()), b"owned\n", 0o644);
            for f in [own.clone(), own.join("perm400"), own.join("owned")] {
                std::os::unix::fs::lchown(&f, Some(uid), Some(gid)).unwrap();
            }
        }
        Victim { dir }
    }

    /// A victim for the whole test process, removed when it exits.
    pub fn for_process() -> &'static Victim {
        let v: &'static Victim = Box::leak(Box::new(Victim::new()));
        let dir = v.path().to_path_buf();
        super::at_exit(Box::new(move || {
            let _ = Command::new("rm").arg("-rf").arg(&dir).status();
        }));
        v
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path as a string, without the leading `/`.
    pub fn rel(&self) -> String {
        self.path().to_str().unwrap().trim_start_matches('/').to_string()
    }

    pub fn abs(&self) -> String {
        self.path().to_str().unwrap().to_string()
    }
}

impl Default for Victim {
    fn default() -> Self {
        Self::new()
    }
}

/// `../` repeated `n` times.
pub fn ups(n: usize) -> String {
    "../".repeat(n)
}

/// Files an escape into the user's HOME would touch: shell start-up files and
/// authorized_keys, owned by the user.
pub fn bait_home(h: &Husk) {
    let (uid, gid) = h.user.ids();
    let ssh = h.home.join(".ssh");
    fs::create_dir_all(&ssh).unwrap();
    for (rel, content, mode) in [
        (".bashrc", &b"# the user's .bashrc\n"[..], 0o644),
        (".profile", b"# the user's .profile\n", 0o600),
        (".ssh/authorized_keys", b"ssh-ed25519 AAAA the-user\n", 0o600),
        ("file", b"a file in HOME\n", 0o644),
    ] {
        let p = h.home.join(rel);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    for p in
        [ssh.clone(), ssh.join("authorized_keys"), h.home.join(".bashrc"), h.home.join(".profile"), h.home.join("file")]
    {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
    }
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
}

fn xattrs(p: &Path) -> Vec<String> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    // SAFETY: NUL-terminated path; the buffer is valid for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        // SAFETY: as above, for the value buffer.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        val.truncate(m.max(0) as usize);
        out.push(format!("{}={}", String::from_utf8_lossy(name), hex::encode(&val)));
    }
    out
}

/// Every entry under `root` (the root included, `skip` and what is below excluded),
/// described with type, mode, owner, size, content hash, link target, mtime, ctime and
/// xattrs, by relative path. Never follows a symlink.
pub fn snapshot(root: &Path, skip: &[PathBuf]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if skip.iter().any(|s| s == &p) {
            continue;
        }
        let Ok(md) = fs::symlink_metadata(&p) else { continue };
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("symlink -> {:?}", fs::read_link(&p).ok())
        } else if ft.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                for e in rd.flatten() {
                    stack.push(e.path());
                }
            }
            "dir".to_string()
        } else if ft.is_file() {
            let mut h = Sha256::new();
            if let Ok(mut f) = fs::File::open(&p) {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            format!("file sha256:{}", hex::encode(h.finalize()))
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("device {:?} {:#x}", ft, md.rdev())
        } else {
            format!("{:?}", ft)
        };
        let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
        out.insert(
            format!("/{rel}"),
            format!(
                "{what} mode={:o} owner={}:{} size={} nlink={} mtime={}.{} ctime={}.{} xattrs={:?}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size(),
                md.nlink(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec(),
                xattrs(&p)
            ),
        );
    }
    out
}

/// One line per path that differs between two snapshots.
pub fn snapshot_diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => d.push(format!("removed {k} (was {v})")),
            Some(a) if a != v => d.push(format!("changed {k}: {v}  ->  {a}")),
            _ => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            d.push(format!("created {k}: {v}"));
        }
    }
    d
}

/// The mounts of the test's mount namespace whose mount point is under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_str().unwrap();
    mi.lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m == d || m.starts_with(&format!("{d}/"))))
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------------------
// the contract every case is held to
// ---------------------------------------------------------------------------

/// A clean refusal: exit 125, nothing on stdout, exactly one line on stderr containing
/// every one of `words` (case-insensitive; "a|b" is either), no panic. Returns the line.
pub fn check_refusal(out: &super::Output, words: &[String]) -> Result<String, String> {
    if out.status != 125 {
        return Err(format!("expected a refusal (125): {out:?}"));
    }
    let text = out.stderr.trim_end_matches('\n');
    if text.is_empty() || text.contains('\n') || !out.stdout.trim().is_empty() || text.contains("panicked") {
        return Err(format!("a refusal must be exactly one line on stderr and nothing on stdout: {out:?}"));
    }
    let lower = text.to_lowercase();
    let missing: Vec<&String> =
        words.iter().filter(|w| !w.split('|').any(|alt| lower.contains(&alt.to_lowercase()))).collect();
    if !missing.is_empty() {
        return Err(format!("the refusal does not name {missing:?}: {text}"));
    }
    Ok(text.to_string())
}

/// Snapshots of everything outside the store an image could reach: the victim, the
/// user's HOME but for the store, and the mounts under them and under /proc.
pub struct Outside {
    victim: BTreeMap<String, String>,
    home: BTreeMap<String, String>,
    mounts: Vec<String>,
}

impl Outside {
    pub fn of(h: &Husk, victim: &Path) -> Outside {
        let mut mounts = mounts_under(victim);
        mounts.extend(mounts_under(&h.home));
        mounts.extend(mounts_under(Path::new("/proc")));
        Outside { victim: snapshot(victim, &[]), home: snapshot(&h.home, &[h.store()]), mounts }
    }

    /// One line per change since `before`.
    pub fn changes_since(&self, before: &Outside) -> Vec<String> {
        let mut d: Vec<String> =
            snapshot_diff(&before.victim, &self.victim).into_iter().map(|l| format!("victim: {l}")).collect();
        d.extend(snapshot_diff(&before.home, &self.home).into_iter().map(|l| format!("HOME: {l}")));
        if before.mounts != self.mounts {
            d.push(format!("mounts: {:?} -> {:?}", before.mounts, self.mounts));
        }
        d
    }
}

/// What the cases came to: a line per case that passed (its outcome), a paragraph per
/// case that did not.
#[derive(Default)]
pub struct Results {
    pub outcomes: Vec<String>,
    pub failures: Vec<String>,
}

impl Results {
    /// Runs one case (`run` gives its outcome, or why it failed) between two snapshots
    /// of what is outside the store; any change there fails it too.
    pub fn case(
        &mut self,
        h: &Husk,
        victim: &Path,
        tag: &str,
        shape: &str,
        run: impl FnOnce() -> Result<String, String>,
    ) {
        let before = Outside::of(h, victim);
        let result = run();
        let changes = Outside::of(h, victim).changes_since(&before);
        match (&result, changes.is_empty()) {
            (Ok(o), true) => self.outcomes.push(format!("{tag:<36} {o}")),
            _ => self.failures.push(format!(
                "{tag} ({shape}): {}{}",
                result.as_ref().err().map(String::as_str).unwrap_or("outcome fine"),
                if changes.is_empty() {
                    String::new()
                } else {
                    format!("\n    changed outside the store:\n      {}", changes.join("\n      "))
                }
            )),
        }
    }

    /// Prints the outcomes and panics with the failures, if any.
    pub fn report(&self, what: &str, took: std::time::Duration) {
        let n = self.outcomes.len() + self.failures.len();
        eprintln!("{what}: {n} cases in {took:.1?}\n  {}", self.outcomes.join("\n  "));
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {n} cases failed:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}
