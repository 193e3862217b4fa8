//! `--security-opt` and `--privileged`: what goes into the OCI config's
//! `linux.seccomp`, `process.noNewPrivileges` and masked paths.
use crate::ns::seccomp::{self, Choice};
use anyhow::{bail, Result};
use oci_spec::runtime::LinuxSeccomp;

#[derive(Debug, Default, Clone)]
pub struct Security {
    /// None: unconfined.
    pub seccomp: Option<LinuxSeccomp>,
    pub no_new_privileges: bool,
    /// No masked or read-only paths (and all capabilities, chosen by the caller).
    pub privileged: bool,
}

/// The options as Docker takes them: `seccomp=unconfined`, `seccomp=PROFILE.json`
/// (also `seccomp:…`), `no-new-privileges[=true|false]`. `caps` are the container's
/// capabilities, which choose among the profile's rules.
pub fn from_flags(opts: &[String], privileged: bool, caps: &[String]) -> Result<Security> {
    let mut choice = if privileged { Choice::Unconfined } else { Choice::Default };
    let mut no_new_privileges = false;
    for o in opts {
        let (key, value) = match o.find(['=', ':']) {
            Some(i) => (&o[..i], Some(&o[i + 1..])),
            None => (o.as_str(), None),
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => choice = Choice::Unconfined,
            ("seccomp", Some(p)) if !p.is_empty() && !privileged => choice = Choice::File(p.into()),
            // Docker: a privileged container runs unconfined whatever the profile.
            ("seccomp", Some(p)) if !p.is_empty() => {}
            ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
            ("no-new-privileges", Some("false")) => no_new_privileges = false,
            _ => bail!(
                "unsupported --security-opt {:?} (husk knows seccomp=unconfined, seccomp=PROFILE.json and no-new-privileges)",
                o
            ),
        }
    }
    Ok(Security { seccomp: seccomp::for_container(&choice, caps)?, no_new_privileges, privileged })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let caps = crate::ns::caps::resolve(&[], &[]).unwrap();
        let s = from_flags(&[], false, &caps).unwrap();
        assert!(s.seccomp.is_some() && !s.no_new_privileges && !s.privileged);
        let s = from_flags(&["seccomp=unconfined".into(), "no-new-privileges".into()], false, &caps).unwrap();
        assert!(s.seccomp.is_none() && s.no_new_privileges);
        assert!(from_flags(&["no-new-privileges:true".into()], false, &caps).unwrap().no_new_privileges);
        assert!(from_flags(&["seccomp=/nonexistent.json".into()], true, &caps).unwrap().seccomp.is_none());
        let e = from_flags(&["seccomp=/nonexistent.json".into()], false, &caps).unwrap_err();
        assert!(format!("{:#}", e).contains("/nonexistent.json"));
        assert!(from_flags(&["apparmor=x".into()], false, &caps).is_err());
        assert!(from_flags(&["seccomp=".into()], false, &caps).is_err());
    }
}
