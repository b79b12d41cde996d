//! Offline verification: authenticate every block of every file, every name, long-name file,
//! diriv, symlink target and xattr, and report **all** findings (path, kind, block); plus a
//! per-file plaintext SHA-256 and file ID, and every entry and symlink target (what
//! [`crate::manifest`] builds the model manifest from). A no-key mode checks structure
//! only: config, possible sizes, headers, diriv sizes, canonical names.
//!
//! The checks of gocryptfs `fsck.go` (spec §5), done on the format layer instead of through a
//! FUSE mount, in parallel. JSON shape: `docs/schemas/verify-report.schema.json`
//! (`ccmount.verify-report/v1`); keep the two in sync.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use rayon::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Progress;
use crate::cipherdir::{CipherDir, Entry, FileKind, read_dir_iv, read_long_name_file};
use crate::configfile::{CONF_NAME, Config, Layout, NameLayout};
use crate::contentenc::{Geometry, SizeCheck};
use crate::decrypt::PIECE_BLOCKS;
use crate::error::{BlockErrorKind, CorruptError, Error, HeaderError, LongNameError};
use crate::nametransform::{self, DIRIV_NAME, EntryClass, LONGNAME_SUFFIX, XATTR_PREFIX, classify};
use crate::reader::{Piece, check_header};
use crate::walk::walk;

/// Schema identifier of [`Report::to_json`].
pub const REPORT_SCHEMA: &str = "ccmount.verify-report/v1";
/// Pieces decrypted in parallel per batch when hashing; two batches are in flight (one
/// being hashed, one being decrypted), so at most `2 * HASH_BATCH` MiB of plaintext per file.
const HASH_BATCH: usize = 4;

thread_local! {
    /// Per-thread (ciphertext, scratch plaintext) buffers.
    static CT_BUF: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

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
    /// Number of hole blocks.
    pub holes: u64,
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
            CorruptError::Size { .. } => (FindingKind::Size, None),
            CorruptError::DirIv(_) => (FindingKind::DirIv, None),
            CorruptError::Name { .. } => (FindingKind::Name, None),
            CorruptError::LongName(_) => (FindingKind::LongName, None),
            CorruptError::Symlink(_) => (FindingKind::Symlink, None),
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
    }
}

impl Finding {
    fn from_error(path: Option<PathBuf>, cipher_path: PathBuf, e: &Error, warning: bool) -> Self {
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
    fn new(mode: Mode, cipherdir: &Path) -> Self {
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
        }
    }

    /// True when there is no error finding.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    fn finish(&mut self) {
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

/// Verifies every block, name, long name, diriv, symlink and xattr of an open tree.
#[must_use]
pub fn verify(dir: &CipherDir, opts: &VerifyOptions, progress: &dyn Progress) -> Report {
    let mut report = Report::new(Mode::Key, dir.root());
    report.layout = Some(dir.layout());
    report.feature_flags = dir
        .config()
        .map(|c| c.flags.iter().map(|f| f.name().to_owned()).collect())
        .unwrap_or_default();
    let tree = match walk(dir) {
        Ok(t) => t,
        Err(e) => {
            report
                .findings
                .push(Finding::from_error(None, PathBuf::new(), &e, false));
            report.finish();
            return report;
        }
    };
    for p in &tree.problems {
        report.findings.push(Finding::from_error(
            None,
            p.cipher_path.clone(),
            &p.error,
            p.warning,
        ));
    }
    progress.set_total(
        tree.entries
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.plain_size)
            .sum(),
    );
    let findings = Mutex::new(Vec::new());
    let push = |f: Finding| {
        if let Ok(mut v) = findings.lock() {
            v.push(f);
        }
    };
    if let Ok(root) = dir.root_entry() {
        check_xattrs(dir, &root, &push);
    }
    for e in &tree.entries {
        match e.kind {
            FileKind::Dir => {
                report.stats.dirs += 1;
                check_xattrs(dir, e, &push);
            }
            FileKind::Symlink => {
                report.stats.symlinks += 1;
                match dir.read_link(e) {
                    Ok(t) => report.symlink_targets.push((e.plain_path.clone(), t)),
                    Err(err) => push(Finding::from_error(
                        Some(e.plain_path.clone()),
                        e.cipher_path.clone(),
                        &err,
                        false,
                    )),
                }
            }
            FileKind::Other => {
                report.stats.other += 1;
                push(Finding {
                    severity: Severity::Warning,
                    kind: FindingKind::Unexpected,
                    path: Some(e.plain_path.clone()),
                    cipher_path: e.cipher_path.clone(),
                    block: None,
                    message: "FIFO, socket or device node: stored unencrypted, not checked".into(),
                });
            }
            FileKind::File => {}
        }
    }
    let files: Vec<&Entry> = tree
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::File)
        .collect();
    let records: Vec<FileRecord> = files
        .par_iter()
        .map(|e| {
            check_xattrs(dir, e, &push);
            verify_file(dir, e, opts, progress, &push)
        })
        .collect();
    report.stats.files = records.len() as u64;
    report.stats.bytes = records.iter().map(|r| r.size).sum();
    report.files = records;
    report
        .findings
        .extend(findings.into_inner().unwrap_or_default());
    report.entries = tree.entries;
    report.finish();
    report
}

fn check_xattrs(dir: &CipherDir, e: &Entry, push: &(dyn Fn(Finding) + Sync)) {
    match dir.xattrs(e) {
        Ok((_, bad)) => {
            for err in bad {
                push(Finding::from_error(
                    Some(e.plain_path.clone()),
                    e.cipher_path.clone(),
                    &err,
                    false,
                ));
            }
        }
        Err(err) => push(Finding::from_error(
            Some(e.plain_path.clone()),
            e.cipher_path.clone(),
            &err,
            false,
        )),
    }
}

fn verify_file(
    dir: &CipherDir,
    e: &Entry,
    opts: &VerifyOptions,
    progress: &dyn Progress,
    push: &(dyn Fn(Finding) + Sync),
) -> FileRecord {
    let mut rec = FileRecord {
        path: e.plain_path.clone(),
        cipher_path: e.cipher_path.clone(),
        size: e.plain_size,
        cipher_size: e.meta.len(),
        file_id: None,
        sha256: None,
        holes: 0,
        ok: true,
    };
    let found = |kind, block, severity, message: String| Finding {
        severity,
        kind,
        path: Some(e.plain_path.clone()),
        cipher_path: e.cipher_path.clone(),
        block,
        message,
    };
    let geo = dir.content().geometry();
    match geo.check_cipher_size(e.meta.len()) {
        SizeCheck::ShortHeader => {
            push(found(
                FindingKind::Header,
                None,
                Severity::Error,
                format!(
                    "{}: {}",
                    e.plain_path.display(),
                    HeaderError::Short(e.meta.len())
                ),
            ));
            rec.ok = false;
            return rec;
        }
        SizeCheck::HeaderOnly => push(found(
            FindingKind::Size,
            None,
            Severity::Warning,
            "header-only file (18 bytes): reads as empty; left by an interrupted write".into(),
        )),
        _ => {}
    }
    let cf = match dir.open_file(e) {
        Ok(cf) => cf,
        Err(err) => {
            push(Finding::from_error(
                Some(e.plain_path.clone()),
                e.cipher_path.clone(),
                &err,
                false,
            ));
            rec.ok = false;
            return rec;
        }
    };
    rec.file_id = cf.file_id().map(|id| id.to_hex());
    let blocks = cf.blocks();
    let pieces: Vec<u64> = (0..blocks).step_by(PIECE_BLOCKS as usize).collect();
    let mut bad = Vec::new();
    let mut holes = 0u64;
    let mut io_err = None;
    let mut hasher = opts.hash.then(Sha256::new);
    let hashing = hasher.is_some();
    // Decrypts one batch of pieces in parallel into `pts` (kept when hashing: the hash needs
    // the plaintext in order; else each thread's scratch buffer is enough).
    let decrypt_batch = |batch: &[u64], pts: &mut Vec<Vec<u8>>| -> Vec<Result<Piece, Error>> {
        pts.resize_with(batch.len().max(pts.len()), Vec::new);
        batch
            .par_iter()
            .zip(pts.par_iter_mut())
            .map(|(&first, pt)| {
                CT_BUF.with(|cell| {
                    let mut guard = cell.borrow_mut();
                    let (ct, scratch) = &mut *guard;
                    let out = if hashing { pt } else { scratch };
                    let r = cf.decrypt_piece(first, PIECE_BLOCKS, ct, out);
                    if let Ok(p) = &r {
                        progress.advance(p.plain_len as u64);
                    }
                    r
                })
            })
            .collect()
    };
    // Without hashing, one parallel pass. With hashing, batches are double-buffered: the
    // SHA-256 of batch N (one thread, in order) runs while batch N+1 is decrypted on the
    // others, so hashing no longer waits for decryption and vice versa.
    let batches: Vec<&[u64]> = pieces
        .chunks(if hashing { HASH_BATCH } else { usize::MAX })
        .collect();
    let (mut cur, mut next): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    let mut results = batches.first().map(|b| decrypt_batch(b, &mut cur));
    let mut i = 0;
    while let Some(rs) = results.take() {
        let mut lens = Vec::with_capacity(rs.len());
        for r in rs {
            match r {
                Ok(piece) => {
                    holes += piece.holes.len() as u64;
                    bad.extend(piece.bad);
                    lens.push(piece.plain_len);
                }
                Err(err) => {
                    io_err.get_or_insert(err);
                }
            }
        }
        if io_err.is_some() {
            break;
        }
        i += 1;
        let hash_cur = |h: &mut Option<Sha256>| {
            if let Some(h) = h {
                for (pt, &len) in cur.iter().zip(&lens) {
                    h.update(pt.get(..len).unwrap_or_default());
                }
            }
        };
        match batches.get(i) {
            Some(b) => {
                let ((), rs) =
                    rayon::join(|| hash_cur(&mut hasher), || decrypt_batch(b, &mut next));
                results = Some(rs);
            }
            None => hash_cur(&mut hasher),
        }
        std::mem::swap(&mut cur, &mut next);
    }
    rec.holes = holes;
    if let Some(err) = io_err {
        push(Finding::from_error(
            Some(e.plain_path.clone()),
            e.cipher_path.clone(),
            &err,
            false,
        ));
        rec.ok = false;
        return rec;
    }
    if holes > 0 {
        push(found(
            FindingKind::Hole,
            None,
            Severity::Warning,
            format!(
                "{holes} all-zero hole block(s): read as zeros without authentication (gocryptfs sparse-file format)"
            ),
        ));
    }
    let listed = bad.len().min(opts.max_block_findings);
    for b in bad.iter().take(listed) {
        let err = Error::from_block(e.plain_path.clone(), *b);
        push(Finding::from_error(
            Some(e.plain_path.clone()),
            e.cipher_path.clone(),
            &err,
            false,
        ));
    }
    if bad.len() > listed {
        push(found(
            FindingKind::MoreBlocks,
            None,
            Severity::Error,
            format!("{} more failing blocks not listed", bad.len() - listed),
        ));
    }
    if bad.is_empty() {
        rec.sha256 = hasher.map(|h| hex::encode(h.finalize()));
    } else {
        rec.ok = false;
    }
    rec
}

/// Structural check without any key: config parses and is supported; every directory has a
/// valid `gocryptfs.diriv`; names are canonical base64 of a possible length; long names match
/// their `.name` files; file sizes are possible and headers valid; symlink targets and xattrs
/// have possible encodings and lengths. Authenticates nothing.
///
/// # Errors
/// Only if `root` cannot be read at all.
pub fn verify_no_key(root: &Path, progress: &dyn Progress) -> Result<Report, Error> {
    let _ = progress;
    let mut report = Report::new(Mode::NoKey, root);
    fs::read_dir(root).map_err(|e| Error::io("listing", root, e))?;
    let config = match Config::load(root) {
        Ok(c) => c,
        Err(e) => {
            report.findings.push(Finding::from_error(
                None,
                PathBuf::from(CONF_NAME),
                &e,
                false,
            ));
            report.finish();
            return Ok(report);
        }
    };
    let layout = config.layout();
    report.layout = Some(layout);
    report.feature_flags = config.flags.iter().map(|f| f.name().to_owned()).collect();
    let ck = NoKeyChecker {
        root,
        geo: Geometry::new(layout.content.nonce_len()),
        layout,
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(d) = stack.pop() {
        ck.check_dir(&d, &mut report, &mut stack);
    }
    report.finish();
    Ok(report)
}

struct NoKeyChecker<'a> {
    root: &'a Path,
    geo: Geometry,
    layout: Layout,
}

impl NoKeyChecker<'_> {
    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn raw64(&self) -> bool {
        matches!(self.layout.names, NameLayout::Encrypted { raw64: true, .. })
    }

    fn add(&self, r: &mut Report, rel: &Path, err: &Error, warning: bool) {
        r.findings
            .push(Finding::from_error(None, rel.to_path_buf(), err, warning));
    }

    fn check_dir(&self, d: &Path, r: &mut Report, stack: &mut Vec<PathBuf>) {
        let abs = self.abs(d);
        let encrypted = matches!(self.layout.names, NameLayout::Encrypted { .. });
        if matches!(
            self.layout.names,
            NameLayout::Encrypted { dir_iv: true, .. }
        ) && let Err(e) = read_dir_iv(&abs.join(DIRIV_NAME))
        {
            self.add(r, &d.join(DIRIV_NAME), &e, false);
        }
        self.check_xattrs(d, r);
        let mut names: Vec<_> = match fs::read_dir(&abs) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.file_name()).collect(),
            Err(e) => {
                self.add(r, d, &Error::io("listing", &abs, e), false);
                return;
            }
        };
        names.sort();
        let is_root = d.as_os_str().is_empty();
        let set: std::collections::HashSet<&OsStr> = names.iter().map(|n| n.as_os_str()).collect();
        let mut subdirs = Vec::new();
        for name in &names {
            let rel = d.join(name);
            if !encrypted {
                if is_root && name.as_bytes() == CONF_NAME.as_bytes() {
                    continue;
                }
            } else {
                match classify(name) {
                    EntryClass::Conf if is_root => continue,
                    EntryClass::DirIv
                        if matches!(
                            self.layout.names,
                            NameLayout::Encrypted { dir_iv: true, .. }
                        ) =>
                    {
                        continue;
                    }
                    EntryClass::RmdirLeftover => {
                        self.add(
                            r,
                            &rel,
                            &Error::refused(&rel, "leftover of an interrupted gocryptfs rmdir"),
                            true,
                        );
                        continue;
                    }
                    EntryClass::LongNameFile => {
                        let entry = name
                            .as_bytes()
                            .strip_suffix(LONGNAME_SUFFIX.as_bytes())
                            .map(OsStr::from_bytes);
                        if !entry.is_some_and(|e| set.contains(e)) {
                            self.add(r, &rel, &Error::corrupt(&rel, LongNameError::Orphan), true);
                        }
                        continue;
                    }
                    EntryClass::LongName => {
                        if let Err(e) = self.check_long(&rel, name) {
                            self.add(r, &rel, &e, false);
                            continue;
                        }
                    }
                    _ => {
                        if let Err(source) =
                            nametransform::check_cipher_name(name.as_bytes(), self.raw64())
                        {
                            self.add(
                                r,
                                &rel,
                                &Error::corrupt(
                                    &rel,
                                    CorruptError::Name {
                                        name: name.clone(),
                                        source,
                                    },
                                ),
                                false,
                            );
                            continue;
                        }
                    }
                }
            }
            let meta = match fs::symlink_metadata(self.abs(&rel)) {
                Ok(m) => m,
                Err(e) => {
                    self.add(r, &rel, &Error::io("reading", self.abs(&rel), e), false);
                    continue;
                }
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                r.stats.dirs += 1;
                subdirs.push(rel);
            } else if ft.is_file() {
                r.stats.files += 1;
                self.check_file(&rel, &meta, r);
            } else if ft.is_symlink() {
                r.stats.symlinks += 1;
                if encrypted {
                    self.check_symlink(&rel, r);
                }
                self.check_xattrs(&rel, r);
            } else {
                r.stats.other += 1;
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }

    fn check_long(&self, rel: &Path, name: &OsStr) -> Result<(), Error> {
        let stored = read_long_name_file(self.root, rel, name)?;
        let lnm = match self.layout.names {
            NameLayout::Encrypted { long_name_max, .. } => usize::from(long_name_max),
            NameLayout::Plaintext => 255,
        };
        nametransform::check_long_name(name, &stored, self.raw64(), lnm)
            .map_err(|e| Error::corrupt(rel, e))?;
        nametransform::check_cipher_name(&stored, self.raw64()).map_err(|source| {
            Error::corrupt(
                rel,
                CorruptError::Name {
                    name: name.to_owned(),
                    source,
                },
            )
        })?;
        Ok(())
    }

    fn check_file(&self, rel: &Path, meta: &fs::Metadata, r: &mut Report) {
        let size = meta.len();
        let mut rec = FileRecord {
            path: rel.to_path_buf(),
            cipher_path: rel.to_path_buf(),
            size: self.geo.cipher_to_plain_size(size),
            cipher_size: size,
            file_id: None,
            sha256: None,
            holes: 0,
            ok: true,
        };
        match self.geo.check_cipher_size(size) {
            SizeCheck::Empty => {}
            SizeCheck::HeaderOnly => self.add(
                r,
                rel,
                &Error::refused(rel, "header-only file (18 bytes): reads as empty"),
                true,
            ),
            SizeCheck::ShortHeader => {
                self.add(
                    r,
                    rel,
                    &Error::corrupt(rel, HeaderError::Short(size)),
                    false,
                );
            }
            SizeCheck::Truncated => self.add(
                r,
                rel,
                &Error::corrupt(
                    rel,
                    CorruptError::Size {
                        cipher_size: size,
                        overhead: self.geo.overhead(),
                    },
                ),
                false,
            ),
            SizeCheck::Valid { .. } => {}
        }
        if size > 18 {
            let mut h = [0u8; 18];
            let res = fs::File::open(self.abs(rel)).and_then(|f| f.read_exact_at(&mut h, 0));
            match res {
                Ok(()) => match check_header(&h) {
                    Ok(id) => rec.file_id = Some(id.to_hex()),
                    Err(e) => self.add(r, rel, &Error::corrupt(rel, e), false),
                },
                Err(e) => self.add(r, rel, &Error::io("reading", self.abs(rel), e), false),
            }
        }
        self.check_xattrs(rel, r);
        r.stats.bytes += rec.size;
        r.files.push(rec);
    }

    fn check_symlink(&self, rel: &Path, r: &mut Report) {
        let target = match fs::read_link(self.abs(rel)) {
            Ok(t) => t,
            Err(e) => {
                self.add(r, rel, &Error::io("reading link", self.abs(rel), e), false);
                return;
            }
        };
        if target.as_os_str().is_empty() {
            return;
        }
        let min = self.geo.overhead() as usize + 1;
        match nametransform::b64_decode(target.as_os_str().as_bytes(), self.raw64()) {
            Ok(b) if b.len() >= min => {}
            Ok(b) => self.add(
                r,
                rel,
                &Error::corrupt(
                    rel,
                    CorruptError::Symlink(format!(
                        "{} bytes, shorter than nonce + tag + 1",
                        b.len()
                    )),
                ),
                false,
            ),
            Err(e) => self.add(
                r,
                rel,
                &Error::corrupt(rel, CorruptError::Symlink(e.to_string())),
                false,
            ),
        }
    }

    fn check_xattrs(&self, rel: &Path, r: &mut Report) {
        let abs = self.abs(rel);
        let Ok(names) = crate::cipherdir::list_xattrs(&abs) else {
            return;
        };
        // xattr names use Raw64 only when names do (PlaintextNames: padded).
        let raw64 = self.raw64();
        for n in names {
            let Some(c) = n.strip_prefix(XATTR_PREFIX.as_bytes()) else {
                continue;
            };
            let name = String::from_utf8_lossy(&n).into_owned();
            if let Err(e) = nametransform::check_cipher_name(c, raw64) {
                self.add(
                    r,
                    rel,
                    &Error::corrupt(
                        rel,
                        CorruptError::Xattr {
                            name,
                            reason: e.to_string(),
                        },
                    ),
                    false,
                );
                continue;
            }
            if let Ok(Some(v)) = crate::cipherdir::get_xattr(&abs, &n)
                && !v.is_empty()
                && v.len() < self.geo.overhead() as usize + 1
            {
                self.add(
                    r,
                    rel,
                    &Error::corrupt(
                        rel,
                        CorruptError::Xattr {
                            name,
                            reason: format!(
                                "value of {} bytes is shorter than nonce + tag + 1",
                                v.len()
                            ),
                        },
                    ),
                    false,
                );
            }
        }
    }
}
