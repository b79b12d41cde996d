//! Helpers shared by the end-to-end tests: the gocryptfs 2.3 corpus (materialised with its
//! symlinks and xattrs from `MANIFEST.json`), probes for gocryptfs and `/dev/fuse`, a mount
//! guard that always unmounts, random plaintext trees, and tree snapshots to compare.
//!
//! Test-support code: a failing helper is a failing test, so helpers may panic with a clear
//! message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "test support crate"
)]

pub mod corpus;
pub mod gocryptfs;
pub mod s3;
pub mod tree;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository's `tests/` directory.
#[must_use]
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `ccmount` binary of this build (`target/<profile>/ccmount`, beside the test
/// binary's `deps/`), or `None` with a printed reason when it was not built.
#[must_use]
pub fn ccmount_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("ccmount");
    if bin.is_file() {
        Some(bin)
    } else {
        eprintln!(
            "SKIP: {} not built (run cargo build -p ccmount)",
            bin.display()
        );
        None
    }
}

/// Prints a skip reason in a form `grep SKIP` finds, and returns from the test.
#[macro_export]
macro_rules! skip_unless {
    ($reason:expr) => {
        if let Some(reason) = $reason {
            eprintln!("SKIP {}: {reason}", module_path!());
            return;
        }
    };
}

/// Runs a command with a deadline; kills it when the deadline passes. Its output is read
/// while it runs (an output larger than a pipe buffer must not block the child).
///
/// # Panics
/// If the command cannot be started.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    use std::io::Read as _;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                break child.wait().expect("reap the killed child");
            }
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
