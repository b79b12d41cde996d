//! The one way this crate opens a file of the cipher tree: never through a symlink, never
//! blocking on a FIFO or a device, and only if it is a regular file.
//!
//! The host controls the tree, so any name may be a FIFO (an `open(O_RDONLY)` of a FIFO
//! blocks until a writer appears: forever), a socket, a device or a symlink. Every open is
//! `O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC` followed by an `fstat` type check on
//! the opened descriptor (so a swap between a `stat` and the open changes nothing);
//! `O_NONBLOCK` has no effect on reads of a regular file. gocryptfs opens its files with
//! `O_NOFOLLOW` too (`syscallcompat`); the non-blocking open and the type check are ours.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Why a cipher-tree file could not be opened.
#[derive(Debug)]
pub(crate) enum OpenFail {
    /// The open or the `fstat` failed (missing, permission, I/O).
    Io(io::Error),
    /// It is not a regular file: the kind found (`"FIFO"`, `"symlink"`, ...).
    NotRegular(&'static str),
}

/// The human name of a file type.
pub(crate) fn type_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Opens `path` for reading if, and only if, it is a regular file.
pub(crate) fn open_regular(path: &Path) -> Result<File, OpenFail> {
    use rustix::fs::OFlags;
    let file = File::options()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32)
        .open(path)
        .map_err(|e| {
            // ELOOP: the last component is a symlink (O_NOFOLLOW).
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                OpenFail::NotRegular("symlink")
            } else {
                OpenFail::Io(e)
            }
        })?;
    let ft = file.metadata().map_err(OpenFail::Io)?.file_type();
    if !ft.is_file() {
        return Err(OpenFail::NotRegular(type_name(ft)));
    }
    // A regular file: reads behave the same either way, but drop the flag so the
    // descriptor is exactly what a plain open gives (O_NONBLOCK was only for the open).
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| OpenFail::Io(e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK).map_err(|e| OpenFail::Io(e.into()))?;
    Ok(file)
}

/// Reads a regular file of at most `max` bytes: `Ok(None)` if it is larger.
pub(crate) fn read_small(path: &Path, max: u64) -> Result<Option<Vec<u8>>, OpenFail> {
    let f = open_regular(path)?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(OpenFail::Io)?;
    if buf.len() as u64 > max {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// The data segments `[start, end)` of `f` (of `size` bytes) by `SEEK_DATA`/`SEEK_HOLE`:
/// everything outside them is a file-system hole, which reads as zeros without any I/O.
/// `None` when the file system cannot say (then every byte counts as data).
pub(crate) fn data_segments(f: &File, size: u64) -> Option<Vec<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let start = match seek(f, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return None,
        };
        let end = seek(f, SeekFrom::Hole(start)).ok()?.min(size);
        if end <= start {
            return None;
        }
        out.push((start, end));
        off = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;

    #[test]
    fn fifos_symlinks_and_directories_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert!(matches!(
            open_regular(&fifo),
            Err(OpenFail::NotRegular("FIFO"))
        ));
        let file = d.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        let link = d.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            open_regular(&link),
            Err(OpenFail::NotRegular("symlink"))
        ));
        assert!(matches!(
            open_regular(d.path()),
            Err(OpenFail::NotRegular("directory"))
        ));
        assert_eq!(read_small(&file, 3).unwrap().unwrap(), b"abc");
        assert!(read_small(&file, 2).unwrap().is_none());
        assert!(matches!(
            open_regular(&d.path().join("missing")),
            Err(OpenFail::Io(_))
        ));
    }

    #[test]
    fn sparse_segments() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sparse");
        let f = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        f.set_len(1 << 30).unwrap();
        use std::os::unix::fs::FileExt as _;
        f.write_all_at(&[1u8; 8192], 1 << 20).unwrap();
        if let Some(segs) = data_segments(&f, 1 << 30) {
            // A file system that reports holes: one small data segment around 1 MiB.
            let total: u64 = segs.iter().map(|(s, e)| e - s).sum();
            assert!(total < 1 << 24, "{segs:?}");
            assert!(
                segs.iter()
                    .any(|&(s, e)| s <= 1 << 20 && e >= (1 << 20) + 8192)
            );
        }
    }
}
