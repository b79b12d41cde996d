//! `ccmount demo` (the README's first command) runs end to end and cleans up after itself.

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
