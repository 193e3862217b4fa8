//! `husk push` against real registries (docker-registry on 127.0.0.1, access log on, so
//! every request husk makes is counted): uploads of what the registry lacks, nothing on
//! a second push, cross-repository mounts (from where an image was pulled, from where it
//! was pushed, from the names of the store's images), chunked uploads behind relative
//! `Location`s, Basic auth (htpasswd) and bearer tokens (a token server here that signs
//! with openssl), `--tls-verify`, and bad input.
//!
//! Every pushed image is checked by independent tools: `skopeo inspect` reads it (its
//! digest is the one husk printed) and root `podman run`, with a storage of its own,
//! runs it. husk runs as the unprivileged `husk-sub`.

mod common;

use base64::Engine as _;
use common::fake_registry::{Resp, Server};
use common::tls::Tls;
use common::{shared_registry, Husk, Output, Registry, RegistryOptions, TempDir, TestUser};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

fn husk() -> Husk {
    Husk::new(TestUser::Sub)
}

fn counted_registry() -> Registry {
    Registry::start_with(&RegistryOptions { access_log: true, ..Default::default() })
}

/// Pulls `name` (REPO:TAG) of the shared registry; returns its full reference.
fn pull_shared(h: &Husk, name: &str) -> String {
    let src = format!("{}/{name}", shared_registry().host());
    h.run(&["pull", "-q", &src]).assert_ok();
    src
}

/// One request of husk's, from the registry's access log.
#[derive(Debug, Clone)]
struct Access {
    method: String,
    target: String,
    status: u16,
}

impl Access {
    fn is(&self, method: &str, path_part: &str) -> bool {
        self.method == method && self.target.contains(path_part)
    }
}

/// husk's requests so far, in order (lines like
/// `127.0.0.1 - - [date] "PUT /v2/a/manifests/1 HTTP/1.1" 201 0 "" "husk/0.1.0"`).
fn husk_requests(reg: &Registry) -> Vec<Access> {
    reg.log()
        .lines()
        .filter(|l| l.contains("\"husk/"))
        .filter_map(|l| {
            let (_, rest) = l.split_once('"')?;
            let (request, rest) = rest.split_once('"')?;
            let mut r = request.split(' ');
            let (method, target) = (r.next()?.to_string(), r.next()?.to_string());
            let status = rest.split_whitespace().next()?.parse().ok()?;
            Some(Access { method, target, status })
        })
        .collect()
}

fn show(reqs: &[Access]) -> String {
    reqs.iter().map(|r| format!("  {} {} {}\n", r.method, r.target, r.status)).collect()
}

/// The blob uploads among `reqs`: POSTs that open one, PATCHes, PUTs that close one.
fn uploads(reqs: &[Access]) -> Vec<&Access> {
    reqs.iter()
        .filter(|r| {
            (r.method == "POST" && !r.target.contains("mount="))
                || r.method == "PATCH"
                || (r.method == "PUT" && r.target.contains("/blobs/"))
        })
        .collect()
}

/// `TAG: digest: sha256:… size: N` from husk push's stdout: (tag, digest, size).
#[track_caller]
fn pushed(out: &Output) -> (String, String, u64) {
    out.assert_ok();
    let line = out.stdout.trim();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert!(
        parts.len() == 5 && parts[1] == "digest:" && parts[3] == "size:" && parts[0].ends_with(':'),
        "unexpected push output: {out:?}"
    );
    (parts[0].trim_end_matches(':').to_string(), parts[2].to_string(), parts[4].parse().unwrap())
}

/// What `skopeo inspect` reads of an image in a registry: (digest, layer digests).
fn skopeo_inspect(reference: &str, creds: Option<&str>) -> (String, Vec<String>) {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false"]);
    if let Some(c2) = creds {
        c.arg(format!("--creds={c2}"));
    }
    let out = c.arg(format!("docker://{reference}")).stdin(Stdio::null()).output().expect("run skopeo");
    assert!(out.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    (v["Digest"].as_str().unwrap().to_string(), layers)
}

/// The manifest bytes `skopeo inspect --raw` reads.
fn skopeo_raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo inspect --raw {reference}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Checks a pushed image with skopeo (the digest husk printed, the layers of the source)
/// and runs `args` in it with root podman (storage, run and tmp dirs of its own;
/// runc, as crun refuses this machine's cgroup layout; rlimits podman may set without
/// CAP_SYS_RESOURCE); returns podman's stdout.
fn check_pushed(reference: &str, digest: &str, layers: &[String], creds: Option<&str>, args: &[&str]) -> String {
    let (got, got_layers) = skopeo_inspect(reference, creds);
    assert_eq!(got, digest, "skopeo reads {reference} with another digest than husk printed");
    assert_eq!(got_layers, layers, "layers of {reference}");
    let dir = TempDir::new_in(Path::new("/tmp"), "pm");
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.path().join("root"))
        .arg("--runroot")
        .arg(dir.path().join("run"))
        .arg("--tmpdir")
        .arg(dir.path().join("tmp"))
        .args(["--storage-driver", "overlay", "--runtime", "runc", "--cgroup-manager", "cgroupfs"])
        .args(["--events-backend", "file", "run", "--rm", "--network", "none", "--tls-verify=false"])
        .args(["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]);
    // podman 4.3's run has no --creds: an auth file
    let auth = creds.map(|c2| {
        let (user, password) = c2.split_once(':').unwrap();
        docker_config(reference.split('/').next().unwrap(), user, password)
    });
    if let Some(a) = &auth {
        c.arg("--authfile").arg(a.path().join("config.json"));
    }
    let out = c.arg(reference).args(args).stdin(Stdio::null()).output().expect("run podman");
    // podman mounts its overlay layers under its root; nothing may stay mounted there
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for m in
        mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&*dir.path().to_string_lossy()))
    {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
    assert!(
        out.status.success(),
        "podman run {reference} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The layer digests of an image in a registry (its manifest, as skopeo reads it).
fn layers_of(reference: &str) -> Vec<String> {
    let m: Value = serde_json::from_slice(&skopeo_raw(reference)).unwrap();
    m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

// ---------------------------------------------------------------------------
// uploads, a second push, -q and --digestfile
// ---------------------------------------------------------------------------

#[test]
fn push_uploads_what_the_registry_lacks_and_a_second_push_nothing() {
    let h = husk();
    let src = pull_shared(&h, "layered:latest");
    let layers = layers_of(&src);
    assert_eq!(layers.len(), 3, "the layered fixture has three layers");
    let reg = counted_registry();
    let dest = format!("{}/app/layered:v1", reg.host());

    let out = h.run(&["push", &src, &dest]);
    let (tag, digest, size) = pushed(&out);
    assert_eq!(tag, "v1");
    // the stored manifest goes up byte for byte: same digest and size as the source's
    let source_manifest = skopeo_raw(&src);
    assert_eq!(size, source_manifest.len() as u64, "{out:?}");
    assert_eq!(digest, skopeo_inspect(&src, None).0, "{out:?}");
    assert!(out.stderr.contains("The push refers to repository ["), "{out:?}");

    let reqs = husk_requests(&reg);
    let blobs = 4; // config + 3 layers
    let heads: Vec<_> = reqs.iter().filter(|r| r.method == "HEAD").collect();
    assert_eq!(heads.len(), blobs, "one HEAD per blob first:\n{}", show(&reqs));
    assert!(heads.iter().all(|r| r.status == 404), "{}", show(&reqs));
    let closes: Vec<_> = reqs.iter().filter(|r| r.is("PUT", "/blobs/uploads/")).collect();
    assert_eq!(closes.len(), blobs, "one upload per blob:\n{}", show(&reqs));
    for put in &closes {
        // the registry's absolute Location kept its query (_state), husk added digest=
        assert!(put.status == 201 && put.target.contains("_state=") && put.target.contains("digest=sha256"), "{put:?}");
    }
    assert_eq!(reqs.iter().filter(|r| r.method == "PATCH").count(), 0, "small blobs go up whole:\n{}", show(&reqs));
    let manifest_puts: Vec<usize> =
        reqs.iter().enumerate().filter(|(_, r)| r.is("PUT", "/manifests/")).map(|(i, _)| i).collect();
    assert_eq!(manifest_puts, vec![reqs.len() - 1], "the manifest goes last, once:\n{}", show(&reqs));
    assert_eq!(reqs[reqs.len() - 1].target, "/v2/app/layered/manifests/v1");

    let ran = check_pushed(&dest, &digest, &layers, None, &["cat", "/edge/hl-b"]);
    assert_eq!(ran, "hardlinked content\n");

    // again: HEADs find every blob, only the manifest is put; -q prints the name only
    let before = husk_requests(&reg).len();
    let digestfile = h.home.join("digest");
    let out = h.run(&["push", "-q", "--digestfile", &digestfile.to_string_lossy(), &src, &dest]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("{dest}\n"), "{out:?}");
    assert_eq!(out.stderr, "", "-q prints no progress: {out:?}");
    assert_eq!(fs::read_to_string(&digestfile).unwrap(), digest);
    let again = husk_requests(&reg)[before..].to_vec();
    assert!(uploads(&again).is_empty(), "a second push uploaded:\n{}", show(&again));
    assert_eq!(again.iter().filter(|r| r.method == "HEAD" && r.status == 200).count(), blobs, "{}", show(&again));
    assert_eq!(again.len(), blobs + 1, "HEADs and the manifest only:\n{}", show(&again));

    // and without -q the lines say so
    let out = h.run(&["push", &src, &dest]);
    assert_eq!(pushed(&out).1, digest);
    assert_eq!(out.stderr.matches("already exists").count(), blobs, "{out:?}");
    check_pushed(&dest, &digest, &layers, None, &["true"]);
}

// ---------------------------------------------------------------------------
// cross-repository mounts
// ---------------------------------------------------------------------------

/// The mounts among `reqs`: (digest, from) of each POST ?mount= the registry did (201).
fn mounts(reqs: &[Access]) -> Vec<(String, String)> {
    reqs.iter()
        .filter(|r| r.method == "POST" && r.status == 201)
        .filter_map(|r| {
            let q = r.target.split_once('?')?.1;
            let get = |k: &str| {
                q.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).map(common::fake_registry::url_decode)
            };
            Some((get("mount")?, get("from")?))
        })
        .collect()
}

#[test]
fn pushing_to_another_repository_of_the_registry_mounts_instead_of_uploading() {
    let h = husk();
    let reg = counted_registry();

    // pulled from this registry: mounted from where it came from
    reg.push_fixture("config", "origin/cfg:1");
    let origin = format!("{}/origin/cfg:1", reg.host());
    h.run(&["pull", "-q", &origin]).assert_ok();
    let layers = layers_of(&origin);
    let config_digest = serde_json::from_slice::<Value>(&skopeo_raw(&origin)).unwrap()["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut blobs: Vec<String> = layers.clone();
    blobs.push(config_digest);
    blobs.sort();

    let before = husk_requests(&reg).len();
    let dest = format!("{}/team/cfg:2", reg.host());
    let out = h.run(&["push", &origin, &dest]);
    let (_, digest, _) = pushed(&out);
    let reqs = husk_requests(&reg)[before..].to_vec();
    assert!(uploads(&reqs).is_empty(), "mountable blobs were uploaded:\n{}", show(&reqs));
    let mut mounted = mounts(&reqs);
    mounted.sort();
    let want: Vec<(String, String)> = blobs.iter().map(|b| (b.clone(), "origin/cfg".to_string())).collect();
    assert_eq!(mounted, want, "{}", show(&reqs));
    assert!(out.stderr.contains("mounted from origin/cfg"), "{out:?}");
    assert_eq!(check_pushed(&dest, &digest, &layers, None, &[]), "hello from the image\n");

    // known only from the store's image names (the notes of pull and push removed)
    fs::remove_dir_all(h.store().join("sources")).unwrap();
    let before = husk_requests(&reg).len();
    let third = format!("{}/third/cfg:3", reg.host());
    let (_, digest3, _) = pushed(&h.run(&["push", &origin, &third]));
    assert_eq!(digest3, digest);
    let reqs = husk_requests(&reg)[before..].to_vec();
    assert!(uploads(&reqs).is_empty(), "{}", show(&reqs));
    assert_eq!(mounts(&reqs).len(), blobs.len(), "{}", show(&reqs));
    assert!(mounts(&reqs).iter().all(|(_, from)| from == "origin/cfg"), "{}", show(&reqs));
    check_pushed(&third, &digest, &layers, None, &["true"]);

    // pulled from elsewhere, pushed here once: the next push mounts from that repository
    let src = pull_shared(&h, "busybox:latest");
    let bb_layers = layers_of(&src);
    let first = format!("{}/first/bb:1", reg.host());
    let (_, bb_digest, _) = pushed(&h.run(&["push", &src, &first]));
    let before = husk_requests(&reg).len();
    let second = format!("{}/second/bb:1", reg.host());
    pushed(&h.run(&["push", &src, &second]));
    let reqs = husk_requests(&reg)[before..].to_vec();
    assert!(uploads(&reqs).is_empty(), "{}", show(&reqs));
    assert_eq!(mounts(&reqs).len(), 2, "{}", show(&reqs));
    assert!(mounts(&reqs).iter().all(|(_, from)| from == "first/bb"), "{}", show(&reqs));
    assert_eq!(check_pushed(&second, &bb_digest, &bb_layers, None, &["echo", "mounted"]), "mounted\n");
}

// ---------------------------------------------------------------------------
// chunked uploads
// ---------------------------------------------------------------------------

#[test]
fn blobs_above_the_chunk_size_go_up_in_chunks_behind_relative_locations() {
    let h = husk();
    let src = pull_shared(&h, "busybox:latest");
    let layers = layers_of(&src);
    let raw: Value = serde_json::from_slice(&skopeo_raw(&src)).unwrap();
    let layer_size = raw["layers"][0]["size"].as_u64().unwrap();
    let config_size = raw["config"]["size"].as_u64().unwrap();
    let chunk: u64 = 256 << 10;
    assert!(layer_size > 2 * chunk && config_size < chunk, "fixture sizes: layer {layer_size}, config {config_size}");

    // relative Locations (`/v2/…`) instead of absolute URLs
    let reg = Registry::start_with(&RegistryOptions { access_log: true, relative_urls: true, ..Default::default() });
    let dest = format!("{}/chunky:1", reg.host());
    let out = h.run_env(&[("HUSK_PUSH_CHUNK_SIZE", &chunk.to_string())], &["push", &src, &dest]);
    let (_, digest, _) = pushed(&out);
    let reqs = husk_requests(&reg);
    let patches: Vec<_> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len() as u64, layer_size.div_ceil(chunk), "PATCHes of {chunk} bytes:\n{}", show(&reqs));
    assert!(patches.iter().all(|p| p.status == 202), "{}", show(&reqs));
    let closes: Vec<_> = reqs.iter().filter(|r| r.is("PUT", "/blobs/uploads/")).collect();
    assert_eq!(closes.len(), 2, "{}", show(&reqs));
    assert!(closes.iter().all(|r| r.status == 201 && r.target.contains("_state=")), "{}", show(&reqs));
    assert_eq!(check_pushed(&dest, &digest, &layers, None, &["echo", "chunked"]), "chunked\n");
}

// ---------------------------------------------------------------------------
// authentication
// ---------------------------------------------------------------------------

/// husk with busybox pulled from the shared registry, and a registry started with `opts`.
struct Setup {
    h: Husk,
    reg: Registry,
    /// busybox in the shared registry, and its layers
    src: String,
    layers: Vec<String>,
    /// `repo_tag` in the new registry
    dest: String,
}

fn busybox_to(opts: RegistryOptions, repo_tag: &str) -> Setup {
    let reg = Registry::start_with(&opts);
    let h = husk();
    let src = pull_shared(&h, "busybox:latest");
    let layers = layers_of(&src);
    let dest = format!("{}/{repo_tag}", reg.host());
    Setup { h, reg, src, layers, dest }
}

/// A DOCKER_CONFIG directory whose config.json holds `user:password` for `registry`.
fn docker_config(registry: &str, user: &str, password: &str) -> TempDir {
    let dir = TempDir::new("docker-config");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs::write(dir.path().join("config.json"), json!({"auths": {registry: {"auth": auth}}}).to_string()).unwrap();
    dir
}

#[test]
fn basic_auth_push_needs_the_right_credentials() {
    let dir = TempDir::new("htpasswd");
    let out = Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]).output().expect("run htpasswd");
    assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
    let file = dir.path().join("htpasswd");
    fs::write(&file, &out.stdout).unwrap();
    let auth = Some(format!("  htpasswd:\n    realm: husk-test\n    path: {}\n", file.display()));
    let Setup { h, reg, src, layers, dest } =
        busybox_to(RegistryOptions { access_log: true, auth, ..Default::default() }, "private/bb:1");

    let line = h.run(&["push", &src, &dest]).error_line("push without credentials").to_string();
    assert!(line.contains(&reg.host()) && line.contains("husk login"), "{line}");

    let wrong = docker_config(&reg.host(), USER, "wrong");
    let out = h.run_env(&[("DOCKER_CONFIG", &wrong.path().to_string_lossy())], &["push", &src, &dest]);
    let line = out.error_line("push with a wrong password");
    assert!(line.contains(&reg.host()) && line.contains("denied"), "{line}");
    assert!(uploads(&husk_requests(&reg)).is_empty(), "{}", show(&husk_requests(&reg)));

    h.run(&["login", "-u", USER, "-p", PASSWORD, &reg.host()]).assert_ok();
    let (_, digest, _) = pushed(&h.run(&["push", &src, &dest]));
    let reqs = husk_requests(&reg);
    assert_eq!(uploads(&reqs).iter().filter(|r| r.method == "PUT").count(), 2, "{}", show(&reqs));
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(check_pushed(&dest, &digest, &layers, Some(&creds), &["echo", "basic"]), "basic\n");
}

/// A token server for docker-registry's `auth: token`: JWTs signed (RS256, openssl) with
/// a certificate the registry trusts, granting alice whatever she asks; it records the
/// scopes of each request.
struct TokenServer {
    server: Server,
    scopes: Arc<Mutex<Vec<Vec<String>>>>,
    dir: TempDir,
}

const ISSUER: &str = "husk-test-issuer";
const SERVICE: &str = "husk-test-registry";

impl TokenServer {
    fn start() -> TokenServer {
        let dir = TempDir::new("token");
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=husk test tokens"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
        let der = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(&cert).output().unwrap();
        assert!(der.status.success());
        let x5c = base64::engine::general_purpose::STANDARD.encode(&der.stdout);
        let scopes: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let seen = scopes.clone();
        let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")));
        let server = Server::start(move |req| {
            let asked: Vec<String> = req
                .target
                .split_once('?')
                .map(|(_, q)| {
                    q.split('&')
                        .filter_map(|kv| kv.strip_prefix("scope="))
                        .map(common::fake_registry::url_decode)
                        .collect()
                })
                .unwrap_or_default();
            seen.lock().unwrap().push(asked.clone());
            if req.authorization() != Some(good.as_str()) {
                return Resp::error(401, "UNAUTHORIZED", "bad credentials");
            }
            Resp::json(200, json!({"token": sign(&key, &x5c, &asked)}))
        });
        TokenServer { server, scopes, dir }
    }

    fn cert(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A JWT granting every scope (`repository:NAME:ACTIONS`) asked for.
fn sign(key: &Path, x5c: &str, scopes: &[String]) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let access: Vec<Value> = scopes
        .iter()
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = json!({"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300, "nbf": now - 60,
        "iat": now, "jti": format!("{now}-{}", scopes.len()), "access": access});
    let signed = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(signed.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst failed");
    format!("{signed}.{}", b64url(&out.stdout))
}

#[test]
fn token_auth_push_asks_for_push_access_and_for_the_mount_source() {
    let tokens = TokenServer::start();
    let auth = Some(format!(
        "  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        tokens.server.host(),
        tokens.cert()
    ));
    let Setup { h, reg, src, layers, dest } =
        busybox_to(RegistryOptions { access_log: true, auth, ..Default::default() }, "team/app:1");

    let line = h.run(&["push", &src, &dest]).error_line("anonymous push").to_string();
    assert!(line.contains("token") && line.contains("refused"), "{line}");

    h.run(&["login", "-u", USER, "-p", PASSWORD, &reg.host()]).assert_ok();
    let asked_before = tokens.scopes.lock().unwrap().len();
    let (_, digest, _) = pushed(&h.run(&["push", &src, &dest]));
    let asked: Vec<Vec<String>> = tokens.scopes.lock().unwrap()[asked_before..].to_vec();
    assert_eq!(asked.len(), 1, "one token for the whole push: {asked:?}");
    assert!(asked[0].contains(&"repository:team/app:pull,push".to_string()), "{asked:?}");
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(check_pushed(&dest, &digest, &layers, Some(&creds), &["echo", "token"]), "token\n");

    // to another repository: the token also covers reading the one mounted from
    let before = husk_requests(&reg).len();
    let asked_before = tokens.scopes.lock().unwrap().len();
    let copy = format!("{}/team/copy:1", reg.host());
    pushed(&h.run(&["push", &src, &copy]));
    let asked: Vec<Vec<String>> = tokens.scopes.lock().unwrap()[asked_before..].to_vec();
    assert_eq!(asked.len(), 1, "{asked:?}");
    for want in ["repository:team/copy:pull,push", "repository:team/app:pull"] {
        assert!(asked[0].contains(&want.to_string()), "{want} not asked for: {asked:?}");
    }
    let reqs = husk_requests(&reg)[before..].to_vec();
    assert!(uploads(&reqs).is_empty(), "{}", show(&reqs));
    assert_eq!(mounts(&reqs).len(), 2, "{}", show(&reqs));
    check_pushed(&copy, &digest, &layers, Some(&creds), &["true"]);
}

// ---------------------------------------------------------------------------
// --tls-verify
// ---------------------------------------------------------------------------

#[test]
fn tls_verify_chooses_https_and_certificate_checks() {
    let tls = Tls::new("localhost");
    let tls_files = Some((tls.server_cert(), tls.server_key()));
    let Setup { h, reg, src, layers, dest } =
        busybox_to(RegistryOptions { access_log: true, tls: tls_files, ..Default::default() }, "secure/bb:1");

    // loopback: plain http by default, which this registry refuses
    let line = h.run(&["push", &src, &dest]).error_line("plain http to an https registry").to_string();
    assert!(line.contains(&reg.host()) && line.contains("400"), "{line}");
    // verified https: the test CA is unknown to husk
    let line = h.run(&["push", "--tls-verify", &src, &dest]).error_line("unknown CA").to_string();
    assert!(line.contains(&reg.host()) && line.to_lowercase().contains("certificate"), "{line}");
    assert!(husk_requests(&reg).iter().all(|r| r.method == "HEAD"), "{}", show(&husk_requests(&reg)));

    // unverified https
    let (_, digest, _) = pushed(&h.run(&["push", "--tls-verify=false", &src, &dest]));
    assert_eq!(check_pushed(&dest, &digest, &layers, None, &["echo", "tls"]), "tls\n");
    // verified https with the CA given
    let other = format!("{}/verified/bb:1", reg.host());
    let out = h.run_env(&[("SSL_CERT_FILE", &tls.ca())], &["push", "--tls-verify=true", &src, &other]);
    assert_eq!(pushed(&out).1, digest);
    check_pushed(&other, &digest, &layers, None, &["true"]);

    // --tls-verify=false to a registry without TLS falls back to plain http
    let plain = counted_registry();
    let dest = format!("{}/plain/bb:1", plain.host());
    let (_, d2, _) = pushed(&h.run(&["push", "--tls-verify=false", &src, &dest]));
    assert_eq!(check_pushed(&dest, &d2, &layers, None, &["echo", "plain"]), "plain\n");
    assert_eq!(uploads(&husk_requests(&plain)).iter().filter(|r| r.method == "PUT").count(), 2);
}

// ---------------------------------------------------------------------------
// bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_input_is_one_line_and_exit_125() {
    let h = husk();
    let src = pull_shared(&h, "busybox:latest");
    let reg = counted_registry();

    let line = h.run(&["push", "nosuch:1", &format!("{}/x:1", reg.host())]).error_line("missing image").to_string();
    assert!(line.contains("nosuch"), "{line}");
    for bad in [format!("{}/UPPER/case:1", reg.host()), format!("{}/x:bad tag", reg.host()), "-".to_string()] {
        let line = h.run(&["push", &src, &bad]).error_line("bad destination").to_string();
        assert!(line.contains("destination") && line.contains("invalid reference"), "{bad}: {line}");
    }
    let id = {
        let out = h.run(&["pull", "-q", &src]);
        out.assert_ok();
        out.stdout.trim()[..12].to_string()
    };
    let line = h.run(&["push", &id]).error_line("an id without destination").to_string();
    assert!(line.contains(&id) && line.contains("image id"), "{line}");
    assert!(husk_requests(&reg).is_empty(), "bad input reached the registry:\n{}", show(&husk_requests(&reg)));

    // a name without registry is docker.io's: unreachable here (a proxy on a closed
    // port stands for the internet, so nothing leaves the machine)
    h.run(&["tag", &src, "mine/app:1"]).assert_ok();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proxy = format!("http://127.0.0.1:{closed}");
    let out = h.run_env(&[("HTTPS_PROXY", &proxy), ("HTTP_PROXY", &proxy)], &["push", "mine/app:1"]);
    let line = out.error_line("push to docker.io");
    assert!(line.contains("docker.io/mine/app:1") && line.contains("docker.io"), "{line}");

    // a registry that is not there
    let line = h.run(&["push", &src, &format!("127.0.0.1:{closed}/x:1")]).error_line("no registry").to_string();
    assert!(line.contains(&format!("127.0.0.1:{closed}")), "{line}");
}

// ---------------------------------------------------------------------------
// the upload protocol in odd shapes (fake servers; nothing is stored, so there is
// nothing for skopeo or podman to read)
// ---------------------------------------------------------------------------

/// An upload service on its own port: keeps what each session holds, takes only half of
/// each session's first chunk, answers the second chunk 416 once (the client must ask
/// where the upload stands), and hands out relative `Location`s with a query.
fn upload_service() -> (Server, Arc<Mutex<std::collections::HashMap<String, u64>>>) {
    let held: Arc<Mutex<std::collections::HashMap<String, u64>>> = Arc::default();
    let patches: Arc<Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
    let state = held.clone();
    let server = Server::start(move |req| {
        let session = req.path().to_string();
        let mut held = state.lock().unwrap();
        let at = *held.get(&session).unwrap_or(&0);
        let here = |held: u64, status: u16| {
            Resp { status, ..Resp::blob(Vec::new()) }
                .header("Location", &format!("{session}?step={held}"))
                .header("Range", &format!("0-{}", held.saturating_sub(1)))
        };
        match req.method.as_str() {
            "PATCH" => {
                let (a, b) = req.header("content-range").and_then(|r| r.split_once('-')).unwrap();
                let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                let mut patches = patches.lock().unwrap();
                let n = patches.entry(session.clone()).or_insert(0);
                *n += 1;
                if a != at || *n == 2 {
                    return Resp::error(416, "BLOB_UPLOAD_INVALID", "range");
                }
                let len = b - a + 1;
                let now = if *n == 1 { a + len / 2 } else { b + 1 };
                held.insert(session.clone(), now);
                here(now, 202)
            }
            "GET" => here(at, 204),
            "PUT" if req.query("digest").is_some() && req.query("step").is_some() => {
                Resp { status: 201, ..Resp::blob(Vec::new()) }
            }
            _ => Resp::error(400, "UNSUPPORTED", "unexpected"),
        }
    });
    (server, held)
}

#[test]
fn uploads_follow_the_registrys_rules_and_keep_credentials_at_home() {
    const MIN_CHUNK: u64 = 400_000;
    let h = husk();
    let src = pull_shared(&h, "busybox:latest");
    let raw: Value = serde_json::from_slice(&skopeo_raw(&src)).unwrap();
    let layer = (raw["layers"][0]["digest"].as_str().unwrap().to_string(), raw["layers"][0]["size"].as_u64().unwrap());
    assert!(layer.1 > 2 * MIN_CHUNK, "busybox layer of {} bytes", layer.1);
    let (uploads, held) = upload_service();
    let upload_base = format!("http://{}", uploads.host());
    let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let sessions = Mutex::new(0u32);
    let reg = Server::start(move |req| {
        if req.authorization() != Some(good.as_str()) {
            return Resp::challenge(r#"Basic realm="fake""#);
        }
        match (req.method.as_str(), req.path()) {
            ("GET", "/v2/") => Resp::json(200, json!({})),
            ("HEAD", _) => Resp::error(404, "BLOB_UNKNOWN", "unknown"),
            ("POST", "/v2/app/blobs/uploads/") => {
                let mut n = sessions.lock().unwrap();
                *n += 1;
                Resp { status: 202, ..Resp::blob(Vec::new()) }
                    .header("Location", &format!("{upload_base}/up/{n}?step=0"))
                    .header("OCI-Chunk-Min-Length", &MIN_CHUNK.to_string())
            }
            ("PUT", "/v2/app/manifests/1") => Resp { status: 201, ..Resp::blob(Vec::new()) },
            _ => Resp::error(404, "NOT_FOUND", "no"),
        }
    });
    h.run(&["login", "-u", USER, "-p", PASSWORD, &reg.host()]).assert_ok();
    let dest = format!("{}/app:1", reg.host());
    // chunks of 100 kB asked for, but the registry wants 400 kB at least
    let out = h.run_env(&[("HUSK_PUSH_CHUNK_SIZE", "100000")], &["push", &src, &dest]);
    let (_, digest, _) = pushed(&out);
    assert_eq!(digest, skopeo_inspect(&src, None).0);

    // the upload service is another origin: the registry's credentials never went there
    let up = uploads.requests();
    assert!(up.iter().all(|r| r.authorization().is_none()), "credentials sent to the upload service: {up:?}");
    // every chunk: octet-stream, contiguous with what the service held, at least MIN_CHUNK
    // bytes unless it is the last, resumed where the service said it stood
    let patches: Vec<_> = up.iter().filter(|r| r.method == "PATCH").collect();
    let ranges: Vec<(String, u64, u64)> = patches
        .iter()
        .map(|r| {
            assert_eq!(r.header("content-type"), Some("application/octet-stream"), "{r:?}");
            let (a, b) = r.header("content-range").unwrap().split_once('-').unwrap();
            (r.path().to_string(), a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    let big = ranges.iter().find(|(_, a, b)| *a == 0 && b + 1 == MIN_CHUNK).map(|r| r.0.clone());
    let big = big.unwrap_or_else(|| panic!("no first chunk of {MIN_CHUNK} bytes: {ranges:?}"));
    let mine: Vec<(u64, u64)> = ranges.iter().filter(|r| r.0 == big).map(|r| (r.1, r.2)).collect();
    // half of the first chunk was taken, so the second starts in its middle; it is
    // refused once (416), so the third asks for the same range again
    assert_eq!(mine[1].0, MIN_CHUNK / 2, "{mine:?}");
    assert_eq!(mine[2], mine[1], "{mine:?}");
    assert!(up.iter().any(|r| r.method == "GET" && r.path() == big), "no status request after the 416: {up:?}");
    for w in mine.windows(2).skip(2) {
        assert_eq!(w[1].0, w[0].1 + 1, "chunks not contiguous: {mine:?}");
    }
    assert_eq!(held.lock().unwrap()[&big], layer.1, "the service does not hold the whole layer: {mine:?}");
    let close = up.iter().find(|r| r.method == "PUT" && r.path() == big).expect("no closing PUT");
    assert_eq!(close.query("digest").as_deref(), Some(layer.0.as_str()));
    assert_eq!(close.query("step"), Some(layer.1.to_string()), "the last Location's query was not kept: {close:?}");
    // the manifest went to the registry last, with the credentials
    let last = reg.requests().last().cloned().unwrap();
    assert_eq!((last.method.as_str(), last.path()), ("PUT", "/v2/app/manifests/1"));
    assert_eq!(last.header("content-type"), raw["mediaType"].as_str().or(Some(MT_OCI)));
}
const MT_OCI: &str = "application/vnd.oci.image.manifest.v1+json";

// ---------------------------------------------------------------------------
// the whole loop: Dockerfile → image → container → image → registry → podman
// ---------------------------------------------------------------------------

/// An image husk builds, a container of it that changes a file, the commit of that
/// container, pushed: skopeo reads it and podman runs it unchanged, and sees what the
/// build (a RUN and a COPY) and the container (the committed change) wrote.
#[test]
fn an_image_husk_builds_and_commits_runs_under_podman_once_pushed() {
    let h = husk();
    let base = pull_shared(&h, "busybox:latest");
    let ctx = h.home.join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("greeting"), "hello from the context\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\nRUN echo built > /built && rm /bin/ping\nCOPY greeting /srv/greeting\n\
             CMD [\"cat\", \"/srv/greeting\", \"/built\", \"/changed\"]\n"
        ),
    )
    .unwrap();
    let status = Command::new("chown").args(["-R", "husk-sub:", &ctx.to_string_lossy()]).status().unwrap();
    assert!(status.success());
    h.run(&["build", "-q", "-t", "loop/built:1", &ctx.to_string_lossy()]).assert_ok();
    h.run(&["run", "--name", "changer", "--network", "none", "loop/built:1", "sh", "-c", "echo changed > /changed"])
        .assert_ok();
    h.run(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/srv/greeting\", \"/built\", \"/changed\"]",
        "changer",
        "loop/committed:1",
    ])
    .assert_ok();

    let reg = counted_registry();
    let dest = format!("{}/loop/committed:1", reg.host());
    let (_, digest, _) = pushed(&h.run(&["push", "loop/committed:1", &dest]));
    let layers = layers_of(&dest);
    assert_eq!(layers.len(), 4, "busybox + RUN + COPY + the commit: {layers:?}");
    let ran = check_pushed(&dest, &digest, &layers, None, &[]);
    assert_eq!(ran, "hello from the context\nbuilt\nchanged\n");
    // the RUN's deletion travelled as a whiteout
    let ran =
        check_pushed(&dest, &digest, &layers, None, &["sh", "-c", "test -e /bin/ping && echo present || echo gone"]);
    assert_eq!(ran, "gone\n");
}
