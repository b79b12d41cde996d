//! The GPU loader's error type: a format error from the core (authentication, I/O, a bad
//! header), a [`GpuError`] from the target, or a safetensors header that does not parse.
//! Messages state the problem; the agent adds the fix that names its own flags.

use std::path::PathBuf;

use crate::GpuError;
use crate::safetensors::SafetensorsError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a GPU load failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or authenticating the cipher file failed (names the file and block).
    #[error(transparent)]
    Format(#[from] gocryptfs_format::Error),
    /// No driver or device, a driver call, a copy, or the check of the device copy.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A `*.safetensors` file authenticated, but its header is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {problem}", path = gocryptfs_format::escape::escaped(.path))]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with its header (in the message; not a `source`, so it is not
        /// printed twice by error-chain printers).
        problem: SafetensorsError,
    },
    /// A [`crate::PlainSource`] (a tree in object storage) failed to deliver plaintext; the
    /// source's own error, for the caller to classify.
    #[error("{0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Classifies the error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Format(e) => ErrorKind::Format(e.kind()),
            Error::Gpu(e) => e.kind(),
            Error::Safetensors { .. } => ErrorKind::Format(gocryptfs_format::ErrorKind::Corrupt),
            Error::Source(_) => ErrorKind::Source,
        }
    }
}

/// What a caller should do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A problem of the cipher tree or a local file, classified by the format core.
    Format(gocryptfs_format::ErrorKind),
    /// No GPU could be used: no driver library, no device, or a build without CUDA.
    NoGpu,
    /// A GPU operation failed (allocation, copy, or the device copy differs).
    Gpu,
    /// The loader options are invalid.
    Usage,
    /// The [`crate::PlainSource`] failed: classify [`Error::Source`]'s inner error.
    Source,
}
