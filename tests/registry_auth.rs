//! Registry authentication and redirects, against small fake HTTP/1.1 servers
//! (`Server` of tests/common/fake_registry.rs) that record every request they receive
//! (method, target, headers):
//!
//! * anonymous bearer tokens from a token endpoint on another port;
//! * `husk login` / `husk logout` against a registry that wants Basic auth;
//! * credentials taken from `~/.docker/config.json`;
//! * bearer tokens that the token endpoint issues only for stored credentials;
//! * blob redirects: to a blob store on another port (no `Authorization` may go there)
//!   and to the registry itself (the header stays);
//! * an uncompressed (`application/vnd.oci.image.layer.v1.tar`) layer;
//! * https by default for a registry that is not loopback, plain http for the registries
//!   listed in `HUSK_INSECURE_REGISTRIES` or the config file, and redirects to another
//!   host on the same port or to the other scheme on the same host and port (no
//!   credentials go along), through a recording proxy and tests/fixtures/tls-front.py.
//!
//! husk runs as the unprivileged `husk-sub` with a fresh HOME; it speaks plain HTTP to
//! 127.0.0.1 registries.

mod common;

use base64::Engine as _;
use common::fake_registry::{hex_part, host_arch, sha256, Image, Layer, Request, Resp, Routes, Server};
use common::tls::{Tls, TlsFront};
use common::{Husk, Output, TestUser};
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

fn husk() -> Husk {
    common::ensure_prereqs();
    Husk::new(TestUser::Sub)
}

/// A registry that answers only requests carrying exactly `Basic alice:secret`.
fn basic_auth_registry(routes: Routes) -> Server {
    let want = basic(USER, PASSWORD);
    Server::start(move |req| {
        if req.authorization() == Some(want.as_str()) {
            routes.answer(req)
        } else {
            Resp::challenge(r#"Basic realm="x""#)
        }
    })
}

// ---------------------------------------------------------------------------
// checks
// ---------------------------------------------------------------------------

/// `husk pull -q REF` must succeed and print the image id.
#[track_caller]
fn pull_ok(h: &Husk, reference: &str, img: &Image, servers: &[&Server]) {
    let out = h.run(&["pull", "-q", reference]);
    let logs: Vec<String> = servers.iter().map(|s| format!("requests to {}:\n{}", s.host(), s.dump())).collect();
    assert!(out.success(), "husk pull {reference} failed: {out:?}\n{}", logs.join("\n"));
    assert_eq!(out.stdout.trim(), hex_part(&img.config_digest()), "pull -q prints the image id\n{out:?}");
}

/// The one error line of a failed husk command (exit status 125, nothing on stdout).
#[track_caller]
fn error_line(out: &Output, what: &str) -> String {
    let line = out.error_line(what);
    eprintln!("{what}\n  -> {line}");
    line.to_string()
}

#[track_caller]
fn assert_mentions_any(line: &str, what: &str, words: &[&str]) {
    let lower = line.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(&w.to_lowercase())),
        "{what}: the error mentions none of {words:?}:\n  {line}"
    );
}

fn husk_auth_json(h: &Husk) -> PathBuf {
    h.home.join(".config/husk/auth.json")
}

/// `auths` of husk's auth.json, or None when the file does not exist.
fn stored_auths(h: &Husk) -> Option<serde_json::Map<String, Value>> {
    let p = husk_auth_json(h);
    let data = match fs::read(&p) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("read {}: {e}", p.display()),
    };
    let v: Value = serde_json::from_slice(&data).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
    Some(v["auths"].as_object().cloned().unwrap_or_default())
}

fn login(h: &Husk, registry: &str, password: &str) -> Output {
    h.run_stdin(&["login", registry, "-u", USER, "--password-stdin"], format!("{password}\n").as_bytes())
}

/// Writes a file into the test user's HOME, creating directories, all owned by the user.
fn write_as_user(h: &Husk, rel: &str, data: &[u8], mode: u32) {
    let (uid, gid) = h.user.ids();
    let path = h.home.join(rel);
    let mut dir = h.home.clone();
    for c in Path::new(rel).parent().unwrap().components() {
        dir.push(c);
        if !dir.exists() {
            fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
    fs::write(&path, data).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

#[track_caller]
fn assert_no_basic_header(s: &Server, what: &str) {
    for r in s.requests() {
        if let Some(a) = r.authorization() {
            assert!(
                !a.to_ascii_lowercase().starts_with("basic"),
                "{what}: {} received Basic credentials on {} {}:\n{}",
                s.host(),
                r.method,
                r.target,
                s.dump()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 1. anonymous bearer tokens
// ---------------------------------------------------------------------------

#[test]
fn anonymous_bearer_token_from_a_realm_on_another_port() {
    const TOKEN: &str = "anon.tok-3fa9c1";
    const SERVICE: &str = "fake registry";
    let tokens = Server::start(|req| {
        if req.path() == "/token" {
            Resp::json(200, json!({"token": TOKEN, "expires_in": 300, "issued_at": "2024-01-01T00:00:00Z"}))
        } else {
            Resp::error(404, "NOT_FOUND", "not found")
        }
    });
    let realm = format!("http://{}/token", tokens.host());
    let img = Image::simple();
    let mut routes = Routes::with("lib/app", "v1", &img);
    routes.add("lib/noscope", "v1", &img);
    let reg = Server::start(move |req| {
        if req.authorization() == Some(&format!("Bearer {TOKEN}")) {
            return routes.answer(req);
        }
        // as CNCF distribution does: the scope in the challenge for repository paths;
        // the second repository gets a challenge without one
        let repo = req.path().strip_prefix("/v2/").and_then(|p| p.split("/manifests/").next()).unwrap_or("");
        if repo == "lib/noscope" {
            Resp::challenge(&format!(r#"Bearer realm="{realm}",service="{SERVICE}""#))
        } else {
            Resp::challenge(&format!(r#"Bearer realm="{realm}",service="{SERVICE}",scope="repository:{repo}:pull""#))
        }
    });
    let h = husk();

    pull_ok(&h, &format!("{}/lib/app:v1", reg.host()), &img, &[&reg, &tokens]);
    let treqs = tokens.requests();
    assert_eq!(treqs.len(), 1, "one token for the whole pull expected:\n{}", tokens.dump());
    let t = &treqs[0];
    assert_eq!(t.method, "GET", "{t:?}");
    assert_eq!(t.path(), "/token", "{t:?}");
    assert_eq!(t.query("service").as_deref(), Some(SERVICE), "token request: {}", t.target);
    assert_eq!(t.query("scope").as_deref(), Some("repository:lib/app:pull"), "token request: {}", t.target);
    assert_eq!(t.authorization(), None, "anonymous token request carried credentials: {t:?}");

    // the registry: one unauthenticated request (the manifest), then only the token
    let rreqs = reg.requests();
    let bare: Vec<&Request> = rreqs.iter().filter(|r| r.authorization().is_none()).collect();
    assert_eq!(bare.len(), 1, "only the first request may go without the token:\n{}", reg.dump());
    assert!(bare[0].path().starts_with("/v2/lib/app/manifests/"), "{:?}", bare[0]);
    let with_token = rreqs.iter().filter(|r| r.authorization() == Some(&format!("Bearer {TOKEN}"))).count();
    assert!(with_token >= 3, "manifest, config and layer must be fetched with the token:\n{}", reg.dump());
    for blob in [img.config_digest(), img.layers[0].digest()] {
        let path = format!("/v2/lib/app/blobs/{blob}");
        assert!(
            rreqs.iter().any(|r| r.path() == path && r.authorization() == Some(&format!("Bearer {TOKEN}"))),
            "{path} was not fetched with the token:\n{}",
            reg.dump()
        );
    }

    // a challenge without a scope: husk asks for pull access to the repository itself
    pull_ok(&h, &format!("{}/lib/noscope:v1", reg.host()), &img, &[&reg, &tokens]);
    let treqs = tokens.requests();
    assert_eq!(treqs.len(), 2, "{}", tokens.dump());
    assert_eq!(treqs[1].query("service").as_deref(), Some(SERVICE), "token request: {}", treqs[1].target);
    assert_eq!(
        treqs[1].query("scope").as_deref(),
        Some("repository:lib/noscope:pull"),
        "token request: {}",
        treqs[1].target
    );

    // no credentials are stored, so none may be sent anywhere
    assert_no_basic_header(&reg, "anonymous pull");
    assert_no_basic_header(&tokens, "anonymous pull");
    assert!(stored_auths(&h).is_none(), "a pull wrote {}", husk_auth_json(&h).display());
}

// ---------------------------------------------------------------------------
// 2. husk login / logout with Basic auth
// ---------------------------------------------------------------------------

#[test]
fn login_pull_logout_with_basic_auth() {
    let img = Image::simple();
    let reg = basic_auth_registry(Routes::with("private/app", "v1", &img));
    let host = reg.host();
    let reference = format!("{host}/private/app:v1");
    let h = husk();

    // a wrong password: refused, nothing stored
    let out = login(&h, &host, "wrong-password");
    let line = error_line(&out, "husk login with a wrong password");
    assert!(line.contains(&host), "the error does not name the registry:\n  {line}");
    assert_mentions_any(
        &line,
        "husk login with a wrong password",
        &["denied", "unauthorized", "refused", "credentials", "login"],
    );
    assert!(!out.stderr.contains("wrong-password"), "the error shows the password:\n{out:?}");
    if let Some(auths) = stored_auths(&h) {
        assert!(!auths.contains_key(&host), "a refused login was stored: {auths:?}");
    }
    assert!(
        reg.requests().iter().any(|r| r.authorization() == Some(&basic(USER, "wrong-password"))),
        "husk did not even try the credentials:\n{}",
        reg.dump()
    );

    // the right password
    let out = login(&h, &host, PASSWORD);
    out.assert_ok();
    assert!(out.stdout.contains("Login Succeeded!"), "{out:?}");
    let file = husk_auth_json(&h);
    let md = fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}\n{out:?}", file.display()));
    assert_eq!(md.mode() & 0o777, 0o600, "{} has mode {:o}", file.display(), md.mode() & 0o777);
    assert_eq!(md.uid(), h.user.uid(), "{} is not owned by the user", file.display());
    let auths = stored_auths(&h).unwrap();
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(auths.get(&host).and_then(|e| e["auth"].as_str()), Some(want.as_str()), "auth.json: {auths:?}");

    // pull with the stored credentials
    let before = reg.requests().len();
    pull_ok(&h, &reference, &img, &[&reg]);
    let pull_reqs = &reg.requests()[before..];
    assert!(
        pull_reqs.iter().filter(|r| r.authorization() == Some(&basic(USER, PASSWORD))).count() >= 3,
        "the pull did not send Basic alice:secret for manifest, config and layer:\n{}",
        reg.dump()
    );

    // logout: the entry goes, the next pull is refused
    let out = h.run(&["logout", &host]);
    out.assert_ok();
    let auths = stored_auths(&h).unwrap_or_default();
    assert!(!auths.contains_key(&host), "logout left the credentials: {auths:?}");
    let out = h.run(&["pull", "-q", &reference]);
    let line = error_line(&out, "husk pull after logout");
    assert!(line.contains(&host), "the error does not name the registry:\n  {line}");
    assert_mentions_any(&line, "husk pull after logout", &["login", "denied"]);
    let after: Vec<Request> = reg.requests();
    assert!(
        after.last().map(|r| r.authorization().is_none()).unwrap_or(false),
        "after logout husk still sent credentials:\n{}",
        reg.dump()
    );

    // logging out again is harmless
    h.run(&["logout", &host]).assert_ok();
}

// ---------------------------------------------------------------------------
// 3. credentials from ~/.docker/config.json
// ---------------------------------------------------------------------------

#[test]
fn credentials_from_docker_config_json() {
    let img = Image::simple();
    let reg = basic_auth_registry(Routes::with("private/app", "v1", &img));
    let host = reg.host();
    let reference = format!("{host}/private/app:v1");
    let h = husk();

    // without credentials: refused, asking for a login
    let out = h.run(&["pull", "-q", &reference]);
    let line = error_line(&out, "husk pull without credentials");
    assert_mentions_any(&line, "husk pull without credentials", &["login"]);

    let entry = json!({"auth": base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))});
    let config = json!({"auths": {host.clone(): entry}, "credsStore": ""});
    write_as_user(&h, ".docker/config.json", config.to_string().as_bytes(), 0o600);

    let before = reg.requests().len();
    pull_ok(&h, &reference, &img, &[&reg]);
    let pull_reqs = &reg.requests()[before..];
    assert!(
        pull_reqs.iter().any(|r| r.authorization() == Some(&basic(USER, PASSWORD))),
        "the credentials of ~/.docker/config.json were not sent:\n{}",
        reg.dump()
    );
    assert!(stored_auths(&h).is_none(), "husk wrote its own auth.json during a pull");
}

// ---------------------------------------------------------------------------
// 4. bearer tokens issued for stored credentials
// ---------------------------------------------------------------------------

#[test]
fn bearer_token_requires_stored_credentials() {
    const TOKEN: &str = "alice-token-77";
    const SERVICE: &str = "auth-registry";
    let want = basic(USER, PASSWORD);
    let tokens = Server::start(move |req| {
        if req.path() != "/auth/token" {
            return Resp::error(404, "NOT_FOUND", "not found");
        }
        if req.authorization() == Some(want.as_str()) {
            Resp::json(200, json!({"access_token": TOKEN, "expires_in": 300}))
        } else {
            Resp::json(401, json!({"details": "incorrect username or password"}))
                .header("WWW-Authenticate", r#"Basic realm="token""#)
        }
    });
    let realm = format!("http://{}/auth/token", tokens.host());
    let img = Image::simple();
    let routes = Routes::with("team/app", "v1", &img);
    let reg = Server::start(move |req| {
        if req.authorization() == Some(&format!("Bearer {TOKEN}")) {
            return routes.answer(req);
        }
        if req.path() == "/v2/" {
            Resp::challenge(&format!(r#"Bearer realm="{realm}",service="{SERVICE}""#))
        } else {
            Resp::challenge(&format!(r#"Bearer realm="{realm}",service="{SERVICE}",scope="repository:team/app:pull""#))
        }
    });
    let host = reg.host();
    let reference = format!("{host}/team/app:v1");
    let h = husk();

    // anonymous: the token endpoint refuses, and so does husk
    let out = h.run(&["pull", "-q", &reference]);
    let line = error_line(&out, "anonymous pull from a registry that needs a login");
    assert!(line.contains(&host), "the error does not name the registry:\n  {line}");
    assert_mentions_any(&line, "anonymous pull", &["anonymous", "login", "denied", "refused"]);
    assert!(tokens.requests().iter().all(|r| r.authorization().is_none()), "{}", tokens.dump());

    // a wrong password is refused by the token endpoint at login
    let out = login(&h, &host, "nope");
    error_line(&out, "husk login with a wrong password (bearer)");
    assert!(stored_auths(&h).map(|a| !a.contains_key(&host)).unwrap_or(true), "a refused login was stored");

    let out = login(&h, &host, PASSWORD);
    assert!(out.success(), "husk login failed: {out:?}\ntoken server:\n{}\nregistry:\n{}", tokens.dump(), reg.dump());
    assert!(out.stdout.contains("Login Succeeded!"), "{out:?}");

    let before = tokens.requests().len();
    pull_ok(&h, &reference, &img, &[&reg, &tokens]);
    let treqs = tokens.requests()[before..].to_vec();
    assert_eq!(treqs.len(), 1, "one token for the whole pull expected:\n{}", tokens.dump());
    assert_eq!(treqs[0].authorization(), Some(basic(USER, PASSWORD).as_str()), "{:?}", treqs[0]);
    assert_eq!(treqs[0].query("service").as_deref(), Some(SERVICE), "{}", treqs[0].target);
    assert_eq!(treqs[0].query("scope").as_deref(), Some("repository:team/app:pull"), "{}", treqs[0].target);
    // the password goes to the token endpoint only; the registry sees the token
    assert_no_basic_header(&reg, "bearer registry");
    assert!(
        reg.requests()
            .iter()
            .any(|r| r.path().contains("/blobs/") && r.authorization() == Some(&format!("Bearer {TOKEN}"))),
        "{}",
        reg.dump()
    );
}

// ---------------------------------------------------------------------------
// 5. redirects: credentials stay with the registry
// ---------------------------------------------------------------------------

#[test]
fn blob_redirects_keep_credentials_at_home() {
    let img = Image::new(
        host_arch(),
        vec![
            Layer::gzip(&[("one.txt", b"first layer, kept in the blob store\n")]),
            Layer::gzip(&[("two.txt", b"second layer, moved within the registry\n")]),
        ],
    );
    let (config_d, layer1_d, layer2_d) = (img.config_digest(), img.layers[0].digest(), img.layers[1].digest());

    // S3-style storage on another port: it refuses requests that carry an Authorization
    // header (S3 does: "only one auth mechanism allowed") and serves by a signed URL.
    let stored = img.layers[0].blob.clone();
    let path1 = format!("/bucket/{}", hex_part(&layer1_d));
    let storage = {
        let path1 = path1.clone();
        Server::start(move |req| {
            if req.authorization().is_some() {
                Resp::error(400, "InvalidArgument", "Only one auth mechanism allowed")
            } else if req.path() == path1 && req.query("X-Amz-Signature").as_deref() == Some("c0ffee") {
                Resp::ok("application/octet-stream", stored.clone())
            } else {
                Resp::error(403, "AccessDenied", "Access Denied")
            }
        })
    };
    let storage_port = storage.port;

    let routes = Routes::with("private/app", "v1", &img);
    let want = basic(USER, PASSWORD);
    let (c, l1, l2) = (config_d.clone(), layer1_d.clone(), layer2_d.clone());
    let reg = Server::start_with_port(move |own_port| {
        move |req: &Request| {
            if req.authorization() != Some(want.as_str()) {
                return Resp::challenge(r#"Basic realm="x""#);
            }
            let p = req.path();
            if p == format!("/v2/private/app/blobs/{l1}") {
                // to the blob store on another port
                let loc = format!(
                    "http://127.0.0.1:{storage_port}/bucket/{}?X-Amz-Expires=600&X-Amz-Signature=c0ffee",
                    hex_part(&l1)
                );
                Resp::redirect(307, &loc)
            } else if p == format!("/v2/private/app/blobs/{c}") {
                // to the registry itself, absolute
                Resp::redirect(302, &format!("http://127.0.0.1:{own_port}/moved/config"))
            } else if p == format!("/v2/private/app/blobs/{l2}") {
                // to the registry itself, relative
                Resp::redirect(307, "/moved/layer2")
            } else if p == "/moved/config" {
                routes.answer(&Request { target: format!("/v2/private/app/blobs/{c}"), ..req.clone() })
            } else if p == "/moved/layer2" {
                routes.answer(&Request { target: format!("/v2/private/app/blobs/{l2}"), ..req.clone() })
            } else {
                routes.answer(req)
            }
        }
    });
    let host = reg.host();
    let h = husk();
    login(&h, &host, PASSWORD).assert_ok();

    pull_ok(&h, &format!("{host}/private/app:v1"), &img, &[&reg, &storage]);

    // the blob store got the layer, without credentials
    let sreqs = storage.requests();
    assert!(sreqs.iter().any(|r| r.path() == path1), "the blob store was never asked:\n{}", storage.dump());
    for r in &sreqs {
        assert!(r.authorization().is_none(), "credentials went to the blob store on another port: {r:?}");
    }
    // the registry got them everywhere, including after its own redirects
    let rreqs = reg.requests();
    for p in [
        format!("/v2/private/app/blobs/{layer1_d}"),
        format!("/v2/private/app/blobs/{config_d}"),
        format!("/v2/private/app/blobs/{layer2_d}"),
        "/moved/config".to_string(),
        "/moved/layer2".to_string(),
    ] {
        assert!(
            rreqs.iter().any(|r| r.path() == p && r.authorization() == Some(basic(USER, PASSWORD).as_str())),
            "{p}: not requested with the credentials:\n{}",
            reg.dump()
        );
    }

    // the image is complete
    let store = h.store();
    for d in [&config_d, &layer1_d, &layer2_d] {
        assert!(store.join("blobs/sha256").join(hex_part(d)).is_file(), "blob {d} missing");
    }
}

// ---------------------------------------------------------------------------
// 6. uncompressed layers
// ---------------------------------------------------------------------------

fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        out.push(match out.last() {
            None => d.clone(),
            Some(p) => sha256(format!("{p} {d}").as_bytes()),
        });
    }
    out
}

#[test]
fn uncompressed_layer_pulls_and_extracts() {
    let img = Image::new(
        host_arch(),
        vec![
            Layer::uncompressed(&[("plain.txt", b"an uncompressed layer\n"), ("etc/plain.conf", b"x=1\n")]),
            Layer::gzip(&[("zipped.txt", b"a gzip layer on top\n")]),
        ],
    );
    assert_eq!(img.layers[0].digest(), img.layers[0].diff_id(), "test setup: digest of a plain tar is its diff id");
    let reg = Server::start({
        let routes = Routes::with("plain/app", "v1", &img);
        move |req| routes.answer(req)
    });
    let reference = format!("{}/plain/app:v1", reg.host());
    let h = husk();
    pull_ok(&h, &reference, &img, &[&reg]);

    let out = h.run(&["image", "inspect", &reference]);
    out.assert_ok();
    let v: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("inspect output is not JSON: {e}\n{out:?}"));
    let i = &v[0];
    assert_eq!(i["Id"], img.config_digest().as_str(), "{out:?}");
    let diff_ids: Vec<String> = img.layers.iter().map(Layer::diff_id).collect();
    assert_eq!(i["RootFS"]["Layers"], json!(diff_ids), "{out:?}");
    assert_eq!(i["Manifest"]["Digest"], sha256(&img.manifest_bytes()).as_str(), "{out:?}");

    let chains = chain_ids(&diff_ids);
    let store = h.store();
    let diff0 = store.join("layers").join(hex_part(&chains[0])).join("diff");
    let diff1 = store.join("layers").join(hex_part(&chains[1])).join("diff");
    for (p, want) in [
        (diff0.join("plain.txt"), &b"an uncompressed layer\n"[..]),
        (diff0.join("etc/plain.conf"), b"x=1\n"),
        (diff1.join("zipped.txt"), b"a gzip layer on top\n"),
    ] {
        let got = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(got, want, "{}", p.display());
    }
    assert!(!diff0.join("zipped.txt").exists() && !diff1.join("plain.txt").exists(), "layers mixed up");
    // the uncompressed blob is kept as it came
    let blob = store.join("blobs/sha256").join(hex_part(&img.layers[0].digest()));
    assert_eq!(fs::read(&blob).unwrap_or_else(|e| panic!("{}: {e}", blob.display())), img.layers[0].blob);
}

// ---------------------------------------------------------------------------
// 7. a 401 from the blob store must not send the registry's password elsewhere
// ---------------------------------------------------------------------------

/// A blob store on another origin that answers a redirected blob GET with its own
/// `Bearer` challenge must not get the registry's credentials sent to the realm it names.
#[test]
fn challenge_from_the_blob_store_gets_no_registry_credentials() {
    // src/fetch/registry.rs `send`: the 401 of the redirect target (another origin) is
    // answered by `answer_challenge`, which GETs the realm that origin names with
    // `Authorization: Basic <registry credentials>`.
    let collector = Server::start(|_| Resp::json(200, json!({"token": "whatever"})));
    let realm = format!("http://{}/collect", collector.host());
    let storage = Server::start(move |_| Resp::challenge(&format!(r#"Bearer realm="{realm}",service="cdn""#)));
    let storage_port = storage.port;
    let img = Image::simple();
    let routes = Routes::with("private/app", "v1", &img);
    let layer = img.layers[0].digest();
    let want = basic(USER, PASSWORD);
    let reg = Server::start(move |req| {
        if req.authorization() != Some(want.as_str()) {
            return Resp::challenge(r#"Basic realm="x""#);
        }
        if req.path() == format!("/v2/private/app/blobs/{layer}") {
            return Resp::redirect(307, &format!("http://127.0.0.1:{storage_port}/blob"));
        }
        routes.answer(req)
    });
    let h = husk();
    login(&h, &reg.host(), PASSWORD).assert_ok();
    let out = h.run(&["pull", "-q", &format!("{}/private/app:v1", reg.host())]);
    eprintln!("{out:?}");
    for r in collector.requests() {
        assert!(
            r.authorization().is_none(),
            "the registry's credentials went to a token realm named by the blob store: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 8. TLS: https by default, insecure registries, and redirects to another host or scheme
// ---------------------------------------------------------------------------
//
// A registry that is not loopback is named `registry.husk-test.invalid` (RFC 6761: never
// resolves). husk reaches it through a proxy in this process (HTTPS_PROXY / HTTP_PROXY,
// which husk's HTTP client honours), so no traffic leaves 127.0.0.1 and the proxy sees
// which scheme husk chose: `CONNECT host:443` for https, `GET http://host/...` for http.
// Behind it, tests/fixtures/tls-front.py serves https (a certificate for that name and
// 127.0.0.1, from a CA made here and given to husk as SSL_CERT_FILE) and plain http on
// one port, handing each to its own recording fake server.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const REMOTE: &str = "registry.husk-test.invalid";

/// An HTTP proxy on 127.0.0.1 that sends everything to 127.0.0.1:`to` (a TlsFront):
/// CONNECT tunnels as they are, plain requests rewritten to origin form. It records the
/// request line and headers of what it was asked.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<Request>>>,
}

fn splice(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let (mut a, mut b) = (a, b);
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = t.join();
}

impl Proxy {
    fn start(to: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<Request>>> = Arc::default();
        let l = log.clone();
        // The accept loop ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let log = l.clone();
                std::thread::spawn(move || Proxy::serve(conn, to, &log));
            }
        });
        Proxy { port, log }
    }

    fn serve(mut conn: TcpStream, to: u16, log: &Mutex<Vec<Request>>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or("").to_string();
        let mut parts = first.split(' ');
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let headers = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        log.lock().unwrap().push(Request {
            method: method.clone(),
            target: target.clone(),
            headers,
            at: std::time::Instant::now(),
        });
        let Ok(mut back) = TcpStream::connect(("127.0.0.1", to)) else { return };
        if method == "CONNECT" {
            if conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").is_err() {
                return;
            }
        } else {
            // http://authority/path -> /path
            let rest = target.split_once("://").map(|(_, r)| r).unwrap_or(&target);
            let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
            let rewritten = text.replacen(&format!(" {target} "), &format!(" {path} "), 1);
            if back.write_all(rewritten.as_bytes()).is_err() {
                return;
            }
        }
        if back.write_all(&head[end..]).is_err() {
            return;
        }
        splice(conn, back);
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// "METHOD target" of every request from the `from`th on.
    fn lines(&self, from: usize) -> Vec<String> {
        self.requests()[from..].iter().map(|r| format!("{} {}", r.method, r.target)).collect()
    }

    /// husk's environment for this proxy, trusting `ca` if given.
    fn env(&self, ca: Option<&str>) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let mut env = vec![("HTTPS_PROXY".to_string(), url.clone()), ("HTTP_PROXY".to_string(), url)];
        if let Some(ca) = ca {
            env.push(("SSL_CERT_FILE".into(), ca.into()));
        }
        env
    }
}

fn run_env(h: &Husk, env: &[(String, String)], args: &[&str]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    h.run_env(&env, args)
}

/// A fake server serving `routes`.
fn serving(routes: Routes) -> Server {
    Server::start(move |req| routes.answer(req))
}

/// The https and the http backend behind one TlsFront, both serving `repo:tag`, and a
/// proxy in front of it all.
struct Remote {
    tls: Tls,
    secure: Server,
    plain: Server,
    _front: TlsFront,
    proxy: Proxy,
}

impl Remote {
    fn serving(repo: &str, tag: &str, img: &Image) -> Remote {
        let tls = Tls::new(REMOTE);
        let secure = serving(Routes::with(repo, tag, img));
        let plain = serving(Routes::with(repo, tag, img));
        let front = TlsFront::start(&tls, plain.port, secure.port);
        let proxy = Proxy::start(front.port);
        Remote { tls, secure, plain, _front: front, proxy }
    }
}

#[test]
fn https_is_the_default_for_a_registry_that_is_not_loopback() {
    let img = Image::simple();
    let remote = Remote::serving("app", "v1", &img);
    let reference = format!("{REMOTE}/app:v1");
    let h = husk();

    // the certificate is not trusted: refused, nothing fetched in the clear
    let out = run_env(&h, &remote.proxy.env(None), &["pull", "-q", &reference]);
    let line = error_line(&out, "pull from an https registry with an untrusted certificate");
    assert!(line.contains(REMOTE), "{line}");
    assert_mentions_any(&line, "untrusted certificate", &["certificate", "issuer"]);
    assert!(remote.secure.requests().is_empty() && remote.plain.requests().is_empty());

    // trusted: the whole pull goes over https to port 443
    let out = run_env(&h, &remote.proxy.env(Some(&remote.tls.ca())), &["pull", "-q", &reference]);
    assert!(out.success(), "{out:?}\nproxy: {:#?}", remote.proxy.lines(0));
    assert_eq!(out.stdout.trim(), hex_part(&img.config_digest()));
    let asked = remote.proxy.lines(0);
    assert!(asked.iter().all(|l| l == &format!("CONNECT {REMOTE}:443")), "{asked:#?}");
    assert!(remote.plain.requests().is_empty(), "plain http was used:\n{}", remote.plain.dump());
    for path in [
        "/v2/app/manifests/v1".to_string(),
        format!("/v2/app/blobs/{}", img.config_digest()),
        format!("/v2/app/blobs/{}", img.layers[0].digest()),
    ] {
        assert!(
            remote.secure.requests().iter().any(|r| r.path() == path),
            "{path} not fetched over https:\n{}",
            remote.secure.dump()
        );
    }
}

#[test]
fn insecure_registries_from_env_and_config_file_use_plain_http() {
    let img = Image::simple();
    let remote = Remote::serving("app", "v1", &img);
    let reference = format!("{REMOTE}/app:v1");
    let config = json!({"insecure-registries": ["other.example:5000", REMOTE]}).to_string();
    struct Case {
        what: &'static str,
        /// for husk's environment; "XDG" stands for HOME/xdg
        env: Vec<(String, String)>,
        /// where in HOME the config file is written
        file: Option<&'static str>,
        plain_http: bool,
    }
    let xdg = || vec![("XDG_CONFIG_HOME".to_string(), "XDG".to_string())];
    let listed = |v: String| vec![("HUSK_INSECURE_REGISTRIES".to_string(), v)];
    let cases = [
        Case {
            what: "HUSK_INSECURE_REGISTRIES",
            env: listed(format!("other.example:5000, {REMOTE}")),
            file: None,
            plain_http: true,
        },
        Case {
            what: "$XDG_CONFIG_HOME/husk/config.json",
            env: xdg(),
            file: Some("xdg/husk/config.json"),
            plain_http: true,
        },
        Case {
            what: "~/.config/husk/config.json",
            env: vec![],
            file: Some(".config/husk/config.json"),
            plain_http: true,
        },
        Case {
            what: "another port of the registry listed",
            env: listed(format!("{REMOTE}:5000")),
            file: None,
            plain_http: false,
        },
        Case {
            what: "~/.config/husk/config.json while XDG_CONFIG_HOME points elsewhere",
            env: xdg(),
            file: Some(".config/husk/config.json"),
            plain_http: false,
        },
    ];
    for Case { what, env: extra, file, plain_http } in cases {
        let h = husk();
        let mut env = remote.proxy.env(Some(&remote.tls.ca()));
        for (k, v) in extra {
            let v = if v == "XDG" { h.home.join("xdg").display().to_string() } else { v };
            env.push((k, v));
        }
        if let Some(rel) = file {
            write_as_user(&h, rel, config.as_bytes(), 0o600);
        }
        let (before, secure_before, plain_before) =
            (remote.proxy.requests().len(), remote.secure.requests().len(), remote.plain.requests().len());
        let out = run_env(&h, &env, &["pull", "-q", &reference]);
        assert!(out.success(), "{what}: {out:?}\nproxy: {:#?}", remote.proxy.lines(before));
        assert_eq!(out.stdout.trim(), hex_part(&img.config_digest()), "{what}");
        let asked = remote.proxy.lines(before);
        let (secure_n, plain_n) =
            (remote.secure.requests().len() - secure_before, remote.plain.requests().len() - plain_before);
        if plain_http {
            let prefix = format!("GET http://{REMOTE}/v2/app/");
            assert!(asked.iter().all(|l| l.starts_with(&prefix)), "{what}: not all plain http:\n{asked:#?}");
            assert!(plain_n >= 3 && secure_n == 0, "{what}: {plain_n} plain, {secure_n} https requests");
        } else {
            assert!(asked.iter().all(|l| l == &format!("CONNECT {REMOTE}:443")), "{what}: {asked:#?}");
            assert!(secure_n >= 3 && plain_n == 0, "{what}: {plain_n} plain, {secure_n} https requests");
        }
    }
}

/// A registry on 127.0.0.1:P wanting Basic alice:secret, serving `repo:v1` of `img` and
/// redirecting its layers with `redirect(layer index) -> Location`; requests that name
/// another host (`Host: localhost:P`) are answered as a blob store that refuses
/// credentials and serves `/bucket/<hex>`.
fn redirecting_registry(
    listener: TcpListener,
    repo: &str,
    img: &Image,
    redirect: impl Fn(usize, u16) -> String + Send + Sync + 'static,
) -> Server {
    let routes = Routes::with(repo, "v1", img);
    let layers: Vec<(String, Vec<u8>)> = img.layers.iter().map(|l| (l.digest(), l.blob.clone())).collect();
    let repo = repo.to_string();
    let want = basic(USER, PASSWORD);
    Server::start_on(listener, move |port| {
        move |req: &Request| {
            let host = req.header("host").unwrap_or("");
            if !host.starts_with("127.0.0.1:") {
                return blob_store(req, &layers);
            }
            if req.authorization() != Some(want.as_str()) {
                return Resp::challenge(r#"Basic realm="x""#);
            }
            match layers.iter().position(|(d, _)| req.path() == format!("/v2/{repo}/blobs/{d}")) {
                Some(i) => Resp::redirect(307, &redirect(i, port)),
                None => routes.answer(req),
            }
        }
    })
}

/// A blob store: refuses any request with credentials (as S3 does), serves /bucket/<hex>.
fn blob_store(req: &Request, layers: &[(String, Vec<u8>)]) -> Resp {
    if req.authorization().is_some() {
        return Resp::error(400, "InvalidArgument", "Only one auth mechanism allowed");
    }
    match layers.iter().find(|(d, _)| req.path() == format!("/bucket/{}", hex_part(d))) {
        Some((_, blob)) => Resp::ok("application/octet-stream", blob.clone()),
        None => Resp::error(404, "NoSuchKey", "no such key"),
    }
}

/// Two listeners on one port: 127.0.0.1:P and 127.0.0.2:P.
fn same_port_on_two_addresses() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let other = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2:0");
        let port = other.local_addr().unwrap().port();
        if let Ok(home) = TcpListener::bind(("127.0.0.1", port)) {
            return (home, other);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[track_caller]
fn assert_fetched_without_credentials(s: &Server, path: &str, what: &str) {
    let reqs: Vec<Request> = s.requests().into_iter().filter(|r| r.path() == path).collect();
    assert!(!reqs.is_empty(), "{what}: {path} was never requested:\n{}", s.dump());
    for r in reqs {
        assert!(r.authorization().is_none(), "{what}: credentials went along: {r:?}");
    }
}

#[test]
fn redirect_to_another_host_on_the_same_port_gets_no_credentials() {
    let img = Image::new(
        host_arch(),
        vec![Layer::gzip(&[("one.txt", b"via localhost\n")]), Layer::gzip(&[("two.txt", b"via 127.0.0.2\n")])],
    );
    let (home, other) = same_port_on_two_addresses();
    let layers: Vec<(String, Vec<u8>)> = img.layers.iter().map(|l| (l.digest(), l.blob.clone())).collect();
    let store2 = Server::start_on(other, move |_| move |req: &Request| blob_store(req, &layers));
    let hexes: Vec<String> = img.layers.iter().map(|l| hex_part(&l.digest()).to_string()).collect();
    let reg = redirecting_registry(home, "private/app", &img, move |i, port| {
        let host = if i == 0 { "localhost" } else { "127.0.0.2" };
        format!("http://{host}:{port}/bucket/{}", hexes[i])
    });
    assert_eq!(reg.port, store2.port);
    let h = husk();
    login(&h, &reg.host(), PASSWORD).assert_ok();
    pull_ok(&h, &format!("{}/private/app:v1", reg.host()), &img, &[&reg, &store2]);
    // localhost:P is the registry's own server under another name
    let by_name: Vec<Request> =
        reg.requests().into_iter().filter(|r| r.header("host").is_some_and(|h| h.starts_with("localhost:"))).collect();
    assert!(!by_name.is_empty(), "nothing was asked of localhost:{}:\n{}", reg.port, reg.dump());
    for r in &by_name {
        assert!(r.authorization().is_none(), "credentials went to localhost on the same port: {r:?}");
    }
    assert_fetched_without_credentials(&store2, &format!("/bucket/{}", hex_part(&img.layers[1].digest())), "127.0.0.2");
    // the registry itself still got them for the blobs it redirected
    for l in &img.layers {
        let p = format!("/v2/private/app/blobs/{}", l.digest());
        assert!(
            reg.requests().iter().any(|r| r.path() == p && r.authorization() == Some(basic(USER, PASSWORD).as_str())),
            "{p}:\n{}",
            reg.dump()
        );
    }
}

#[test]
fn redirect_from_http_to_https_on_the_same_host_and_port_gets_no_credentials() {
    let tls = Tls::new(REMOTE);
    let img = Image::simple();
    let layers: Vec<(String, Vec<u8>)> = img.layers.iter().map(|l| (l.digest(), l.blob.clone())).collect();
    let storage = Server::start(move |req| blob_store(req, &layers));
    // The front's port is the registry's: the registry behind it learns it from the first
    // request's Host header.
    let routes = Routes::with("private/app", "v1", &img);
    let layer = img.layers[0].digest();
    let want = basic(USER, PASSWORD);
    let reg = Server::start(move |req| {
        if req.authorization() != Some(want.as_str()) {
            return Resp::challenge(r#"Basic realm="x""#);
        }
        if req.path() == format!("/v2/private/app/blobs/{layer}") {
            let host = req.header("host").unwrap_or("");
            return Resp::redirect(307, &format!("https://{host}/bucket/{}", hex_part(&layer)));
        }
        routes.answer(req)
    });
    let front = TlsFront::start(&tls, reg.port, storage.port);
    let host = format!("127.0.0.1:{}", front.port);
    let h = husk();
    login(&h, &host, PASSWORD).assert_ok();
    let env = vec![("SSL_CERT_FILE".to_string(), tls.ca())];
    let out = run_env(&h, &env, &["pull", "-q", &format!("{host}/private/app:v1")]);
    assert!(out.success(), "{out:?}\nregistry:\n{}\nhttps side:\n{}", reg.dump(), storage.dump());
    assert_fetched_without_credentials(
        &storage,
        &format!("/bucket/{}", hex_part(&img.layers[0].digest())),
        "https on the registry's own host and port",
    );
}

#[test]
fn redirect_from_https_to_http_on_the_same_host_and_port_gets_no_credentials() {
    let tls = Tls::new(REMOTE);
    let img = Image::simple();
    let layers: Vec<(String, Vec<u8>)> = img.layers.iter().map(|l| (l.digest(), l.blob.clone())).collect();
    let plain_side = Server::start(move |req| blob_store(req, &layers));
    let routes = Routes::with("private/app", "v1", &img);
    let layer = img.layers[0].digest();
    let want = basic(USER, PASSWORD);
    let reg = Server::start(move |req| {
        if req.authorization() != Some(want.as_str()) {
            return Resp::challenge(r#"Basic realm="x""#);
        }
        if req.path() == format!("/v2/private/app/blobs/{layer}") {
            return Resp::redirect(307, &format!("http://{REMOTE}:8443/bucket/{}", hex_part(&layer)));
        }
        routes.answer(req)
    });
    let front = TlsFront::start(&tls, plain_side.port, reg.port);
    let proxy = Proxy::start(front.port);
    let registry = format!("{REMOTE}:8443");
    let h = husk();
    let env = proxy.env(Some(&tls.ca()));
    let mut login_cmd = {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        h.cmd_env(&env, &["login", &registry, "-u", USER, "--password-stdin"])
    };
    login_cmd.current_dir(&h.home);
    common::run_output(login_cmd, Some(format!("{PASSWORD}\n").as_bytes())).assert_ok();
    let out = run_env(&h, &env, &["pull", "-q", &format!("{registry}/private/app:v1")]);
    assert!(out.success(), "{out:?}\nproxy: {:#?}\nregistry:\n{}", proxy.lines(0), reg.dump());
    let asked = proxy.lines(0);
    assert!(asked.contains(&format!("CONNECT {registry}")), "{asked:#?}");
    let bucket = format!("/bucket/{}", hex_part(&img.layers[0].digest()));
    assert!(asked.contains(&format!("GET http://{registry}{bucket}")), "{asked:#?}");
    for r in proxy.requests() {
        assert!(r.authorization().is_none(), "credentials went over plain http: {r:?}");
    }
    assert_fetched_without_credentials(&plain_side, &bucket, "plain http on the registry's own host and port");
    assert!(
        reg.requests().iter().any(|r| r.authorization() == Some(basic(USER, PASSWORD).as_str())),
        "the registry never got the credentials over https:\n{}",
        reg.dump()
    );
}
