//! `ccmount secrets --config FILE`: delivery of KBS resources to files (contents, modes,
//! atomic replace), the `[model]` job in the same attested session, refresh on SIGHUP and
//! on an interval, and a failed refresh that keeps the previous files. With `[model]
//! mount_at` the same process serves the model over FUSE beside the secrets.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{ccmount_bin, run_with_timeout, skip_unless, tree};
use test_kbs::{Endpoint, KbsConfig, Policy, TestKbs};

struct Setup {
    kbs: TestKbs,
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup(extra: &str) -> Setup {
    let kbs = TestKbs::start(
        KbsConfig::default()
            .with_resource("default/inference/tls-key", b"-----KEY v1-----\n".to_vec())
            .with_resource(
                "default/inference/tls-cert",
                b"-----CERT v1-----\n".to_vec(),
            )
            .with_resource("default/inference/api-key", b"api-key-v1".to_vec())
            .with_policy(Policy::allow_all()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    kbs.write_ca(&ca).unwrap();
    let config = dir.path().join("ccmount.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kbs]
url = "{url}"
cert = "ca.pem"
tee = "sample"
timeout = "20s"

[[secrets]]
resource = "kbs:///default/inference/tls-key"
path = "out/tls.key"

[[secrets]]
resource = "kbs:///default/inference/tls-cert"
path = "out/tls.crt"
mode = "0444"

[[secrets]]
resource = "kbs:///default/inference/api-key"
path = "out/api-key"
mode = "0440"
{extra}"#,
            url = kbs.url()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    Setup { kbs, dir, config }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the daemon if a test fails half-way.
struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// A small model tree encrypted with our writer under "model password" (scrypt N=2^10):
/// (its temporary directory, the plaintext, the cipher directory).
fn encrypted_model(bin: &Path) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let s0 = tempfile::tempdir().unwrap();
    let plain = s0.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    tree::generate(
        &plain,
        5,
        tree::TreeOpts {
            random_files: 4,
            max_size: 50_000,
            big: false,
            ..tree::TreeOpts::default()
        },
    );
    let pass = s0.path().join("pass");
    std::fs::write(&pass, b"model password\n").unwrap();
    let cipher = s0.path().join("cipher");
    let out = run_with_timeout(
        Command::new(bin)
            .args(["-q", "encrypt"])
            .arg(&plain)
            .arg(&cipher)
            .args(["--scryptn", "10", "--passfile"])
            .arg(&pass),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (s0, plain, cipher)
}

#[test]
fn secrets_once_with_model_job_uses_one_attestation() {
    let Some(bin) = ccmount_bin() else { return };
    // A model encrypted with our writer, its password in the KBS.
    let (_s0, plain, cipher) = encrypted_model(&bin);
    let s = setup(&format!(
        // The generated model holds an absolute symlink: opted in through the config key.
        "\n[policy]\nallow_outside_symlinks = true\n[model]\ncipherdir = \"{}\"\nkey = \"kbs:///default/model/password\"\ndecrypt_to = \"plain-out\"\n",
        cipher.display()
    ));
    s.kbs
        .set_resource("default/model/password", b"model password\n".to_vec())
        .unwrap();

    let out = run_with_timeout(
        Command::new(&bin)
            .arg("--config")
            .arg(&s.config)
            .args(["secrets", "--once"]),
        Duration::from_secs(120),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = s.dir.path().join("out");
    assert_eq!(
        std::fs::read(o.join("tls.key")).unwrap(),
        b"-----KEY v1-----\n"
    );
    assert_eq!(
        std::fs::read(o.join("tls.crt")).unwrap(),
        b"-----CERT v1-----\n"
    );
    assert_eq!(std::fs::read(o.join("api-key")).unwrap(), b"api-key-v1");
    assert_eq!(mode(&o.join("tls.key")), 0o400);
    assert_eq!(mode(&o.join("tls.crt")), 0o444);
    assert_eq!(mode(&o.join("api-key")), 0o440);
    let d = tree::diff(
        &tree::snapshot(&s.dir.path().join("plain-out")),
        &tree::snapshot(&plain),
        false,
        false,
    );
    assert!(d.is_empty(), "{d:#?}");
    // One attestation served the model key and the three secrets.
    assert_eq!(s.kbs.request_count(Endpoint::Auth), 1);
    assert_eq!(s.kbs.request_count(Endpoint::Attest), 1);
    assert_eq!(s.kbs.request_count(Endpoint::Resource), 4);
    // Nothing but the three files in the output directory (no temporary files).
    assert_eq!(std::fs::read_dir(&o).unwrap().count(), 3);
}

#[test]
fn secrets_refresh_on_sighup_replaces_atomically_and_keeps_old_on_failure() {
    let Some(bin) = ccmount_bin() else { return };
    let s = setup("");
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&s.config)
        .arg("secrets")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut d = Daemon(child);
    let key = s.dir.path().join("out/tls.key");
    wait_for("first delivery", || {
        std::fs::read(&key).is_ok_and(|b| b == b"-----KEY v1-----\n")
            && s.dir.path().join("out/api-key").exists()
    });
    let ino = std::fs::metadata(&key).unwrap().ino();

    s.kbs
        .set_resource("default/inference/tls-key", b"-----KEY v2-----\n".to_vec())
        .unwrap();
    signal(&d.0, "-HUP");
    wait_for("refresh after SIGHUP", || {
        std::fs::read(&key).is_ok_and(|b| b == b"-----KEY v2-----\n")
    });
    // Replaced by rename (a new inode), mode kept, no temporary files left.
    assert_ne!(std::fs::metadata(&key).unwrap().ino(), ino);
    assert_eq!(mode(&key), 0o400);
    // The other two files of the refresh are renamed into place just after; then only
    // the three files remain (no temporary file is left behind).
    wait_for("the whole refresh", || {
        std::fs::read_dir(s.dir.path().join("out")).unwrap().count() == 3
    });

    // A resource disappears: the refresh fails, the daemon lives on, the old file stays.
    assert!(s.kbs.remove_resource("default/inference/api-key"));
    let before = s.kbs.request_count(Endpoint::Resource);
    signal(&d.0, "-HUP");
    wait_for("the failed refresh", || {
        s.kbs.request_count(Endpoint::Resource) > before
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        d.0.try_wait().unwrap().is_none(),
        "daemon exited on a failed refresh"
    );
    assert_eq!(
        std::fs::read(s.dir.path().join("out/api-key")).unwrap(),
        b"api-key-v1"
    );

    // The token was reused across refreshes.
    assert_eq!(s.kbs.request_count(Endpoint::Auth), 1);

    signal(&d.0, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = d.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn secrets_refresh_on_interval() {
    let Some(bin) = ccmount_bin() else { return };
    let s = setup("");
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&s.config)
        .args(["secrets", "--interval", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _d = Daemon(child);
    let api = s.dir.path().join("out/api-key");
    wait_for("first delivery", || api.exists());
    s.kbs
        .set_resource("default/inference/api-key", b"api-key-v2".to_vec())
        .unwrap();
    wait_for("refresh on the interval", || {
        std::fs::read(&api).is_ok_and(|b| b == b"api-key-v2")
    });
    assert_eq!(mode(&api), 0o440);
}

#[test]
fn secrets_without_config_or_with_bad_config_is_a_usage_error() {
    let Some(bin) = ccmount_bin() else { return };
    let out = run_with_timeout(
        Command::new(&bin).args(["secrets", "--once"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let d = tempfile::tempdir().unwrap();
    let c = d.path().join("c.toml");
    std::fs::write(
        &c,
        "[[secrets]]\nresource = \"kbs:///a/b/c\"\npath = \"/x\"\nmode = \"9\"\n",
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new(&bin)
            .arg("--config")
            .arg(&c)
            .args(["secrets", "--once"]),
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `ccmount secrets` (no `--once`) with a `[model] mount_at` job and waits until the
/// model is mounted (ready file) and the secrets are delivered.
struct MountedSecrets {
    s: Setup,
    plain: PathBuf,
    mnt: PathBuf,
    ready: PathBuf,
    log: PathBuf,
    _model: tempfile::TempDir,
}

fn start_with_model_mount(bin: &Path) -> (MountedSecrets, Daemon) {
    let (model, plain, cipher) = encrypted_model(bin);
    let mnt = model.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let s = setup(&format!(
        "\n[policy]\nallow_outside_symlinks = true\n[model]\ncipherdir = \"{}\"\nkey = \"kbs:///default/model/password\"\nmount_at = \"{}\"\nready_file = \"ready\"\noptions = \"allow_other\"\n",
        cipher.display(),
        mnt.display()
    ));
    s.kbs
        .set_resource("default/model/password", b"model password\n".to_vec())
        .unwrap();
    let ready = s.dir.path().join("ready");
    let log = s.dir.path().join("secrets.log");
    let child = Command::new(bin)
        .arg("--config")
        .arg(&s.config)
        .arg("secrets")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon(child);
    let api = s.dir.path().join("out/api-key");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(ready.exists() && api.exists()) {
        if let Some(st) = d.0.try_wait().unwrap() {
            panic!(
                "ccmount secrets exited ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "timed out waiting for the mount");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = MountedSecrets {
        s,
        plain,
        mnt,
        ready,
        log,
        _model: model,
    };
    (m, d)
}

impl Drop for MountedSecrets {
    fn drop(&mut self) {
        crate::mount::force_unmount(&self.mnt);
    }
}

fn wait_exit(d: &mut Daemon, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = d.0.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "ccmount secrets did not exit: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn secrets_with_model_mount_serves_it_beside_the_secrets_and_unmounts_on_sigterm() {
    skip_unless!(crate::mount::fuse_skip());
    let Some(bin) = ccmount_bin() else { return };
    let (m, mut d) = start_with_model_mount(&bin);
    assert!(crate::mount::is_mounted(&m.mnt));
    let diff = tree::diff(
        &tree::snapshot(&m.mnt),
        &tree::snapshot(&m.plain),
        false,
        false,
    );
    assert!(diff.is_empty(), "{diff:#?}");
    // One attestation for the model key and the three secrets.
    assert_eq!(m.s.kbs.request_count(Endpoint::Auth), 1);
    assert_eq!(m.s.kbs.request_count(Endpoint::Resource), 4);

    // A refresh leaves the mount alone and reuses the token.
    m.s.kbs
        .set_resource("default/inference/tls-key", b"-----KEY v2-----\n".to_vec())
        .unwrap();
    signal(&d.0, "-HUP");
    let key = m.s.dir.path().join("out/tls.key");
    wait_for("refresh after SIGHUP", || {
        std::fs::read(&key).is_ok_and(|b| b == b"-----KEY v2-----\n")
    });
    assert!(crate::mount::is_mounted(&m.mnt));
    assert!(d.0.try_wait().unwrap().is_none());
    assert_eq!(m.s.kbs.request_count(Endpoint::Auth), 1);

    // SIGTERM unmounts, removes the ready file and exits 0.
    signal(&d.0, "-TERM");
    let st = wait_exit(&mut d, &m.log);
    assert_eq!(
        st.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&m.log).unwrap_or_default()
    );
    assert!(!crate::mount::is_mounted(&m.mnt));
    assert!(!m.ready.exists());
}

#[test]
fn secrets_model_mount_unmounted_from_outside_ends_the_process() {
    skip_unless!(crate::mount::fuse_skip());
    let Some(bin) = ccmount_bin() else { return };
    let (m, mut d) = start_with_model_mount(&bin);
    let out = run_with_timeout(
        Command::new(&bin).arg("umount").arg(&m.mnt),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = wait_exit(&mut d, &m.log);
    let log = std::fs::read_to_string(&m.log).unwrap_or_default();
    assert_eq!(st.code(), Some(0), "{log}");
    assert!(log.contains("unmounted from outside"), "{log}");
    assert!(!m.ready.exists());
}

/// Hostile-host finding 13 (`host_attacks.rs` holds the others): a delivery that fails half
/// way never leaves a partial set. The fourth target cannot be written (its directory is
/// missing); the three before it keep their previous contents.
#[test]
fn host_13_secrets_are_switched_as_a_whole_set() {
    let Some(bin) = ccmount_bin() else { return };
    let s = setup("");
    let once = |config: &Path| {
        run_with_timeout(
            Command::new(&bin)
                .arg("--config")
                .arg(config)
                .args(["secrets", "--once"]),
            Duration::from_secs(120),
        )
    };
    let out = once(&s.config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = s.dir.path().join("out");
    s.kbs
        .set_resource("default/inference/tls-key", b"-----KEY v2-----\n".to_vec())
        .unwrap();
    s.kbs
        .set_resource("default/inference/api-key", b"api-key-v2".to_vec())
        .unwrap();
    let broken = s.dir.path().join("broken.toml");
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(
        "\n[[secrets]]\nresource = \"kbs:///default/inference/api-key\"\npath = \"missing-dir/api-key\"\n",
    );
    std::fs::write(&broken, text).unwrap();
    let out = once(&broken);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read(o.join("tls.key")).unwrap(),
        b"-----KEY v1-----\n"
    );
    assert_eq!(std::fs::read(o.join("api-key")).unwrap(), b"api-key-v1");
    // No temporary file left behind either.
    assert_eq!(std::fs::read_dir(&o).unwrap().count(), 3);
}

/// Log fields read as a person writes them: `mode=0440`, not `mode="440"`; no `None`.
#[test]
fn secrets_log_lines_read_naturally() {
    let Some(bin) = ccmount_bin() else { return };
    let s = setup("");
    let out = run_with_timeout(
        Command::new(&bin)
            .arg("--config")
            .arg(&s.config)
            .args(["secrets", "--once"]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("mode=0440"), "{err}");
    assert!(!err.contains("None") && !err.contains("mode=\""), "{err}");
}
