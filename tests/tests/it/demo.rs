//! `ccmount demo` (the README's first command) runs end to end and cleans up after itself.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use e2e::{ccmount_bin, run_with_timeout};

#[test]
fn demo_runs_and_leaves_nothing_behind() {
    let Some(bin) = ccmount_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new(&bin).arg("demo").env("TMPDIR", tmp.path()),
        Duration::from_secs(300),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("ccmount demo: OK"), "{stdout}");
    assert!(stdout.contains("all sha256 match"), "{stdout}");
    // Sample evidence is announced, never silent.
    assert!(stderr.contains("SAMPLE"), "{stderr}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    let out = run_with_timeout(
        Command::new(&bin)
            .args(["-q", "demo", "--keep", "--no-fuse"])
            .env("TMPDIR", tmp.path()),
        Duration::from_secs(300),
    );
    assert_eq!(out.status.code(), Some(0));
    let kept: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let dir = kept[0].as_ref().unwrap().path();
    assert!(dir.join("plaintext/model.safetensors").is_file());
}

/// Sample evidence is announced once per run, not once per layer.
#[test]
fn demo_warns_about_sample_evidence_once() {
    let Some(bin) = ccmount_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new(&bin)
            .args(["demo", "--no-fuse"])
            .env("TMPDIR", tmp.path()),
        Duration::from_secs(300),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("SAMPLE").count(), 1, "{stderr}");
}

/// `demo --serve` keeps the files and the KBS, prints commands that work against them, and
/// stops cleanly (exit 0) on SIGINT.
#[test]
fn demo_serve_leaves_what_the_next_commands_need() {
    use std::io::BufRead as _;
    use std::process::Stdio;
    let Some(bin) = ccmount_bin() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(&bin)
        .args(["-q", "demo", "--serve", "--no-fuse"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let attest_line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.trim_end().ends_with(" attest") => break l,
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("demo --serve printed no attest command: {lines:#?}");
            }
        }
    };
    let kbs_args: Vec<String> = attest_line
        .split_whitespace()
        .skip(1)
        .take_while(|a| *a != "attest")
        .map(str::to_owned)
        .collect();
    let dir = std::fs::read_dir(tmp.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(dir.join("model.pass"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(dir.join("kbs-ca.pem").is_file());
    let pass = run_with_timeout(
        Command::new(&bin)
            .arg("verify")
            .arg("--passfile")
            .arg(dir.join("model.pass"))
            .arg(dir.join("model.enc")),
        Duration::from_secs(120),
    );
    assert_eq!(pass.status.code(), Some(0), "{pass:?}");
    let keyed = run_with_timeout(
        Command::new(&bin)
            .args(&kbs_args)
            .args(["verify", "--key", "kbs:///default/demo/model-password"])
            .arg(dir.join("model.enc")),
        Duration::from_secs(120),
    );
    let pid = rustix::process::Pid::from_child(&child);
    let sigint = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    assert_eq!(
        keyed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&keyed.stderr)
    );
    sigint.unwrap();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "demo --serve stops on SIGINT with 0"
    );
    assert!(dir.join("model.enc/gocryptfs.conf").is_file(), "files stay");
}

fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
