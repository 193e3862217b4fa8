//! Hostile layers: tar archives made here header by header (tests/common/hostile.rs)
//! with every escape shape of containerd's TestBreakouts and tar-rs's tests (absolute
//! and `..` names, symlink and hardlink chains out of the root, a directory replacing a
//! symlink, a hardlink to a symlink then chmod, whiteouts through symlinked parents,
//! PAX and GNU long-name overrides of path and link path, device nodes, setuid-root
//! files, ids out of range, sizes that lie), packaged as OCI images on busybox's layer,
//! pushed with skopeo to the fixture registry, then pulled and run by husk as a user
//! with and without a subordinate id range. Bombs (a 10 GiB layer of zeros, headers of
//! gigabytes, data after the archive's end, a zstd frame asking for a 2 GiB window, a
//! layer bigger than the disk) have tests of their own below.
//!
//! Every case must end in a clean refusal (exit 125, exactly one line on stderr naming
//! the entry and the cause, nothing new in the store) or a safe extraction (the container
//! sees what the layer meant, inside its own root); and in every case nothing outside
//! husk's store changes: the victim directory the archives aim at (writable by the
//! users, with files each user owns) and the user's HOME outside the store are
//! snapshotted (type, mode, owner, size, content, link target, mtime, ctime, xattrs)
//! before and after. At the end the store must still work: the hostile images are
//! removed and a normal image pulls and runs.

mod common;

use common::hostile::{
    bait_home, check_refusal, gzip_parts, husk_for_cases, push_images, snapshot, snapshot_diff, tar, ups, Header,
    ImageSpec, LayerBlob, Outside, Pushed, Results, Tar, Victim, BLOCK, VICTIM_CONTENT, VICTIM_FILE,
};
use common::{reg, Husk, Output, TestUser};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REPO: &str = "hostile-layers";

/// What a case must end in.
enum Expect {
    /// `husk pull` (and `husk run`) refuse with one line containing all these words.
    Refused(Vec<String>),
    /// The image pulls; `sh -c script` in it prints `stdout`.
    Safe { script: String, stdout: String },
}

struct Case {
    tag: &'static str,
    /// The attack, in a few words (and the containerd/tar-rs test it follows).
    shape: &'static str,
    /// Hostile layers, bottom first, on top of busybox's.
    layers: Vec<Vec<u8>>,
    expect: Expect,
    /// Also run with HUSK_ROOTFS=copy (the layers merged by husk, not by overlayfs).
    copy_mode: bool,
}

fn refused(words: &[&str]) -> Expect {
    Expect::Refused(words.iter().map(|w| w.to_string()).collect())
}

fn safe(script: &str, stdout: &str) -> Expect {
    Expect::Safe { script: script.into(), stdout: stdout.into() }
}

fn case(tag: &'static str, shape: &'static str, layers: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case { tag, shape, layers, expect, copy_mode: false }
}

/// The cases, aimed at `v` (absolute paths) and, through enough `..`, at it and the
/// user's HOME from wherever husk extracts a layer.
fn cases(v: &Victim) -> Vec<Case> {
    let va = v.abs();
    // Enough `..` to reach / from any layer directory of a store under /tmp.
    let esc = format!("{}{}", ups(12), v.rel());
    let long_esc = format!("{}{}", ups(60), v.rel());
    vec![
        // ---- names ---------------------------------------------------------------
        case(
            "absolute-names",
            "absolute names, with // and /./ (tar-rs extracting_malicious_tarball)",
            vec![tar(|t| {
                t.file(&format!("{va}/abs-1"), b"inside\n");
                t.file(&format!("/{va}/abs-2"), b"inside\n");
                t.file(&format!("/.{va}/abs-3"), b"inside\n");
                t.file(&format!("//.{va}/dir/abs-4"), b"inside\n");
                t.pax(&[("path", format!("{va}/pax-abs").as_bytes())]);
                t.file("harmless", b"inside\n");
            })],
            safe(&format!("cd {va} && cat abs-1 abs-2 abs-3 dir/abs-4 pax-abs"), &"inside\n".repeat(5)),
        ),
        case(
            "dotdot-name",
            "a name climbing out with ..",
            vec![tar(|t| {
                t.file(&format!("{esc}/dotdot"), b"escaped\n");
            })],
            refused(&["dotdot", "escapes the layer"]),
        ),
        case(
            "inner-dotdot-name",
            "a name going down then climbing out (some/../../x)",
            vec![tar(|t| {
                t.dir("some");
                t.file(&format!("some/{}{}/inner-dotdot", ups(13), v.rel()), b"escaped\n");
            })],
            refused(&["inner-dotdot", "escapes the layer"]),
        ),
        case(
            "dotdot-home",
            "a name climbing out into HOME (.bashrc)",
            vec![tar(|t| {
                t.file(&format!("{}.bashrc", ups(7)), b"echo pwned\n");
            })],
            refused(&[".bashrc", "escapes the layer"]),
        ),
        case(
            "ustar-prefix-dotdot",
            "the ustar prefix field climbing out",
            vec![tar(|t| {
                let mut h = Header::new(b'0', b"prefixed");
                h.prefix = esc.as_bytes().to_vec();
                t.entry(h, b"escaped\n");
            })],
            refused(&["prefixed", "escapes the layer"]),
        ),
        case(
            "gnu-longname-dotdot",
            "a GNU long name ('L') climbing out",
            vec![tar(|t| {
                t.gnu_long(b'L', format!("{long_esc}/longname").as_bytes());
                t.file("harmless", b"escaped\n");
            })],
            refused(&["longname", "escapes the layer"]),
        ),
        case(
            "pax-path-dotdot",
            "a PAX path record climbing out (overriding a harmless name)",
            vec![tar(|t| {
                t.pax(&[("path", format!("{long_esc}/paxpath").as_bytes())]);
                t.file("harmless", b"escaped\n");
            })],
            refused(&["paxpath", "escapes the layer"]),
        ),
        case(
            "pax-path-nul",
            "a PAX path with a NUL byte before the ..",
            vec![tar(|t| {
                t.pax(&[("path", format!("harmless\0/{esc}/nul").as_bytes())]);
                t.file("harmless", b"escaped\n");
            })],
            refused(&["harmless", "NUL"]),
        ),
        case(
            "root-as-symlink",
            "the layer root itself as a symlink out (a name of '.')",
            vec![tar(|t| {
                t.symlink(".", &va);
            })],
            refused(&["\".\"", "layer root"]),
        ),
        case(
            "dotdot-symlink-name",
            "a symlink named .. (containerd SymlinkParentDirectory)",
            vec![tar(|t| {
                t.symlink("..", &format!("{va}/"));
            })],
            refused(&["\"..\"", "escapes the layer"]),
        ),
        // ---- symlinks ------------------------------------------------------------
        case(
            "symlink-absolute",
            "a symlink to the victim, then a file through it (SymlinkAbsolute)",
            vec![tar(|t| {
                t.dir("etc");
                t.symlink("localetc", &va);
                t.file("localetc/unbroken", b"escaped\n");
            })],
            refused(&["localetc/unbroken", "symlink"]),
        ),
        case(
            "symlink-relative",
            "a relative symlink out, then a file through it (tar-rs modify_outside_with_relative_symlink)",
            vec![tar(|t| {
                t.symlink("esc", &esc);
                t.file("esc/foo/bar", b"escaped\n");
            })],
            refused(&["esc/foo/bar", "symlink"]),
        ),
        case(
            "symlink-into-home",
            "a relative symlink to HOME, then .bashrc through it",
            vec![tar(|t| {
                t.symlink("home", &ups(7));
                t.file("home/.bashrc", b"echo pwned\n");
            })],
            refused(&["home/.bashrc", "symlink"]),
        ),
        case(
            "symlink-up-and-out",
            "a symlink /dummy/../../.. out, then a file through it (SymlinkUpAndOut)",
            vec![tar(|t| {
                t.dir("etc");
                t.dir("dummy");
                t.symlink("localetc", &format!("/dummy/{esc}"));
                t.file("localetc/unbroken", b"escaped\n");
            })],
            refused(&["localetc/unbroken", "symlink"]),
        ),
        case(
            "symlink-chain-absolute",
            "a chain of absolute symlinks, then a file through it (SymlinkMultipleAbsolute)",
            vec![tar(|t| {
                t.dir("etc");
                t.dir("dummy");
                t.symlink("dummy/etc", &va);
                t.symlink("localetc", "/dummy/etc");
                t.file("/dummy/etc/unbroken", b"escaped\n");
            })],
            refused(&["dummy/etc/unbroken", "symlink"]),
        ),
        case(
            "symlink-chain-relative",
            "a chain with a relative symlink, then a file through it (SymlinkMultipleRelative)",
            vec![tar(|t| {
                t.dir("dummy");
                t.symlink("dummy/etc", &esc);
                t.symlink("localetc", "./dummy/etc");
                t.file("localetc/unbroken", b"escaped\n");
            })],
            refused(&["localetc/unbroken", "symlink"]),
        ),
        case(
            "symlink-empty-file",
            "an empty file through a symlink over an existing file (SymlinkEmptyFile)",
            vec![tar(|t| {
                t.dir("etc");
                t.file("etc/emptied", b"not empty\n");
                t.symlink("localetc", &va);
                t.file("localetc/emptied", b"");
            })],
            refused(&["localetc/emptied", "symlink"]),
        ),
        case(
            "symlink-dotdot-parent",
            "a symlink to .., then a file through it (tar-rs parent_paths_error)",
            vec![tar(|t| {
                t.symlink("foo", "..");
                t.file("foo/bar", b"escaped\n");
            })],
            refused(&["foo/bar", "symlink"]),
        ),
        case(
            "symlink-loop",
            "two symlinks to each other, then a file through them",
            vec![tar(|t| {
                t.symlink("a", "b");
                t.symlink("b", "a");
                t.file("a/x", b"loop\n");
            })],
            refused(&["a/x", "symlink"]),
        ),
        case(
            "symlink-then-file",
            "a symlink out, then a file of the same name (tar-rs modify_symlink_just_created, issue #129)",
            vec![tar(|t| {
                t.symlink("foo", &format!("{esc}/{VICTIM_FILE}"));
                t.file("foo", b"x\n");
                t.symlink("bar", &format!("{va}/{VICTIM_FILE}"));
                t.file("bar", b"y\n");
                t.symlink("dir", &va);
                t.file("dir", b"z\n");
            })],
            safe(
                "cat /foo /bar /dir; [ -L /foo ] || [ -L /bar ] || [ -L /dir ] || echo no-links",
                "x\ny\nz\nno-links\n",
            ),
        ),
        case(
            "directory-replaces-symlink",
            "a symlink out, then a directory of the same name, then a file in it",
            vec![tar(|t| {
                t.symlink("d", &va);
                t.dir("d");
                t.file(&format!("d/{VICTIM_FILE}"), b"inside\n");
            })],
            safe(&format!("[ -L /d ] && echo link || echo dir; cat /d/{VICTIM_FILE}"), "dir\ninside\n"),
        ),
        case(
            "pax-linkpath-then-file",
            "a PAX linkpath turning a harmless symlink into one out, then a file through it",
            vec![tar(|t| {
                t.pax(&[("linkpath", va.as_bytes())]);
                t.symlink("plink", "harmless");
                t.file("plink/pwn", b"escaped\n");
            })],
            refused(&["plink/pwn", "symlink"]),
        ),
        case(
            "gnu-longlink-then-file",
            "a GNU long link name ('K') making a symlink out, then a file through it",
            vec![tar(|t| {
                t.gnu_long(b'K', long_esc.as_bytes());
                t.symlink("klink", "harmless");
                t.file("klink/pwn", b"escaped\n");
            })],
            refused(&["klink/pwn", "symlink"]),
        ),
        // ---- hardlinks -----------------------------------------------------------
        case(
            "hardlink-through-relative-symlink",
            "a hardlink whose target goes through a relative symlink out (HardlinkRelative)",
            vec![tar(|t| {
                t.dir("etc");
                t.file("etc/passwd", b"inside\n");
                t.dir("breakouts");
                t.symlink("breakouts/d1", &esc);
                t.hardlink("breakouts/mypasswd", "breakouts/d1/passwd");
            })],
            refused(&["breakouts/mypasswd", "symlink"]),
        ),
        case(
            "hardlink-through-absolute-symlink",
            "a hardlink whose target goes through an absolute symlink (HardlinkAbsolute)",
            vec![tar(|t| {
                t.symlink("localetc", &va);
                t.hardlink("localpasswd", "/localetc/passwd");
            })],
            refused(&["localpasswd", "symlink"]),
        ),
        case(
            "hardlink-dotdot",
            "a hardlink to ../../victim (HardlinkDirectRelative)",
            vec![tar(|t| {
                t.hardlink("localpasswd", &format!("{esc}/passwd"));
            })],
            refused(&["localpasswd", "escapes the layer"]),
        ),
        case(
            "pax-linkpath-hardlink-dotdot",
            "a PAX linkpath turning a harmless hardlink into one to ../../victim",
            vec![tar(|t| {
                t.file("harmless", b"inside\n");
                t.pax(&[("linkpath", format!("{long_esc}/passwd").as_bytes())]);
                t.hardlink("paxlink", "harmless");
            })],
            refused(&["paxlink", "escapes the layer"]),
        ),
        case(
            "hardlink-one-up",
            "a hardlink to ../x, then a file of its name (tar-rs modify_hard_link_just_created)",
            vec![tar(|t| {
                t.hardlink("foo", "../test");
                t.file("foo", b"x\n");
            })],
            refused(&["foo", "escapes the layer"]),
        ),
        case(
            "hardlink-absolute-host-path",
            "a hardlink to the victim's absolute path (HardlinkDirectAbsolute)",
            vec![tar(|t| {
                t.hardlink("localpasswd", &format!("{va}/passwd"));
            })],
            refused(&["localpasswd", "does not exist in the layer"]),
        ),
        case(
            "hardlink-to-symlink",
            "hardlinks to symlinks out (HardlinkSymlinkRelative, HardlinkSymlinkAbsolute)",
            vec![tar(|t| {
                t.symlink("passwdlink", &format!("{esc}/passwd"));
                t.hardlink("localpasswd", "passwdlink");
                t.symlink("passwdabs", &format!("{va}/passwd"));
                t.hardlink("localabs", "/passwdabs");
            })],
            safe(
                "readlink /localpasswd; readlink /localabs; [ -e /localabs ] && echo reached || echo inside",
                &format!("{esc}/passwd\n{va}/passwd\ninside\n"),
            ),
        ),
        case(
            "hardlink-to-symlink-then-chmod",
            "a symlink named like a host file, a hardlink to it, then mode and owner changes (HardlinkSymlinkChmod)",
            vec![tar(|t| {
                for user in [TestUser::Sub, TestUser::NoSub] {
                    let dir = format!("{va}/{}", user.name());
                    t.symlink(&format!("{dir}/also-exists"), &format!("{dir}/perm400"));
                    let mut h = Header::new(b'1', format!("sketchy-{}", user.name()).as_bytes());
                    h.link = format!("{dir}/also-exists").into_bytes();
                    h.mode = 0o7777;
                    t.entry(h, b"");
                    // the same name again as a directory entry with a new mode: applied to
                    // whatever is there, were it followed
                    let mut d = Header::new(b'5', format!("{dir}/also-exists").as_bytes());
                    d.mode = 0o777;
                    d.uid = 4242;
                    t.entry(d, b"");
                }
            })],
            safe(
                &format!(
                    "stat -c %F {va}/husk-sub/also-exists {va}/husk-nosub/also-exists; readlink /sketchy-husk-sub"
                ),
                &format!("directory\ndirectory\n{va}/husk-sub/perm400\n"),
            ),
        ),
        case(
            "hardlink-symlink-before-target",
            "a symlink, a hardlink to it, then its target (HardlinkSymlinkBeforeCreateTarget)",
            vec![tar(|t| {
                t.dir("etc2");
                t.symlink("localpasswd", &format!("{va}/passwd"));
                t.hardlink("localpasswd-dup", "localpasswd");
                t.file(&format!("{va}/passwd"), b"after\n");
            })],
            safe("readlink /localpasswd-dup; cat /localpasswd-dup", &format!("{va}/passwd\nafter\n")),
        ),
        case(
            "hardlink-to-lower-symlink",
            "a hardlink to a symlink out in a lower layer",
            vec![
                tar(|t| {
                    t.symlink("lower-link", &format!("{va}/{VICTIM_FILE}"));
                }),
                tar(|t| {
                    t.hardlink("upper-link", "lower-link");
                }),
            ],
            refused(&["upper-link", "does not exist in the layer"]),
        ),
        // ---- a directory or symlink replacing the other, across layers ----------------
        Case {
            copy_mode: true,
            ..case(
                "directory-over-lower-symlink",
                "a lower layer's symlink out, replaced by a directory with a file (DirectoryOverrideSymlink)",
                vec![
                    tar(|t| {
                        t.symlink("localetc", &va);
                    }),
                    tar(|t| {
                        t.dir("localetc");
                        t.file(&format!("localetc/{VICTIM_FILE}"), b"different\n");
                    }),
                ],
                safe(
                    &format!("[ -L /localetc ] && echo link || echo dir; cat /localetc/{VICTIM_FILE}"),
                    "dir\ndifferent\n",
                ),
            )
        },
        Case {
            copy_mode: true,
            ..case(
                "symlink-over-lower-directory",
                "a lower layer's directory, replaced by a symlink out (SymlinkOverrideDirectory)",
                vec![
                    tar(|t| {
                        t.dir("localetc");
                        t.file(&format!("localetc/{VICTIM_FILE}"), b"lower\n");
                    }),
                    tar(|t| {
                        t.symlink("localetc", &va);
                    }),
                ],
                safe(
                    &format!("readlink /localetc; [ -e /localetc/{VICTIM_FILE} ] && echo reached || echo inside"),
                    &format!("{va}\ninside\n"),
                ),
            )
        },
        // ---- whiteouts -----------------------------------------------------------
        Case {
            copy_mode: true,
            ..case(
                "whiteout-through-lower-symlink",
                "a whiteout under a lower layer's symlink out (WhiteoutSymlinkPath)",
                vec![
                    tar(|t| {
                        t.symlink("localetc", &va);
                    }),
                    tar(|t| {
                        t.file(&format!("localetc/.wh.{VICTIM_FILE}"), b"");
                        t.file("localetc/.wh..wh..opq", b"");
                    }),
                ],
                safe("[ -L /localetc ] && echo link || echo dir; ls -A /localetc | wc -l", "dir\n0\n"),
            )
        },
        Case {
            copy_mode: true,
            ..case(
                "whiteout-of-lower-symlink",
                "a whiteout of a lower layer's symlink out (WhiteoutSymlink)",
                vec![
                    tar(|t| {
                        t.symlink("localetc", &va);
                        t.symlink("deadlink", "/dne");
                    }),
                    tar(|t| {
                        t.file(".wh.localetc", b"");
                        t.file(&format!("deadlink/.wh.{VICTIM_FILE}"), b"");
                    }),
                ],
                safe(
                    "[ -e /localetc ] || [ -L /localetc ] && echo present || echo gone; [ -d /deadlink ] && echo dir",
                    "gone\ndir\n",
                ),
            )
        },
        case(
            "whiteout-through-symlink",
            "a symlink out, then a whiteout through it in the same layer",
            vec![tar(|t| {
                t.symlink("localetc", &va);
                t.file(&format!("localetc/.wh.{VICTIM_FILE}"), b"");
            })],
            refused(&["localetc/.wh.", "symlink"]),
        ),
        case(
            "opaque-through-symlink",
            "a symlink out, then an opaque marker through it",
            vec![tar(|t| {
                t.symlink("o", &va);
                t.file("o/.wh..wh..opq", b"");
            })],
            refused(&["o/.wh..wh..opq", "symlink"]),
        ),
        case(
            "whiteout-dotdot",
            "a whiteout of .. (WhiteoutRootParent)",
            vec![tar(|t| {
                t.file(".wh...", b"");
            })],
            refused(&[".wh...", "invalid whiteout name"]),
        ),
        case(
            "whiteout-dot",
            "a whiteout of . (WhiteoutCurrentDirectory)",
            vec![tar(|t| {
                t.dir("etc");
                t.file("etc/.wh..", b"");
            })],
            refused(&["etc/.wh..", "invalid whiteout name"]),
        ),
        case(
            "whiteout-escape",
            "a whiteout climbing out with ..",
            vec![tar(|t| {
                t.file(&format!("{esc}/.wh.{VICTIM_FILE}"), b"");
            })],
            refused(&[".wh.", "escapes the layer"]),
        ),
        case(
            "whiteout-as-directory",
            "a whiteout name used as a directory (WhiteoutDirectoryName)",
            vec![tar(|t| {
                t.file(".wh.etc/somefile", b"non-empty\n");
            })],
            refused(&[".wh.etc/somefile", "whiteout"]),
        ),
        // ---- entry types, modes, ids ---------------------------------------------------
        case(
            "device-nodes",
            "character and block devices (mem, sda, a 0/0 lookalike whiteout over /bin/echo)",
            vec![tar(|t| {
                t.dir("devs");
                t.device("devs/mem", b'3', 1, 1);
                t.device("devs/sda", b'4', 8, 0);
                t.device("devs/kmsg", b'3', 1, 11);
                t.device("bin/echo", b'3', 0, 0);
                t.entry(Header::new(b'6', b"devs/fifo"), b"");
            })],
            safe("ls -A /devs; /bin/echo still-here", "fifo\nstill-here\n"),
        ),
        case(
            "setuid-root",
            "setuid and setgid root files, a setgid directory, a file capability",
            vec![tar(|t| {
                t.file_mode("suid", 0o4755, b"#!/bin/sh\nid -u\n");
                t.file_mode("sgid", 0o2755, b"#!/bin/sh\nid -g\n");
                let mut d = Header::new(b'5', b"sgid-dir");
                d.mode = 0o2777;
                t.entry(d, b"");
                // cap_setuid+ep (VFS_CAP_REVISION_2)
                let cap: &[u8] = &[0, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                t.pax(&[("SCHILY.xattr.security.capability", cap)]);
                t.file_mode("capfile", 0o755, b"#!/bin/sh\n");
            })],
            safe("stat -c '%a %u %g' /suid /sgid /sgid-dir; /suid", "4755 0 0\n2755 0 0\n2777 0 0\n0\n"),
        ),
        case(
            "ids-out-of-range",
            "owners over 2^32, at 2^32-1 (chown's 'unchanged'), in PAX over u64, and an unmapped group",
            vec![tar(|t| {
                let mut h = Header::new(b'0', b"uid-minus-1");
                h.uid = u64::from(u32::MAX);
                h.gid = u64::from(u32::MAX);
                t.entry(h, b"x\n");
                let mut h = Header::new(b'0', b"uid-2-40");
                h.uid = 1 << 40;
                h.gid = (1 << 32) + 5;
                t.entry(h, b"x\n");
                t.pax(&[("uid", b"99999999999999999999999"), ("gid", b"-1")]);
                t.file("pax-ids", b"x\n");
                let mut h = Header::new(b'0', b"gid-65537");
                h.gid = 65537;
                t.entry(h, b"x\n");
            })],
            safe("stat -c '%u %g' /uid-minus-1 /uid-2-40 /pax-ids /gid-65537", &"0 0\n".repeat(4)),
        ),
        case(
            "garbage-uid",
            "an owner field that is no number",
            vec![tar(|t| {
                let mut h = Header::new(b'0', b"garbage-uid");
                h.patches.push((108, b"-1zz\0\0\0\0".to_vec()));
                t.entry(h, b"x\n");
            })],
            refused(&["garbage-uid", "uid"]),
        ),
        case(
            "checksum-mismatch",
            "a header whose checksum is wrong",
            vec![{
                let mut t = Tar::new();
                t.file("ok", b"fine\n");
                let mut data = t.finish();
                let mut h = Header::new(b'0', b"bad-checksum").block();
                h[148..156].copy_from_slice(b"000001\0 ");
                data.splice(data.len() - 2 * BLOCK..data.len() - 2 * BLOCK, h);
                data
            }],
            refused(&["\"ok\"", "checksum"]),
        ),
        case(
            "gnu-sparse",
            "a GNU sparse member",
            vec![tar(|t| {
                let mut h = Header::new(b'S', b"sparse");
                h.patches.push((257, b"ustar  \0".to_vec()));
                // GNU realsize
                h.patches.push((483, b"00000000000\0".to_vec()));
                t.entry(h, b"");
            })],
            refused(&["sparse", "unsupported entry type"]),
        ),
        case(
            "size-truncated",
            "a file declaring 1 MiB, with 1000 bytes before the stream ends",
            vec![{
                let mut t = Tar::new();
                let mut h = Header::new(b'0', b"short");
                h.size = 1 << 20;
                t.raw(&h, &[b'a'; 1000]);
                t.unfinished()
            }],
            refused(&["short", "truncated"]),
        ),
        case(
            "size-one-tebibyte",
            "a file declaring 1 TiB (base-256 size field), with 1 KiB of data",
            vec![{
                let mut t = Tar::new();
                let mut h = Header::new(b'0', b"huge");
                h.size = 1 << 40;
                t.raw(&h, &[0u8; 1024]);
                t.unfinished()
            }],
            refused(&["huge", "free on the store's filesystem"]),
        ),
        case(
            "pax-size-lie",
            "a PAX size record of 2^60 bytes overriding a header size of 10",
            vec![{
                let mut t = Tar::new();
                t.pax(&[("size", (1u64 << 60).to_string().as_bytes())]);
                t.file("paxsize", b"ten bytes\n");
                t.unfinished()
            }],
            refused(&["paxsize", "free on the store's filesystem"]),
        ),
    ]
}

/// The victim, the cases, and their images in the shared registry (pushed once).
fn pushed() -> &'static Pushed<Case> {
    static P: OnceLock<Pushed<Case>> = OnceLock::new();
    P.get_or_init(|| {
        Pushed::new(REPO, cases, |c| {
            ImageSpec::on_busybox(c.tag, c.layers.iter().map(|t| LayerBlob::gzip(t)).collect())
        })
    })
}

fn image(tag: &str) -> String {
    reg(&format!("{REPO}:{tag}"))
}

// ---------------------------------------------------------------------------
// checks
// ---------------------------------------------------------------------------

/// What "nothing new in the store" compares: index.json, the blobs and the layers.
fn store_state(store: &Path) -> (String, Vec<String>, Vec<String>) {
    let names = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(store.join(d))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    (fs::read_to_string(store.join("index.json")).unwrap_or_default(), names("blobs/sha256"), names("layers"))
}

/// Anything but lock files left in the store's tmp/.
fn tmp_leftovers(store: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![store.join("tmp")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push(format!("{}/", p.display()));
            } else if !p.to_string_lossy().ends_with(".lock") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Pull and run one case; returns its outcome ("refused: LINE" or "extracted").
fn run_case(h: &Husk, c: &Case) -> Result<String, String> {
    let img = image(c.tag);
    let store_before = store_state(&h.store());
    let pull = h.run(&["pull", "-q", &img]);
    let outcome = match &c.expect {
        Expect::Refused(words) => {
            let line = check_refusal(&pull, words).map_err(|e| format!("pull: {e}"))?;
            if store_state(&h.store()) != store_before {
                return Err(format!("the refused pull changed the store's index, blobs or layers ({line})"));
            }
            // run pulls it again: the same refusal
            let run = h.run(&["run", "--rm", "-q", &img, "true"]);
            check_refusal(&run, words).map_err(|e| format!("run: {e}"))?;
            format!("refused: {line}")
        }
        Expect::Safe { script, stdout } => {
            if !pull.success() {
                return Err(format!("expected a safe extraction, the pull failed: {pull:?}"));
            }
            let modes: &[Option<&str>] = if c.copy_mode { &[None, Some("copy")] } else { &[None] };
            for mode in modes {
                let env: Vec<(&str, &str)> = mode.iter().map(|m| ("HUSK_ROOTFS", *m)).collect();
                let run = h.run_env(&env, &["run", "--rm", "--network", "none", &img, "sh", "-c", script]);
                if !run.success() || run.stdout != *stdout {
                    return Err(format!("{mode:?}: `{script}` in the container: expected {stdout:?}: {run:?}"));
                }
            }
            "extracted".to_string()
        }
    };
    let left = tmp_leftovers(&h.store());
    if !left.is_empty() {
        return Err(format!("left in the store's tmp/: {left:?}"));
    }
    Ok(outcome)
}

/// No file under the store is set-id and owned by someone the user is not (root above all).
fn set_id_files_not_owned_by(h: &Husk) -> Vec<String> {
    let (uid, _) = h.user.ids();
    let sub = match h.user {
        TestUser::Sub => Some(common::subid_base(h.user.name())),
        _ => None,
    };
    let mut bad = Vec::new();
    let mut stack = vec![h.store()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = fs::symlink_metadata(e.path()) else { continue };
            if md.is_dir() {
                stack.push(e.path());
            }
            let owned = md.uid() == uid || sub.is_some_and(|b| md.uid() >= b && md.uid() < b + 65536);
            if md.mode() & 0o6000 != 0 && !owned {
                bad.push(format!("{} mode {:o} owner {}", e.path().display(), md.mode(), md.uid()));
            }
        }
    }
    bad
}

fn layer_cases(user: TestUser) {
    let p = pushed();
    let h = husk_for_cases(user);
    let t = Instant::now();
    let mut results = Results::default();
    for c in &p.cases {
        results.case(&h, p.victim.path(), c.tag, c.shape, || run_case(&h, c));
    }
    assert!(h.leftover_processes().is_empty(), "processes left: {:?}", h.leftover_processes());
    let setid = set_id_files_not_owned_by(&h);
    if !setid.is_empty() {
        results.failures.push(format!("set-id files in the store not owned by the user: {setid:?}"));
    }
    assert_eq!(fs::read(p.victim.path().join(VICTIM_FILE)).unwrap(), VICTIM_CONTENT);
    // The store still works: every hostile image goes, a normal one pulls and runs.
    let tags: Vec<String> = p.cases.iter().map(|c| image(c.tag)).collect();
    let present: Vec<&str> =
        tags.iter().map(String::as_str).filter(|t| h.run(&["image", "inspect", t]).success()).collect();
    if !present.is_empty() {
        let mut args = vec!["rmi"];
        args.extend(&present);
        h.run(&args).assert_ok();
    }
    h.run(&["system", "prune", "-a", "-f"]).assert_ok();
    let layers_left = fs::read_dir(h.store().join("layers")).map(|rd| rd.count()).unwrap_or(0);
    assert_eq!(layers_left, 0, "layers left after removing every image");
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    let out = h.run(&["run", "--rm", "--network", "none", &reg("busybox:latest"), "echo", "still usable"]);
    out.assert_ok();
    assert_eq!(out.stdout, "still usable\n");
    results.report(&format!("hostile layers as {user:?}"), t.elapsed());
}

/// The checks are not blind: each kind of change an escape could make to the victim
/// or to HOME (content, mode, times, a new file, a removed one, a symlink swapped in,
/// a mount) shows in the comparison of the snapshots.
#[test]
fn snapshots_see_every_change_outside_the_store() {
    use std::os::unix::fs::PermissionsExt;
    common::ensure_prereqs();
    let victim = Victim::new();
    let h = Husk::new(TestUser::NoSub);
    bait_home(&h);
    fs::create_dir_all(h.store()).unwrap();
    let v = victim.path();
    type Change<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let changes: Vec<Change> = vec![
        ("content", Box::new(|| fs::write(v.join(VICTIM_FILE), b"pwned\n").unwrap())),
        (
            "mode",
            Box::new(|| fs::set_permissions(v.join("husk-nosub/perm400"), fs::Permissions::from_mode(0o777)).unwrap()),
        ),
        (
            "times",
            Box::new(|| {
                std::process::Command::new("touch")
                    .arg("-d")
                    .arg("2001-01-01")
                    .arg(v.join("emptied"))
                    .status()
                    .unwrap();
            }),
        ),
        ("new file", Box::new(|| fs::write(v.join("dir/new"), b"").unwrap())),
        ("removed", Box::new(|| fs::remove_file(v.join("dir/inner")).unwrap())),
        (
            "symlink",
            Box::new(|| {
                fs::remove_file(v.join("passwd")).unwrap();
                std::os::unix::fs::symlink("/etc/passwd", v.join("passwd")).unwrap();
            }),
        ),
        ("HOME", Box::new(|| fs::write(h.home.join(".bashrc"), b"echo pwned\n").unwrap())),
        (
            "HOME mode",
            Box::new(|| fs::set_permissions(h.home.join(".ssh"), fs::Permissions::from_mode(0o755)).unwrap()),
        ),
    ];
    for (what, change) in changes {
        let before = Outside::of(&h, v);
        change();
        let seen = Outside::of(&h, v).changes_since(&before);
        assert!(!seen.is_empty(), "{what}: the snapshots did not see the change");
    }
    let before = Outside::of(&h, v);
    let mounted = Tmpfs::mount(&v.join("dir"), "size=1m");
    let seen = Outside::of(&h, v).changes_since(&before);
    drop(mounted);
    assert!(!seen.is_empty(), "mount: the snapshots did not see it");
    // in the store, nothing is looked at
    let before = Outside::of(&h, v);
    fs::write(h.store().join("anything"), b"x").unwrap();
    assert!(Outside::of(&h, v).changes_since(&before).is_empty());
}

#[test]
fn tar_escapes_with_subids() {
    layer_cases(TestUser::Sub);
}

#[test]
fn tar_escapes_without_subids() {
    layer_cases(TestUser::NoSub);
}

// ---------------------------------------------------------------------------
// bombs: what a layer declares costs its sender nothing (a gzip stream of zeros
// inflates a thousandfold), so husk must refuse before it costs the user disk or memory
// ---------------------------------------------------------------------------

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const BOMBS: &str = "hostile-bombs";

/// A tar header block.
fn header_block(typ: u8, name: &str, size: u64) -> Vec<u8> {
    let mut h = Header::new(typ, name.as_bytes());
    h.size = size;
    h.block().to_vec()
}

/// The bomb images, pushed once: tag -> what it is.
fn bombs() -> &'static BTreeMap<&'static str, &'static str> {
    static B: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
    B.get_or_init(|| {
        let zeros = vec![0u8; 64 << 20];
        let end = [0u8; 2 * BLOCK];
        let mut images = Vec::new();
        let mut described = BTreeMap::new();
        let mut add = |tag: &'static str, what: &'static str, layer: LayerBlob| {
            images.push(ImageSpec::on_busybox(tag, vec![layer]));
            described.insert(tag, what);
        };
        // 10 GiB of zeros in one file: ~10 MB of gzip.
        let h = header_block(b'0', "zeros", 10 * GIB);
        add(
            "zeros-10g",
            "a file of 10 GiB of zeros (~10 MB of gzip)",
            gzip_parts(&[(&h, 1), (&zeros, 160), (&end, 1)]),
        );
        // 600 files of 1 MiB each (of 'A's: no holes to punch), ~1 MB of gzip.
        let a = vec![b'A'; MIB as usize];
        let headers: Vec<Vec<u8>> = (0..600).map(|i| header_block(b'0', &format!("fill/{i:03}"), MIB)).collect();
        let mut parts: Vec<(&[u8], u64)> = vec![];
        for h in &headers {
            parts.push((h, 1));
            parts.push((&a, 1));
        }
        parts.push((&end, 1));
        add("fill-600m", "600 files of 1 MiB each (~1 MB of gzip)", gzip_parts(&parts));
        // A PAX header and a GNU long name of 4 GiB (read into memory whole by tar-rs).
        let after = {
            let mut t = Tar::new();
            t.file("after", b"after\n");
            t.finish()
        };
        for (tag, what, typ) in [
            ("pax-4g", "a PAX header of 4 GiB", b'x'),
            ("longname-4g", "a GNU long name of 4 GiB", b'L'),
            ("longlink-4g", "a GNU long link name of 4 GiB", b'K'),
        ] {
            let h = header_block(typ, "././@LongLink", 4 * GIB);
            add(tag, what, gzip_parts(&[(&h, 1), (&zeros, 64), (&after, 1)]));
        }
        // 10 GiB of zeros after a small archive's end.
        let small = {
            let mut t = Tar::new();
            t.file("small", b"small\n");
            t.finish()
        };
        add(
            "trailing-10g",
            "10 GiB of zeros after the end of a small archive",
            gzip_parts(&[(&small, 1), (&zeros, 160)]),
        );
        // A zstd frame whose header asks for a 2 GiB window (windowLog 31), holding a
        // small archive in one raw block: its diff id is honest.
        let frame = {
            let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3];
            let block = ((small.len() as u32) << 3) | 1; // raw, last
            f.extend_from_slice(&block.to_le_bytes()[..3]);
            f.extend_from_slice(&small);
            f
        };
        add(
            "zstd-window-2g",
            "a zstd frame asking for a 2 GiB window",
            LayerBlob {
                media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
                bytes: frame,
                diff_id: common::fake_registry::sha256(&small),
            },
        );
        push_images(BOMBS, images);
        described
    })
}

fn bomb(tag: &str) -> String {
    assert!(bombs().contains_key(tag), "no bomb {tag}");
    reg(&format!("{BOMBS}:{tag}"))
}

fn statvfs(p: &Path) -> libc::statvfs {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and a zeroed out-parameter of the right type.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0, "statvfs {}", p.display());
        st
    }
}

fn free_bytes(p: &Path) -> u64 {
    let st = statvfs(p);
    st.f_bavail * st.f_frsize
}

/// A tmpfs mounted at `path` (over whatever is there), unmounted on drop: over a Husk's
/// HOME (declared after the Husk, so that it drops first) it puts husk's store on a
/// small filesystem.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, options: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "husk-test-tmpfs"])
            .arg(path)
            .output()
            .expect("cannot run mount");
        assert!(out.status.success(), "mount -t tmpfs on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        Tmpfs { path: path.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Runs husk (its address space limited to `max_memory` bytes, a safety net: a bomb
/// that got through fails there instead of taking the machine's memory) and watches
/// the free space of the filesystem at `watch` meanwhile: the output, the least free
/// space seen and the time it took.
fn run_bounded(h: &Husk, args: &[&str], watch: &Path, max_memory: u64) -> (Output, u64, Duration) {
    use std::os::unix::process::CommandExt;
    let mut cmd = h.cmd(args);
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: max_memory, rlim_max: max_memory };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, watch) = (stop.clone(), watch.to_path_buf());
        std::thread::spawn(move || {
            let mut least = u64::MAX;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                least = least.min(free_bytes(&watch));
                std::thread::sleep(Duration::from_millis(2));
            }
            least.min(free_bytes(&watch))
        })
    };
    let t = Instant::now();
    let out = common::run_output(cmd, None);
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, watcher.join().unwrap(), took)
}

/// The largest resident set of any child (husk included) this test process waited for.
fn max_child_rss() -> u64 {
    // SAFETY: a zeroed out-parameter of the right type.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    ru.ru_maxrss as u64 * 1024
}

/// Husk's address space in these tests: far below what a bomb would take, far above
/// what a pull needs.
const MAX_MEMORY: u64 = 2 * GIB;

/// `husk pull` then `husk run` of a bomb: both refused (one line naming `words`), with
/// the store left as it was; returns the pull's line, the least free space seen and
/// the pull's duration.
fn refuse_bomb(h: &Husk, tag: &str, words: &[&str]) -> (String, u64, Duration) {
    let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let store_before = store_state(&h.store());
    let home_before = snapshot(&h.home, &[h.store()]);
    let img = bomb(tag);
    let (pull, least, took) = run_bounded(h, &["pull", "-q", &img], &h.home, MAX_MEMORY);
    let line = check_refusal(&pull, &words).unwrap_or_else(|e| panic!("pull of {tag} ({}): {e}", bombs()[tag]));
    let (run, _, _) = run_bounded(h, &["run", "--rm", "-q", &img, "true"], &h.home, MAX_MEMORY);
    check_refusal(&run, &words).unwrap_or_else(|e| panic!("run of {tag}: {e}"));
    assert_eq!(store_state(&h.store()), store_before, "{tag}: the refused pull changed the store");
    assert_eq!(tmp_leftovers(&h.store()), Vec::<String>::new(), "{tag}: left in tmp/");
    let changes = snapshot_diff(&home_before, &snapshot(&h.home, &[h.store()]));
    assert!(changes.is_empty(), "{tag}: HOME changed outside the store: {changes:?}");
    eprintln!("{tag}: refused in {took:.1?}, least free {} MiB: {line}", least / MIB);
    (line, least, took)
}

fn still_usable(h: &Husk) {
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    let out = h.run(&["run", "--rm", "--network", "none", &reg("busybox:latest"), "echo", "still usable"]);
    out.assert_ok();
    assert_eq!(out.stdout, "still usable\n");
}

/// 10 GiB of zeros in one file, and 600 MiB in 600 files, on a store of 256 MiB: both
/// refused before the filesystem fills up (the first before a byte of it is written).
#[test]
fn gzip_bombs_are_refused_before_the_disk_fills() {
    bombs();
    let h = Husk::new(TestUser::Sub);
    let (uid, gid) = h.user.ids();
    let _small = Tmpfs::mount(&h.home, &format!("size={},mode=0700,uid={uid},gid={gid}", 256 * MIB));
    bait_home(&h);
    h.run(&["pull", "-q", &reg("busybox:latest")]).assert_ok();
    let total = {
        let st = statvfs(&h.home);
        st.f_blocks * st.f_frsize
    };
    let free = free_bytes(&h.home);

    let (_, least, took) = refuse_bomb(&h, "zeros-10g", &["\"zeros\"", "10.7GB", "free on the store's filesystem"]);
    // Only the compressed blob (~10 MB) was written on the way: no file data at all.
    assert!(free - least < 32 * MIB, "zeros-10g: free space went from {free} down to {least} bytes");
    assert!(took < Duration::from_secs(60), "zeros-10g: took {took:?}");
    assert!(free_bytes(&h.home) + MIB >= free, "zeros-10g: space not given back");

    let (_, least, _) = refuse_bomb(&h, "fill-600m", &["\"fill/", "free on the store's filesystem"]);
    // husk leaves 1/64 of the filesystem free: it never came close to full.
    assert!(least >= total / 128, "fill-600m: free space went down to {least} of {total} bytes");
    assert!(free_bytes(&h.home) + MIB >= free, "fill-600m: space not given back");
    still_usable(&h);
}

/// A PAX header and GNU long names of 4 GiB each: refused after 8 MiB, in bounded memory.
#[test]
fn header_bombs_are_refused_in_bounded_memory() {
    bombs();
    let h = husk_for_cases(TestUser::NoSub);
    for tag in ["pax-4g", "longname-4g", "longlink-4g"] {
        let (_, _, took) = refuse_bomb(&h, tag, &["more than 8 MiB"]);
        assert!(took < Duration::from_secs(60), "{tag}: took {took:?}");
    }
    let rss = max_child_rss();
    assert!(rss < 512 * MIB, "a child of the test reached a resident set of {} MiB", rss / MIB);
    still_usable(&h);
}

/// 10 GiB of zeros after a small archive: refused after 1 MiB, not decompressed and
/// hashed for minutes; a zstd frame asking for a 2 GiB window: refused unallocated.
#[test]
fn trailing_data_and_zstd_window_bombs_are_refused() {
    bombs();
    let h = husk_for_cases(TestUser::NoSub);
    let (_, _, took) = refuse_bomb(&h, "trailing-10g", &["more than 1 MiB", "end of the layer's tar archive"]);
    assert!(took < Duration::from_secs(30), "trailing-10g: took {took:?}");
    refuse_bomb(&h, "zstd-window-2g", &["zstd", "memory"]);
    still_usable(&h);
}
