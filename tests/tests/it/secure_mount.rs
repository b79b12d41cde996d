//! `ccmount secure-mount` (issue 18, part 2): the Confidential Containers data hub's
//! secure-mount request, end to end. A tree written by the real gocryptfs sits in the
//! authenticating S3-compatible test server (moto, at the bucket's root: see `e2e::s3`);
//! `akId`, `akSecret` and `encPasswd` are sealed secrets made by the independent sealer
//! (`tests/tools/cdh_seal.py`) naming resources of the test KBS, whose signing key the KBS
//! holds too; the request is the JSON CDH takes. ccmount mounts it (foreground with a ready
//! file, and as a background daemon fed the request on stdin), the files are compared with
//! the plaintext, and the mount is stopped. The refusals (unsupported volume type,
//! unencrypted bucket, forged sealed secret, plain-HTTP endpoint, oversized request) need
//! no mount and check their exit codes, and that no secret value reaches the output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::gocryptfs::{self, Mount};
use e2e::s3::S3Server;
use e2e::{skip_unless, tree};
use test_kbs::{KbsConfig, Policy, TestKbs};

use crate::mount::{force_unmount, fuse_skip, is_mounted};

const PASSWORD: &[u8] = b"secure mount model password\n";
/// A plain secret value that must never be printed.
const PLAIN_SECRET: &str = "plain-ak-secret-MUST-NOT-BE-PRINTED";

struct Fx {
    bin: PathBuf,
    kbs: TestKbs,
    dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Fx {
    /// The test KBS with the storage credentials and the password as resources, and the
    /// signing key of the sealer. `None` (printed) without the binary or openssl.
    fn new(creds: Option<&S3Server>) -> Option<Fx> {
        let bin = e2e::ccmount_bin()?;
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("SKIP: no openssl CLI to seal secrets with");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (id, secret) = creds.map_or(("unused-id".to_owned(), "unused".to_owned()), |s| {
            (s.access_key_id.clone(), s.secret_access_key.clone())
        });
        let kbs = TestKbs::start(
            KbsConfig::default()
                .with_resource("default/aliyun/oss-ak-id", id.into_bytes())
                .with_resource("default/aliyun/oss-ak-secret", secret.into_bytes())
                .with_resource("default/aliyun/model-decryption-key", PASSWORD.to_vec())
                .with_resource("default/aliyun/other", b"not this one".to_vec())
                .with_policy(Policy::allow_all()),
        )
        .unwrap();
        let ca = dir.path().join("ca.pem");
        kbs.write_ca(&ca).unwrap();
        let fx = Fx { bin, kbs, dir, ca };
        fx.seal("kbs:///default/aliyun/other");
        let jwk = std::fs::read(fx.dir.path().join("key.jwk")).unwrap();
        fx.kbs.set_resource("default/keys/sealing", jwk).unwrap();
        Some(fx)
    }

    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    /// A sealed secret naming `name`, made by the independent sealer.
    fn seal(&self, name: &str) -> String {
        let out = Command::new("python3")
            .arg(e2e::tests_dir().join("tools/cdh_seal.py"))
            .arg(self.dir.path())
            .args([name, "kbs:///default/keys/sealing"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// The request CDH takes for an OSS bucket holding a gocryptfs tree, every field sealed.
    fn request(&self, url: &str, bucket: &str, mnt: &Path) -> serde_json::Value {
        serde_json::json!({
            "volume_type": "alibaba-cloud-oss",
            "options": {
                "akId": self.seal("kbs:///default/aliyun/oss-ak-id"),
                "akSecret": self.seal("kbs:///default/aliyun/oss-ak-secret"),
                "annotations": "",
                "bucket": bucket,
                "encPasswd": self.seal("kbs:///default/aliyun/model-decryption-key"),
                "encrypted": "gocryptfs",
                "kmsKeyId": "",
                "otherOpts": "-o max_stat_cache_size=0 -o allow_other",
                "path": "/",
                "readonly": "true",
                "targetPath": mnt.to_str().unwrap(),
                "url": url,
                "volumeId": "model-volume",
            },
            "flags": [],
            "mount_point": mnt.to_str().unwrap(),
        })
    }

    fn write_request(&self, name: &str, req: &serde_json::Value) -> PathBuf {
        let p = self.p(name);
        std::fs::write(&p, serde_json::to_vec_pretty(req).unwrap()).unwrap();
        p
    }

    /// `ccmount` against the test KBS, without any storage credentials of its own.
    fn cmd(&self, global: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.args(["--kbs-url", &self.kbs.url(), "--kbs-cert"])
            .arg(&self.ca)
            .args(["--tee", "sample", "--timeout", "30s", "-q"])
            .args(global);
        c
    }
}

/// Runs `cmd` with `stdin` as its standard input, bounded.
fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), stdin).unwrap();
    let child = cmd
        .stdin(std::fs::File::open(input.path()).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("ccmount did not finish within 120 s")
        .unwrap()
}

fn code(o: &Output, want: i32) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(want), "stderr: {err}");
    assert!(!err.contains(PLAIN_SECRET), "a secret was printed: {err}");
    err
}

/// Undoes a mount and stops its process, whatever the test did.
struct Guard {
    mnt: PathBuf,
    child: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        force_unmount(&self.mnt);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A tree the real gocryptfs wrote (scrypt N=2^10): plaintext and ciphertext.
fn model(dir: &Path) -> (PathBuf, PathBuf) {
    let cipher = dir.join("cipher");
    let pass = dir.join("pass");
    std::fs::write(&pass, PASSWORD).unwrap();
    gocryptfs::init(&cipher, &pass, &[]);
    let plain = dir.join("plain");
    std::fs::create_dir(&plain).unwrap();
    tree::generate(
        &plain,
        181,
        tree::TreeOpts {
            random_files: 8,
            max_size: 300_000,
            sparse: false,
            ..tree::TreeOpts::default()
        },
    );
    // Objects hold no symlinks.
    std::fs::remove_dir_all(plain.join("links")).unwrap();
    let m = Mount::new(&cipher, &dir.join("gmnt"), Some(&pass), &[]);
    e2e::corpus::copy_tree(&plain, m.path());
    m.unmount();
    (cipher, plain)
}

fn same_tree(a: &Path, b: &Path) {
    let d = tree::diff(&tree::snapshot(a), &tree::snapshot(b), false, false);
    assert!(d.is_empty(), "{d:#?}");
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn secure_mount_request_with_sealed_fields_mounts_the_bucket() {
    skip_unless!(fuse_skip());
    skip_unless!(gocryptfs::skip_reason());
    skip_unless!(e2e::s3::skip_reason());
    let s3 = S3Server::start_authenticated();
    let Some(f) = Fx::new(Some(&s3)) else { return };
    s3.make_bucket("oss-model");
    let (cipher, plain) = model(f.dir.path());
    s3.upload(&cipher, "oss-model", "");

    // Foreground, with a ready file; stopped by SIGTERM.
    let mnt = f.p("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let req = f.write_request("request.json", &f.request(&s3.endpoint, "oss-model", &mnt));
    let ready = f.p("ready");
    let log = std::fs::File::create(f.p("stderr")).unwrap();
    let child = f
        .cmd(&["--s3-allow-http"])
        .args(["secure-mount", "--request"])
        .arg(&req)
        .args(["--foreground", "--ready-file"])
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut guard = Guard {
        mnt: mnt.clone(),
        child: Some(child),
    };
    wait_for("the ready file", Duration::from_secs(120), || {
        let exited = guard
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        assert!(
            !exited,
            "ccmount secure-mount exited: {}",
            std::fs::read_to_string(f.p("stderr")).unwrap_or_default()
        );
        ready.exists()
    });
    assert!(is_mounted(&mnt));
    same_tree(&mnt, &plain);
    // Read-only, whatever the request says.
    assert!(std::fs::write(mnt.join("new-file"), b"x").is_err());
    let mut c = guard.child.take().unwrap();
    let pid = rustix::process::Pid::from_raw(i32::try_from(c.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    wait_for("the unmount", Duration::from_secs(20), || !is_mounted(&mnt));
    let status = c.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!ready.exists());
    let stderr = std::fs::read_to_string(f.p("stderr")).unwrap();
    assert!(!stderr.contains(&s3.secret_access_key), "{stderr}");

    // Background daemon, the request on stdin (the parent hands it to the daemon).
    let bytes = std::fs::read(&req).unwrap();
    let _guard = Guard {
        mnt: mnt.clone(),
        child: None,
    };
    let out = run_with_stdin(
        f.cmd(&["--s3-allow-http"])
            .args(["secure-mount", "--request", "-"]),
        &bytes,
    );
    code(&out, 0);
    assert!(is_mounted(&mnt));
    same_tree(&mnt, &plain);
    let out = e2e::run_with_timeout(
        Command::new(&f.bin).arg("umount").arg(&mnt),
        Duration::from_secs(30),
    );
    code(&out, 0);
    assert!(!is_mounted(&mnt));
    // One attestation per process, both times: credentials, password and signing key over
    // the same session.
    assert_eq!(f.kbs.request_count(test_kbs::Endpoint::Auth), 2);
}

#[test]
fn unsupported_and_unencrypted_requests_are_usage_errors() {
    let Some(f) = Fx::new(None) else { return };
    let mnt = f.p("mnt");
    let mut req = f.request("https://oss-cn-hangzhou.aliyuncs.com", "models", &mnt);
    req["options"]["akSecret"] = PLAIN_SECRET.into();
    req["options"]["encPasswd"] = PLAIN_SECRET.into();

    let mut other = req.clone();
    other["volume_type"] = "block-device".into();
    let p = f.write_request("block.json", &other);
    let out = e2e::run_with_timeout(
        f.cmd(&[])
            .args(["secure-mount", "--foreground", "--request"])
            .arg(&p),
        Duration::from_secs(60),
    );
    let err = code(&out, 2);
    assert!(
        err.contains("block-device") && err.contains("alibaba-cloud-oss"),
        "{err}"
    );

    for enc in ["", "none"] {
        let mut plain = req.clone();
        plain["options"]["encrypted"] = enc.into();
        let p = f.write_request("plain.json", &plain);
        // Background mode refuses it before starting a daemon.
        let out = e2e::run_with_timeout(
            f.cmd(&[]).args(["secure-mount", "--request"]).arg(&p),
            Duration::from_secs(60),
        );
        let err = code(&out, 2);
        assert!(err.contains("options.encrypted"), "{err}");
    }

    let mut writable = req.clone();
    writable["options"]["readonly"] = "false".into();
    let out = run_with_stdin(
        f.cmd(&[]).args(["secure-mount", "--request", "-"]),
        &serde_json::to_vec(&writable).unwrap(),
    );
    let err = code(&out, 2);
    assert!(err.contains("read-only"), "{err}");

    let mut missing = req.clone();
    missing["options"].as_object_mut().unwrap().remove("bucket");
    let out = run_with_stdin(
        f.cmd(&[]).args(["secure-mount", "--request", "-"]),
        &serde_json::to_vec(&missing).unwrap(),
    );
    let err = code(&out, 2);
    assert!(err.contains("options.bucket"), "{err}");

    let out = run_with_stdin(
        f.cmd(&[]).args(["secure-mount", "--request", "-"]),
        &vec![b' '; 64 * 1024 + 1],
    );
    let err = code(&out, 2);
    assert!(err.contains("64 KiB"), "{err}");
}

#[test]
fn a_forged_sealed_field_is_refused_before_anything_is_mounted() {
    let Some(f) = Fx::new(None) else { return };
    let mnt = f.p("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // Nothing listens there: the refusal comes before any storage request.
    let mut req = f.request("http://127.0.0.1:1", "models", &mnt);
    // The host swaps the payload for one naming another resource, keeping the signature.
    let good = f.seal("kbs:///default/aliyun/model-decryption-key");
    let other = f.seal("kbs:///default/aliyun/other");
    let g: Vec<&str> = good.split('.').collect();
    let o: Vec<&str> = other.split('.').collect();
    req["options"]["encPasswd"] = format!("sealed.{}.{}.{}", g[1], o[2], g[3]).into();
    let p = f.write_request("forged.json", &req);
    let out = e2e::run_with_timeout(
        f.cmd(&["--s3-allow-http"])
            .args(["secure-mount", "--foreground", "--request"])
            .arg(&p),
        Duration::from_secs(120),
    );
    let err = code(&out, 26);
    assert!(
        err.contains("options.encPasswd") && err.contains("signature does not verify"),
        "{err}"
    );
    // The same through the background daemon and stdin: its status pipe carries the code.
    let out = run_with_stdin(
        f.cmd(&["--s3-allow-http"])
            .args(["secure-mount", "--request", "-"]),
        &std::fs::read(&p).unwrap(),
    );
    let err = code(&out, 26);
    assert!(err.contains("signature does not verify"), "{err}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_plain_http_endpoint_needs_s3_allow_http() {
    let Some(f) = Fx::new(None) else { return };
    let mnt = f.p("mnt");
    let mut req = f.request("http://oss-cn-hangzhou.aliyuncs.com", "models", &mnt);
    req["options"]["akSecret"] = PLAIN_SECRET.into();
    let p = f.write_request("http.json", &req);
    let out = e2e::run_with_timeout(
        f.cmd(&[])
            .args(["secure-mount", "--foreground", "--request"])
            .arg(&p),
        Duration::from_secs(60),
    );
    let err = code(&out, 2);
    assert!(
        err.contains("plain HTTP") && err.contains("--s3-allow-http"),
        "{err}"
    );
    // Refused before attesting: nothing was unsealed.
    assert_eq!(f.kbs.request_count(test_kbs::Endpoint::Auth), 0);
}
