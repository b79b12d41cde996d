//! The system side of a mount: mount-point checks, `/dev/fuse`, `mount(2)` and
//! `umount2(2)`, `/proc/self/mountinfo`, the bdi readahead knob, and `fusermount3` for
//! users without `CAP_SYS_ADMIN`.
//!
//! Mirrors what libfuse's `mount.c`/`fusermount.c` and go-fuse's `mount_linux.go` do
//! (gocryptfs `mount.go` `initGoFuse` picks the options; spec §7.1): open `/dev/fuse`, pass
//! its fd to `mount(2)` as `fd=N,rootmode=..,user_id=..,group_id=..`, file system type
//! `fuse.<subtype>`. Errors keep their errno so the agent can pick an exit code.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::{Error, MountError};

/// The FUSE device.
pub(crate) const DEV_FUSE: &str = "/dev/fuse";

fn merr(path: &Path, source: MountError) -> Error {
    Error::Mount {
        path: path.to_path_buf(),
        source,
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// Device numbers (`major:minor`) of the mounted file system (its bdi for FUSE).
    pub(crate) dev: (u32, u32),
    /// Where it is mounted (unescaped).
    pub(crate) mount_point: PathBuf,
    /// File system type (`fuse.ccmount`, `ext4`, ...).
    pub(crate) fstype: String,
}

impl MountInfo {
    /// Whether this is a FUSE mount of any kind.
    pub(crate) fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype == "fuseblk" || self.fstype.starts_with("fuse.")
    }
}

/// Undoes the octal escapes (`\040` for a space, ...) of mountinfo paths.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field.get(i).copied().unwrap_or_default();
        if b == b'\\'
            && let Some(oct) = field.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Parses one mountinfo line: `id parent maj:min root mountpoint opts [tags] - fstype src sopts`.
pub(crate) fn parse_mountinfo_line(line: &[u8]) -> Option<MountInfo> {
    let mut fields = line.split(|&b| b == b' ');
    let _id = fields.next()?;
    let _parent = fields.next()?;
    let devs = std::str::from_utf8(fields.next()?).ok()?;
    let _root = fields.next()?;
    let mp = fields.next()?;
    for f in fields.by_ref() {
        if f == b"-" {
            break;
        }
    }
    let fstype = String::from_utf8_lossy(fields.next()?).into_owned();
    let (maj, min) = devs.split_once(':')?;
    Some(MountInfo {
        dev: (maj.parse().ok()?, min.parse().ok()?),
        mount_point: PathBuf::from(OsString::from_vec(unescape(mp))),
        fstype,
    })
}

/// All mounts visible to this process, in mount order.
pub(crate) fn mountinfo() -> io::Result<Vec<MountInfo>> {
    let text = fs::read("/proc/self/mountinfo")?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_mountinfo_line)
        .collect())
}

/// The topmost mount at exactly `path`, if any.
pub(crate) fn mount_at(path: &Path) -> io::Result<Option<MountInfo>> {
    Ok(mountinfo()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == path))
}

/// `path` made absolute and lexically normalised (no `.`/`..`), without touching the file
/// system: a dead FUSE mount point cannot be `stat`ed, so it cannot be canonicalised.
pub(crate) fn absolute(path: &Path) -> io::Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Checks that `/dev/fuse` can be opened for reading and writing.
///
/// # Errors
/// [`MountError::NoDevice`].
pub(crate) fn open_dev_fuse() -> Result<OwnedFd, Error> {
    rustix::fs::open(DEV_FUSE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| merr(Path::new(DEV_FUSE), MountError::NoDevice(e.into())))
}

/// Checks a mount point before mounting and returns its canonical path: it exists, is a
/// directory, nothing (not even a dead FUSE mount) is mounted there, and it is empty
/// unless `nonempty`.
///
/// # Errors
/// [`Error::Mount`] with the [`MountError`] that says which.
pub(crate) fn check_mountpoint(path: &Path, nonempty: bool) -> Result<PathBuf, Error> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(merr(path, MountError::MountpointMissing));
        }
        Err(e) if e.raw_os_error() == Some(Errno::NOTCONN.raw_os_error()) => {
            return Err(merr(path, MountError::Stale));
        }
        Err(e) => return Err(Error::io("checking mount point", path, e)),
    };
    if !meta.is_dir() {
        return Err(merr(path, MountError::NotADirectory));
    }
    let canon = fs::canonicalize(path).map_err(|e| Error::io("checking mount point", path, e))?;
    if mount_at(&canon)
        .map_err(|e| Error::io("reading", "/proc/self/mountinfo", e))?
        .is_some()
    {
        return Err(merr(&canon, MountError::AlreadyMounted));
    }
    if !nonempty {
        let mut rd =
            fs::read_dir(&canon).map_err(|e| Error::io("checking mount point", &canon, e))?;
        if rd.next().is_some() {
            return Err(merr(&canon, MountError::NotEmpty));
        }
    }
    Ok(canon)
}

/// Mount flags and data derived from the options.
#[derive(Debug, Clone)]
pub(crate) struct KernelMount {
    /// `mount(2)` flags (always read-only, nosuid, nodev).
    pub(crate) flags: MountFlags,
    /// Extra comma-separated data options (`allow_other`, `default_permissions`).
    pub(crate) data: Vec<&'static str>,
    /// The source column of the mount table.
    pub(crate) source: OsString,
    /// The `fuse.<subtype>` type.
    pub(crate) subtype: String,
}

/// Mounts `/dev/fuse` at `mnt` with `mount(2)` (root or `CAP_SYS_ADMIN`). Returns the open
/// device; the caller must run the FUSE handshake on it.
///
/// # Errors
/// [`MountError::NoDevice`], [`MountError::NotPermitted`] (EPERM: try fusermount3),
/// [`MountError::Busy`], [`MountError::Failed`].
pub(crate) fn mount_direct(mnt: &Path, km: &KernelMount) -> Result<OwnedFd, Error> {
    let fd = open_dev_fuse()?;
    let root_mode = fs::metadata(mnt)
        .map_err(|e| Error::io("checking mount point", mnt, e))?
        .mode()
        & 0o170_000;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={}",
        fd.as_raw_fd(),
        root_mode,
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    );
    for d in &km.data {
        data.push(',');
        data.push_str(d);
    }
    let data = std::ffi::CString::new(data)
        .map_err(|_| merr(mnt, MountError::Failed("mount data contains NUL".into())))?;
    let fstype = format!("fuse.{}", km.subtype);
    match rustix::mount::mount(
        km.source.as_os_str(),
        mnt,
        fstype.as_str(),
        km.flags,
        data.as_c_str(),
    ) {
        Ok(()) => Ok(fd),
        Err(Errno::PERM | Errno::ACCESS) => Err(merr(
            mnt,
            MountError::NotPermitted("mount(2) returned EPERM".into()),
        )),
        Err(Errno::BUSY) => Err(merr(mnt, MountError::Busy)),
        Err(Errno::NODEV) => Err(merr(
            Path::new(DEV_FUSE),
            MountError::NoDevice(io::Error::other(
                "the kernel does not know the fuse file system type",
            )),
        )),
        Err(Errno::NOENT) => Err(merr(mnt, MountError::MountpointMissing)),
        Err(Errno::NOTDIR) => Err(merr(mnt, MountError::NotADirectory)),
        Err(e) => Err(merr(mnt, MountError::Failed(format!("mount(2): {e}")))),
    }
}

/// How an unmount went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted now.
    Now,
    /// The mount was busy and has been detached (`umount -l`): it is gone from the name
    /// space, and open files keep working until they are closed.
    Detached,
    /// There was nothing to unmount (any more).
    AlreadyGone,
}

/// Unmounts the FUSE mount at `path`: `umount2(2)` as root, `fusermount3 -u` otherwise. A
/// busy mount is an error unless `lazy`, which detaches it.
///
/// # Errors
/// [`MountError::NotMounted`], [`MountError::NotFuse`], [`MountError::Busy`],
/// [`MountError::Failed`].
pub(crate) fn unmount_path(path: &Path, lazy: bool) -> Result<Unmounted, Error> {
    let abs = absolute(path).map_err(|e| Error::io("resolving", path, e))?;
    // A live mount point canonicalises (symlinks in the path resolved); a dead one does not.
    let target = fs::canonicalize(&abs).unwrap_or(abs);
    let info = mount_at(&target).map_err(|e| Error::io("reading", "/proc/self/mountinfo", e))?;
    let Some(info) = info else {
        return Err(merr(&target, MountError::NotMounted));
    };
    if !info.is_fuse() {
        return Err(merr(&target, MountError::NotFuse(info.fstype)));
    }
    let flags = if lazy {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    match rustix::mount::unmount(&target, flags) {
        Ok(()) => Ok(if lazy {
            Unmounted::Detached
        } else {
            Unmounted::Now
        }),
        Err(Errno::BUSY) => Err(merr(&target, MountError::Busy)),
        Err(Errno::INVAL | Errno::NOENT) => Err(merr(&target, MountError::NotMounted)),
        Err(Errno::PERM) => fusermount_unmount(&target, lazy),
        Err(e) => Err(merr(
            &target,
            MountError::Failed(format!("umount2(2): {e}")),
        )),
    }
}

/// Unmounts through the setuid `fusermount3 -u` (users without `CAP_SYS_ADMIN`).
fn fusermount_unmount(target: &Path, lazy: bool) -> Result<Unmounted, Error> {
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd
        .arg("--")
        .arg(target)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            merr(
                target,
                MountError::NotPermitted(format!(
                    "umount2(2) returned EPERM and fusermount3 cannot run: {e}"
                )),
            )
        })?;
    if out.status.success() {
        return Ok(if lazy {
            Unmounted::Detached
        } else {
            Unmounted::Now
        });
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let source = if msg.contains("busy") {
        MountError::Busy
    } else if msg.contains("not found") || msg.contains("not mounted") {
        MountError::NotMounted
    } else if msg.contains("not permitted") || msg.contains("Permission denied") {
        MountError::NotPermitted(msg)
    } else {
        MountError::Failed(format!("fusermount3 -u: {msg}"))
    };
    Err(merr(target, source))
}

/// Unmounts the mount this process made, for a stop request: plain unmount first, lazy
/// detach when busy (open files keep working until closed; the name space is free at once).
pub(crate) fn unmount_own(path: &Path) -> Result<Unmounted, Error> {
    match rustix::mount::unmount(path, UnmountFlags::empty()) {
        Ok(()) => Ok(Unmounted::Now),
        Err(Errno::BUSY) => match rustix::mount::unmount(path, UnmountFlags::DETACH) {
            Ok(()) => Ok(Unmounted::Detached),
            Err(e) => Err(merr(path, MountError::Failed(format!("umount2(2): {e}")))),
        },
        Err(Errno::INVAL | Errno::NOENT) => Ok(Unmounted::AlreadyGone),
        Err(Errno::PERM) => match fusermount_unmount(path, false) {
            Err(Error::Mount {
                source: MountError::Busy,
                ..
            }) => fusermount_unmount(path, true),
            Err(Error::Mount {
                source: MountError::NotMounted,
                ..
            }) => Ok(Unmounted::AlreadyGone),
            other => other,
        },
        Err(e) => Err(merr(path, MountError::Failed(format!("umount2(2): {e}")))),
    }
}

/// Sets the readahead of the mount's bdi (`/sys/class/bdi/MAJ:MIN/read_ahead_kb`): the
/// kernel then sends reads as large as `max_pages` allows (1 MiB) and keeps several in
/// flight. Needs root; returns the error otherwise.
pub(crate) fn set_read_ahead(mnt: &Path, kib: u32) -> io::Result<()> {
    let info = mount_at(mnt)?
        .filter(MountInfo::is_fuse)
        .ok_or_else(|| io::Error::other("the new mount is not in /proc/self/mountinfo"))?;
    let knob = format!("/sys/class/bdi/{}:{}/read_ahead_kb", info.dev.0, info.dev.1);
    fs::write(knob, format!("{kib}\n"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let l = b"36 35 0:52 / /mnt/a\\040b rw,nosuid,nodev,relatime shared:1 - fuse.ccmount /data/enc rw,user_id=0,group_id=0";
        let m = parse_mountinfo_line(l).unwrap();
        assert_eq!(m.dev, (0, 52));
        assert_eq!(m.mount_point, Path::new("/mnt/a b"));
        assert_eq!(m.fstype, "fuse.ccmount");
        assert!(m.is_fuse());
        let l = b"22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw";
        let m = parse_mountinfo_line(l).unwrap();
        assert!(!m.is_fuse());
        assert!(parse_mountinfo_line(b"garbage").is_none());
        assert!(parse_mountinfo_line(b"").is_none());
    }

    #[test]
    fn unescapes_only_octal_triples() {
        assert_eq!(unescape(b"a\\040b\\134c"), b"a b\\c");
        assert_eq!(unescape(b"a\\9b\\"), b"a\\9b\\");
        assert_eq!(unescape(b"\\777"), b"?");
    }

    #[test]
    fn absolute_is_lexical() {
        assert_eq!(
            absolute(Path::new("/a/./b/../c")).unwrap(),
            Path::new("/a/c")
        );
        assert_eq!(absolute(Path::new("/..")).unwrap(), Path::new("/"));
    }
}
