//! User-defined networks: `husk network create|ls|inspect|rm`, containers on one network
//! talking by name (busybox nc), no way across networks (by name nor by address), the
//! holder's lifetime (one per network while containers are on it, none afterwards),
//! `/etc/hosts` kept up to date in running containers, outbound connectivity through
//! the network's pasta (to the host's loopback, with allow_host_loopback) and none
//! for --internal networks, and the one-line refusals. Real namespaces; traffic stays
//! between the test's own namespaces and the host's loopback.
mod common;

use common::{shared_registry, Husk, Output, TestUser};
use std::time::{Duration, Instant};

/// A Husk with these networks made (`--internal` for names that start with `closed`).
fn setup(user: TestUser, networks: &[&str]) -> Husk {
    let h = common::husk_with_tun(user);
    for n in networks {
        let internal: &[&str] = if n.starts_with("closed") { &["--internal"] } else { &[] };
        h.run(&[&["network", "create"], internal, &[n]].concat()).assert_ok();
    }
    h
}

fn busybox() -> String {
    format!("{}/busybox:latest", shared_registry().host())
}

/// `husk run -q OPTS... busybox sh -c SCRIPT`
fn sh(h: &Husk, opts: &[&str], script: &str) -> Output {
    let image = busybox();
    let mut a: Vec<&str> = vec!["run", "-q"];
    a.extend(opts);
    a.extend([image.as_str(), "sh", "-c", script]);
    h.run(&a)
}

/// A detached server on `network` answering every connection on 8080 with `answer`.
fn server(h: &Husk, name: &str, network: &str, answer: &str) -> String {
    let script = format!("while true; do echo {answer} | nc -l -p 8080; done");
    let out = sh(h, &["-d", "--name", name, "--network", network], &script);
    out.assert_ok().stdout.trim().to_string()
}

/// This Husk's processes whose name passes `pick`.
fn processes(h: &Husk, pick: impl Fn(&str) -> bool) -> Vec<i32> {
    h.leftover_processes()
        .into_iter()
        .filter(|p| pick(std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim()))
        .collect()
}

/// The holders (processes named husk-network).
fn holders(h: &Husk) -> Vec<i32> {
    processes(h, |c| c == "husk-network")
}

/// Neither a holder nor its pasta is left (within a few seconds).
#[track_caller]
fn wait_for_no_holder(h: &Husk) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = || processes(h, |c| c == "husk-network" || c.starts_with("pas"));
    while !left().is_empty() {
        assert!(Instant::now() < deadline, "holder or pasta left running: {:?}", left());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn inspect_json(h: &Husk, args: &[&str]) -> serde_json::Value {
    let out = h.run(args);
    serde_json::from_str(&out.assert_ok().stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn address_of(h: &Husk, container: &str, network: &str) -> String {
    let j = inspect_json(h, &["inspect", container]);
    j[0]["NetworkSettings"]["Networks"][network]["IPAddress"].as_str().unwrap().to_string()
}

#[test]
fn create_ls_inspect_rm() {
    let h = setup(TestUser::NoSub, &[]);
    let id = h.run(&["network", "create", "front"]).assert_ok().stdout.trim().to_string();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    h.run(&["network", "create", "back"]).assert_ok();
    h.run(&["network", "create", "--subnet", "10.99.0.0/16", "--gateway", "10.99.0.254", "--internal", "fixed"])
        .assert_ok();

    let line = h.run(&["network", "create", "front"]).error_line("duplicate name").to_string();
    assert!(line.contains("front") && line.contains("already exists"), "{line}");
    let line = h.run(&["network", "create", "--subnet", "10.89.0.128/25", "clash"]).error_line("overlap").to_string();
    assert!(line.contains("overlaps network front"), "{line}");
    for bad in [
        &["network", "create", "host"][..],
        &["network", "create", "x"],
        &["network", "create", "--subnet", "10.1.2.3/24", "x1"],
    ] {
        h.run(bad).error_line(&format!("{bad:?}"));
    }

    let table = h.run(&["network", "ls"]).assert_ok().stdout.clone();
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NETWORK", "ID", "NAME", "DRIVER", "SUBNET"], "{table}");
    assert_eq!(rows[1][1..], ["back", "bridge", "10.89.1.0/24"][..], "{table}");
    assert_eq!(rows[2][1..], ["fixed", "bridge", "10.99.0.0/16"][..], "{table}");
    assert_eq!(rows[3], [&id[..12], "front", "bridge", "10.89.0.0/24"], "{table}");
    let quiet = h.run(&["network", "ls", "-q"]).assert_ok().stdout.clone();
    assert_eq!(quiet.lines().count(), 3);
    assert!(quiet.lines().any(|l| l == &id[..12]), "{quiet}");
    let all = inspect_json(&h, &["network", "ls", "--format", "json"]);
    assert_eq!(all.as_array().unwrap().len(), 3);

    let j = inspect_json(&h, &["network", "inspect", "fixed", &id[..8]]);
    assert_eq!(j[0]["Name"], "fixed");
    assert_eq!(j[0]["IPAM"]["Config"][0]["Subnet"], "10.99.0.0/16");
    assert_eq!(j[0]["IPAM"]["Config"][0]["Gateway"], "10.99.0.254");
    assert_eq!(j[0]["Internal"], true);
    assert_eq!(j[1]["Id"], id.as_str());
    assert_eq!(j[1]["Driver"], "bridge");
    assert_eq!(j[1]["Containers"], serde_json::json!({}));
    let out = h.run(&["network", "inspect", "nosuch"]);
    assert_eq!(out.status, 125, "{out:?}");
    assert!(out.stderr.contains("network nosuch not found"), "{out:?}");

    assert_eq!(h.run(&["network", "rm", "front", "back"]).assert_ok().stdout, "front\nback\n");
    let line = h.run(&["network", "rm", "front"]).error_line("rm of a removed network").to_string();
    assert!(line.contains("network front not found"), "{line}");
    h.run(&["network", "rm", "-f", "front"]).assert_ok();
    // The freed subnet is handed out again.
    h.run(&["network", "create", "again"]).assert_ok();
    let j = inspect_json(&h, &["network", "inspect", "again"]);
    assert_eq!(j[0]["IPAM"]["Config"][0]["Subnet"], "10.89.0.0/24");
}

/// A server and a client on one network: the client reaches the server by its name,
/// while the server runs its /etc/hosts names the client, and afterwards it does not.
fn talk_by_name(user: TestUser) {
    let h = setup(user, &["app"]);
    let id = server(&h, "srv", "app", "hello-from-srv");
    let got = sh(&h, &["--rm", "--network", "app"], "nc srv 8080 </dev/null");
    assert_eq!(got.assert_ok().stdout.trim(), "hello-from-srv", "{got:?}");

    // The address and the network are shown by inspect, ps and network inspect.
    let addr = address_of(&h, "srv", "app");
    assert!(addr.starts_with("10.89.0."), "{addr}");
    let ps = inspect_json(&h, &["ps", "--format", "json", "--filter", "network=app"]);
    assert_eq!(ps[0]["Networks"][0], "app");
    assert_eq!(ps[0]["IPAddress"], addr.as_str());
    let net = inspect_json(&h, &["network", "inspect", "app"]);
    assert_eq!(net[0]["Containers"][&id]["Name"], "srv");
    assert_eq!(net[0]["Containers"][&id]["IPv4Address"], format!("{addr}/24"));
    assert_eq!(inspect_json(&h, &["inspect", "srv"])[0]["HostConfig"]["NetworkMode"], "app");

    // /etc/hosts of a running container follows the network's members.
    sh(&h, &["-d", "--name", "client", "--network", "app"], "sleep 300").assert_ok();
    let hosts = h.run(&["exec", "srv", "cat", "/etc/hosts"]).assert_ok().stdout.clone();
    assert!(hosts.lines().any(|l| l.ends_with(" client") || l.contains("\tclient")), "{hosts}");
    assert!(hosts.lines().any(|l| l.starts_with(&format!("{addr}\t")) && l.contains("srv")), "{hosts}");
    let from_client = h.run(&["exec", "client", "sh", "-c", "nc srv 8080 </dev/null; hostname -i"]);
    let text = from_client.assert_ok().stdout.clone();
    assert!(text.starts_with("hello-from-srv\n10.89.0."), "{text}");
    h.run(&["rm", "-f", "client"]).assert_ok();
    let hosts = h.run(&["exec", "srv", "cat", "/etc/hosts"]).assert_ok().stdout.clone();
    assert!(!hosts.contains("client"), "{hosts}");

    assert_eq!(holders(&h).len(), 1, "one holder for the network");
    let cgroup = cgroup_of(&h, &id);
    if user == TestUser::Root {
        // Root's containers on a network get their own (freezer) cgroup, as on any other.
        assert!(cgroup.as_ref().is_some_and(|c| c.is_dir()), "root's container on a network has a cgroup: {cgroup:?}");
    }
    h.run(&["rm", "-f", "srv"]).assert_ok();
    if let Some(c) = cgroup {
        assert!(!c.exists(), "{} is left after rm -f", c.display());
    }
    wait_for_no_holder(&h);
}

/// The cgroup recorded in a container's state, if any.
fn cgroup_of(h: &Husk, id: &str) -> Option<std::path::PathBuf> {
    let state = std::fs::read_to_string(h.store().join("containers").join(id).join("state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&state).ok()?;
    v["cgroup"].as_str().map(std::path::PathBuf::from)
}

#[test]
fn containers_talk_by_name_with_subordinate_ids() {
    talk_by_name(TestUser::Sub);
}

#[test]
fn containers_talk_by_name_without_subordinate_ids() {
    talk_by_name(TestUser::NoSub);
}

#[test]
fn containers_talk_by_name_as_root() {
    talk_by_name(TestUser::Root);
}

/// Containers on another network reach the server neither by name nor by address.
/// (The other network is --internal: a network with outbound connectivity would send
/// the lookup of an unknown name, and packets to an address it does not route, to the
/// host's resolver and gateway, which is traffic beyond the test's namespaces.)
#[test]
fn networks_are_isolated() {
    let h = setup(TestUser::Sub, &["blue", "closed-green"]);
    server(&h, "web", "blue", "blue-secret");
    let addr = address_of(&h, "web", "blue");
    let same = sh(&h, &["--rm", "--network", "blue"], &format!("nc {addr} 8080 </dev/null"));
    assert_eq!(same.assert_ok().stdout.trim(), "blue-secret");
    let script = format!(
        "grep -c web /etc/hosts; timeout 3 nc web 8080 </dev/null; timeout 3 nc {addr} 8080 </dev/null; ip -4 -o addr show eth0"
    );
    let other = sh(&h, &["--rm", "--network", "closed-green"], &script);
    assert!(!other.stdout.contains("blue-secret"), "{other:?}");
    assert!(other.stdout.starts_with("0\n"), "{other:?}");
    assert!(other.stdout.contains("inet 10.89.1."), "{other:?}");
    h.run(&["rm", "-f", "web"]).assert_ok();
    wait_for_no_holder(&h);
}

/// One holder per network while containers are on it, whatever the number started at
/// once; none after the last one ends; the next container starts a new one.
#[test]
fn holder_lives_as_long_as_its_containers() {
    let h = setup(TestUser::NoSub, &["life"]);
    let image = busybox();
    let mut starting: Vec<_> = (0..3)
        .map(|i| {
            let name = format!("c{i}");
            h.cmd(&["run", "-q", "-d", "--name", &name, "--network", "life", &image, "sleep", "300"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in &mut starting {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(holders(&h).len(), 1, "one holder for three containers started at once");
    let mut addresses: Vec<String> = (0..3).map(|i| address_of(&h, &format!("c{i}"), "life")).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 3, "{addresses:?}");
    h.run(&["stop", "-t", "0", "c0", "c1"]).assert_ok();
    assert_eq!(holders(&h).len(), 1, "c2 still runs");
    let first = holders(&h)[0];
    h.run(&["stop", "-t", "0", "c2"]).assert_ok();
    wait_for_no_holder(&h);
    assert!(!common::alive(first as i64));
    // A stopped container shows no address.
    assert_eq!(address_of(&h, "c2", "life"), "");

    // Started again (two of them by one command), they get a new holder.
    h.run(&["start", "c0", "c1"]).assert_ok();
    let again = holders(&h);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], first);
    let out = h.run(&["exec", "c0", "sh", "-c", "grep -c c1 /etc/hosts"]);
    assert_eq!(out.assert_ok().stdout.trim(), "1");
    // A foreground run that ends leaves the network as it was.
    sh(&h, &["--rm", "--network", "life"], "true").assert_ok();
    assert_eq!(holders(&h), again);
    h.run(&["rm", "-f", "c0", "c1", "c2"]).assert_ok();
    wait_for_no_holder(&h);
}

/// One `husk start` of containers on different networks: each gets its own network.
#[test]
fn start_containers_on_different_networks() {
    let h = setup(TestUser::Sub, &["left", "right"]);
    let image = busybox();
    for (name, net) in [("l1", "left"), ("r1", "right"), ("plain", "none")] {
        h.run(&["create", "-q", "--name", name, "--network", net, &image, "sleep", "300"]).assert_ok();
    }
    assert!(holders(&h).is_empty(), "create starts no holder");
    assert_eq!(h.run(&["start", "l1", "r1", "plain"]).assert_ok().stdout, "l1\nr1\nplain\n");
    assert!(address_of(&h, "l1", "left").starts_with("10.89.0."));
    assert!(address_of(&h, "r1", "right").starts_with("10.89.1."));
    assert_eq!(holders(&h).len(), 2);
    h.run(&["rm", "-f", "l1", "r1", "plain"]).assert_ok();
    wait_for_no_holder(&h);
}

#[test]
fn rm_is_refused_while_a_container_uses_the_network() {
    let h = setup(TestUser::NoSub, &["busy"]);
    let image = busybox();
    h.run(&["create", "-q", "--name", "user1", "--network", "busy", &image, "true"]).assert_ok();
    let line = h.run(&["network", "rm", "busy"]).error_line("rm of a network in use").to_string();
    assert!(line.contains("in use by container user1"), "{line}");
    h.run(&["network", "rm", "-f", "busy"]).assert_ok();
    let out = h.run(&["start", "-a", "user1"]);
    assert!(out.error_line("start on a removed network").contains("network busy not found"), "{out:?}");
}

#[test]
fn errors_exit_125_with_one_line() {
    let h = setup(TestUser::Sub, &[]);
    let image = busybox();
    let out = h.run(&["run", "--rm", "--network", "nosuch", &image, "true"]);
    assert!(out.error_line("run on a missing network").contains("network nosuch not found"), "{out:?}");
    let out = h.run(&["create", "--network", "nosuch", &image, "true"]);
    assert!(out.error_line("create on a missing network").contains("network nosuch not found"), "{out:?}");
    h.run(&["network", "create", "pub"]).assert_ok();
    let out = h.run(&["run", "--rm", "--network", "pub", "-p", "8080", &image, "true"]);
    assert!(out.error_line("-p on a network").contains("-p/--publish"), "{out:?}");
    let out = h.run(&["run", "--rm", "--network", "pub:opt=1", &image, "true"]);
    out.error_line("options on a network");
    assert!(h.run(&["ps", "-aq"]).assert_ok().stdout.is_empty(), "no container was left behind");
    assert!(holders(&h).is_empty());

    // A full network: the container that finds no address is refused, and recorded as
    // a failed start (removed, with --rm).
    h.run(&["network", "create", "--internal", "--subnet", "10.98.0.0/30", "tiny"]).assert_ok();
    h.run(&["run", "-q", "-d", "--name", "first", "--network", "tiny", &image, "sleep", "300"]).assert_ok();
    let out = h.run(&["run", "-q", "--rm", "--network", "tiny", &image, "true"]);
    assert!(out.error_line("a full network").contains("no free address left in 10.98.0.0/30"), "{out:?}");
    let out = h.run(&["run", "-q", "-d", "--name", "second", "--network", "tiny", &image, "true"]);
    out.error_line("a full network, detached");
    let ps = h.run(&["ps", "-a", "--format", "json"]).assert_ok().stdout.clone();
    let ps: serde_json::Value = serde_json::from_str(&ps).unwrap();
    let states: Vec<(String, String)> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["Names"][0].as_str().unwrap().to_string(), c["State"].as_str().unwrap().to_string()))
        .collect();
    assert!(states.contains(&("first".into(), "running".into())), "{states:?}");
    assert!(states.contains(&("second".into(), "exited".into())), "{states:?}");
    assert_eq!(states.len(), 2, "{states:?}");
    h.run(&["rm", "-f", "first"]).assert_ok();
    wait_for_no_holder(&h);
}

/// With allow_host_loopback, the network's pasta takes containers to the host's
/// loopback (host.containers.internal); an --internal network has no way out at all.
#[test]
fn outbound_through_the_network() {
    let h = setup(TestUser::NoSub, &[]);
    let (port, server) = common::answer_once_on_loopback(b"hello-host\n");
    h.run(&["network", "create", "-o", "allow_host_loopback=true", "out"]).assert_ok();
    h.run(&["network", "create", "--internal", "closed"]).assert_ok();
    let j = inspect_json(&h, &["network", "inspect", "out", "closed"]);
    assert_eq!(j[0]["Options"]["allow_host_loopback"], "true");
    assert_eq!(j[1]["Internal"], true);
    // Debian 12's pasta does not pass the host's close on: nc gets 5 s.
    let script = format!("echo hi | timeout 5 nc host.containers.internal {port}; true");
    let out = sh(&h, &["--rm", "--network", "out"], &script);
    assert!(out.assert_ok().stdout.lines().next() == Some("hello-host"), "{out:?}");
    server.join().unwrap();
    assert!(processes(&h, |c| c.starts_with("pas")).is_empty() || !holders(&h).is_empty());
    wait_for_no_holder(&h);

    // Internal: no host.containers.internal, and the host's gateway address (which the
    // other network's pasta maps to the host's loopback) leads nowhere.
    let gw = sh(&h, &["--rm", "--network", "out"], "awk '/host.containers.internal/{print $1}' /etc/hosts");
    let gw = gw.assert_ok().stdout.trim().to_string();
    let script = format!("grep -c host.containers /etc/hosts; timeout 3 nc {gw} {port} </dev/null && echo reached");
    let out = sh(&h, &["--rm", "--network", "closed"], &script);
    assert_eq!(out.stdout.trim(), "0", "{out:?}");
    assert!(processes(&h, |c| c.starts_with("pas")).is_empty(), "an internal network runs no pasta");
    wait_for_no_holder(&h);
}
