//! The one error type of the bindings and its mapping onto the Python exception hierarchy
//! of `ccmount/errors.py` (`ccmount.Error` and one subclass per kind).
//!
//! Mirrors `agent/src/exit.rs`: there each library error becomes an exit code, here it
//! becomes an exception class. Messages are the libraries' own (they name the path and, for
//! a bad block, the block) and never hold a secret; the fix is said in Python terms.

use std::path::{Path, PathBuf};

use gocryptfs_format::ErrorKind;
use gocryptfs_format::escape::escaped;
use gocryptfs_format::manifest::CheckError;
use gpu_loader::safetensors::SafetensorsError;
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Everything that can go wrong in a call; converted to a Python exception at the boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The format core (wrong key, a bad block, a bad config, I/O).
    #[error("{0}")]
    Format(#[from] gocryptfs_format::Error),
    /// A malformed safetensors header (the file decrypted, its content is not safetensors).
    #[error("{path}: not a valid safetensors file: {source}", path = escaped(.path))]
    Header {
        /// Plaintext path.
        path: PathBuf,
        /// What the parser refused.
        source: SafetensorsError,
    },
    /// The KBS could not deliver the key or the pin.
    #[error("{what}: {source}")]
    Kbs {
        /// What was being fetched, from where.
        what: String,
        /// The client's error (boxed: it is large, and rare).
        source: Box<attest::Error>,
    },
    /// The tree (or a file of it) differs from the pin.
    #[error("{message}")]
    Pin {
        /// One line.
        message: String,
        /// Every difference, one line each.
        differences: Vec<String>,
    },
    /// An argument is wrong (no key, two keys, a bad key file, a bad `expect`).
    #[error("{0}")]
    Usage(String),
    /// A KBS resource that is not a usable key.
    #[error("{0}")]
    WrongKey(String),
    /// No such plaintext path.
    #[error("{path}: no such file or directory in the encrypted tree", path = escaped(.0))]
    NotFound(PathBuf),
    /// The path is not what the call needs (a directory where a file is wanted, ...).
    #[error("{0}")]
    NotAFile(String),
    /// The object was closed.
    #[error("{0} is closed")]
    Closed(&'static str),
}

/// `Result` with [`Failure`].
pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    /// The subclass of `ccmount.Error` this failure raises.
    fn class(&self) -> &'static str {
        match self {
            Failure::Format(e) => match e {
                gocryptfs_format::Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    "NotFoundError"
                }
                e => match e.kind() {
                    ErrorKind::WrongKey => "WrongKeyError",
                    ErrorKind::Corrupt => "CorruptError",
                    ErrorKind::BadCipherDir => "BadCipherDirError",
                    ErrorKind::Io => "IoError",
                    _ => "UsageError",
                },
            },
            Failure::Header { .. } => "HeaderError",
            Failure::Kbs { .. } => "KbsError",
            Failure::Pin { .. } => "PinMismatchError",
            Failure::Usage(_) => "UsageError",
            Failure::WrongKey(_) => "WrongKeyError",
            Failure::NotFound(_) => "NotFoundError",
            Failure::NotAFile(_) => "NotAFileError",
            Failure::Closed(_) => "ClosedError",
        }
    }

    /// The `path` and `block` attributes of the exception, when the failure has them.
    fn location(&self) -> (Option<&Path>, Option<u64>) {
        match self {
            Failure::Format(gocryptfs_format::Error::Authentication { path, block })
            | Failure::Format(gocryptfs_format::Error::Block { path, block, .. }) => {
                (Some(path), Some(*block))
            }
            Failure::Format(
                gocryptfs_format::Error::Corrupt { path, .. }
                | gocryptfs_format::Error::Io { path, .. }
                | gocryptfs_format::Error::Config { path, .. }
                | gocryptfs_format::Error::WrongPassword { path }
                | gocryptfs_format::Error::WrongMasterKey { path },
            ) => (Some(path), None),
            Failure::Header { path, .. } | Failure::NotFound(path) => (Some(path), None),
            _ => (None, None),
        }
    }

    /// A pin failure from [`gocryptfs_format::manifest::check`].
    pub(crate) fn from_check(e: CheckError) -> Failure {
        match e {
            CheckError::Mismatch(m) => Failure::Pin {
                message: m.to_string(),
                differences: m.differences.iter().map(ToString::to_string).collect(),
            },
            CheckError::DigestNeedsFullCheck => Failure::Usage(
                "a sha256:<digest> pin needs expect_mode=\"full\" (every file hashed); pin a manifest file for a structure-only check".into(),
            ),
            CheckError::Tree(e) => Failure::Format(e),
            e => Failure::Pin {
                message: e.to_string(),
                differences: Vec::new(),
            },
        }
    }

    /// Builds the Python exception (importing `ccmount.errors` for the class).
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let build = || -> PyResult<PyErr> {
            let module = py.import("ccmount.errors")?;
            let class = module.getattr(self.class())?;
            let exc = class.call1((self.to_string(),))?;
            let (path, block) = self.location();
            exc.setattr("path", path.map(|p| escaped(p).to_string()))?;
            exc.setattr("block", block)?;
            if let Failure::Pin { differences, .. } = &self {
                exc.setattr("differences", PyList::new(py, differences)?)?;
            }
            Ok(PyErr::from_value(exc))
        };
        // If even the exception module is broken, say so with the message intact.
        build().unwrap_or_else(|e| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("{self} (and raising it: {e})"))
        })
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        Python::attach(|py| f.into_pyerr(py))
    }
}
