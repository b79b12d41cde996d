//! A real S3-compatible server for the object-storage tests: moto's server mode (PyPI
//! `moto[server]`, installed by `scripts/setup.sh`), started on 127.0.0.1 by the test
//! itself. [`S3Server::start_authenticated`] enforces authentication (SigV4 checked, a wrong
//! secret refused) after the three requests that create the test user; moto 5.2 then
//! miscomputes the signature of a listing whose `prefix` holds a `/` (boto3's own requests
//! fail the same way), so trees on an authenticating server sit at the bucket's root, and
//! [`S3Server::start`] (credentials not checked) serves the tests that use prefixes. moto because it is a complete S3 API
//! (pagination at 1000 keys, ranged GETs, `If-Match`, multipart, user metadata, IAM) as a
//! separate process; its throughput is Python's, so it is the test server, not the
//! benchmark's ceiling (`tests/bench/suites/s3.sh` says which server it measures).
//! Bucket chores go through `tests/tools/s3_admin.py` (boto3), never through ccmount.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{run_with_timeout, tests_dir};

/// Why the object-storage tests cannot run here, if they cannot.
#[must_use]
pub fn skip_reason() -> Option<String> {
    let ok = |c: &str, a: &str| {
        Command::new(c)
            .arg(a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok("moto_server", "--help") {
        return Some("moto_server not installed (scripts/setup.sh installs moto[server])".into());
    }
    if !ok("python3", "--version") {
        return Some("python3 not installed".into());
    }
    None
}

/// A running moto server and the credentials of its test user.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (`https://` for [`S3Server::start_tls`]).
    pub endpoint: String,
    /// The CA that signed the server's certificate (PEM file), for a TLS server.
    pub ca_cert: Option<std::path::PathBuf>,
    _tls_dir: Option<tempfile::TempDir>,
    /// The test user's access key ID.
    pub access_key_id: String,
    /// Its secret access key.
    pub secret_access_key: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl S3Server {
    /// Starts a server that does not check credentials.
    ///
    /// # Panics
    /// When the server does not come up within 30 s.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(false, false)
    }

    /// Starts a server that does not check credentials, serving HTTPS with a certificate for
    /// `127.0.0.1` from a CA made here ([`S3Server::ca_cert`]).
    ///
    /// # Panics
    /// When the server does not come up within 30 s.
    #[must_use]
    pub fn start_tls() -> Self {
        Self::start_with(false, true)
    }

    /// Starts a server that checks every request's signature.
    ///
    /// # Panics
    /// When the server does not come up within 30 s.
    #[must_use]
    pub fn start_authenticated() -> Self {
        Self::start_with(true, false)
    }

    /// Starts the server and makes the test user (bounded waits; panics on failure).
    fn start_with(auth: bool, tls: bool) -> Self {
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let tls_dir = tls.then(|| {
            let d = tempfile::tempdir().expect("tempdir");
            let (ca, cert, key) = tls_material();
            for (name, pem) in [("ca.pem", ca), ("cert.pem", cert), ("key.pem", key)] {
                std::fs::write(d.path().join(name), pem).expect("write TLS material");
            }
            cmd.arg("-c")
                .arg(d.path().join("cert.pem"))
                .arg("-k")
                .arg(d.path().join("key.pem"));
            d
        });
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
        } else {
            cmd.env_remove("INITIAL_NO_AUTH_ACTION_COUNT");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let scheme = if tls { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{port}");
        let mut server = S3Server {
            child,
            endpoint,
            ca_cert: tls_dir.as_ref().map(|d| d.path().join("ca.pem")),
            _tls_dir: tls_dir,
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = server.admin_anon(&["init", &server.endpoint.clone()]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("init output");
        server.access_key_id = v["access_key_id"].as_str().unwrap_or_default().to_owned();
        server.secret_access_key = v["secret_access_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        server
    }

    fn admin_anon(&self, args: &[&str]) -> Output {
        let mut c = Command::new("python3");
        c.arg(tests_dir().join("tools/s3_admin.py")).args(args);
        if let Some(ca) = &self.ca_cert {
            c.env("AWS_CA_BUNDLE", ca);
        }
        let out = run_with_timeout(&mut c, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "s3_admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `s3_admin.py CMD ENDPOINT ARGS...` as the test user.
    ///
    /// # Panics
    /// When it fails.
    pub fn admin(&self, cmd: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut c = Command::new("python3");
        c.arg(tests_dir().join("tools/s3_admin.py"))
            .args([cmd, &self.endpoint]);
        for a in args {
            c.arg(a);
        }
        self.env(&mut c);
        let out = run_with_timeout(&mut c, Duration::from_secs(600));
        assert!(
            out.status.success(),
            "s3_admin {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Creates a bucket.
    pub fn make_bucket(&self, bucket: &str) {
        self.admin("mb", &[&bucket]);
    }

    /// Uploads a local tree (as the model owner's tool would) under `bucket/prefix`.
    pub fn upload(&self, dir: &Path, bucket: &str, prefix: &str) {
        self.admin("upload", &[&dir, &bucket, &prefix]);
    }

    /// Uploads like [`S3Server::upload`], plus an empty `dir/` marker object per directory,
    /// as s3fs, ossfs and the consoles' "create folder" leave them.
    pub fn upload_with_dir_markers(&self, dir: &Path, bucket: &str, prefix: &str) {
        self.admin("upload", &[&dir, &bucket, &prefix, &"--dir-markers"]);
    }

    /// Downloads `bucket/prefix` into `dir`.
    pub fn download(&self, bucket: &str, prefix: &str, dir: &Path) {
        self.admin("download", &[&bucket, &prefix, &dir]);
    }

    /// Object keys and sizes under `bucket/prefix`.
    #[must_use]
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let out = self.admin("keys", &[&bucket, &prefix]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, s) = l.rsplit_once(' ')?;
                Some((k.to_owned(), s.parse().ok()?))
            })
            .collect()
    }

    /// Sets the test user's credentials (and nothing else of AWS_*) on `cmd`.
    pub fn env(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_access_key)
            .env("AWS_REGION", "us-east-1");
        // boto3 (s3_admin.py) trusts the test CA through this; ccmount never reads it.
        if let Some(ca) = &self.ca_cert {
            cmd.env("AWS_CA_BUNDLE", ca);
        }
    }

    /// The ccmount flags that point at this server.
    #[must_use]
    pub fn flags(&self) -> Vec<String> {
        let mut f = vec!["--s3-endpoint".into(), self.endpoint.clone()];
        match &self.ca_cert {
            Some(ca) => f.extend(["--s3-ca-cert".into(), ca.display().to_string()]),
            None => f.push("--s3-allow-http".into()),
        }
        f
    }

    /// A temporary file holding the test user's credentials as `--s3-credentials` reads them.
    #[must_use]
    pub fn credentials_json(&self) -> Vec<u8> {
        serde_json::json!({
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
        })
        .to_string()
        .into_bytes()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh CA and a server certificate for `127.0.0.1` and `localhost` signed by it, as PEM:
/// (CA certificate, server certificate, server key).
fn tls_material() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ccmount test S3 CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    leaf.distinguished_name
        .push(DnType::CommonName, "ccmount test S3 server");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = leaf
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .expect("server certificate");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
