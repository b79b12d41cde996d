//! A pure-Rust, byte-compatible implementation of the gocryptfs on-disk format: read, write,
//! verify.
//!
//! Spec: `../shared/specs/gocryptfs-format.md`; our reading of it: `docs/file-format.md`;
//! module map and data flow: `docs/architecture.md`. No networking lives here; keys arrive
//! as zeroized bytes from the caller ([`KeySource`]).
//!
//! ```text
//!  KeySource ──► CipherDir::open ──► Config (gocryptfs.conf) ─► MasterKey
//!                     │                                  │
//!                     ├── NameTransform (EME names, diriv cache, long names)
//!                     └── Arc<ContentEnc> (AES-GCM aws-lc | RustCrypto, XChaCha, AES-SIV)
//!                              │
//!          ┌───────────────────┼───────────────────────┬───────────────┐
//!   CipherFile::read_at   decrypt::decrypt_tree   verify::verify   writer::encrypt_tree
//!   (FUSE, random access) (offline, rayon)        (report+manifest) (new tree)
//! ```
//!
//! ```no_run
//! use gocryptfs_format::{CipherDir, KeySource, OpenOptions};
//! # fn main() -> Result<(), gocryptfs_format::Error> {
//! let key = KeySource::password_from_passfile(&std::fs::read("pw.txt").unwrap())?;
//! let dir = CipherDir::open("/data/enc".as_ref(), key, &OpenOptions::default())?;
//! let entry = dir.resolve("model/weights.safetensors".as_ref())?;
//! let file = dir.open_file(&entry)?;
//! let mut buf = vec![0u8; 1 << 20];
//! let n = file.read_at(0, &mut buf)?;
//! # let _ = n; Ok(()) }
//! ```
//!
//! The frontends live in their own crates on top of this one: `fuse-decrypt` (the read-only
//! FUSE mount) and `gpu-loader` (decrypt into GPU memory, safetensors). This crate has no
//! FUSE, GPU, async runtime or networking in its dependency graph (checked by the layering
//! test in `tests/`).
//!
//! The format modules ([`configfile`], [`contentenc`], [`nametransform`], [`cryptocore`]) are
//! public for tests, the fuzz crate and the benchmark; they are format internals, not a
//! stable API. The paved path is [`CipherDir`], [`CipherFile`], [`decrypt`], [`verify`],
//! [`manifest`] (model pinning: [`manifest::check()`]) and [`writer`].

pub mod cipherdir;
pub mod configfile;
pub mod contentenc;
pub mod cryptocore;
pub mod decrypt;
mod error;
pub mod escape;
pub mod listing;
pub mod manifest;
pub mod nametransform;
pub mod policy;
pub mod reader;
mod safeio;
pub mod verify;
pub mod walk;
pub mod writer;

#[doc(hidden)]
pub mod internal;

pub use cipherdir::{CipherDir, DirListing, Entry, FileKind, OpenOptions};
pub use configfile::{Config, Layout, NameLayout};
pub use contentenc::{ContentEnc, FileId};
pub use cryptocore::{Backend, ContentAlgo, KeySource, MasterKey};
pub use error::{
    BlockError, BlockErrorKind, ConfigError, CorruptError, DirIvError, Error, ErrorKind,
    HeaderError, KeyError, LongNameError, NameError, Result,
};
pub use policy::Policy;
pub use reader::{CipherFile, FileReader, Stamp};

/// Progress reporting for long operations (the agent draws a bar; tests pass
/// [`NoProgress`]). Called from worker threads.
pub trait Progress: Sync {
    /// Total plaintext bytes the operation will process, once known.
    fn set_total(&self, _bytes: u64) {}
    /// `bytes` more plaintext bytes processed.
    fn advance(&self, _bytes: u64) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
