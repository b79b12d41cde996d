//! The `test-kbs` binary: prints the URL when ready, writes CA/URL files, serves, and stops
//! on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"from-file").unwrap();
    let ca = dir.path().join("ca.pem");
    let url_file = dir.path().join("url");
    let mut child = Command::new(env!("CARGO_BIN_EXE_test-kbs"))
        .arg("--resource")
        .arg(format!("default/key/f=@{}", secret.display()))
        .arg("--allow-sample")
        .arg("--ca-out")
        .arg(&ca)
        .arg("--url-out")
        .arg(&url_file)
        .arg("--token-ttl")
        .arg("90s")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(std::fs::read_to_string(&url_file).unwrap().trim(), url);
    let pem = std::fs::read(&ca).unwrap();
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = c
        .post(format!("{url}/kbs/v0/auth"))
        .json(&json!({"version": "0.4.0", "tee": "sample", "extra-params": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "test-kbs did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn binary_refuses_inline_resource_values() {
    let out = Command::new(env!("CARGO_BIN_EXE_test-kbs"))
        .args(["--resource", "default/key/x=secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("=@FILE"));
}
