//! `--key kbs:///…` end to end: the Alibaba Cloud PAI-EAS flow (a tree made by the real
//! gocryptfs with default parameters, its password in the KBS as
//! `default/aliyun/model-decryption-key`), master keys from the KBS, one attestation per
//! process, and the documented exit code of every failure on the way (`docs/cli.md`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e::gocryptfs::{self, Mount};
use e2e::{ccmount_bin, run_with_timeout, skip_unless, tree};
use test_kbs::{Endpoint, KbsConfig, Policy, TestKbs};

const PAI_URI: &str = "kbs:///default/aliyun/model-decryption-key";
const PASSWORD: &[u8] = b"pai-eas model password 7f3c\n";

/// A tree encrypted by the real gocryptfs with default parameters (scrypt N=2^16), with
/// its plaintext snapshot.
struct Model {
    dir: tempfile::TempDir,
    cipher: PathBuf,
    plain: PathBuf,
}

fn real_gocryptfs_model() -> Model {
    let dir = tempfile::tempdir().unwrap();
    let cipher = dir.path().join("cipher");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, PASSWORD).unwrap();
    std::fs::create_dir(&cipher).unwrap();
    // Default parameters, as the PAI-EAS guide runs it: no -scryptn.
    let out = run_with_timeout(
        Command::new("gocryptfs")
            .args(["-init", "-q", "-passfile"])
            .arg(&pass)
            .arg(&cipher),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    tree::generate(
        &plain,
        61,
        tree::TreeOpts {
            random_files: 6,
            max_size: 200_000,
            ..tree::TreeOpts::default()
        },
    );
    let mnt = dir.path().join("mnt");
    let m = Mount::new(&cipher, &mnt, Some(&pass), &[]);
    e2e::corpus::copy_tree(&plain, m.path());
    m.unmount();
    std::fs::remove_file(&pass).unwrap();
    Model { dir, cipher, plain }
}

fn kbs_with(path: &str, value: &[u8]) -> (TestKbs, PathBuf, tempfile::TempDir) {
    let kbs = TestKbs::start(
        KbsConfig::default()
            .with_resource(path, value.to_vec())
            .with_policy(Policy::allow_all()),
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca.pem");
    kbs.write_ca(&ca).unwrap();
    (kbs, ca, d)
}

fn run(bin: &Path, url: &str, ca: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(bin);
    // The gocryptfs-made trees hold an absolute symlink and holes (refused by default).
    cmd.args(["--kbs-url", url, "--kbs-cert"]).arg(ca).args([
        "--tee",
        "sample",
        "--timeout",
        "20s",
        "--allow-outside-symlinks",
        "--allow-holes",
    ]);
    for a in args {
        cmd.arg(a);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(120))
}

fn assert_code(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    err
}

#[test]
fn pai_eas_flow_decrypt_and_verify_with_kbs_password() {
    skip_unless!(gocryptfs::skip_reason());
    let Some(bin) = ccmount_bin() else { return };
    let m = real_gocryptfs_model();
    let (kbs, ca, _d) = kbs_with("default/aliyun/model-decryption-key", PASSWORD);
    let out_dir = m.dir.path().join("out");

    let out = run(
        &bin,
        &kbs.url(),
        &ca,
        &[&"decrypt", &m.cipher, &out_dir, &"--key", &PAI_URI],
    );
    assert_code(&out, 0);
    let d = tree::diff(
        &tree::snapshot(&out_dir),
        &tree::snapshot(&m.plain),
        false,
        false,
    );
    assert!(d.is_empty(), "{d:#?}");
    // One process, one attestation, one resource fetch.
    assert_eq!(kbs.request_count(Endpoint::Auth), 1);
    assert_eq!(kbs.request_count(Endpoint::Resource), 1);

    let out = run(
        &bin,
        &kbs.url(),
        &ca,
        &[&"verify", &m.cipher, &"--key", &PAI_URI],
    );
    assert_code(&out, 0);
}

fn default_fixture() -> (tempfile::TempDir, PathBuf, String) {
    let d = tempfile::tempdir().unwrap();
    let cipher = e2e::corpus::materialize("default", &d.path().join("default"));
    let manifest = e2e::corpus::manifest();
    let hex = manifest.variants["default"].masterkey_hex.clone();
    (d, cipher, hex)
}

#[test]
fn masterkey_from_kbs_as_hex_and_raw() {
    let Some(bin) = ccmount_bin() else { return };
    let (d, cipher, hex_groups) = default_fixture();
    let hex: String = hex_groups.chars().filter(char::is_ascii_hexdigit).collect();
    let raw = hex::decode(&hex).unwrap();
    let (kbs, ca, _k) = kbs_with("default/key/mk-hex", format!("{hex_groups}\n").as_bytes());
    kbs.set_resource("default/key/mk-raw", raw.clone()).unwrap();
    for (i, uri) in ["kbs:///default/key/mk-hex", "kbs:///default/key/mk-raw"]
        .iter()
        .enumerate()
    {
        let out = run(
            &bin,
            &kbs.url(),
            &ca,
            &[
                &"verify",
                &cipher,
                &"--key",
                uri,
                &"--key-format",
                &"masterkey",
            ],
        );
        assert_code(&out, 0);
        let dest = d.path().join(format!("out{i}"));
        let out = run(
            &bin,
            &kbs.url(),
            &ca,
            &[
                &"decrypt",
                &cipher,
                &dest,
                &"--key",
                uri,
                &"--key-format",
                &"masterkey",
            ],
        );
        assert_code(&out, 0);
    }
    // A wrong master key of the right shape is exit 12.
    let mut wrong = raw;
    wrong[0] ^= 1;
    kbs.set_resource("default/key/mk-wrong", wrong).unwrap();
    let out = run(
        &bin,
        &kbs.url(),
        &ca,
        &[
            &"verify",
            &cipher,
            &"--key",
            &"kbs:///default/key/mk-wrong",
            &"--key-format",
            &"masterkey",
        ],
    );
    assert_code(&out, 12);
    // A password where a master key is expected: exit 12, naming --key-format.
    kbs.set_resource("default/key/pw", b"just a password".to_vec())
        .unwrap();
    let out = run(
        &bin,
        &kbs.url(),
        &ca,
        &[
            &"verify",
            &cipher,
            &"--key",
            &"kbs:///default/key/pw",
            &"--key-format",
            &"masterkey",
        ],
    );
    let err = assert_code(&out, 12);
    assert!(err.contains("--key-format"), "{err}");
    assert!(!err.contains("just a password"), "{err}");
}

#[test]
fn kbs_key_errors_have_their_exit_codes() {
    let Some(bin) = ccmount_bin() else { return };
    let (_d, cipher, _) = default_fixture();
    let pw = std::fs::read(e2e::corpus::password_file()).unwrap();
    let (kbs, ca, _k) = kbs_with("default/key/model", &pw);
    let key = |uri: &'static str| -> [&'static str; 2] { ["--key", uri] };

    // Right password: 0.
    let [a, b] = key("kbs:///default/key/model");
    assert_code(
        &run(&bin, &kbs.url(), &ca, &[&"verify", &cipher, &a, &b]),
        0,
    );
    // Wrong password: 12.
    kbs.set_resource("default/key/wrong", b"not the password".to_vec())
        .unwrap();
    let [a, b] = key("kbs:///default/key/wrong");
    assert_code(
        &run(&bin, &kbs.url(), &ca, &[&"verify", &cipher, &a, &b]),
        12,
    );
    // Missing resource: 35.
    let [a, b] = key("kbs:///default/key/absent");
    let err = assert_code(
        &run(&bin, &kbs.url(), &ca, &[&"verify", &cipher, &a, &b]),
        35,
    );
    assert!(err.contains("default/key/absent"), "{err}");
    // Refused by policy: 34.
    kbs.set_policy(Policy::deny_all());
    let [a, b] = key("kbs:///default/key/model");
    assert_code(
        &run(&bin, &kbs.url(), &ca, &[&"verify", &cipher, &a, &b]),
        34,
    );
    kbs.set_policy(Policy::allow_all());
    // TLS failure (no CA given for the self-signed KBS certificate): 31.
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--kbs-url",
        &kbs.url(),
        "--tee",
        "sample",
        "--timeout",
        "10s",
        "verify",
    ])
    .arg(&cipher)
    .args(["--key", "kbs:///default/key/model"]);
    assert_code(&run_with_timeout(&mut cmd, Duration::from_secs(60)), 31);
    // The KBS rejects the evidence at /attest every time: 33.
    kbs.faults().inject(
        test_kbs::FaultKind::Unauthorized,
        20,
        Some(Endpoint::Attest),
    );
    let [a, b] = key("kbs:///default/key/model");
    let err = assert_code(
        &run(&bin, &kbs.url(), &ca, &[&"verify", &cipher, &a, &b]),
        33,
    );
    assert!(err.to_lowercase().contains("attest"), "{err}");
    kbs.faults().clear();
    // A KBS of another protocol release: 32, naming both versions.
    kbs.set_protocol_version("0.5.0");
    let [a, b] = key("kbs:///default/key/model");
    let err = assert_code(
        &run(&bin, &kbs.url(), &ca, &[&"verify", &cipher, &a, &b]),
        32,
    );
    assert!(
        err.contains("0.5.0") && err.contains(attest::PROTOCOL_VERSION),
        "{err}"
    );
    kbs.set_protocol_version(test_kbs::PROTOCOL_VERSION);
    // Unreachable KBS (a closed port): 30, naming the URL.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("https://127.0.0.1:{port}");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--kbs-url",
        &url,
        "--tee",
        "sample",
        "--timeout",
        "3s",
        "verify",
    ])
    .arg(&cipher)
    .args(["--key", "kbs:///default/key/model"]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let err = assert_code(&out, 30);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    // Corrupt bundle with the right key from the KBS: 26.
    let victim = std::fs::read_dir(&cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.is_file()
                && std::fs::metadata(p).unwrap().len() > 100
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("gocryptfs.")
        })
        .expect("a content file");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[60] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let [a, b] = key("kbs:///default/key/model");
    assert_code(
        &run(&bin, &kbs.url(), &ca, &[&"verify", &cipher, &a, &b]),
        26,
    );
    // Every failure above named no secret.
}

#[test]
fn json_logs_are_json_lines_including_the_error() {
    let Some(bin) = ccmount_bin() else { return };
    let (_d, cipher, _) = default_fixture();
    let pw = std::fs::read(e2e::corpus::password_file()).unwrap();
    let (kbs, ca, _k) = kbs_with("default/key/model", &pw);
    for (uri, code) in [
        ("kbs:///default/key/model", 0),
        ("kbs:///default/key/absent", 35),
    ] {
        let out = run(
            &bin,
            &kbs.url(),
            &ca,
            &[
                &"--log-format",
                &"json",
                &"-vv",
                &"verify",
                &cipher,
                &"--key",
                &uri,
            ],
        );
        let err = assert_code(&out, code);
        let mut lines = 0;
        for line in err.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v.get("level").is_some(), "{line}");
            // Every line, the final error line included, carries a timestamp.
            assert!(
                v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{line}"
            );
            lines += 1;
        }
        assert!(lines > 0);
        if code != 0 {
            let last: serde_json::Value =
                serde_json::from_str(err.lines().last().unwrap()).unwrap();
            assert_eq!(last["exit_code"], code);
            assert!(last["message"].as_str().unwrap().contains("absent"));
        }
        // The password is in no line at the most verbose level.
        let pw_text = String::from_utf8_lossy(&pw);
        let pw_line = pw_text.lines().next().unwrap();
        assert!(!err.contains(pw_line), "password leaked into the logs");
    }
}
