//! `ccmount-ready`: the exec probe shipped in the ccmount container image.
//!
//! Kubernetes exec probes need a program inside the container, and the image has no shell
//! (so no `test -e`). This stands in for it and does nothing else:
//!
//! ```text
//! ccmount-ready [--fuse-mount DIR]... [PATH]...
//! ```
//!
//! Exit 0 when every PATH exists (e.g. the file `ccmount mount --ready-file` writes, or the
//! files `ccmount secrets` delivers) and every DIR is the mount point of a FUSE file system
//! in this container's mount namespace (`/proc/self/mountinfo`). Otherwise exit 1 and name
//! the first thing missing on stderr; exit 2 on a usage error. Built by
//! `scripts/build-image.sh` with plain `rustc` (std only): it is not part of the workspace.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut paths = Vec::new();
    let mut mounts = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--fuse-mount" {
            match args.next() {
                Some(dir) => mounts.push(dir),
                None => return usage("--fuse-mount needs a directory"),
            }
        } else if arg == "-h" || arg == "--help" {
            println!("usage: ccmount-ready [--fuse-mount DIR]... [PATH]...");
            return ExitCode::SUCCESS;
        } else {
            paths.push(arg);
        }
    }
    if paths.is_empty() && mounts.is_empty() {
        return usage("nothing to check: give a PATH or --fuse-mount DIR");
    }
    for p in &paths {
        // symlink_metadata: a dangling link still counts as "written".
        if std::fs::symlink_metadata(p).is_err() {
            eprintln!("ccmount-ready: not ready: {} does not exist", Path::new(p).display());
            return ExitCode::from(1);
        }
    }
    if !mounts.is_empty() {
        let table = match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ccmount-ready: cannot read /proc/self/mountinfo: {e}");
                return ExitCode::from(1);
            }
        };
        for m in &mounts {
            let want = Path::new(m);
            if !table.lines().any(|line| is_fuse_mount_at(line, want)) {
                eprintln!("ccmount-ready: not ready: {} is not a FUSE mount point", want.display());
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

/// One mountinfo line: `id parent maj:min root MOUNTPOINT opts [optional...] - FSTYPE src super`.
fn is_fuse_mount_at(line: &str, want: &Path) -> bool {
    let mut halves = line.splitn(2, " - ");
    let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
        return false;
    };
    let fstype = right.split(' ').next().unwrap_or("");
    let mount_point = left.split(' ').nth(4).map(unescape);
    (fstype == "fuse" || fstype.starts_with("fuse."))
        && mount_point.is_some_and(|mp| Path::new(&mp) == want)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("ccmount-ready: {msg} (usage: ccmount-ready [--fuse-mount DIR]... [PATH]...)");
    ExitCode::from(2)
}
