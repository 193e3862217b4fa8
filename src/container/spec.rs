//! The OCI runtime config of a container, from the image config and the run options.
use anyhow::{Context, Result};
use oci_spec::runtime::Spec;
use serde_json::json;

/// Docker's masked and read-only paths.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub capabilities: Vec<String>,
    pub read_only: bool,
    pub own_network: bool,
    /// gid 5 (tty) exists in the user namespace, for devpts.
    pub tty_gid_mapped: bool,
    /// (host source, container destination, read-only)
    pub binds: Vec<(String, String, bool)>,
    /// (destination, options)
    pub tmpfs: Vec<(String, String)>,
    /// Seccomp, no_new_privs, --privileged.
    pub security: crate::container::security::Security,
}

pub fn build(i: &SpecInput) -> Result<Spec> {
    let devpts = if i.tty_gid_mapped {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    } else {
        "newinstance,ptmxmode=0666,mode=0620"
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", devpts]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ];
    if i.own_network {
        mounts.push(json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}));
    } else {
        // sysfs may only be mounted by the owner of the network namespace: bind the host's, read-only.
        // Recursive (a user namespace may not reveal what locked submounts hide), and
        // read-only all the way down, cgroup mounts included.
        mounts.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "ro"]}));
    }
    for (src, dst, ro) in &i.binds {
        let mut opts = vec!["rbind"];
        if *ro {
            opts.push("ro");
        }
        mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": opts}));
    }
    for (dst, opts) in &i.tmpfs {
        let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into()];
        o.extend(opts.split(',').filter(|s| !s.is_empty()).map(String::from));
        mounts.push(json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": o}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
        json!({"type": "user"}),
    ];
    if i.own_network {
        namespaces.push(json!({"type": "network"}));
    }
    let doc = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": i.uid, "gid": i.gid, "additionalGids": i.additional_gids},
            "args": i.args,
            "env": i.env,
            "cwd": i.cwd,
            "capabilities": {
                "bounding": i.capabilities, "effective": i.capabilities, "permitted": i.capabilities,
                "inheritable": [], "ambient": []
            },
            "noNewPrivileges": i.security.no_new_privileges
        },
        // Relative to the bundle (the container's directory), as OCI has it.
        "root": {"path": format!("../../{}", super::ROOTFS_MOUNT_POINT), "readonly": i.read_only},
        "hostname": i.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": if i.security.privileged { &[][..] } else { &MASKED_PATHS[..] },
            "readonlyPaths": if i.security.privileged { &[][..] } else { &READONLY_PATHS[..] },
            "seccomp": i.security.seccomp
        }
    });
    serde_json::from_value(doc).context("building the OCI runtime config")
}

/// Sets `KEY=VALUE` in an environment list, replacing an earlier value of KEY.
pub fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split('=').next().unwrap_or(kv);
    env.retain(|e| e.split('=').next() != Some(key));
    env.push(kv.to_string());
}
