//! `-u user[:group]` resolved as Docker does: names from the image's /etc/passwd and
//! /etc/group (read from the layers, top first), numbers as they are.
use crate::layers::stack::{Found, Stack};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// The most of an image's /etc/passwd or /etc/group husk reads (they are read whole).
pub const MAX_IMAGE_FILE: u64 = 32 << 20;

/// The content of `path` as the merged image shows it: None if it is absent, whited
/// out or not a regular file. Symlinks on the way are followed inside the image (an
/// image whose /etc is a symlink out must not make husk read the host's files).
pub fn read_image_file(layers_top_first: &[PathBuf], path: &str) -> Result<Option<String>> {
    let found = Stack::of_layers(layers_top_first)
        .resolve(path.as_bytes())
        .with_context(|| format!("looking up the image's {}", path))?;
    let Some(Found::Other { path: host, meta, .. }) = found else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    // Only its last component could have changed since the lookup: never follow it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&host)
        .with_context(|| format!("reading the image's {}", path))?;
    let size = file.metadata().with_context(|| format!("reading the image's {}", path))?.len();
    if size > MAX_IMAGE_FILE {
        bail!(
            "the image's {} is {}, more than husk reads ({}); refused",
            path,
            crate::util::human_size(size),
            crate::util::human_size(MAX_IMAGE_FILE)
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_IMAGE_FILE).read_to_end(&mut bytes).with_context(|| format!("reading the image's {}", path))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ResolvedUser> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entries: Vec<Vec<&str>> =
        passwd.unwrap_or("").lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 7).collect();
    let found = match user.parse::<u32>() {
        Ok(uid) => entries.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid)),
        Err(_) => entries.iter().find(|f| f[0] == user),
    };
    let (uid, mut gid, name, home) = match (user.parse::<u32>(), found) {
        (_, Some(f)) => (
            id_field(f[2], "passwd", "uid", f[0])?,
            id_field(f[3], "passwd", "gid", f[0])?,
            f[0].to_string(),
            f[5].to_string(),
        ),
        (Ok(uid), None) => (uid, 0, String::new(), "/".to_string()),
        (Err(_), None) => bail!("unable to find user {}: no matching entries in passwd file", user),
    };
    let groups: Vec<Vec<&str>> =
        group.unwrap_or("").lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match groups.iter().find(|f| f[0] == g) {
                Some(f) => id_field(f[2], "group", "gid", f[0])?,
                None => bail!("unable to find group {}: no matching entries in group file", g),
            },
        };
    }
    let mut additional = vec![];
    if grp.is_none() && !name.is_empty() {
        for f in &groups {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !additional.contains(&g) {
                        additional.push(g);
                    }
                }
            }
        }
    }
    // (uid_t)-1 means "leave unchanged" to setresuid and chown: never an identity.
    if uid == u32::MAX || gid == u32::MAX {
        bail!("user {}: {} is not a valid id", spec, u32::MAX);
    }
    Ok(ResolvedUser { uid, gid, additional_gids: additional, home: if home.is_empty() { "/".into() } else { home } })
}

/// A uid or gid field of the image's passwd or group file.
fn id_field(field: &str, file: &str, what: &str, entry: &str) -> Result<u32> {
    field.parse().map_err(|_| {
        anyhow!("the image's /etc/{} gives {} the {} {:?}, which is not a valid id", file, entry, what, field)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app\n";

    #[test]
    fn names_and_numbers() {
        let r = resolve("app", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids.clone(), r.home.as_str()), (1000, 1000, vec![10], "/home/app"));
        let r = resolve("1000:wheel", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 10));
        let r = resolve("4242", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((r.uid, r.gid), (4242, 0));
        assert!(resolve("nobody", Some(PASSWD), Some(GROUP)).is_err());
        assert!(resolve("app:nogroup", Some(PASSWD), Some(GROUP)).is_err());
        assert_eq!(resolve("", Some(PASSWD), None).unwrap().uid, 0);
    }

    #[test]
    fn ids_out_of_range_are_refused_with_their_cause() {
        for spec in ["4294967296", "-1", "99999999999999999999", "1:2:3", "0:-5"] {
            let e = resolve(spec, Some(PASSWD), Some(GROUP)).unwrap_err().to_string();
            assert!(e.contains("unable to find"), "{spec}: {e}");
        }
        let e = resolve("4294967295", Some(PASSWD), Some(GROUP)).unwrap_err().to_string();
        assert!(e.contains("4294967295 is not a valid id"), "{e}");
        let e = resolve("0:4294967295", Some(PASSWD), Some(GROUP)).unwrap_err().to_string();
        assert!(e.contains("not a valid id"), "{e}");
        let big = "big:x:4294967296:0::/:/bin/sh\nneg:x:0:-1::/:/bin/sh\n";
        let e = resolve("big", Some(big), None).unwrap_err().to_string();
        assert!(e.contains("/etc/passwd gives big the uid \"4294967296\""), "{e}");
        let e = resolve("neg", Some(big), None).unwrap_err().to_string();
        assert!(e.contains("gives neg the gid \"-1\""), "{e}");
        let e = resolve("0:huge", Some(PASSWD), Some("huge:x:123456789012:\n")).unwrap_err().to_string();
        assert!(e.contains("/etc/group gives huge the gid"), "{e}");
    }
}
