//! Which host ids a user may map into a user namespace (/etc/subuid, /etc/subgid).
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub host_start: u32,
    pub count: u32,
}

/// How container ids map to host ids for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMapping {
    /// Container 0 is the user, 1..=count are the subordinate range.
    Range { uid: u32, gid: u32, subuid: IdRange, subgid: IdRange },
    /// Only container 0 exists, and it is the user.
    Single { uid: u32, gid: u32 },
    /// Root on the host without subordinate ranges: container ids are host ids.
    Identity,
}

/// The login name of `uid`: from /etc/passwd, else from the system's other user
/// databases (LDAP, sssd, systemd...) through `getent`. husk is a static binary and does
/// not load the name-service modules itself (see fetch/resolve.rs for why).
fn user_name(uid: u32) -> Option<String> {
    let files = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if let Some(name) = name_in_passwd(&files, uid) {
        return Some(name);
    }
    let out = std::process::Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    name_in_passwd(&String::from_utf8_lossy(&out.stdout), uid)
}

fn name_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse() == Ok(uid) && !f[0].is_empty()).then(|| f[0].to_string())
    })
}

impl IdMapping {
    /// Works out the mapping for the calling user, as husk uses it.
    pub fn detect() -> IdMapping {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let name = user_name(uid).unwrap_or_default();
        let subuid = lookup(Path::new("/etc/subuid"), &name, uid);
        let subgid = lookup(Path::new("/etc/subgid"), &name, uid);
        match (subuid, subgid) {
            (Some(subuid), Some(subgid)) if uid == 0 || has_id_map_helpers() => {
                IdMapping::Range { uid, gid, subuid, subgid }
            }
            _ if uid == 0 => IdMapping::Identity,
            _ => IdMapping::Single { uid, gid },
        }
    }

    /// uid_map and gid_map lines (container, host, count).
    pub fn uid_lines(&self) -> Vec<(u32, u32, u32)> {
        match self {
            IdMapping::Range { uid, subuid, .. } => {
                vec![(0, *uid, 1), (1, subuid.host_start, subuid.count)]
            }
            IdMapping::Single { uid, .. } => vec![(0, *uid, 1)],
            IdMapping::Identity => vec![(0, 0, u32::MAX)],
        }
    }

    pub fn gid_lines(&self) -> Vec<(u32, u32, u32)> {
        match self {
            IdMapping::Range { gid, subgid, .. } => {
                vec![(0, *gid, 1), (1, subgid.host_start, subgid.count)]
            }
            IdMapping::Single { gid, .. } => vec![(0, *gid, 1)],
            IdMapping::Identity => vec![(0, 0, u32::MAX)],
        }
    }

    /// True when image file owners can be kept.
    pub fn keeps_owners(&self) -> bool {
        !matches!(self, IdMapping::Single { .. })
    }

    /// The host uid a container uid lands on, if mapped.
    pub fn host_uid(&self, ctr: u32) -> Option<u32> {
        map_id(&self.uid_lines(), ctr)
    }

    pub fn host_gid(&self, ctr: u32) -> Option<u32> {
        map_id(&self.gid_lines(), ctr)
    }

    pub fn describe(&self) -> String {
        match self {
            IdMapping::Range { uid, subuid, .. } => format!(
                "subordinate ids: container 0 = uid {}, 1-{} = host {}-{}",
                uid,
                subuid.count,
                subuid.host_start,
                subuid.host_start as u64 + subuid.count as u64 - 1
            ),
            IdMapping::Single { uid, .. } => {
                format!("single id: container root = uid {}, image file owners not kept", uid)
            }
            IdMapping::Identity => "identity (running as root)".into(),
        }
    }
}

fn map_id(lines: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    lines.iter().find(|(c, _, n)| id >= *c && (id - c) < *n).map(|(c, h, _)| h + (id - c))
}

fn has_id_map_helpers() -> bool {
    find_in_path("newuidmap").is_some() && find_in_path("newgidmap").is_some()
}

pub fn find_in_path(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The first range for `name` or the numeric `uid` in a subid file.
pub fn lookup(file: &Path, name: &str, uid: u32) -> Option<IdRange> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_subid(&text, name, uid)
}

fn parse_subid(text: &str, name: &str, uid: u32) -> Option<IdRange> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let (who, start, count) = (parts.next()?, parts.next()?, parts.next()?);
        if who != name && who != uid.to_string() {
            return None;
        }
        let range = IdRange { host_start: start.parse().ok()?, count: count.parse().ok()? };
        (range.count > 0).then_some(range)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_of_a_uid_comes_from_its_passwd_line() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nbroken\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(name_in_passwd(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(name_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(passwd, 1001), None);
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn subid_lines_match_by_name_or_uid() {
        let text = "alice:100000:65536\n# comment\n1001:300000:1000\nbob:x:1\n";
        assert_eq!(parse_subid(text, "alice", 1000), Some(IdRange { host_start: 100000, count: 65536 }));
        assert_eq!(parse_subid(text, "carol", 1001), Some(IdRange { host_start: 300000, count: 1000 }));
        assert_eq!(parse_subid(text, "bob", 5), None);
    }

    #[test]
    fn ids_map_through_ranges() {
        let m = IdMapping::Range {
            uid: 1000,
            gid: 1000,
            subuid: IdRange { host_start: 100000, count: 65536 },
            subgid: IdRange { host_start: 100000, count: 65536 },
        };
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_uid(1), Some(100000));
        assert_eq!(m.host_uid(1000), Some(100999));
        assert_eq!(m.host_uid(65537), None);
        assert_eq!(IdMapping::Single { uid: 5, gid: 5 }.host_uid(1), None);
    }
}
