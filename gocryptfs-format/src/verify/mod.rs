//! Offline verification: authenticate every block of every file, every name, long-name file,
//! diriv, symlink target and xattr, and report **all** findings (path, kind, block); plus a
//! per-file plaintext SHA-256 and file ID, and every entry and symlink target (what
//! [`crate::manifest`] builds the model manifest from). A no-key mode checks structure
//! only: config, possible sizes, headers, diriv sizes, canonical names.
//!
//! The checks of gocryptfs `fsck.go` (spec §5), done on the format layer instead of through a
//! FUSE mount, in parallel. JSON shape: `docs/schemas/verify-report.schema.json`
//! (`ccmount.verify-report/v1`); keep the two in sync.
//!
//! This module holds the report; the two checkers are `keyed` ([`verify()`], every block
//! with the key) and `nokey` ([`verify_no_key`], structure only). Both list directories
//! through the one shared classifier (`crate::listing`) that
//! [`CipherDir::read_dir`](crate::CipherDir::read_dir) uses too.

mod keyed;
mod nokey;

pub use keyed::verify;
pub use nokey::verify_no_key;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Value, json};

use crate::cipherdir::{CipherDir, Entry};
use crate::configfile::{Layout, NameLayout};
use crate::error::{BlockErrorKind, CorruptError, Error};

/// Schema identifier of [`Report::to_json`].
pub const REPORT_SCHEMA: &str = "ccmount.verify-report/v1";
/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Corruption, tampering or an unreadable item: verify fails.
    Error,
    /// Worth knowing, harmless to the data (holes, leftovers).
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// What a finding is about. The JSON names are the `snake_case` of the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// `gocryptfs.conf` is missing, malformed or refused.
    Config,
    /// The key does not open the tree.
    Key,
    /// A block failed authentication.
    Authentication,
    /// A block is shorter than its overhead (truncated file).
    BlockTooShort,
    /// A block has an all-zero nonce.
    AllZeroNonce,
    /// A bad file header.
    Header,
    /// An impossible ciphertext size.
    Size,
    /// A missing or bad `gocryptfs.diriv`.
    DirIv,
    /// An encrypted name that does not decode or decrypt.
    Name,
    /// A bad long name or `.name` file.
    LongName,
    /// A symlink target that does not decrypt.
    Symlink,
    /// An xattr that does not decrypt.
    Xattr,
    /// An I/O error.
    Io,
    /// Whole all-zero blocks: file holes, read as zeros without authentication.
    Hole,
    /// Something unexpected but harmless (leftover temp file, orphan `.name`, a FIFO).
    Unexpected,
    /// A FIFO, socket, device or symlink where a regular file belongs (a control file, or a
    /// file swapped under a reader).
    FileType,
    /// More failing blocks in one file than the report lists.
    MoreBlocks,
}

impl FindingKind {
    fn as_str(self) -> &'static str {
        match self {
            FindingKind::Config => "config",
            FindingKind::Key => "key",
            FindingKind::Authentication => "authentication",
            FindingKind::BlockTooShort => "block_too_short",
            FindingKind::AllZeroNonce => "all_zero_nonce",
            FindingKind::Header => "header",
            FindingKind::Size => "size",
            FindingKind::DirIv => "diriv",
            FindingKind::Name => "name",
            FindingKind::LongName => "long_name",
            FindingKind::Symlink => "symlink",
            FindingKind::Xattr => "xattr",
            FindingKind::Io => "io",
            FindingKind::Hole => "hole",
            FindingKind::Unexpected => "unexpected",
            FindingKind::FileType => "file_type",
            FindingKind::MoreBlocks => "more_blocks",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What kind.
    pub kind: FindingKind,
    /// Plaintext path relative to the root, when known.
    pub path: Option<PathBuf>,
    /// Cipher path relative to the root.
    pub cipher_path: PathBuf,
    /// Block number, for block findings.
    pub block: Option<u64>,
    /// One-line description.
    pub message: String,
}

/// One regular file in the report (and the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Plaintext path relative to the root (the cipher path in no-key mode).
    pub path: PathBuf,
    /// Cipher path relative to the root.
    pub cipher_path: PathBuf,
    /// Plaintext size.
    pub size: u64,
    /// Ciphertext size.
    pub cipher_size: u64,
    /// File ID from the header, lowercase hex (`None` for empty files).
    pub file_id: Option<String>,
    /// SHA-256 of the plaintext, lowercase hex (when hashing and the file is clean).
    pub sha256: Option<String>,
    /// Number of hole blocks (all-zero blocks: refused, or accepted with `allow_holes`).
    pub holes: u64,
    /// Where they are, as block ranges `[first, end)` (no-key mode; at most 64 listed).
    pub hole_ranges: Vec<(u64, u64)>,
    /// No error finding concerns this file.
    pub ok: bool,
}

/// Totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Regular files.
    pub files: u64,
    /// Directories (not counting the root).
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// FIFOs, sockets, devices.
    pub other: u64,
    /// Plaintext bytes checked.
    pub bytes: u64,
    /// Error findings.
    pub errors: u64,
    /// Warning findings.
    pub warnings: u64,
}

/// Keyed or structural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every block authenticated with the key.
    Key,
    /// Structure only, no secret.
    NoKey,
}

/// The verification report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Keyed or structural.
    pub mode: Mode,
    /// The cipher directory as given.
    pub cipherdir: PathBuf,
    /// The layout, when the config could be read.
    pub layout: Option<Layout>,
    /// Feature flags in file order, when the config could be read.
    pub feature_flags: Vec<String>,
    /// Every regular file.
    pub files: Vec<FileRecord>,
    /// Every finding, errors and warnings.
    pub findings: Vec<Finding>,
    /// Totals.
    pub stats: Stats,
    /// Every entry the walk found (keyed mode only), parents before children.
    pub entries: Vec<Entry>,
    /// Decrypted symlink targets by plaintext path (keyed mode only; unreadable ones are
    /// findings instead).
    pub symlink_targets: Vec<(PathBuf, OsString)>,
    /// Directories of a tree read without local metadata (object storage), used in place
    /// of `entries` (which is then empty), parents before children.
    pub remote_dirs: Vec<PathBuf>,
}

/// Options for [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Compute the plaintext SHA-256 of every file (needed for a manifest; costs CPU).
    pub hash: bool,
    /// Most block findings listed per file; the rest are counted in one `more_blocks`
    /// finding (a wrong key or a zeroed file would otherwise list every block).
    pub max_block_findings: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            hash: true,
            max_block_findings: 256,
        }
    }
}

fn finding_from_error(e: &Error) -> (FindingKind, Option<u64>) {
    match e {
        Error::Config { .. } => (FindingKind::Config, None),
        Error::WrongPassword { .. } | Error::WrongMasterKey { .. } | Error::Key(_) => {
            (FindingKind::Key, None)
        }
        Error::Authentication { block, .. } => (FindingKind::Authentication, Some(*block)),
        Error::Block { block, kind, .. } => (block_kind(*kind), Some(*block)),
        Error::Corrupt { source, .. } => match source {
            CorruptError::Header(_) => (FindingKind::Header, None),
            CorruptError::Size { .. } | CorruptError::Absurd { .. } => (FindingKind::Size, None),
            CorruptError::DirIv(_) => (FindingKind::DirIv, None),
            CorruptError::Name { .. } => (FindingKind::Name, None),
            CorruptError::LongName(_) => (FindingKind::LongName, None),
            CorruptError::Symlink(_) | CorruptError::SymlinkOutside => (FindingKind::Symlink, None),
            CorruptError::NotRegular(_) => (FindingKind::FileType, None),
            CorruptError::Xattr { .. } => (FindingKind::Xattr, None),
            CorruptError::Pin(_) => (FindingKind::Unexpected, None),
            CorruptError::Block(b) => (block_kind(b.kind), Some(b.block)),
        },
        Error::Io { .. } => (FindingKind::Io, None),
        _ => (FindingKind::Unexpected, None),
    }
}

fn block_kind(k: BlockErrorKind) -> FindingKind {
    match k {
        BlockErrorKind::Authentication => FindingKind::Authentication,
        BlockErrorKind::TooShort => FindingKind::BlockTooShort,
        BlockErrorKind::AllZeroNonce => FindingKind::AllZeroNonce,
        BlockErrorKind::Hole => FindingKind::Hole,
    }
}

impl Finding {
    /// The finding of error `e` (kind and block taken from it).
    #[must_use]
    pub fn from_error(
        path: Option<PathBuf>,
        cipher_path: PathBuf,
        e: &Error,
        warning: bool,
    ) -> Self {
        let (kind, block) = finding_from_error(e);
        Finding {
            severity: if warning {
                Severity::Warning
            } else {
                Severity::Error
            },
            kind,
            path,
            cipher_path,
            block,
            message: e.to_string(),
        }
    }
}

impl Report {
    /// An empty report of `mode` about `cipherdir` (for readers of other storage).
    #[must_use]
    pub fn new(mode: Mode, cipherdir: &Path) -> Self {
        Report {
            mode,
            cipherdir: cipherdir.to_path_buf(),
            layout: None,
            feature_flags: Vec::new(),
            files: Vec::new(),
            findings: Vec::new(),
            stats: Stats::default(),
            entries: Vec::new(),
            symlink_targets: Vec::new(),
            remote_dirs: Vec::new(),
        }
    }

    /// An empty keyed report about `dir`, with its layout and feature flags.
    #[must_use]
    pub fn keyed(dir: &CipherDir) -> Self {
        let mut report = Report::new(Mode::Key, dir.root());
        report.layout = Some(dir.layout());
        report.feature_flags = dir
            .config()
            .map(|c| c.flags.iter().map(|f| f.name().to_owned()).collect())
            .unwrap_or_default();
        report
    }

    /// True when there is no error finding.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Counts the findings, sorts them, and marks the files they concern as not ok.
    pub fn finish(&mut self) {
        self.stats.errors = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count() as u64;
        self.stats.warnings = self.findings.len() as u64 - self.stats.errors;
        self.findings.sort_by(|a, b| {
            (a.severity, &a.cipher_path, a.block).cmp(&(b.severity, &b.cipher_path, b.block))
        });
        let bad: std::collections::HashSet<&Path> = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.cipher_path.as_path())
            .collect();
        for f in &mut self.files {
            if bad.contains(f.cipher_path.as_path()) {
                f.ok = false;
                f.sha256 = None;
            }
        }
    }

    /// The report as JSON (`ccmount.verify-report/v1`, see
    /// `docs/schemas/verify-report.schema.json`).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let layout = self.layout.map(|l| {
            json!({
                "content": l.content.name(),
                "names": match l.names {
                    NameLayout::Plaintext => "plaintext",
                    NameLayout::Encrypted { .. } => "encrypted",
                },
                "feature_flags": self.feature_flags,
            })
        });
        json!({
            "schema": REPORT_SCHEMA,
            "cipherdir": self.cipherdir.to_string_lossy(),
            "mode": match self.mode { Mode::Key => "key", Mode::NoKey => "no-key" },
            "ok": self.is_ok(),
            "layout": layout,
            "stats": {
                "files": self.stats.files,
                "dirs": self.stats.dirs,
                "symlinks": self.stats.symlinks,
                "other": self.stats.other,
                "plaintext_bytes": self.stats.bytes,
                "errors": self.stats.errors,
                "warnings": self.stats.warnings,
            },
            "files": self.files.iter().map(|f| {
                let mut o = json!({
                    "path": lossy(&f.path),
                    "cipher_path": lossy(&f.cipher_path),
                    "size": f.size,
                    "cipher_size": f.cipher_size,
                    "file_id": f.file_id,
                    "sha256": f.sha256,
                    "holes": f.holes,
                    "hole_ranges": f.hole_ranges.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
                    "ok": f.ok,
                });
                add_b64(&mut o, "path_b64", &f.path);
                add_b64(&mut o, "cipher_path_b64", &f.cipher_path);
                o
            }).collect::<Vec<_>>(),
            "findings": self.findings.iter().map(|f| {
                let mut o = json!({
                    "severity": f.severity.as_str(),
                    "kind": f.kind.as_str(),
                    "path": f.path.as_deref().map(lossy),
                    "cipher_path": lossy(&f.cipher_path),
                    "block": f.block,
                    "message": f.message,
                });
                if let Some(p) = &f.path {
                    add_b64(&mut o, "path_b64", p);
                }
                add_b64(&mut o, "cipher_path_b64", &f.cipher_path);
                o
            }).collect::<Vec<_>>(),
        })
    }
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Adds `key: base64(raw bytes)` when the path is not valid UTF-8 (so JSON loses nothing).
fn add_b64(o: &mut Value, key: &str, p: &Path) {
    if p.to_str().is_none()
        && let Some(m) = o.as_object_mut()
    {
        m.insert(
            key.to_owned(),
            Value::String(
                base64::engine::general_purpose::STANDARD.encode(p.as_os_str().as_bytes()),
            ),
        );
    }
}
