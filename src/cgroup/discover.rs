//! Where cgroup v2 is mounted and which cgroup this process is in, read from /proc.
//! The parsers take the file text so they can be tested without a machine.
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// A cgroup2 mount: where it is, and which cgroup of the hierarchy is its root.
#[derive(Debug, Clone, PartialEq)]
pub struct Cgroup2Mount {
    pub mount_point: PathBuf,
    /// The mount's root inside the hierarchy: "/" unless a subtree is bind mounted.
    pub root: String,
}

/// The cgroup2 mount in /proc/self/mountinfo text: the first whose root is the
/// hierarchy's own root, else the first at all.
pub fn parse_mountinfo(text: &str) -> Option<Cgroup2Mount> {
    let mounts: Vec<Cgroup2Mount> = text.lines().filter_map(cgroup2_line).collect();
    let whole = mounts.iter().position(|m| m.root == "/");
    mounts.into_iter().nth(whole.unwrap_or(0))
}

/// One mountinfo line, "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SRC SUPER",
/// if it is a cgroup2 mount.
fn cgroup2_line(line: &str) -> Option<Cgroup2Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    if fields.get(sep + 1) != Some(&"cgroup2") {
        return None;
    }
    let root = String::from_utf8_lossy(&unescape(fields[3])).into_owned();
    let mount_point = PathBuf::from(OsString::from_vec(unescape(fields[4])));
    Some(Cgroup2Mount { mount_point, root })
}

/// Undoes the kernel's octal escapes of mountinfo fields (`\040` space, `\011` tab,
/// `\012` newline, `\134` backslash); anything else is kept as it is.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.map(|d| d.iter().fold(0u32, |v, c| v * 8 + (c - b'0') as u32)) {
            Some(v) if v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The cgroup v2 path ("/user.slice/x") of the `0::` line of /proc/self/cgroup text.
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix("0::")).filter(|p| p.starts_with('/')).map(str::to_string)
}

/// The directory of cgroup `path` under `mount`, or `None` when the mount shows only
/// a subtree that does not hold it.
pub fn cgroup_dir(mount: &Cgroup2Mount, path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rest = if root.is_empty() {
        path
    } else if path == root {
        ""
    } else {
        path.strip_prefix(root).filter(|r| r.starts_with('/'))?
    };
    let rest = rest.trim_start_matches('/');
    Some(if rest.is_empty() { mount.mount_point.clone() } else { mount.mount_point.join(rest) })
}

/// The controllers /proc/cgroups shows bound to a cgroup v1 hierarchy (hierarchy id not 0):
/// on a hybrid host cgroup v2 can never get them.
pub fn parse_v1_controllers(proc_cgroups: &str) -> Vec<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[1] != "0" && f[3] == "1").then(|| f[0].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_cgroup2_mount_on_a_hybrid_host() {
        let m = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, "/");
    }

    #[test]
    fn no_cgroup2_mount_on_a_v1_only_host() {
        let v1: String = HYBRID.lines().take(3).map(|l| format!("{}\n", l)).collect();
        assert_eq!(parse_mountinfo(&v1), None);
        assert_eq!(parse_mountinfo(""), None);
    }

    #[test]
    fn optional_fields_before_the_separator_are_skipped() {
        let text = "29 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = parse_mountinfo(text).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup"));
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        let text = "50 1 0:40 / /mnt/my\\040cg\\011x\\134y rw - cgroup2 none rw\n";
        let m = parse_mountinfo(text).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/mnt/my cg\tx\\y"));
        assert_eq!(unescape("a\\12b\\"), b"a\\12b\\".to_vec(), "short escapes are kept");
    }

    #[test]
    fn a_mount_of_the_whole_hierarchy_is_preferred_over_a_subtree() {
        let text = "\
60 1 0:40 /sub /mnt/sub rw - cgroup2 cgroup2 rw
61 1 0:40 / /mnt/all rw - cgroup2 cgroup2 rw
";
        assert_eq!(parse_mountinfo(text).unwrap().mount_point, PathBuf::from("/mnt/all"));
        let sub = parse_mountinfo(text.lines().next().unwrap()).unwrap();
        assert_eq!(sub.root, "/sub");
    }

    #[test]
    fn a_line_that_names_cgroup2_elsewhere_is_not_a_cgroup2_mount() {
        assert_eq!(parse_mountinfo("70 1 0:40 / /cgroup2 rw - tmpfs cgroup2 rw\n"), None);
        assert_eq!(parse_mountinfo("garbage - cgroup2\n"), None);
    }

    #[test]
    fn own_cgroup_comes_from_the_0_line() {
        let text = "9:name=systemd:/\n4:memory:/process_api/abc\n0::/user.slice/a:b\n";
        assert_eq!(parse_proc_cgroup(text).as_deref(), Some("/user.slice/a:b"));
        assert_eq!(parse_proc_cgroup("0::/\n").as_deref(), Some("/"));
        assert_eq!(parse_proc_cgroup("4:memory:/x\n"), None);
    }

    #[test]
    fn cgroup_dirs_are_joined_under_the_mount_root() {
        let all = Cgroup2Mount { mount_point: "/sys/fs/cgroup/unified".into(), root: "/".into() };
        assert_eq!(cgroup_dir(&all, "/").unwrap(), PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(cgroup_dir(&all, "/a/b").unwrap(), PathBuf::from("/sys/fs/cgroup/unified/a/b"));
        let sub = Cgroup2Mount { mount_point: "/mnt/sub".into(), root: "/sub".into() };
        assert_eq!(cgroup_dir(&sub, "/sub").unwrap(), PathBuf::from("/mnt/sub"));
        assert_eq!(cgroup_dir(&sub, "/sub/x").unwrap(), PathBuf::from("/mnt/sub/x"));
        assert_eq!(cgroup_dir(&sub, "/subway"), None);
        assert_eq!(cgroup_dir(&sub, "/other"), None);
    }

    #[test]
    fn v1_controllers_are_those_with_a_hierarchy() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t4\t17\t1\nhugetlb\t0\t1\t1\npids\t8\t1\t0\n";
        assert_eq!(parse_v1_controllers(text), vec!["cpu", "memory"]);
        assert!(parse_v1_controllers("").is_empty());
    }
}
