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
//! * an uncompressed (`application/vnd.oci.image.layer.v1.tar`) layer.
//!
//! husk runs as the unprivileged `husk-sub` with a fresh HOME; it speaks plain HTTP to
//! 127.0.0.1 registries.

mod common;

use base64::Engine as _;
use common::fake_registry::{hex_part, host_arch, sha256, Image, Layer, Request, Resp, Routes, Server};
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
