//! `-u user[:group]` resolved as Docker does: names from the image's /etc/passwd and
//! /etc/group (read from the layers, top first), numbers as they are.
use anyhow::{bail, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// The content of `path` as the merged image shows it (None if absent or whited out).
pub fn read_image_file(layers_top_first: &[PathBuf], path: &str) -> Option<String> {
    for layer in layers_top_first {
        let p = layer.join(path.trim_start_matches('/'));
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() => return None, // whiteout
            Ok(m) if m.is_file() => return std::fs::read_to_string(&p).ok(),
            _ => {}
        }
        if opaque_parent(layer, path) {
            return None;
        }
    }
    None
}

fn opaque_parent(layer: &Path, path: &str) -> bool {
    let mut dir = Path::new(path.trim_start_matches('/')).parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if crate::layers::merge::is_opaque(&layer.join(d)) {
            return true;
        }
        dir = d.parent();
    }
    false
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
        (_, Some(f)) => (f[2].parse()?, f[3].parse()?, f[0].to_string(), f[5].to_string()),
        (Ok(uid), None) => (uid, 0, String::new(), "/".to_string()),
        (Err(_), None) => bail!("unable to find user {}: no matching entries in passwd file", user),
    };
    let groups: Vec<Vec<&str>> =
        group.unwrap_or("").lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match groups.iter().find(|f| f[0] == g) {
                Some(f) => f[2].parse()?,
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
    Ok(ResolvedUser { uid, gid, additional_gids: additional, home: if home.is_empty() { "/".into() } else { home } })
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
}
