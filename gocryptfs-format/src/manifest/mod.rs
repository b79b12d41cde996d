//! Whole-model manifests: the canonical JSON description of a plaintext tree (every entry's
//! path, type, size, plaintext SHA-256, symlink target and gocryptfs file ID, plus the
//! tree's creation parameters), and the **model digest**, the SHA-256 of those canonical
//! bytes. Format and rationale: `docs/manifests.md`.
//!
//! gocryptfs authenticates each block and binds it to its file ID and position, but binds
//! neither a file's content to its name, nor a file to the tree, nor a file's length
//! (gocryptfs has no counterpart to this module). A manifest closes that: [`check()`]
//! compares a tree against one and names every difference.
//!
//! Canonical form: RFC 8785 (JCS) serialisation of the document followed by one `\n`;
//! entries sorted by the bytes of their path; optional fields absent rather than `null`;
//! integers only (below 2^53). [`Manifest::parse`] accepts **only** canonical bytes, so one
//! model has exactly one manifest file and `sha256sum manifest.json` prints its digest.
//! Not here: signatures over the file ([`signature`]), fetching pins (the agent).

pub mod check;
pub mod signature;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::cipherdir::CipherDir;
use crate::configfile::NameLayout;
use crate::contentenc::FileId;

pub use check::{
    CheckError, CheckMode, Difference, Expected, Mismatches, VerifiedTree, check, check_report,
};

/// Schema identifier of a manifest (`"schema"` member).
pub const SCHEMA: &str = "ccmount.manifest/v2";
/// Largest manifest [`Manifest::parse`] reads (about a million entries).
pub const MAX_MANIFEST_LEN: usize = 256 << 20;
/// Integers above this are not exact in every JSON reader (IEEE doubles).
const MAX_JSON_INT: u64 = (1 << 53) - 1;

/// Why a manifest (or a pin) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Larger than [`MAX_MANIFEST_LEN`].
    #[error("larger than {MAX_MANIFEST_LEN} bytes")]
    TooLarge,
    /// The `schema` member is missing or names another format.
    #[error("schema {0:?} is not {SCHEMA}")]
    Schema(String),
    /// A member is missing, of the wrong type, or out of range.
    #[error("{at}: {reason}")]
    Invalid {
        /// Where (`params.scrypt`, `entries[3]`, ...).
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// Valid content, but not in canonical form (whitespace, key order, escapes, a
    /// trailing newline missing): re-write it with `ccmount manifest`.
    #[error(
        "not in canonical form (RFC 8785 JSON plus one newline); regenerate it from the tree instead of editing it"
    )]
    NotCanonical,
    /// A `sha256:<digest>` pin that is not 64 hex digits.
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    Digest(String),
}

fn invalid(at: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        at: at.into(),
        reason: reason.into(),
    }
}

/// The model digest: SHA-256 of a manifest's canonical bytes. Displays as
/// `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelDigest(pub [u8; 32]);

impl ModelDigest {
    /// The digest of `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        ModelDigest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for ModelDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ModelDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ModelDigest {
    type Err = ManifestError;

    /// `sha256:` followed by 64 hex digits (either case); surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || ManifestError::Digest(t.chars().take(80).collect());
        let hex_part = t.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(ModelDigest(out))
    }
}

/// scrypt parameters of the config (the salt is left out: it says nothing about the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScryptInfo {
    /// log2 of N.
    pub log2_n: u8,
    /// Block size R.
    pub r: u32,
    /// Parallelism P.
    pub p: u32,
}

/// The tree's creation parameters (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Content encryption, as gocryptfs `-info` names it (`AES-GCM-256`, ...).
    pub content: String,
    /// Feature flags, sorted.
    pub feature_flags: Vec<String>,
    /// `LongNameMax` when the config sets it.
    pub long_name_max: Option<u8>,
    /// scrypt parameters; `None` for a tree opened by master key without a config.
    pub scrypt: Option<ScryptInfo>,
}

impl Params {
    /// The parameters of an open tree.
    #[must_use]
    pub fn of(dir: &CipherDir) -> Self {
        let layout = dir.layout();
        let (mut feature_flags, long_name_max, scrypt) = match dir.config() {
            Some(c) => (
                c.flags.canonical_names(),
                c.long_name_max,
                Some(ScryptInfo {
                    log2_n: c.scrypt.log_n,
                    r: c.scrypt.r,
                    p: c.scrypt.p,
                }),
            ),
            None => {
                let lnm = match layout.names {
                    NameLayout::Encrypted { long_name_max, .. } if long_name_max != 255 => {
                        Some(long_name_max)
                    }
                    _ => None,
                };
                (layout.flags().canonical_names(), lnm, None)
            }
        };
        feature_flags.sort();
        Params {
            content: layout.content.name().to_owned(),
            feature_flags,
            long_name_max,
            scrypt,
        }
    }
}

/// A regular file's pinned facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePin {
    /// Plaintext size.
    pub size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
    /// gocryptfs file ID from the header (`None` for an empty file, which has no header).
    pub file_id: Option<FileId>,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File(FilePin),
    /// A directory.
    Dir,
    /// A symbolic link and its plaintext target.
    Symlink(OsString),
    /// A FIFO, socket or device node.
    Other,
}

impl EntryKind {
    /// The JSON `type` name.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            EntryKind::File(_) => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink(_) => "symlink",
            EntryKind::Other => "other",
        }
    }
}

/// One entry of the plaintext tree (the root itself is not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Plaintext path relative to the root (bytes; may be non-UTF-8).
    pub path: PathBuf,
    /// Type and type-specific facts.
    pub kind: EntryKind,
}

/// Which model and which release of it a manifest describes: set by the owner when writing
/// the manifest, so it is inside what a signature covers. A signed pin is then bound to a
/// model name and can be held to a minimum version (no rollback to an older signed release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    /// The model's name (1..=128 printable characters).
    pub name: String,
    /// Its release number; the owner raises it with every release.
    pub version: u64,
}

impl ModelId {
    /// Checks a name and version for a manifest.
    ///
    /// # Errors
    /// [`ManifestError::Invalid`] for an empty, too long or non-printable name, or a version
    /// above 2^53 - 1.
    pub fn new(name: &str, version: u64) -> Result<Self, ManifestError> {
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(invalid(
                "model.name",
                "must be 1..=128 characters without control characters",
            ));
        }
        if version > MAX_JSON_INT {
            return Err(invalid("model.version", "above 2^53 - 1"));
        }
        Ok(ModelId {
            name: name.to_owned(),
            version,
        })
    }
}

/// A parsed, valid manifest: entries strictly sorted by path bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Creation parameters.
    pub params: Params,
    /// The model name and release, when the owner set them.
    pub model: Option<ModelId>,
    /// Every entry, sorted by the bytes of its path, no duplicates.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Builds a manifest from entries in any order.
    ///
    /// # Errors
    /// [`ManifestError::Invalid`] for a duplicate or malformed path.
    pub fn new(params: Params, mut entries: Vec<ManifestEntry>) -> Result<Self, ManifestError> {
        entries.sort_by(|a, b| {
            a.path
                .as_os_str()
                .as_bytes()
                .cmp(b.path.as_os_str().as_bytes())
        });
        for (i, e) in entries.iter().enumerate() {
            check_path(e.path.as_os_str().as_bytes()).map_err(|r| invalid(lossy(&e.path), r))?;
            if i > 0
                && entries
                    .get(i - 1)
                    .is_some_and(|p| p.path.as_os_str() == e.path.as_os_str())
            {
                return Err(invalid(lossy(&e.path), "listed twice"));
            }
        }
        Ok(Manifest {
            params,
            model: None,
            entries,
        })
    }

    /// The same manifest, describing model `model` (a different manifest, digest and
    /// signature).
    #[must_use]
    pub fn with_model(mut self, model: Option<ModelId>) -> Self {
        self.model = model;
        self
    }

    /// The manifest as a JSON value (canonical member set; see [`Manifest::to_canonical`]).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut params = Map::new();
        params.insert("content".into(), json!(self.params.content));
        params.insert("feature_flags".into(), json!(self.params.feature_flags));
        if let Some(n) = self.params.long_name_max {
            params.insert("long_name_max".into(), json!(n));
        }
        if let Some(s) = self.params.scrypt {
            params.insert(
                "scrypt".into(),
                json!({"log2_n": s.log2_n, "r": s.r, "p": s.p}),
            );
        }
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut o = Map::new();
                put_bytes(&mut o, "path", e.path.as_os_str().as_bytes());
                o.insert("type".into(), json!(e.kind.type_name()));
                match &e.kind {
                    EntryKind::File(f) => {
                        o.insert("size".into(), json!(f.size));
                        o.insert("sha256".into(), json!(hex::encode(f.sha256)));
                        if let Some(id) = &f.file_id {
                            o.insert("file_id".into(), json!(id.to_hex()));
                        }
                    }
                    EntryKind::Symlink(t) => put_bytes(&mut o, "target", t.as_bytes()),
                    EntryKind::Dir | EntryKind::Other => {}
                }
                Value::Object(o)
            })
            .collect();
        let mut doc = json!({
            "schema": SCHEMA,
            "params": Value::Object(params),
            "entries": entries,
        });
        if let (Some(m), Some(o)) = (&self.model, doc.as_object_mut()) {
            o.insert(
                "model".into(),
                json!({"name": m.name, "version": m.version}),
            );
        }
        doc
    }

    /// The canonical bytes: RFC 8785 JSON followed by one `\n`. What is written to disk
    /// and hashed into the [`ModelDigest`].
    #[must_use]
    pub fn to_canonical(&self) -> Vec<u8> {
        // Serialising a `Value` of strings, small integers, arrays and objects cannot fail.
        let mut out = serde_json_canonicalizer::to_vec(&self.to_json()).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The model digest.
    #[must_use]
    pub fn digest(&self) -> ModelDigest {
        ModelDigest::of(&self.to_canonical())
    }

    /// The entry at `path`, if listed.
    #[must_use]
    pub fn get(&self, path: &Path) -> Option<&ManifestEntry> {
        let key = path.as_os_str().as_bytes();
        self.entries
            .binary_search_by(|e| e.path.as_os_str().as_bytes().cmp(key))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Parses a manifest file. Only canonical bytes are accepted (see the module docs).
    ///
    /// # Errors
    /// [`ManifestError`] naming the first problem.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m = Self::parse_lenient(bytes)?;
        if m.to_canonical() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(m)
    }

    /// Parses the content without the canonical-bytes check (strict on structure).
    fn parse_lenient(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge);
        }
        let v: Value = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        let mut top = Obj::new(v, "manifest")?;
        let schema = top.string("schema")?;
        if schema != SCHEMA {
            return Err(ManifestError::Schema(schema.chars().take(80).collect()));
        }
        let mut p = Obj::new(top.take("params")?, "params")?;
        let content = p.string("content")?;
        let flags = match p.take("feature_flags")? {
            Value::Array(a) => a
                .into_iter()
                .map(|f| match f {
                    Value::String(s) => Ok(s),
                    _ => Err(invalid("params.feature_flags", "not a string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(invalid("params.feature_flags", "not an array")),
        };
        if flags.windows(2).any(|w| w.first() >= w.get(1)) {
            return Err(invalid("params.feature_flags", "not sorted and unique"));
        }
        let long_name_max = match p.opt("long_name_max") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| invalid("params.long_name_max", "not an integer 0..=255"))?,
            ),
        };
        let scrypt = match p.opt("scrypt") {
            None => None,
            Some(v) => {
                let mut s = Obj::new(v, "params.scrypt")?;
                let log2_n = u8::try_from(s.int("log2_n")?)
                    .map_err(|_| invalid("params.scrypt.log2_n", "out of range"))?;
                let r = u32::try_from(s.int("r")?)
                    .map_err(|_| invalid("params.scrypt.r", "out of range"))?;
                let p_ = u32::try_from(s.int("p")?)
                    .map_err(|_| invalid("params.scrypt.p", "out of range"))?;
                s.done()?;
                Some(ScryptInfo { log2_n, r, p: p_ })
            }
        };
        p.done()?;
        let model = match top.opt("model") {
            None => None,
            Some(v) => {
                let mut m = Obj::new(v, "model")?;
                let name = m.string("name")?;
                let version = m.int("version")?;
                m.done()?;
                Some(ModelId::new(&name, version)?)
            }
        };
        let raw_entries = match top.take("entries")? {
            Value::Array(a) => a,
            _ => return Err(invalid("entries", "not an array")),
        };
        top.done()?;
        let mut entries = Vec::with_capacity(raw_entries.len());
        for (i, v) in raw_entries.into_iter().enumerate() {
            let at = format!("entries[{i}]");
            let e = parse_entry(v, &at)?;
            if let Some(prev) = entries.last().map(|p: &ManifestEntry| p.path.as_os_str())
                && prev.as_bytes() >= e.path.as_os_str().as_bytes()
            {
                return Err(invalid(
                    at,
                    "entries not sorted by path, or a path listed twice",
                ));
            }
            entries.push(e);
        }
        Ok(Manifest {
            params: Params {
                content,
                feature_flags: flags,
                long_name_max,
                scrypt,
            },
            model,
            entries,
        })
    }
}

fn parse_entry(v: Value, at: &str) -> Result<ManifestEntry, ManifestError> {
    let mut o = Obj::new(v, at)?;
    let path = o.bytes("path")?;
    check_path(&path).map_err(|r| invalid(format!("{at}.path"), r))?;
    let ty = o.string("type")?;
    let kind = match ty.as_str() {
        "file" => {
            let size = o.int("size")?;
            let sha = o.string("sha256")?;
            let mut sha256 = [0u8; 32];
            if sha.len() != 64 || hex::decode_to_slice(&sha, &mut sha256).is_err() {
                return Err(invalid(format!("{at}.sha256"), "not 64 hex digits"));
            }
            let file_id = match o.opt("file_id") {
                None => None,
                Some(Value::String(s)) => {
                    let mut id = [0u8; 16];
                    if s.len() != 32 || hex::decode_to_slice(&s, &mut id).is_err() {
                        return Err(invalid(format!("{at}.file_id"), "not 32 hex digits"));
                    }
                    Some(FileId(id))
                }
                Some(_) => return Err(invalid(format!("{at}.file_id"), "not a string")),
            };
            if size > 0 && file_id.is_none() {
                return Err(invalid(
                    format!("{at}.file_id"),
                    "missing: every non-empty file has a file ID",
                ));
            }
            EntryKind::File(FilePin {
                size,
                sha256,
                file_id,
            })
        }
        "dir" => EntryKind::Dir,
        "other" => EntryKind::Other,
        "symlink" => {
            let t = o.bytes("target")?;
            if t.is_empty() || t.contains(&0) {
                return Err(invalid(format!("{at}.target"), "empty or contains NUL"));
            }
            EntryKind::Symlink(OsString::from_vec(t))
        }
        _ => {
            return Err(invalid(
                format!("{at}.type"),
                "not file, dir, symlink or other",
            ));
        }
    };
    o.done()?;
    Ok(ManifestEntry {
        path: PathBuf::from(OsString::from_vec(path)),
        kind,
    })
}

/// A relative path of normal components only: no empty, `.`, `..` or NUL.
fn check_path(p: &[u8]) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty path");
    }
    if p.contains(&0) {
        return Err("path contains NUL");
    }
    if p.first() == Some(&b'/') || p.last() == Some(&b'/') {
        return Err("path must be relative, without a trailing slash");
    }
    for c in p.split(|b| *b == b'/') {
        if c.is_empty() || c == b"." || c == b".." {
            return Err("path has an empty, `.` or `..` component");
        }
    }
    // Belt and braces: the std parser agrees it is plain components.
    if !Path::new(OsStr::from_bytes(p))
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err("path is not relative");
    }
    Ok(())
}

/// `key` as a UTF-8 string, or `key_b64` as standard base64 when not UTF-8.
fn put_bytes(o: &mut Map<String, Value>, key: &str, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => {
            o.insert(key.to_owned(), json!(s));
        }
        Err(_) => {
            o.insert(format!("{key}_b64"), json!(STANDARD.encode(b)));
        }
    }
}

pub(crate) fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A JSON object being taken apart; [`Obj::done`] refuses leftover members.
struct Obj {
    map: Map<String, Value>,
    at: String,
}

impl Obj {
    fn new(v: Value, at: &str) -> Result<Self, ManifestError> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                at: at.to_owned(),
            }),
            _ => Err(invalid(at, "not an object")),
        }
    }

    fn opt(&mut self, k: &str) -> Option<Value> {
        self.map.remove(k)
    }

    fn take(&mut self, k: &str) -> Result<Value, ManifestError> {
        self.map
            .remove(k)
            .ok_or_else(|| invalid(format!("{}.{k}", self.at), "missing"))
    }

    fn string(&mut self, k: &str) -> Result<String, ManifestError> {
        match self.take(k)? {
            Value::String(s) => Ok(s),
            _ => Err(invalid(format!("{}.{k}", self.at), "not a string")),
        }
    }

    fn int(&mut self, k: &str) -> Result<u64, ManifestError> {
        self.take(k)?
            .as_u64()
            .filter(|n| *n <= MAX_JSON_INT)
            .ok_or_else(|| {
                invalid(
                    format!("{}.{k}", self.at),
                    "not a non-negative integer below 2^53",
                )
            })
    }

    /// `k` (UTF-8) or `k_b64` (base64 of non-UTF-8 bytes), exactly one.
    fn bytes(&mut self, k: &str) -> Result<Vec<u8>, ManifestError> {
        let b64_key = format!("{k}_b64");
        match (self.map.remove(k), self.map.remove(&b64_key)) {
            (Some(Value::String(s)), None) => Ok(s.into_bytes()),
            (None, Some(Value::String(s))) => {
                let b = STANDARD
                    .decode(s.as_bytes())
                    .map_err(|_| invalid(format!("{}.{b64_key}", self.at), "not base64"))?;
                if std::str::from_utf8(&b).is_ok() {
                    return Err(invalid(
                        format!("{}.{b64_key}", self.at),
                        "valid UTF-8 belongs in the plain member",
                    ));
                }
                Ok(b)
            }
            (None, None) => Err(invalid(format!("{}.{k}", self.at), "missing")),
            _ => Err(invalid(
                format!("{}.{k}", self.at),
                "give exactly one of the string and the _b64 member",
            )),
        }
    }

    fn done(self) -> Result<(), ManifestError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(invalid(format!("{}.{k}", self.at), "unknown member")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn params() -> Params {
        Params {
            content: "AES-GCM-256".into(),
            feature_flags: vec!["DirIV".into(), "GCMIV128".into(), "HKDF".into()],
            long_name_max: None,
            scrypt: Some(ScryptInfo {
                log2_n: 16,
                r: 8,
                p: 1,
            }),
        }
    }

    fn sample() -> Manifest {
        Manifest::new(
            params(),
            vec![
                ManifestEntry {
                    path: "b/x.bin".into(),
                    kind: EntryKind::File(FilePin {
                        size: 5000,
                        sha256: [1; 32],
                        file_id: Some(FileId([2; 16])),
                    }),
                },
                ManifestEntry {
                    path: "b".into(),
                    kind: EntryKind::Dir,
                },
                ManifestEntry {
                    path: "a-link".into(),
                    kind: EntryKind::Symlink("b/x.bin".into()),
                },
                ManifestEntry {
                    path: PathBuf::from(OsString::from_vec(b"n\xff".to_vec())),
                    kind: EntryKind::File(FilePin {
                        size: 0,
                        sha256: Sha256::digest(b"").into(),
                        file_id: None,
                    }),
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn model_id_is_part_of_the_signed_bytes() {
        let plain = sample();
        let tagged = sample().with_model(Some(ModelId::new("llama-3-8b", 7).unwrap()));
        let bytes = tagged.to_canonical();
        assert!(
            String::from_utf8_lossy(&bytes)
                .contains(r#""model":{"name":"llama-3-8b","version":7}"#)
        );
        let back = Manifest::parse(&bytes).unwrap();
        assert_eq!(back, tagged);
        assert_ne!(tagged.digest(), plain.digest());
        assert!(
            Manifest::parse(&plain.to_canonical())
                .unwrap()
                .model
                .is_none()
        );
        assert!(ModelId::new("", 1).is_err());
        assert!(ModelId::new("a\nb", 1).is_err());
        assert!(ModelId::new(&"x".repeat(129), 1).is_err());
        assert!(ModelId::new("m", 1 << 60).is_err());
        // Unknown members of `model` are refused.
        let text = String::from_utf8(bytes)
            .unwrap()
            .replace(r#""version":7}"#, r#""version":7,"x":1}"#);
        assert!(Manifest::parse(text.as_bytes()).is_err());
    }

    #[test]
    fn canonical_round_trip_and_digest() {
        let m = sample();
        let bytes = m.to_canonical();
        assert_eq!(bytes.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with("{\"entries\":[{\"path\":\"a-link\""),
            "{text}"
        );
        assert!(text.contains("\"path_b64\":\"bv8=\""));
        let again = Manifest::parse(&bytes).unwrap();
        assert_eq!(again, m);
        assert_eq!(m.digest(), ModelDigest::of(&bytes));
        assert!(m.digest().to_string().starts_with("sha256:"));
        assert_eq!(
            m.digest().to_string().parse::<ModelDigest>().unwrap(),
            m.digest()
        );
        // Sorted by bytes: "b" < "b/x.bin" < "n\xff".
        assert_eq!(m.entries[1].path, Path::new("b"));
        assert!(m.get(Path::new("b/x.bin")).is_some());
        assert!(m.get(Path::new("c")).is_none());
    }

    #[test]
    fn non_canonical_and_hostile_inputs_are_refused() {
        let m = sample();
        let bytes = m.to_canonical();
        // Pretty-printed: same content, not canonical.
        let pretty = serde_json::to_vec_pretty(&m.to_json()).unwrap();
        assert!(matches!(
            Manifest::parse(&pretty),
            Err(ManifestError::NotCanonical)
        ));
        // Missing trailing newline.
        assert!(matches!(
            Manifest::parse(&bytes[..bytes.len() - 1]),
            Err(ManifestError::NotCanonical)
        ));
        let cases: &[(&str, &str)] = &[
            ("", "JSON"),
            ("[]", "not an object"),
            (
                r#"{"schema":"ccmount.manifest/v1","params":{},"entries":[]}"#,
                "schema",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[],"x":1}"#,
                "unknown member",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":["b","a"]},"entries":[]}"#,
                "sorted",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"../a","type":"dir"}]}"#,
                "component",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"/a","type":"dir"}]}"#,
                "relative",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"b","type":"dir"},{"path":"a","type":"dir"}]}"#,
                "sorted",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","type":"dir"},{"path":"a","type":"dir"}]}"#,
                "twice",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","type":"file","size":1.5,"sha256":"00"}]}"#,
                "integer",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","type":"file","size":9007199254740992,"sha256":"00"}]}"#,
                "2^53",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","type":"file","size":1,"sha256":"00"}]}"#,
                "64 hex",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","type":"file","size":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
                "file ID",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","type":"fifo"}]}"#,
                "type",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","path_b64":"YQ==","type":"dir"}]}"#,
                "exactly one",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path_b64":"YQ==","type":"dir"}]}"#,
                "UTF-8",
            ),
            (
                r#"{"schema":"ccmount.manifest/v2","params":{"content":"x","feature_flags":[]},"entries":[{"path":"a","type":"symlink","target":""}]}"#,
                "empty",
            ),
        ];
        for (input, want) in cases {
            let e = Manifest::parse(input.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn digests_parse_strictly() {
        assert!("sha256:00".parse::<ModelDigest>().is_err());
        assert!("md5:00".parse::<ModelDigest>().is_err());
        let d = format!("sha256:{}", "AB".repeat(32));
        assert_eq!(d.parse::<ModelDigest>().unwrap().0, [0xab; 32]);
    }

    proptest! {
        #[test]
        fn generated_manifests_round_trip(
            names in proptest::collection::btree_set(proptest::collection::vec(1u8..=255, 1..12), 0..20),
            sizes in proptest::collection::vec(0u64..MAX_JSON_INT, 20),
        ) {
            let entries: Vec<ManifestEntry> = names
                .into_iter()
                .filter(|n| !n.contains(&b'/') && n != b"." && n != b"..")
                .zip(sizes)
                .map(|(n, size)| ManifestEntry {
                    path: PathBuf::from(OsString::from_vec(n)),
                    kind: EntryKind::File(FilePin { size, sha256: [3; 32], file_id: Some(FileId([4; 16])) }),
                })
                .collect();
            let m = Manifest::new(params(), entries).unwrap();
            let bytes = m.to_canonical();
            prop_assert_eq!(Manifest::parse(&bytes).unwrap(), m);
            crate::internal::fuzzing::manifest(&bytes);
        }
    }
}
