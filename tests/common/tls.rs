//! A CA and server certificate made with openssl, and tests/fixtures/tls-front.py: https
//! and plain http on one loopback port, each piped to a backend of its own.
use super::TempDir;
use std::fs;
use std::io::BufRead;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A CA and a server certificate for `name` and 127.0.0.1 (made with the openssl CLI).
pub struct Tls {
    dir: TempDir,
}

impl Tls {
    pub fn new(name: &str) -> Tls {
        let dir = TempDir::new("tls");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("run openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let key = |out: &str| run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out]);
        key("ca.key");
        run(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=husk test CA",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        key("server.key");
        run(&["req", "-new", "-key", "server.key", "-out", "server.csr", "-subj", &format!("/CN={name}")]);
        fs::write(
            dir.path().join("ext.cnf"),
            format!(
                "subjectAltName=DNS:{name},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        fs::set_permissions(dir.path().join("ca.pem"), fs::Permissions::from_mode(0o644)).unwrap();
        Tls { dir }
    }
    /// The CA certificate (PEM), for `SSL_CERT_FILE`.
    pub fn ca(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    /// The server's certificate (PEM), signed by the CA.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

/// tests/fixtures/tls-front.py on 127.0.0.1:port: https to `tls_backend`, http to
/// `plain_backend`. Killed on drop.
pub struct TlsFront {
    pub port: u16,
    child: Child,
}

impl TlsFront {
    pub fn start(tls: &Tls, plain_backend: u16, tls_backend: u16) -> TlsFront {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls-front.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(tls.server_cert())
            .arg(tls.server_key())
            .args([plain_backend.to_string(), tls_backend.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tls-front.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("tls-front.py printed {line:?}"));
        TlsFront { port, child }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
