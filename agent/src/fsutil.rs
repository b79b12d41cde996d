//! The agent's one way to write a file: atomically, with its mode, never through a symlink,
//! never blocked by a stale temporary file. Used by receipts, manifests, ready files,
//! `get-resource --out` and secret delivery (which stages a whole set before switching).
//!
//! Each write goes to a temporary file with a fresh random name in the target's directory
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600 until the data is there), is `fsync`ed, gets its
//! final mode, and is renamed over the target; then the directory is `fsync`ed so the
//! rename survives a crash. A leftover from a killed run has another random name, so it
//! never blocks a later write; the temporary name is cut to fit `NAME_MAX` whatever the
//! target's length.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Longest file name the temporary name may have (Linux `NAME_MAX`).
const NAME_MAX: usize = 255;
/// Bytes of the target name kept in the temporary name (the rest is prefix and suffix).
const KEPT_NAME: usize = 200;

/// A file written under a temporary name, waiting for [`Staged::commit`]. Dropped
/// uncommitted, it removes itself.
#[derive(Debug)]
pub(crate) struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staged {
    /// Writes `data` with permissions `mode` next to `target`, synced, not yet visible.
    ///
    /// # Errors
    /// `target` has no file name; creating, writing or syncing the temporary file failed.
    pub(crate) fn write(target: &Path, data: &[u8], mode: u32) -> io::Result<Self> {
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} does not name a file", target.display()),
            )
        })?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut kept = name.as_bytes();
        if kept.len() > KEPT_NAME {
            kept = kept.get(..KEPT_NAME).unwrap_or(kept);
        }
        // A few tries: a clash of 64 random bits means someone is guessing our names.
        let mut last = None;
        for _ in 0..4 {
            let mut tmp_name = b".".to_vec();
            tmp_name.extend_from_slice(kept);
            tmp_name.extend_from_slice(format!(".{:016x}.ccmount-tmp", random_u64()?).as_bytes());
            debug_assert!(tmp_name.len() <= NAME_MAX);
            let tmp = dir.join(OsString::from_vec(tmp_name));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_flags())
                .open(&tmp)
            {
                Ok(mut f) => {
                    let staged = Staged {
                        tmp,
                        target: target.to_path_buf(),
                        dir,
                        committed: false,
                    };
                    f.write_all(data)?;
                    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                    f.sync_all()?;
                    return Ok(staged);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
    }

    /// Renames the temporary file over the target and syncs the directory.
    ///
    /// # Errors
    /// The rename or the directory sync failed (the temporary file is then removed).
    pub(crate) fn commit(mut self) -> io::Result<()> {
        std::fs::rename(&self.tmp, &self.target)?;
        self.committed = true;
        File::open(&self.dir)?.sync_all()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `O_NOFOLLOW | O_CLOEXEC`: the temporary file is never reached through a planted link.
fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32
}

fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(format!("random source: {e}")))?;
    Ok(u64::from_le_bytes(b))
}

/// Writes `data` to `path` atomically with permissions `mode`.
///
/// # Errors
/// As [`Staged::write`] and [`Staged::commit`].
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    Staged::write(path, data, mode)?.commit()
}

/// Set once a command printed its JSON document on stdout: an error after that must not
/// print a second document (`main` prints `{"ok": false, ...}` only when nothing was).
static JSON_PRINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints a command's `--json` document on stdout (pretty, one trailing newline).
///
/// # Errors
/// Writing stdout failed (a closed pipe).
pub(crate) fn print_json(v: &serde_json::Value) -> io::Result<()> {
    JSON_PRINTED.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut out = io::stdout().lock();
    out.write_all(&json_bytes(v))?;
    out.flush()
}

/// Whether a JSON document was printed already.
pub(crate) fn json_printed() -> bool {
    JSON_PRINTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Pretty JSON with a trailing newline (reports on stdout, receipts, summaries).
pub(crate) fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_nothing_behind() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        write_atomic(&p, b"abc", 0o400).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o400);
        write_atomic(&p, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(entries(d.path()), ["secret"], "no temp file left");
    }

    #[test]
    fn stale_temp_files_never_block_and_long_names_work() {
        let d = tempfile::tempdir().unwrap();
        // What older releases left behind after a crash.
        std::fs::write(d.path().join(".r.json.ccmount-tmp"), b"stale").unwrap();
        let p = d.path().join("r.json");
        write_atomic(&p, b"{}", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        let long = d.path().join("x".repeat(255));
        write_atomic(&long, b"long", 0o600).unwrap();
        assert_eq!(std::fs::read(&long).unwrap(), b"long");
    }

    #[test]
    fn a_dropped_stage_removes_its_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a");
        let s = Staged::write(&p, b"x", 0o400).unwrap();
        assert_eq!(entries(d.path()).len(), 1);
        drop(s);
        assert!(entries(d.path()).is_empty());
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let p = d.path().join("out");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(
            !std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
