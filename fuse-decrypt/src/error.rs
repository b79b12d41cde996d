//! The FUSE frontend's errors: [`MountError`] for mounting and unmounting, and the format
//! core's error for everything read from the cipher tree. Messages state the problem; the
//! agent (`agent/src/exit.rs`) adds the fix that names its own commands and flags.

use std::io;
use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the FUSE frontend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Mounting or unmounting failed.
    #[error("{path}: {source}", path = gocryptfs_format::escape::escaped(.path))]
    Mount {
        /// The mount point (or `/dev/fuse`).
        path: PathBuf,
        /// What went wrong.
        source: MountError,
    },
    /// The cipher directory could not be read, or a local I/O operation failed.
    #[error(transparent)]
    Format(#[from] gocryptfs_format::Error),
}

impl Error {
    pub(crate) fn mount(path: impl Into<PathBuf>, source: MountError) -> Self {
        Error::Mount {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Format(gocryptfs_format::Error::io(op, path, source))
    }
}

/// Why a FUSE mount or unmount failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// `/dev/fuse` cannot be opened.
    #[error("FUSE is not available: /dev/fuse cannot be opened ({0})")]
    NoDevice(io::Error),
    /// The kernel refused the mount for lack of privileges, and no usable fusermount3.
    #[error("mounting is not permitted ({0})")]
    NotPermitted(String),
    /// The mount point does not exist.
    #[error("the mount point does not exist")]
    MountpointMissing,
    /// The mount point is not a directory.
    #[error("the mount point is not a directory")]
    NotADirectory,
    /// The mount point has entries (gocryptfs refuses this too).
    #[error("the mount point is not empty")]
    NotEmpty,
    /// Something is already mounted there.
    #[error("something is already mounted here")]
    AlreadyMounted,
    /// A FUSE mount whose daemon died is still attached.
    #[error("a dead FUSE mount is still attached here (transport endpoint is not connected)")]
    Stale,
    /// Files are open on the mount.
    #[error("the mount is busy (files are open or a process has its working directory there)")]
    Busy,
    /// Nothing is mounted there.
    #[error("not a mount point (nothing is mounted here)")]
    NotMounted,
    /// Something other than a FUSE file system is mounted there.
    #[error("a {0} file system is mounted here, not FUSE; refusing to unmount it")]
    NotFuse(String),
    /// A mount option that cannot be passed to the kernel safely.
    #[error("invalid mount option: {0}")]
    Option(String),
    /// The mount point lies inside the cipher directory it would serve, or contains it.
    #[error("the mount point and the cipher directory {} overlap (one is inside the other)", gocryptfs_format::escape::escaped(.0))]
    InsideCipherDir(PathBuf),
    /// The mount failed for another reason.
    #[error("mount failed: {0}")]
    Failed(String),
}

/// What a caller does about a [`MountError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountErrorKind {
    /// FUSE is unavailable: `/dev/fuse` is missing, or mounting is not permitted.
    NoFuse,
    /// The mount point is missing, not a directory, not empty, busy, or not mounted.
    Mountpoint,
    /// The request is invalid (a mount option, a mount point inside the cipher tree).
    Usage,
    /// The mount itself failed.
    Failed,
}

impl MountError {
    /// The class of this failure.
    #[must_use]
    pub fn kind(&self) -> MountErrorKind {
        match self {
            MountError::NoDevice(_) | MountError::NotPermitted(_) => MountErrorKind::NoFuse,
            MountError::MountpointMissing
            | MountError::NotADirectory
            | MountError::NotEmpty
            | MountError::AlreadyMounted
            | MountError::Stale
            | MountError::Busy
            | MountError::NotMounted
            | MountError::NotFuse(_) => MountErrorKind::Mountpoint,
            MountError::Option(_) | MountError::InsideCipherDir(_) => MountErrorKind::Usage,
            MountError::Failed(_) => MountErrorKind::Failed,
        }
    }
}
