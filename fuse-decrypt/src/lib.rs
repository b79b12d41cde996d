//! The read-only FUSE frontend of a cipher directory, on fuser 0.18 and the format core
//! (`gocryptfs-format`): the only crate of the workspace that depends on fuser.
//!
//! Mirrors gocryptfs' FUSE frontend (`mount.go` `initGoFuse`, `internal/fusefrontend`) for
//! the read side only: the plaintext view of a [`CipherDir`] mounted read-only, with the
//! techniques of `../shared/specs/crate-stack.md` §2 and `gocryptfs-format.md` §7 for
//! speed: 1 MiB requests and a large bdi readahead, several FUSE threads with cloned
//! `/dev/fuse` fds, `FOPEN_KEEP_CACHE` and long TTLs, decryption straight into the reply
//! buffer. `--direct-io` (`FOPEN_DIRECT_IO`) keeps `mmap` working through
//! `FUSE_DIRECT_IO_ALLOW_MMAP` on Linux 6.6+.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use gocryptfs_format::{CipherDir, KeySource, OpenOptions};
//! # use fuse_decrypt::{mount, MountConfig};
//! # fn main() -> Result<(), fuse_decrypt::Error> {
//! # let key = KeySource::password_from_passfile(b"pw\n").map_err(gocryptfs_format::Error::from)?;
//! let dir = Arc::new(CipherDir::open("/data/enc".as_ref(), key, &OpenOptions::default())?);
//! let handle = mount(dir, "/mnt/model".as_ref(), &MountConfig::default())?;
//! // ... the plaintext is at /mnt/model ...
//! handle.unmount()?;
//! # Ok(()) }
//! ```
//!
//! Layout: `fs` (the `Filesystem` handlers), `errno` (library error → errno), `inodes`
//! (node IDs, lookup counts, handles), `sys` (mount-point checks, `mount(2)`, mountinfo,
//! readahead, unmount), `error` ([`Error`], [`MountError`]).

mod errno;
mod error;
mod fs;
mod inodes;
mod snapshot;
mod sys;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{MountOption, Session, SessionACL, SessionUnmounter};
use rustix::mount::MountFlags;
use tracing::{debug, info, warn};

use gocryptfs_format::CipherDir;
use gocryptfs_format::manifest::VerifiedTree;

pub use error::{Error, MountError, MountErrorKind, Result};
pub use snapshot::{ContentSource, MAX_NODES, Snapshot, SnapshotError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsname_cannot_add_options_or_lines() {
        let f = |s: &str| {
            fsname_of(std::ffi::OsStr::new(s))
                .into_string()
                .unwrap_or_default()
        };
        assert_eq!(f("/data/enc"), "/data/enc");
        assert_eq!(f("/data/x,rw,max_read=4096"), "/data/x_rw_max_read=4096");
        assert_eq!(f("/a\\,b\nc"), "/a__b_c");
        assert_eq!(f("/my models/llama"), "/my models/llama");
        assert_eq!(f(""), "ccmount");
    }
}
pub use sys::Unmounted;

/// Default bdi readahead after mounting, in KiB: several 1 MiB requests in flight.
pub const DEFAULT_READ_AHEAD_KB: u32 = 4096;
/// Default attribute and entry TTL: the tree is read-only and does not change.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// How to mount. `Default` is what `ccmount mount` does without options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MountConfig {
    /// FUSE worker threads, each with its own cloned `/dev/fuse` fd (0: number of CPUs).
    pub threads: usize,
    /// Open every file with `FOPEN_DIRECT_IO` (no page cache; mmap through
    /// `FUSE_DIRECT_IO_ALLOW_MMAP` where the kernel has it).
    pub direct_io: bool,
    /// Let every user access the mount (`allow_other`); implies `default_permissions`.
    pub allow_other: bool,
    /// Let root (and the owner) access the mount.
    pub allow_root: bool,
    /// Let the kernel check permissions from the file modes.
    pub default_permissions: bool,
    /// The source column of the mount table (default: the cipher directory).
    pub fsname: Option<OsString>,
    /// The type shown as `fuse.<subtype>` (default `ccmount`).
    pub subtype: String,
    /// `noexec`.
    pub noexec: bool,
    /// `noatime` (the mount is read-only anyway).
    pub noatime: bool,
    /// Mount over a non-empty directory (hiding its entries).
    pub nonempty: bool,
    /// bdi readahead to set after mounting (KiB); `None` keeps the kernel's.
    pub read_ahead_kb: Option<u32>,
    /// Attribute, entry and negative-entry TTL.
    pub ttl: Duration,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            threads: 0,
            direct_io: false,
            allow_other: false,
            allow_root: false,
            default_permissions: false,
            fsname: None,
            subtype: "ccmount".into(),
            noexec: false,
            noatime: false,
            nonempty: false,
            read_ahead_kb: Some(DEFAULT_READ_AHEAD_KB),
            ttl: DEFAULT_TTL,
        }
    }
}

impl MountConfig {
    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        }
    }

    fn acl(&self) -> SessionACL {
        if self.allow_other {
            SessionACL::All
        } else if self.allow_root {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        }
    }

    fn kernel_mount(&self, cipher_root: &Path) -> sys::KernelMount {
        let mut flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
        if self.noexec {
            flags |= MountFlags::NOEXEC;
        }
        if self.noatime {
            flags |= MountFlags::NOATIME;
        }
        let mut data = Vec::new();
        if self.allow_other || self.allow_root {
            data.push("allow_other");
        }
        if self.default_permissions || self.allow_other {
            data.push("default_permissions");
        }
        sys::KernelMount {
            flags,
            data,
            source: fsname_of(self.fsname.as_deref().unwrap_or(cipher_root.as_os_str())),
            subtype: self.subtype.clone(),
        }
    }

    /// The same options for fuser's fusermount3 path (users without `CAP_SYS_ADMIN`).
    fn fuser_options(&self, km: &sys::KernelMount) -> Vec<MountOption> {
        let mut o = vec![
            MountOption::RO,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::FSName(km.source.to_string_lossy().into_owned()),
            MountOption::Subtype(km.subtype.clone()),
        ];
        if self.noexec {
            o.push(MountOption::NoExec);
        }
        if self.noatime {
            o.push(MountOption::NoAtime);
        }
        if self.default_permissions || self.allow_other {
            o.push(MountOption::DefaultPermissions);
        }
        o
    }
}

/// The mount table's source column for `name`, safe to pass inside a mount option string:
/// the cipher path (which the storage host may have chosen: `x,rw,max_read=4096`) must not
/// add options (`,`), escape (`\\`) or forge mount-table lines (control characters), so those
/// become `_`; a name that is not UTF-8 becomes lossy text.
#[must_use]
pub fn fsname_of(name: &std::ffi::OsStr) -> OsString {
    let text: String = name
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c == ',' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if text.is_empty() {
        "ccmount".into()
    } else {
        text.into()
    }
}

/// Checks what can be checked before the key is loaded: `/dev/fuse` opens, and the mount
/// point exists, is a directory, is not mounted on, and is empty (unless `nonempty`).
/// Returns the canonical mount point.
///
/// # Errors
/// [`Error::Mount`] with [`MountError::NoDevice`], [`MountError::MountpointMissing`],
/// [`MountError::NotADirectory`], [`MountError::AlreadyMounted`], [`MountError::Stale`],
/// [`MountError::NotEmpty`]; [`Error::Format`] (I/O).
pub fn preflight(mountpoint: &Path, nonempty: bool) -> Result<PathBuf, Error> {
    drop(sys::open_dev_fuse()?);
    sys::check_mountpoint(mountpoint, nonempty)
}

/// Stops a mount from any thread (signal handlers, drop guards). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Unmounter {
    inner: Arc<UnmountInner>,
}

#[derive(Debug)]
struct UnmountInner {
    path: PathBuf,
    /// Set when the session loop has ended (the mount is gone).
    ended: AtomicBool,
    /// fuser's unmounter when fusermount3 made the mount.
    session: Mutex<Option<SessionUnmounter>>,
}

impl Unmounter {
    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Unmounts: at once if nothing is open, else detaches lazily (the name space is free at
    /// once; open files keep working until they are closed, then the daemon's loop ends).
    ///
    /// # Errors
    /// [`Error::Mount`] when the kernel refuses even a lazy detach.
    pub fn unmount(&self) -> Result<Unmounted, Error> {
        if self.inner.ended.load(Ordering::SeqCst) {
            return Ok(Unmounted::AlreadyGone);
        }
        let fuser_made = self
            .inner
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut s) = fuser_made {
            // fuser tries umount2 and falls back to `fusermount3 -u -z`.
            s.unmount()
                .map_err(|e| Error::io("unmounting", &self.inner.path, e))?;
            return Ok(Unmounted::Now);
        }
        sys::unmount_own(&self.inner.path)
    }
}

/// A live mount. Dropping it unmounts (lazily if busy) and waits for the loop to end.
#[derive(Debug)]
pub struct MountHandle {
    unmounter: Unmounter,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl MountHandle {
    /// The mount point (canonical).
    #[must_use]
    pub fn mountpoint(&self) -> &Path {
        self.unmounter.path()
    }

    /// A handle that can unmount from another thread.
    #[must_use]
    pub fn unmounter(&self) -> Unmounter {
        self.unmounter.clone()
    }

    /// Waits until the mount goes away (unmounted by [`Unmounter::unmount`], another
    /// process's `umount2(2)`, `fusermount3 -u` or `umount`) and the FUSE loop has ended.
    ///
    /// # Errors
    /// The FUSE loop failed.
    pub fn wait(mut self) -> Result<(), Error> {
        self.join()
    }

    /// Unmounts (lazily if busy) and waits for the loop to end.
    ///
    /// # Errors
    /// The unmount or the loop failed.
    pub fn unmount(self) -> Result<(), Error> {
        self.unmounter.unmount()?;
        self.wait()
    }

    fn join(&mut self) -> Result<(), Error> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let res = t.join();
        self.unmounter.inner.ended.store(true, Ordering::SeqCst);
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::mount(
                self.unmounter.inner.path.clone(),
                MountError::Failed(format!("the FUSE loop failed: {e}")),
            )),
            Err(_) => Err(Error::mount(
                self.unmounter.inner.path.clone(),
                MountError::Failed("a FUSE thread panicked".into()),
            )),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.unmounter.unmount() {
                warn!("{e}");
            }
            if let Err(e) = self.join() {
                warn!("{e}");
            }
        }
    }
}

/// Mounts the plaintext view of `dir` read-only at `mountpoint` and serves it on
/// background threads. Returns once the kernel has completed the FUSE handshake, i.e. the
/// mount is live.
///
/// As root (`CAP_SYS_ADMIN`) this calls `mount(2)` itself (type `fuse.ccmount`, source the
/// cipher directory, `ro,nosuid,nodev`); otherwise, or when `mount(2)` is not permitted, it
/// goes through `fusermount3` as libfuse does.
///
/// # Errors
/// [`Error::Mount`] (see [`MountError`]), [`Error::Format`] (I/O, the cipher root).
pub fn mount(
    dir: Arc<CipherDir>,
    mountpoint: &Path,
    cfg: &MountConfig,
) -> Result<MountHandle, Error> {
    mount_pinned(dir, mountpoint, cfg, None)
}

/// [`mount`], serving only the tree that [`gocryptfs_format::manifest::check()`] accepted: entries the
/// pin does not list are hidden, and a file whose type, size or file ID changed since the
/// check is refused with `EIO` (logged with its path).
///
/// # Errors
/// As [`mount`].
pub fn mount_pinned(
    dir: Arc<CipherDir>,
    mountpoint: &Path,
    cfg: &MountConfig,
    pin: Option<Arc<VerifiedTree>>,
) -> Result<MountHandle, Error> {
    let mnt = sys::check_mountpoint(mountpoint, cfg.nonempty)?;
    refuse_overlap(dir.root(), &mnt)?;
    let km = cfg.kernel_mount(dir.root());
    let fs_opts = fs::FsOptions {
        ttl: cfg.ttl,
        direct_io: cfg.direct_io,
    };
    serve(mnt, &km, cfg, || {
        Ok(fs::CcFs::new(Arc::clone(&dir), fs_opts)?.with_pin(pin.clone()))
    })
}

/// Mounts a [`Snapshot`] (a tree listed up front, e.g. an `s3://` cipher tree) read-only at
/// `mountpoint`, its file contents read from `source`. `source_name` is the mount table's
/// source column (escaped like a cipher directory's). Returns once the mount is live.
///
/// # Errors
/// As [`mount`].
pub fn mount_snapshot(
    tree: Snapshot,
    source: Arc<dyn ContentSource>,
    source_name: &std::ffi::OsStr,
    mountpoint: &Path,
    cfg: &MountConfig,
) -> Result<MountHandle, Error> {
    let mnt = sys::check_mountpoint(mountpoint, cfg.nonempty)?;
    let km = cfg.kernel_mount(Path::new(source_name));
    let mut tree = Some(tree);
    serve(mnt, &km, cfg, || {
        let t = tree.take().ok_or_else(|| {
            Error::mount(
                mountpoint,
                MountError::Failed("invariant: the snapshot is served once".into()),
            )
        })?;
        Ok(snapshot::SnapFs::new(
            t,
            Arc::clone(&source),
            cfg.ttl,
            cfg.direct_io,
        ))
    })
}

/// Mounts `mnt` (checked) with `km` and serves the file system `make` builds on background
/// threads; `make` runs once, after `/dev/fuse` is ready.
fn serve<F: fuser::Filesystem + Send + Sync + 'static>(
    mnt: PathBuf,
    km: &sys::KernelMount,
    cfg: &MountConfig,
    mut make: impl FnMut() -> Result<F, Error>,
) -> Result<MountHandle, Error> {
    let threads = cfg.thread_count().clamp(1, 64);
    let mut fcfg = fuser::Config::default();
    fcfg.n_threads = Some(threads);
    fcfg.clone_fd = threads > 1;
    fcfg.acl = cfg.acl();

    let root = rustix::process::geteuid().is_root();
    let direct = if root {
        match sys::mount_direct(&mnt, km) {
            Ok(fd) => Some(fd),
            Err(Error::Mount {
                source: MountError::NotPermitted(why),
                ..
            }) => {
                debug!("{why}; trying fusermount3");
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let (session, fuser_unmounter) = match direct {
        Some(fd) => {
            let fs = match make() {
                Ok(fs) => fs,
                Err(e) => {
                    let _ = sys::unmount_own(&mnt);
                    return Err(e);
                }
            };
            match Session::from_fd(fs, fd, fcfg.acl, fcfg) {
                Ok(s) => (s, None),
                Err(e) => {
                    let _ = sys::unmount_own(&mnt);
                    return Err(Error::mount(
                        mnt,
                        MountError::Failed(format!("FUSE handshake: {e}")),
                    ));
                }
            }
        }
        None => {
            drop(sys::open_dev_fuse()?);
            let fs = make()?;
            fcfg.mount_options = cfg.fuser_options(km);
            let mut s = Session::new(fs, &mnt, &fcfg).map_err(|e| fusermount_error(&mnt, &e))?;
            let u = s.unmount_callable();
            (s, Some(u))
        }
    };
    let unmounter = Unmounter {
        inner: Arc::new(UnmountInner {
            path: mnt.clone(),
            ended: AtomicBool::new(false),
            session: Mutex::new(fuser_unmounter),
        }),
    };
    let thread = std::thread::Builder::new()
        .name("ccmount-fuse".into())
        .spawn(move || session.run())
        .map_err(|e| Error::io("starting the FUSE threads for", &mnt, e))?;
    let handle = MountHandle {
        unmounter,
        thread: Some(thread),
    };
    if let Some(kib) = cfg.read_ahead_kb {
        match sys::set_read_ahead(&mnt, kib) {
            Ok(()) => debug!("bdi read_ahead_kb = {kib}"),
            Err(e) => info!(
                "could not raise the readahead of {} to {kib} KiB ({e}); sequential reads will be slower",
                mnt.display()
            ),
        }
    }
    Ok(handle)
}

/// Refuses a mount point inside the cipher directory (gocryptfs refuses it too: the daemon
/// would read its own mount) or one that contains it (the mount would hide the storage the
/// daemon reads), before anything is mounted.
///
/// # Errors
/// [`MountError::InsideCipherDir`]; I/O resolving the cipher root.
pub fn refuse_overlap(cipher_root: &Path, mnt: &Path) -> Result<(), Error> {
    let cipher =
        std::fs::canonicalize(cipher_root).map_err(|e| Error::io("resolving", cipher_root, e))?;
    if mnt.starts_with(&cipher) || cipher.starts_with(mnt) {
        return Err(Error::mount(mnt, MountError::InsideCipherDir(cipher)));
    }
    Ok(())
}

/// Maps fuser's fusermount3 errors (which carry fusermount3's stderr) to [`MountError`].
fn fusermount_error(mnt: &Path, e: &io::Error) -> Error {
    let msg = e.to_string();
    let source = if e.kind() == io::ErrorKind::PermissionDenied
        || msg.contains("not permitted")
        || msg.contains("Permission denied")
        || msg.contains("user_allow_other")
    {
        MountError::NotPermitted(msg.trim().to_owned())
    } else if e.kind() == io::ErrorKind::NotFound {
        MountError::NotPermitted(format!("fusermount3 not found ({msg})"))
    } else if msg.contains("busy") {
        MountError::Busy
    } else {
        MountError::Failed(msg.trim().to_owned())
    };
    Error::mount(mnt, source)
}

/// Unmounts the FUSE mount at `mountpoint`: refuses anything that is not
/// a FUSE mount; a busy mount is an error unless `lazy`.
///
/// # Errors
/// [`Error::Mount`] with [`MountError::NotMounted`], [`MountError::NotFuse`],
/// [`MountError::Busy`], [`MountError::NotPermitted`], [`MountError::Failed`].
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<Unmounted, Error> {
    sys::unmount_path(mountpoint, lazy)
}
