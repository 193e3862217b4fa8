use super::*;

/// Runs a program on (arch, nr, args) as the kernel would, for the opcodes husk emits.
fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let ins = prog[pc];
        pc += 1;
        match ins.code {
            LD_W_ABS => {
                let k = ins.k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            AND_K => acc &= ins.k,
            RET_K => return ins.k,
            JA => pc += ins.k as usize,
            JEQ_K | JGT_K | JGE_K => {
                let t = match ins.code {
                    JEQ_K => acc == ins.k,
                    JGT_K => acc > ins.k,
                    _ => acc >= ins.k,
                };
                pc += if t { ins.jt } else { ins.jf } as usize;
            }
            c => panic!("unexpected opcode {:#x}", c),
        }
    }
}

const ARCH: u32 = 0xc000_003e;
const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0001;
const ENOSYS: u32 = 0x0005_0026;

fn nr(name: &str) -> u32 {
    x86_64::SYSCALLS.iter().find(|(n, _)| *n == name).unwrap().1
}

fn default_caps() -> Vec<String> {
    crate::ns::caps::resolve(&[], &[]).unwrap()
}

#[test]
fn default_profile_allows_ordinary_calls_and_denies_the_rest() {
    let s = for_container(&Choice::Default, &default_caps()).unwrap().unwrap();
    let p = compile(&s).unwrap();
    for ok in ["read", "write", "openat", "execve", "mmap", "exit_group", "setresuid", "capset", "arch_prctl"] {
        assert_eq!(run(&p, ARCH, nr(ok), [0; 6]), ALLOW, "{}", ok);
    }
    for denied in ["unshare", "mount", "keyctl", "add_key", "setns", "bpf", "reboot", "kexec_load"] {
        assert_eq!(run(&p, ARCH, nr(denied), [0; 6]), EPERM, "{}", denied);
    }
    // clone: plain fork and threads yes, namespaces no; clone3 ENOSYS
    let clone = nr("clone");
    assert_eq!(run(&p, ARCH, clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(run(&p, ARCH, clone, [0x003d_0f00, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(run(&p, ARCH, clone, [libc::CLONE_NEWUSER as u64 | 17, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(run(&p, ARCH, clone, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]), EPERM);
    assert_eq!(run(&p, ARCH, nr("clone3"), [0; 6]), ENOSYS);
    // socket: not AF_VSOCK (40); personality: only the listed values
    assert_eq!(run(&p, ARCH, nr("socket"), [2, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(run(&p, ARCH, nr("socket"), [40, 1, 0, 0, 0, 0]), EPERM);
    assert_eq!(run(&p, ARCH, nr("socket"), [40 | 1 << 32, 1, 0, 0, 0, 0]), ALLOW);
    assert_eq!(run(&p, ARCH, nr("personality"), [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(run(&p, ARCH, nr("personality"), [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(run(&p, ARCH, nr("personality"), [0x0040_0000, 0, 0, 0, 0, 0]), EPERM);
    // another ABI (i386) and x32 numbers
    assert_eq!(run(&p, 0x4000_0003, 0, [0; 6]), EPERM);
    assert_eq!(run(&p, ARCH, nr("read") | 0x4000_0000, [0; 6]), EPERM);
    // an unknown number
    assert_eq!(run(&p, ARCH, 999, [0; 6]), EPERM);
}

#[test]
fn capabilities_select_rules_as_in_docker() {
    let mut caps = default_caps();
    caps.push("CAP_SYS_ADMIN".into());
    let p = compile(&for_container(&Choice::Default, &caps).unwrap().unwrap()).unwrap();
    assert_eq!(run(&p, ARCH, nr("mount"), [0; 6]), ALLOW);
    assert_eq!(run(&p, ARCH, nr("clone"), [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(run(&p, ARCH, nr("clone3"), [0; 6]), ALLOW);
    let p = compile(&for_container(&Choice::Default, &[]).unwrap().unwrap()).unwrap();
    assert_eq!(run(&p, ARCH, nr("chroot"), [0; 6]), EPERM);
    assert_eq!(run(&p, ARCH, nr("open_by_handle_at"), [0; 6]), EPERM);
}

#[test]
fn every_operator_compares_64_bit_values() {
    let ops = [
        ("SCMP_CMP_EQ", 5u64, &[(5u64, true), (6, false), (5 | 1 << 32, false)][..]),
        ("SCMP_CMP_NE", 5, &[(5, false), (6, true), (5 | 1 << 32, true)]),
        ("SCMP_CMP_GT", 1 << 32 | 10, &[(1 << 32 | 11, true), (1 << 32 | 10, false), (2 << 32, true), (11, false)]),
        ("SCMP_CMP_GE", 1 << 32 | 10, &[(1 << 32 | 10, true), (1 << 32 | 9, false), (2 << 32, true), (99, false)]),
        ("SCMP_CMP_LT", 1 << 32 | 10, &[(1 << 32 | 9, true), (1 << 32 | 10, false), (99, true), (2 << 32, false)]),
        ("SCMP_CMP_LE", 1 << 32 | 10, &[(1 << 32 | 10, true), (1 << 32 | 11, false), (99, true), (2 << 32, false)]),
    ];
    for (name, value, cases) in ops {
        let text = format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13,
               "args":[{{"index":2,"value":{},"op":"{}"}}]}}]}}"#,
            value, name
        );
        let p = compile(&parse(&text, &[], "6.1.0").unwrap()).unwrap();
        for (arg, denied) in cases {
            let want = if *denied { 0x0005_000d } else { ALLOW };
            assert_eq!(run(&p, ARCH, nr("mkdir"), [0, 0, *arg, 0, 0, 0]), want, "{} {} vs {}", name, arg, value);
        }
    }
    let masked = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_KILL_PROCESS",
        "args":[{"index":1,"value":4095,"valueTwo":448,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#;
    let p = compile(&parse(masked, &[], "6.1.0").unwrap()).unwrap();
    assert_eq!(run(&p, ARCH, nr("mkdir"), [0, 0o700, 0, 0, 0, 0]), 0x8000_0000);
    assert_eq!(run(&p, ARCH, nr("mkdir"), [0, 0o755, 0, 0, 0, 0]), ALLOW);
    // with an allow-by-default profile, other ABIs still get EPERM, not "allow"
    assert_eq!(run(&p, 0x4000_0003, 39, [0; 6]), EPERM);
}

#[test]
fn rules_of_one_syscall_apply_in_order_then_the_default() {
    let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
        {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
        {"name":"kill","action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":9,"op":"SCMP_CMP_EQ"}]},
        {"names":["kill"],"action":"SCMP_ACT_LOG","args":[{"index":1,"value":15,"op":"SCMP_CMP_EQ"}]},
        {"names":["no_such_call_on_this_arch"],"action":"SCMP_ACT_ALLOW"}]}"#;
    let p = compile(&parse(text, &[], "6.1.0").unwrap()).unwrap();
    assert_eq!(run(&p, ARCH, nr("write"), [0; 6]), ALLOW);
    assert_eq!(run(&p, ARCH, nr("kill"), [1, 9, 0, 0, 0, 0]), EPERM);
    assert_eq!(run(&p, ARCH, nr("kill"), [1, 15, 0, 0, 0, 0]), 0x7ffc_0000);
    assert_eq!(run(&p, ARCH, nr("kill"), [1, 2, 0, 0, 0, 0]), ENOSYS);
    assert_eq!(run(&p, ARCH, nr("open"), [0; 6]), ENOSYS);
}

#[test]
fn includes_and_excludes() {
    let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["a"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"99.1"}},
        {"names":["b"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}},
        {"names":["c"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["s390x"]}},
        {"names":["d"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"],"caps":["CAP_KILL","CAP_CHOWN"]}},
        {"names":["e"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}},
        {"names":["f"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#;
    let s = parse(text, &["CAP_KILL".into(), "CAP_CHOWN".into()], "6.1.0-13-amd64").unwrap();
    let names: Vec<String> = s.syscalls().iter().flatten().flat_map(|s| s.names().clone()).collect();
    assert_eq!(names, ["b", "d", "e"]);
    let s = parse(text, &["CAP_SYS_ADMIN".into()], "4.9").unwrap();
    let names: Vec<String> = s.syscalls().iter().flatten().flat_map(|s| s.names().clone()).collect();
    assert_eq!(names, ["b", "f"]);
}

#[test]
fn unsupported_or_malformed_profiles_are_refused_in_one_line() {
    let bad = [
        ("{", "EOF"),
        (r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#, "unknown variant"),
        (r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#, "NOTIFY"),
        (r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock"}"#, "agents"),
        (r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}"#, "names no system call"),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
            "index 6",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_APPROX"}]}]}"#,
            "unknown variant",
        ),
        (r#"{"defaultAction":"SCMP_ACT_ALLOW","bogusField":1}"#, "unknown field"),
    ];
    for (text, want) in bad {
        let e = format!("{:#}", parse(text, &[], "6.1").unwrap_err());
        assert!(e.contains(want) && !e.contains('\n'), "{:?}: {}", text, e);
    }
    // Docker's own format, with architectures, archMap, comments and flags, is accepted
    let ok = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64"],
        "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
        "flags":["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","comment":"x","args":[],"includes":{},"excludes":{}}]}"#;
    let s = parse(ok, &[], "6.1").unwrap();
    assert_eq!(flags(&s), 4);
}

/// What the profile says, evaluated rule by rule, for one call.
fn reference(s: &LinuxSeccomp, name: &str, args: [u64; 6]) -> u32 {
    for r in s.syscalls().iter().flatten().filter(|r| r.names().iter().any(|n| n == name)) {
        let holds = r.args().iter().flatten().all(|a| {
            let (x, v) = (args[a.index()], a.value());
            match a.op() {
                LinuxSeccompOperator::ScmpCmpEq => x == v,
                LinuxSeccompOperator::ScmpCmpNe => x != v,
                LinuxSeccompOperator::ScmpCmpLt => x < v,
                LinuxSeccompOperator::ScmpCmpLe => x <= v,
                LinuxSeccompOperator::ScmpCmpGt => x > v,
                LinuxSeccompOperator::ScmpCmpGe => x >= v,
                LinuxSeccompOperator::ScmpCmpMaskedEq => x & v == a.value_two().unwrap_or(0),
            }
        });
        if holds {
            return action_value(r.action(), r.errno_ret()).unwrap();
        }
    }
    action_value(s.default_action(), s.default_errno_ret()).unwrap()
}

#[test]
fn the_search_finds_every_system_call() {
    for caps in [default_caps(), vec![], crate::ns::caps::privileged(&[]).unwrap()] {
        let s = for_container(&Choice::Default, &caps).unwrap().unwrap();
        let p = compile(&s).unwrap();
        assert!(p.len() < MAX_INSNS / 2, "{}", p.len());
        for (name, nr) in x86_64::SYSCALLS {
            for args in [[0; 6], [40, 0, 0, 0, 0, 0], [8, 0, 0, 0, 0, 0], [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]] {
                assert_eq!(run(&p, ARCH, *nr, args), reference(&s, name, args), "{} {:?}", name, args);
            }
        }
    }
}

#[test]
fn numbers_no_rule_names_get_the_default_and_the_program_stays_small() {
    let s = for_container(&Choice::Default, &default_caps()).unwrap().unwrap();
    let p = compile(&s).unwrap();
    // Ranges of equal code: Docker's ~350 allowed calls need far fewer instructions.
    assert!(p.len() < 300, "{} instructions", p.len());
    let known: Vec<u32> = x86_64::SYSCALLS.iter().map(|(_, nr)| *nr).collect();
    for nr in (0..1000).chain([0x3fff_fffe, 0x3fff_ffff]).filter(|nr| !known.contains(nr)) {
        assert_eq!(run(&p, ARCH, nr, [0; 6]), EPERM, "{}", nr);
    }
}
