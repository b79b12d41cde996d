//! Library errors → the errno a FUSE reply carries. Content problems (authentication,
//! corruption, a refused entry) are `EIO`, as gocryptfs answers; a local I/O failure keeps
//! its own errno (a vanished file stays `ENOENT`).

use fuser::Errno;
use gocryptfs_format::Error;

/// The errno of a format-core error (EIO for anything about the content).
pub(crate) fn errno_of(e: &Error) -> Errno {
    match e {
        Error::Io { source, .. } => source.raw_os_error().map_or(Errno::EIO, Errno::from_i32),
        _ => Errno::EIO,
    }
}
