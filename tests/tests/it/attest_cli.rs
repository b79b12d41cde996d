//! `ccmount get-resource` and `ccmount attest` against the test KBS: outputs and exit codes
//! (`docs/kbs-protocol.md`). Needs the `ccmount` binary of this build (`cargo nextest run
//! --workspace` builds it); skips with a reason when it is missing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use test_kbs::{Endpoint, KbsConfig, Policy, TestKbs};

pub(crate) struct Fixture {
    kbs: TestKbs,
    dir: tempfile::TempDir,
    ca: PathBuf,
}

fn fixture(policy: Policy) -> Fixture {
    let kbs = TestKbs::start(
        KbsConfig::default()
            .with_resource("default/key/model", b"pw\n".to_vec())
            .with_policy(policy),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    kbs.write_ca(&ca).unwrap();
    Fixture { kbs, dir, ca }
}

fn run(bin: &PathBuf, f: &Fixture, args: &[&str]) -> Output {
    Command::new(bin)
        .args([
            "--kbs-url",
            &f.kbs.url(),
            "--kbs-cert",
            f.ca.to_str().unwrap(),
        ])
        .args(["--tee", "sample", "--timeout", "10s", "-q"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn get_resource_to_stdout_and_file() {
    let Some(bin) = e2e::ccmount_bin() else {
        return;
    };
    let f = fixture(Policy::allow_all());
    let out = run(&bin, &f, &["get-resource", "kbs:///default/key/model"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"pw\n");

    let file = f.dir.path().join("key");
    let p = file.to_str().unwrap();
    let out = run(
        &bin,
        &f,
        &["get-resource", "kbs:///default/key/model", "--out", p],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"pw\n");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o400
    );
    // Exists: refused without --force (5), replaced with it.
    let out = run(
        &bin,
        &f,
        &["get-resource", "kbs:///default/key/model", "--out", p],
    );
    assert_eq!(out.status.code(), Some(5));
    let out = run(
        &bin,
        &f,
        &[
            "get-resource",
            "kbs:///default/key/model",
            "--out",
            p,
            "--force",
            "--mode",
            "0600",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn exit_codes() {
    let Some(bin) = e2e::ccmount_bin() else {
        return;
    };
    let f = fixture(Policy::trustee_default());
    let out = run(&bin, &f, &["get-resource", "kbs:///default/key/model"]);
    assert_eq!(out.status.code(), Some(34), "policy deny");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("resource policy") && !err.contains('\u{1b}'),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    f.kbs.allow_tee("sample").unwrap();
    let out = run(&bin, &f, &["get-resource", "kbs:///default/key/absent"]);
    assert_eq!(out.status.code(), Some(35), "missing");
    let out = run(&bin, &f, &["get-resource", "kbs:///default/../x"]);
    assert_eq!(out.status.code(), Some(2), "bad URI");

    // No CA: TLS failure (31).
    let out = Command::new(&bin)
        .args([
            "--kbs-url",
            &f.kbs.url(),
            "--tee",
            "sample",
            "-q",
            "get-resource",
            "kbs:///a/b/c",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(31),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nothing listening: unreachable (30), within the deadline.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(&bin)
        .args([
            "--kbs-url",
            &format!("https://127.0.0.1:{port}"),
            "--tee",
            "sample",
        ])
        .args(["--timeout", "1s", "-q", "get-resource", "kbs:///a/b/c"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(30),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain http without the opt-in: usage (2).
    let out = Command::new(&bin)
        .args([
            "--kbs-url",
            "http://127.0.0.1:1",
            "--tee",
            "sample",
            "-q",
            "attest",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        f.kbs.request_count(Endpoint::Auth),
        2,
        "only the two allowed runs attested"
    );
}

#[test]
fn attest_json_shows_claims_not_secrets() {
    let Some(bin) = e2e::ccmount_bin() else {
        return;
    };
    let f = fixture(Policy::allow_all());
    let out = run(&bin, &f, &["attest", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tee"], "sample");
    assert_eq!(v["protocol_version"], "0.4.0");
    assert_eq!(v["key_algorithm"], "ECDH-ES+A256KW");
    assert!(v["token"]["exp"].as_u64().is_some());
    assert!(v["token"]["claims"].is_object());
    let text = String::from_utf8_lossy(&out.stdout);
    let bearer = f.kbs.requests().iter().find_map(|r| r.bearer.clone());
    if let Some(b) = bearer {
        assert!(!text.contains(&b), "the token itself is never printed");
    }
    let out = run(&bin, &f, &["attest"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tee:       sample"));
}

/// TLS failures say their cause and the fix once: an untrusted CA, and an `https://` URL
/// pointing at a plain-HTTP server.
#[test]
fn tls_failures_say_what_to_do() {
    let Some(bin) = e2e::ccmount_bin() else {
        return;
    };
    let f = fixture(Policy::allow_all());
    let untrusted = Command::new(&bin)
        .args([
            "--kbs-url",
            &f.kbs.url(),
            "--tee",
            "sample",
            "--timeout",
            "10s",
        ])
        .args(["get-resource", "kbs:///default/key/model"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(31));
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        err.contains("not trusted") && err.contains("--kbs-cert"),
        "{err}"
    );
    assert_eq!(
        err.matches("TLS").count(),
        1,
        "the TLS failure said once: {err}"
    );
    let plain = TestKbs::start(KbsConfig::default().http()).unwrap();
    let url = plain.url().replacen("http://", "https://", 1);
    let o = Command::new(&bin)
        .args([
            "--kbs-url",
            &url,
            "--tee",
            "sample",
            "--timeout",
            "10s",
            "-q",
        ])
        .args(["get-resource", "kbs:///default/key/model"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(31),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not speak TLS"), "{err}");

    // A --kbs-cert that is no certificate: exit 2 before any connection, naming the file.
    let dir = tempfile::tempdir().unwrap();
    for (name, body, want) in [
        ("notpem.pem", "hello\n", "no PEM certificate"),
        (
            "notder.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not valid X.509",
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        let o = Command::new(&bin)
            .args(["--kbs-url", &f.kbs.url(), "--tee", "sample", "--kbs-cert"])
            .arg(&p)
            .args(["get-resource", "kbs:///default/key/model"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want) && err.contains(name), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// A Confidential Containers user's `cdh.toml` (and the attestation agent's config) give the
/// KBS URL and its certificate, inline as CDH holds it: no --kbs-url or --kbs-cert needed.
#[test]
fn coco_config_gives_the_kbs_url_and_certificate() {
    let Some(bin) = e2e::ccmount_bin() else {
        return;
    };
    let f = fixture(Policy::allow_all());
    let pem = std::fs::read_to_string(&f.ca).unwrap();
    let cdh = f.dir.path().join("cdh.toml");
    std::fs::write(
        &cdh,
        format!(
            "socket = \"unix:///run/confidential-containers/cdh.sock\"\n\n[kbc]\nname = \"cc_kbc\"\nurl = \"{}\"\nkbs_cert = \"\"\"\n{pem}\"\"\"\n",
            f.kbs.url()
        ),
    )
    .unwrap();
    let aa = f.dir.path().join("attestation-agent.json");
    std::fs::write(
        &aa,
        serde_json::json!({"token_configs": {"kbs": {"url": f.kbs.url(), "cert": pem}}})
            .to_string(),
    )
    .unwrap();
    for conf in [&cdh, &aa] {
        let out = Command::new(&bin)
            .arg("--coco-config")
            .arg(conf)
            .args(["--tee", "sample", "--timeout", "10s", "-q"])
            .args(["get-resource", "kbs:///default/key/model"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            conf.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"pw\n");
    }
}
