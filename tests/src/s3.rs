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
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
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
        Self::start_with(false)
    }

    /// Starts a server that checks every request's signature.
    ///
    /// # Panics
    /// When the server does not come up within 30 s.
    #[must_use]
    pub fn start_authenticated() -> Self {
        Self::start_with(true)
    }

    /// Starts the server and makes the test user (bounded waits; panics on failure).
    fn start_with(auth: bool) -> Self {
        let port = free_port();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
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
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut server = S3Server {
            child,
            endpoint,
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
        let out = run_with_timeout(
            Command::new("python3")
                .arg(tests_dir().join("tools/s3_admin.py"))
                .args(args),
            Duration::from_secs(300),
        );
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
    }

    /// The ccmount flags that point at this server.
    #[must_use]
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--s3-endpoint".into(),
            self.endpoint.clone(),
            "--s3-allow-http".into(),
        ]
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
