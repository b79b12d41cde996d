//! Checking a tree against a pin ([`Expected`]): every entry compared, every difference
//! named with its path. The entry point for `verify --expect`, `decrypt --expect` and
//! `mount --expect` is [`check`].
//!
//! Two depths ([`CheckMode`]): `Full` authenticates and hashes every block (one
//! [`crate::verify::verify`] pass) and compares content; `Structure` reads only directory
//! listings, file headers and symlinks, and compares names, types, sizes, file IDs and
//! targets (no content, so it cannot check a bare digest).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{EntryKind, FilePin, Manifest, ManifestEntry, ManifestError, ModelDigest, Params};
use crate::Progress;
use crate::cipherdir::{CipherDir, Entry, FileKind};
use crate::contentenc::FileId;
use crate::verify::{FileRecord, Report, Severity, VerifyOptions, verify};
use crate::walk::walk;

/// What the tree must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// A whole manifest: differences are listed per path.
    Manifest(Manifest),
    /// Only the model digest: a mismatch cannot say which path differs.
    Digest(ModelDigest),
}

impl Expected {
    /// Parses a pin's bytes (a manifest file, or a KBS resource): `sha256:<hex>` (one
    /// token, whitespace around it ignored) or a canonical manifest.
    ///
    /// # Errors
    /// [`ManifestError`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.starts_with(b"sha256:") {
            let s = std::str::from_utf8(trimmed)
                .map_err(|_| ManifestError::Digest("(not UTF-8)".into()))?;
            return s.parse().map(Expected::Digest);
        }
        Manifest::parse(bytes).map(Expected::Manifest)
    }

    /// The pinned digest.
    #[must_use]
    pub fn digest(&self) -> ModelDigest {
        match self {
            Expected::Manifest(m) => m.digest(),
            Expected::Digest(d) => *d,
        }
    }
}

/// How much of the tree [`check`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Authenticate and hash every block; compare everything.
    Full,
    /// Names, types, sizes, file IDs and symlink targets only (no block is read).
    Structure,
}

/// One way the tree differs from the pin. `Display` is one line naming the path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Difference {
    /// Pinned, but not in the tree.
    Missing {
        /// Plaintext path.
        path: PathBuf,
        /// Pinned type.
        expected: &'static str,
    },
    /// In the tree, not pinned.
    Extra {
        /// Plaintext path.
        path: PathBuf,
        /// Found type.
        found: &'static str,
    },
    /// Another type.
    Type {
        /// Plaintext path.
        path: PathBuf,
        /// Pinned type.
        expected: &'static str,
        /// Found type.
        found: &'static str,
    },
    /// Another plaintext size.
    Size {
        /// Plaintext path.
        path: PathBuf,
        /// Pinned size.
        expected: u64,
        /// Found size.
        found: u64,
    },
    /// Another plaintext SHA-256.
    Content {
        /// Plaintext path.
        path: PathBuf,
    },
    /// Another gocryptfs file ID (another file's ciphertext, or another version of it).
    FileId {
        /// Plaintext path.
        path: PathBuf,
        /// Pinned ID (hex), if any.
        expected: Option<String>,
        /// Found ID (hex), if any.
        found: Option<String>,
    },
    /// Another symlink target.
    Target {
        /// Plaintext path.
        path: PathBuf,
    },
    /// Other creation parameters.
    Params {
        /// Which parameter.
        field: &'static str,
        /// Pinned value.
        expected: String,
        /// Found value.
        found: String,
    },
    /// Corruption found while reading (failed authentication, bad name, bad header, ...).
    Corrupt {
        /// Plaintext path when known, else the cipher path.
        path: PathBuf,
        /// The finding.
        message: String,
    },
    /// The model digest differs (a bare-digest pin cannot say more).
    Digest {
        /// Pinned digest.
        expected: ModelDigest,
        /// Found digest.
        found: ModelDigest,
    },
}

impl Difference {
    /// The path concerned, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Difference::Missing { path, .. }
            | Difference::Extra { path, .. }
            | Difference::Type { path, .. }
            | Difference::Size { path, .. }
            | Difference::Content { path }
            | Difference::FileId { path, .. }
            | Difference::Target { path }
            | Difference::Corrupt { path, .. } => Some(path),
            Difference::Params { .. } | Difference::Digest { .. } => None,
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
        match self {
            Difference::Missing { path, expected } => {
                write!(
                    f,
                    "{}: missing ({expected} in the manifest)",
                    path.display()
                )
            }
            Difference::Extra { path, found } => {
                write!(f, "{}: extra {found}, not in the manifest", path.display())
            }
            Difference::Type {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: type differs: expected {expected}, found {found}",
                path.display()
            ),
            Difference::Size {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: size differs: expected {expected}, found {found} bytes",
                path.display()
            ),
            Difference::Content { path } => {
                write!(f, "{}: content differs (sha256)", path.display())
            }
            Difference::FileId {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: file ID differs: expected {}, found {} (another file's or an older version's ciphertext)",
                path.display(),
                opt(expected),
                opt(found)
            ),
            Difference::Target { path } => {
                write!(f, "{}: symlink target differs", path.display())
            }
            Difference::Params {
                field,
                expected,
                found,
            } => write!(
                f,
                "creation parameters: {field} differs: expected {expected}, found {found}"
            ),
            Difference::Corrupt { path, message } => {
                let p = path.display().to_string();
                if message.contains(&p) {
                    write!(f, "{message}")
                } else {
                    write!(f, "{p}: {message}")
                }
            }
            Difference::Digest { expected, found } => write!(
                f,
                "model digest differs: expected {expected}, found {found} (pin a manifest to see which paths)"
            ),
        }
    }
}

/// The tree is not the pinned model: every difference found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatches {
    /// Every difference, in path order (parameters and digest last).
    pub differences: Vec<Difference>,
    /// The pinned digest.
    pub expected: ModelDigest,
}

impl fmt::Display for Mismatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.differences.len();
        write!(
            f,
            "the model differs from the pinned manifest {}: {n} difference{}",
            self.expected,
            if n == 1 { "" } else { "s" }
        )?;
        if let Some(first) = self.differences.first() {
            write!(f, " (first: {first})")?;
        }
        Ok(())
    }
}

/// Why [`check`] did not accept the tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The tree differs from the pin (or is corrupt): exit 26.
    #[error("{0}")]
    Mismatch(Mismatches),
    /// A bare digest needs every file hashed; `Structure` mode cannot check it.
    #[error(
        "a sha256:<digest> pin needs a full check (every file hashed); pin a manifest file for a structure-only check"
    )]
    DigestNeedsFullCheck,
    /// The root could not be listed at all.
    #[error(transparent)]
    Tree(#[from] crate::Error),
}

/// What [`check`] accepted: the tree as verified, for serving from.
#[derive(Debug)]
pub struct VerifiedTree {
    /// The depth of the check.
    pub mode: CheckMode,
    /// The model digest accepted.
    pub digest: ModelDigest,
    /// The manifest accepted (the pinned one; with a bare digest, the one computed).
    pub manifest: Manifest,
    /// Every entry of the tree as walked during the check (plaintext path, cipher path,
    /// type, metadata), parents before children.
    pub entries: Vec<Entry>,
}

impl VerifiedTree {
    /// The pinned facts of `path` (plaintext, relative), if the tree has that entry.
    #[must_use]
    pub fn pinned(&self, path: &Path) -> Option<&ManifestEntry> {
        self.manifest.get(path)
    }

    /// The file ID pinned for the regular file `path`: compare it with
    /// [`crate::CipherFile::file_id`] when opening the file later.
    #[must_use]
    pub fn file_id(&self, path: &Path) -> Option<FileId> {
        match self.manifest.get(path).map(|e| &e.kind) {
            Some(EntryKind::File(f)) => f.file_id,
            _ => None,
        }
    }
}

/// What was found in the tree, per entry (content unknown in structure mode or where
/// reading failed).
#[derive(Debug)]
enum Seen {
    File {
        size: u64,
        sha256: Option<[u8; 32]>,
        file_id: Option<FileId>,
    },
    Dir,
    Symlink(Option<OsString>),
    Other,
}

impl Seen {
    fn type_name(&self) -> &'static str {
        match self {
            Seen::File { .. } => "file",
            Seen::Dir => "dir",
            Seen::Symlink(_) => "symlink",
            Seen::Other => "other",
        }
    }
}

struct Observed {
    params: Params,
    /// Sorted by path bytes.
    entries: Vec<(PathBuf, Seen)>,
    corrupt: Vec<Difference>,
}

fn sort_key(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

fn hex32(s: Option<&str>) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s?, &mut out).ok().map(|()| out)
}

fn hex16(s: Option<&str>) -> Option<FileId> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(s?, &mut out)
        .ok()
        .map(|()| FileId(out))
}

/// Error findings of a report as [`Difference::Corrupt`].
fn corrupt_of(report: &Report) -> Vec<Difference> {
    report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| Difference::Corrupt {
            path: f.path.clone().unwrap_or_else(|| f.cipher_path.clone()),
            message: f.message.clone(),
        })
        .collect()
}

/// What a report says of one regular file (its hash only when the file is clean).
fn seen_file(r: &FileRecord) -> Seen {
    Seen::File {
        size: r.size,
        sha256: if r.ok {
            hex32(r.sha256.as_deref())
        } else {
            None
        },
        file_id: hex16(r.file_id.as_deref()),
    }
}

fn observe_report(dir: &CipherDir, report: &Report) -> Observed {
    let files: HashMap<&Path, _> = report.files.iter().map(|f| (f.path.as_path(), f)).collect();
    let targets: HashMap<&Path, &OsString> = report
        .symlink_targets
        .iter()
        .map(|(p, t)| (p.as_path(), t))
        .collect();
    let mut entries: Vec<(PathBuf, Seen)> = report
        .entries
        .iter()
        .map(|e| {
            let seen = match e.kind {
                FileKind::File => match files.get(e.plain_path.as_path()) {
                    Some(r) => seen_file(r),
                    None => Seen::File {
                        size: e.plain_size,
                        sha256: None,
                        file_id: None,
                    },
                },
                FileKind::Dir => Seen::Dir,
                FileKind::Symlink => {
                    Seen::Symlink(targets.get(e.plain_path.as_path()).map(|t| (*t).clone()))
                }
                FileKind::Other => Seen::Other,
            };
            (e.plain_path.clone(), seen)
        })
        .collect();
    if report.entries.is_empty() {
        // A tree without local metadata (object storage): regular files and directories.
        entries.extend(report.remote_dirs.iter().map(|d| (d.clone(), Seen::Dir)));
        entries.extend(report.files.iter().map(|r| (r.path.clone(), seen_file(r))));
    }
    entries.sort_by(|a, b| sort_key(&a.0).cmp(sort_key(&b.0)));
    Observed {
        params: Params::of(dir),
        entries,
        corrupt: corrupt_of(report),
    }
}

fn observe_structure(dir: &CipherDir) -> Result<(Observed, Vec<Entry>), crate::Error> {
    let tree = walk(dir)?;
    let mut corrupt: Vec<Difference> = tree
        .problems
        .iter()
        .filter(|p| !p.warning)
        .map(|p| Difference::Corrupt {
            path: p.cipher_path.clone(),
            message: p.error.to_string(),
        })
        .collect();
    let seen: Vec<(Seen, Option<Difference>)> = tree
        .entries
        .par_iter()
        .map(|e| match e.kind {
            FileKind::File => match dir.open_file(e) {
                Ok(cf) => (
                    Seen::File {
                        size: cf.plain_size(),
                        sha256: None,
                        file_id: cf.file_id(),
                    },
                    None,
                ),
                Err(err) => (
                    Seen::File {
                        size: e.plain_size,
                        sha256: None,
                        file_id: None,
                    },
                    Some(Difference::Corrupt {
                        path: e.plain_path.clone(),
                        message: err.to_string(),
                    }),
                ),
            },
            FileKind::Dir => (Seen::Dir, None),
            FileKind::Symlink => match dir.read_link(e) {
                Ok(t) => (Seen::Symlink(Some(t)), None),
                Err(err) => (
                    Seen::Symlink(None),
                    Some(Difference::Corrupt {
                        path: e.plain_path.clone(),
                        message: err.to_string(),
                    }),
                ),
            },
            FileKind::Other => (Seen::Other, None),
        })
        .collect();
    let mut entries = Vec::with_capacity(seen.len());
    for (e, (s, c)) in tree.entries.iter().zip(seen) {
        corrupt.extend(c);
        entries.push((e.plain_path.clone(), s));
    }
    entries.sort_by(|a, b| sort_key(&a.0).cmp(sort_key(&b.0)));
    Ok((
        Observed {
            params: Params::of(dir),
            entries,
            corrupt,
        },
        tree.entries,
    ))
}

/// Compares pinned and observed entries (both sorted by path bytes).
fn compare(expected: &Manifest, seen: &Observed, content: bool) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut exp = expected.entries.iter().peekable();
    let mut obs = seen.entries.iter().peekable();
    loop {
        let order = match (exp.peek(), obs.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(e), Some(o)) => sort_key(&e.path).cmp(sort_key(&o.0)),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some(e) = exp.next() {
                    out.push(Difference::Missing {
                        path: e.path.clone(),
                        expected: e.kind.type_name(),
                    });
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some((p, s)) = obs.next() {
                    out.push(Difference::Extra {
                        path: p.clone(),
                        found: s.type_name(),
                    });
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some(e), Some((_, s))) = (exp.next(), obs.next()) {
                    compare_entry(e, s, content, &mut out);
                }
            }
        }
    }
    let (pe, po) = (&expected.params, &seen.params);
    let mut param = |field, a: String, b: String| {
        if a != b {
            out.push(Difference::Params {
                field,
                expected: a,
                found: b,
            });
        }
    };
    param("content", pe.content.clone(), po.content.clone());
    param(
        "feature_flags",
        pe.feature_flags.join(","),
        po.feature_flags.join(","),
    );
    param(
        "long_name_max",
        format!("{:?}", pe.long_name_max),
        format!("{:?}", po.long_name_max),
    );
    // A tree opened by master key without its config has no scrypt parameters to compare.
    if po.scrypt.is_some() {
        param(
            "scrypt",
            format!("{:?}", pe.scrypt),
            format!("{:?}", po.scrypt),
        );
    }
    out
}

fn compare_entry(e: &ManifestEntry, s: &Seen, content: bool, out: &mut Vec<Difference>) {
    let path = || e.path.clone();
    match (&e.kind, s) {
        (
            EntryKind::File(FilePin {
                size,
                sha256,
                file_id,
            }),
            Seen::File {
                size: fsize,
                sha256: fsha,
                file_id: fid,
            },
        ) => {
            if size != fsize {
                out.push(Difference::Size {
                    path: path(),
                    expected: *size,
                    found: *fsize,
                });
            }
            if content && fsha.is_some_and(|h| h != *sha256) {
                out.push(Difference::Content { path: path() });
            }
            if file_id != fid {
                out.push(Difference::FileId {
                    path: path(),
                    expected: file_id.map(|i| i.to_hex()),
                    found: fid.map(|i| i.to_hex()),
                });
            }
        }
        (EntryKind::Dir, Seen::Dir) | (EntryKind::Other, Seen::Other) => {}
        (EntryKind::Symlink(t), Seen::Symlink(found)) => {
            if found.as_ref().is_some_and(|f| f != t) {
                out.push(Difference::Target { path: path() });
            }
        }
        _ => out.push(Difference::Type {
            path: path(),
            expected: e.kind.type_name(),
            found: s.type_name(),
        }),
    }
}

impl Observed {
    /// The manifest of what was seen, when every file was hashed and nothing is corrupt.
    fn to_manifest(&self) -> Result<Manifest, Vec<Difference>> {
        if !self.corrupt.is_empty() {
            return Err(self.corrupt.clone());
        }
        let mut entries = Vec::with_capacity(self.entries.len());
        let mut bad = Vec::new();
        for (p, s) in &self.entries {
            let kind = match s {
                Seen::File {
                    size,
                    sha256: Some(sha256),
                    file_id,
                } => EntryKind::File(FilePin {
                    size: *size,
                    sha256: *sha256,
                    file_id: *file_id,
                }),
                Seen::File { sha256: None, .. } => {
                    bad.push(Difference::Corrupt {
                        path: p.clone(),
                        message: "content could not be read and hashed".into(),
                    });
                    continue;
                }
                Seen::Dir => EntryKind::Dir,
                Seen::Symlink(Some(t)) => EntryKind::Symlink(t.clone()),
                Seen::Symlink(None) => {
                    bad.push(Difference::Corrupt {
                        path: p.clone(),
                        message: "symlink target could not be decrypted".into(),
                    });
                    continue;
                }
                Seen::Other => EntryKind::Other,
            };
            entries.push(ManifestEntry {
                path: p.clone(),
                kind,
            });
        }
        if !bad.is_empty() {
            return Err(bad);
        }
        Manifest::new(self.params.clone(), entries).map_err(|e| {
            vec![Difference::Corrupt {
                path: PathBuf::new(),
                message: e.to_string(),
            }]
        })
    }
}

impl Manifest {
    /// The manifest of a tree from a keyed [`verify`] report made with
    /// `VerifyOptions { hash: true, .. }`. Fails, listing the problems, when the tree has
    /// any error finding (a manifest pins only a clean tree).
    ///
    /// # Errors
    /// Every corruption, as [`Difference::Corrupt`].
    pub fn from_report(dir: &CipherDir, report: &Report) -> Result<Self, Vec<Difference>> {
        observe_report(dir, report).to_manifest()
    }

    /// Verifies the whole tree (every block, hashed) and returns its manifest with the
    /// report.
    ///
    /// # Errors
    /// Every corruption, as [`Difference::Corrupt`].
    pub fn of_tree(
        dir: &CipherDir,
        progress: &dyn Progress,
    ) -> Result<(Self, Report), Vec<Difference>> {
        let report = verify(dir, &hash_opts(), progress);
        let m = Self::from_report(dir, &report)?;
        Ok((m, report))
    }
}

fn hash_opts() -> VerifyOptions {
    VerifyOptions {
        hash: true,
        ..VerifyOptions::default()
    }
}

/// Checks a keyed [`verify`] report (made with `VerifyOptions { hash: true, .. }`) against
/// `expected`: the comparison half of [`check`] in `Full` mode, for callers that also want
/// the report. Returns the accepted manifest.
///
/// # Errors
/// [`CheckError::Mismatch`] listing every difference.
pub fn check_report(
    dir: &CipherDir,
    report: &Report,
    expected: &Expected,
) -> Result<Manifest, CheckError> {
    let mismatch = |differences: Vec<Difference>| {
        CheckError::Mismatch(Mismatches {
            differences,
            expected: expected.digest(),
        })
    };
    let seen = observe_report(dir, report);
    match expected {
        Expected::Manifest(m) => {
            let mut diffs = compare(m, &seen, true);
            diffs.extend(seen.corrupt);
            if diffs.is_empty() {
                Ok(m.clone())
            } else {
                Err(mismatch(diffs))
            }
        }
        Expected::Digest(d) => {
            let m = seen.to_manifest().map_err(mismatch)?;
            let found = m.digest();
            if found == *d {
                Ok(m)
            } else {
                Err(mismatch(vec![Difference::Digest {
                    expected: *d,
                    found,
                }]))
            }
        }
    }
}

/// Checks `dir` against `expected` before anything is served from it.
///
/// `Full`: one keyed verify pass (every block authenticated and hashed, in parallel), then
/// every entry compared (missing, extra, type, size, content, file ID, symlink target,
/// creation parameters); any corruption also counts. `Structure`: listing, headers and
/// symlinks only (no content), so only a manifest pin can be checked.
///
/// # Errors
/// [`CheckError::Mismatch`] listing every difference, [`CheckError::DigestNeedsFullCheck`],
/// [`CheckError::Tree`] when the root cannot be listed.
pub fn check(
    dir: &CipherDir,
    expected: &Expected,
    mode: CheckMode,
    progress: &dyn Progress,
) -> Result<VerifiedTree, CheckError> {
    let mismatch = |differences: Vec<Difference>| {
        CheckError::Mismatch(Mismatches {
            differences,
            expected: expected.digest(),
        })
    };
    match mode {
        CheckMode::Full => {
            let mut report = verify(dir, &hash_opts(), progress);
            let manifest = check_report(dir, &report, expected)?;
            Ok(VerifiedTree {
                mode,
                digest: manifest.digest(),
                manifest,
                entries: std::mem::take(&mut report.entries),
            })
        }
        CheckMode::Structure => {
            let Expected::Manifest(m) = expected else {
                return Err(CheckError::DigestNeedsFullCheck);
            };
            let (seen, entries) = observe_structure(dir)?;
            let mut diffs = compare(m, &seen, false);
            diffs.extend(seen.corrupt);
            if !diffs.is_empty() {
                return Err(mismatch(diffs));
            }
            Ok(VerifiedTree {
                mode,
                digest: m.digest(),
                manifest: m.clone(),
                entries,
            })
        }
    }
}
