//! Driving the real gocryptfs binary: probes, `-init`, mounts that always unmount, `-fsck`.
//! Every wait is bounded.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::run_with_timeout;

/// Why interop tests cannot run here, or `None` when they can (gocryptfs, fusermount3,
/// root and a usable `/dev/fuse`).
#[must_use]
pub fn skip_reason() -> Option<String> {
    for tool in ["gocryptfs", "fusermount3"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "{tool} is not installed (scripts/setup.sh installs it)"
            ));
        }
    }
    let euid = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if euid.ok() != Some(0) {
        return Some("not root: mounting needs root".into());
    }
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(0)
        .open("/dev/fuse")
    {
        return Some(format!("/dev/fuse is not usable: {e}"));
    }
    None
}

/// `gocryptfs -init -q -scryptn 10 -passfile PASS ARGS... CIPHER`.
pub fn init(cipher: &Path, passfile: &Path, args: &[&str]) {
    fs::create_dir_all(cipher).unwrap();
    let out = run_with_timeout(
        Command::new("gocryptfs")
            .args(["-init", "-q", "-scryptn", "10", "-passfile"])
            .arg(passfile)
            .args(args)
            .arg(cipher),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "gocryptfs -init {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gocryptfs -fsck`: (exit code, combined output).
#[must_use]
pub fn fsck(cipher: &Path, passfile: &Path) -> (i32, String) {
    let out = run_with_timeout(
        Command::new("gocryptfs")
            .args(["-fsck", "-q", "-passfile"])
            .arg(passfile)
            .arg(cipher),
        Duration::from_secs(300),
    );
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn is_mounted(mnt: &Path) -> bool {
    let Ok(canon) = fs::canonicalize(mnt) else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// A live gocryptfs mount; unmounted on drop (`fusermount3 -u`, retried, then lazy).
#[derive(Debug)]
pub struct Mount {
    mnt: PathBuf,
    live: bool,
}

impl Mount {
    /// Mounts `cipher` on `mnt` (created if needed) with `-passfile` (or `-zerokey` /
    /// `-masterkey` via `args`).
    pub fn new(cipher: &Path, mnt: &Path, passfile: Option<&Path>, args: &[&str]) -> Mount {
        fs::create_dir_all(mnt).unwrap();
        let mut cmd = Command::new("gocryptfs");
        cmd.arg("-q");
        if let Some(p) = passfile {
            cmd.arg("-passfile").arg(p);
        }
        cmd.args(args).arg(cipher).arg(mnt);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "gocryptfs mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(mnt) {
            assert!(Instant::now() < deadline, "mount did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mount {
            mnt: mnt.to_path_buf(),
            live: true,
        }
    }

    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// Unmounts now (flushes everything gocryptfs buffered).
    pub fn unmount(mut self) {
        self.do_unmount();
    }

    fn do_unmount(&mut self) {
        if !self.live {
            return;
        }
        self.live = false;
        let deadline = Instant::now() + Duration::from_secs(15);
        while is_mounted(&self.mnt) {
            let _ = run_with_timeout(
                Command::new("fusermount3").arg("-u").arg(&self.mnt),
                Duration::from_secs(10),
            );
            if !is_mounted(&self.mnt) {
                return;
            }
            if Instant::now() > deadline {
                let _ = run_with_timeout(
                    Command::new("fusermount3").arg("-uz").arg(&self.mnt),
                    Duration::from_secs(10),
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.do_unmount();
    }
}
