//! `ccmount._native.Dir`: one opened cipher directory (key, optional pin) and the calls the
//! Python `ccmount.Dir` wraps: list, read a whole file, open a file for random access,
//! verify.
//!
//! Mirrors the agent's open path (`agent/src/keys.rs` → `CipherDir::open`, then
//! `agent/src/pin.rs` → `manifest::check`), without a process-wide state: every `Dir` has
//! its own key and, for `kbs:///`, its own attested session shared by its key and its pin.
//! The GIL is released for everything slow (scrypt, the KBS, the pin check, decryption).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gocryptfs_format::manifest::{
    CheckMode, EntryKind, Expected, MAX_MANIFEST_LEN, VerifiedTree, check,
};
use gocryptfs_format::verify::{VerifyOptions, verify};
use gocryptfs_format::{
    CipherDir, CipherFile, Entry, FileKind, KeySource, NoProgress, OpenOptions,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sha2::{Digest as _, Sha256};

use crate::errors::{Failure, Result};
use crate::file::{NativeFile, read_parallel};
use crate::keys::{self, KbsSession, KbsSettings, KeyFormat};

/// Symlinks followed inside the tree before giving up (a loop).
const MAX_LINK_HOPS: usize = 8;

/// An open tree and what it was accepted as.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) dir: CipherDir,
    /// The pin check's result, when opened with `expect`.
    pin: Option<VerifiedTree>,
}

/// The Python class `ccmount._native.Dir`. `close()` drops the key (zeroized); files opened
/// before keep their own reference until they are closed.
#[pyclass(frozen, module = "ccmount._native", name = "Dir")]
#[derive(Debug)]
pub(crate) struct NativeDir {
    inner: RwLock<Option<Arc<Opened>>>,
}

/// The key and pin arguments of `open_dir`, checked before any work.
struct Request {
    root: PathBuf,
    passfile: Option<PathBuf>,
    masterkey_file: Option<PathBuf>,
    key: Option<String>,
    key_format: KeyFormat,
    kbs: Option<KbsSettings>,
    expect: Option<String>,
    expect_mode: CheckMode,
    allow_holes: bool,
}

impl Request {
    /// Opens the tree: key (file or KBS), then the pin (same KBS session).
    fn open(self) -> Result<Opened> {
        let mut session: Option<KbsSession> = None;
        // The pin first (a kbs:/// pin shares the session with the key), as the agent.
        let expected = match self.expect.as_deref().map(str::trim) {
            None => None,
            Some(spec) if spec.starts_with("sha256:") => Some(parse_pin(spec.as_bytes(), spec)?),
            Some(spec) if spec.starts_with("kbs:") => {
                let uri = keys::parse_uri(spec)?;
                let secret = session_for(&mut session, &self.kbs, "expect")?
                    .get(&uri, "the pinned manifest")?;
                Some(parse_pin(secret.expose(), spec)?)
            }
            Some(spec) => {
                let bytes = read_limited(Path::new(spec), MAX_MANIFEST_LEN)?;
                Some(parse_pin(&bytes, spec)?)
            }
        };
        let key = match (&self.passfile, &self.masterkey_file, &self.key) {
            (Some(p), None, None) => keys::from_passfile(p)?,
            (None, Some(p), None) => keys::from_masterkey_file(p)?,
            (None, None, Some(k)) if k.starts_with("kbs:") => {
                let uri = keys::parse_uri(k)?;
                let secret = session_for(&mut session, &self.kbs, "key")?.get(&uri, "the key")?;
                keys::from_resource(secret.expose(), self.key_format, k)?
            }
            (None, None, Some(_)) => {
                // The value is not echoed: someone may have passed a password here.
                return Err(Failure::Usage(
                    "key= takes a kbs:///REPO/TYPE/TAG resource (the value given is not shown); use passfile= or masterkey_file= for a file".into(),
                ));
            }
            (None, None, None) => {
                return Err(Failure::Usage(
                    "no key: pass passfile=, masterkey_file= or key=\"kbs:///…\"".into(),
                ));
            }
            _ => {
                return Err(Failure::Usage(
                    "pass only one of passfile=, masterkey_file= and key=".into(),
                ));
            }
        };
        drop(session);
        let mut opts = OpenOptions::default();
        opts.policy.allow_holes = self.allow_holes;
        let dir = open_with(&self.root, key, &opts)?;
        let pin = match expected {
            None => None,
            Some(e) => {
                Some(check(&dir, &e, self.expect_mode, &NoProgress).map_err(Failure::from_check)?)
            }
        };
        Ok(Opened { dir, pin })
    }
}

/// The open's KBS session, built on first use.
fn session_for<'a>(
    slot: &'a mut Option<KbsSession>,
    kbs: &Option<KbsSettings>,
    what: &str,
) -> Result<&'a mut KbsSession> {
    if slot.is_none() {
        let s = kbs.as_ref().ok_or_else(|| {
            Failure::Usage(format!("{what} is a kbs:/// resource: pass kbs_url="))
        })?;
        *slot = Some(KbsSession::new(s)?);
    }
    slot.as_mut()
        .ok_or_else(|| Failure::Usage("internal: no KBS session".into()))
}

fn open_with(root: &Path, key: KeySource, opts: &OpenOptions) -> Result<CipherDir> {
    Ok(CipherDir::open(root, key, opts)?)
}

fn parse_pin(bytes: &[u8], from: &str) -> Result<Expected> {
    Expected::parse(bytes).map_err(|e| {
        Failure::Usage(format!(
            "expect={from:?}: not a ccmount manifest or sha256:<digest>: {e}"
        ))
    })
}

fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let shown = gocryptfs_format::escape::escaped(path);
    let f = std::fs::File::open(path)
        .map_err(|e| Failure::Usage(format!("opening manifest {shown}: {e}")))?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::Usage(format!("reading manifest {shown}: {e}")))?;
    if buf.len() > max {
        return Err(Failure::Usage(format!(
            "manifest {shown} is larger than {max} bytes"
        )));
    }
    Ok(buf)
}

/// A plaintext path as the user wrote it ("a/b", "/a/b", "./a"), relative; `..` refused.
fn relative(path: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Failure::Usage(format!(
                    "{path:?}: paths are relative to the tree's root and may not contain '..'"
                )));
            }
        }
    }
    Ok(out)
}

impl Opened {
    /// Resolves `path`, following symlinks that stay inside the tree.
    fn resolve(&self, path: &Path) -> Result<Entry> {
        let mut path = path.to_path_buf();
        for _ in 0..=MAX_LINK_HOPS {
            let entry = self.dir.resolve(&path).map_err(|e| match e {
                gocryptfs_format::Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Failure::NotFound(path.clone())
                }
                e => Failure::Format(e),
            })?;
            if entry.kind != FileKind::Symlink {
                return Ok(entry);
            }
            let target = PathBuf::from(self.dir.read_link(&entry)?);
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            path = inside(&base, &target).ok_or_else(|| {
                Failure::NotAFile(format!(
                    "{}: a symlink to {} outside the tree; open the file it names",
                    gocryptfs_format::escape::escaped(&path),
                    gocryptfs_format::escape::escaped(&target)
                ))
            })?;
        }
        Err(Failure::NotAFile(format!(
            "{}: more than {MAX_LINK_HOPS} symlinks in a row",
            gocryptfs_format::escape::escaped(&path)
        )))
    }

    /// Opens the regular file at `path` and holds it to the pin (type, size, file ID).
    pub(crate) fn open_file(&self, path: &Path) -> Result<(PathBuf, CipherFile)> {
        let entry = self.resolve(path)?;
        if entry.kind != FileKind::File {
            return Err(Failure::NotAFile(format!(
                "{}: not a regular file",
                gocryptfs_format::escape::escaped(path)
            )));
        }
        let file = self.dir.open_file(&entry)?;
        if let Some(pin) = &self.pin {
            let differs = |what: &str| Failure::Pin {
                message: format!(
                    "{}: {what}; the model is not the pinned one",
                    gocryptfs_format::escape::escaped(&entry.plain_path)
                ),
                differences: vec![what.to_owned()],
            };
            let Some(EntryKind::File(want)) = pin.pinned(&entry.plain_path).map(|e| &e.kind) else {
                return Err(differs("not a file of the pinned manifest"));
            };
            if want.size != file.plain_size() {
                return Err(differs("its size differs from the pinned one"));
            }
            if want.file_id != file.file_id() {
                return Err(differs(
                    "its file ID differs from the pinned one (another file)",
                ));
            }
        }
        Ok((entry.plain_path, file))
    }

    /// The pinned SHA-256 of `path`, if opened with a pin.
    fn pinned_sha256(&self, path: &Path) -> Option<[u8; 32]> {
        match self.pin.as_ref()?.pinned(path).map(|e| &e.kind) {
            Some(EntryKind::File(f)) => Some(f.sha256),
            _ => None,
        }
    }
}

/// `base/target` normalised, if it stays inside the tree (relative target, no escape).
fn inside(base: &Path, target: &Path) -> Option<PathBuf> {
    let mut parts: Vec<OsString> = Vec::new();
    if target.is_absolute() {
        return None;
    }
    for c in base.components().chain(target.components()) {
        match c {
            Component::Normal(n) => parts.push(n.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

impl NativeDir {
    fn opened(&self) -> Result<Arc<Opened>> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(Failure::Closed("the directory"))
    }
}

#[pymethods]
impl NativeDir {
    /// Opens a cipher directory. See `ccmount.open_dir` for the arguments.
    #[new]
    #[pyo3(signature = (
        path, *, passfile=None, masterkey_file=None, key=None, key_format="password",
        kbs_url=None, kbs_cert=None, tee="auto", kbs_timeout=30.0, insecure_http=false,
        expect=None, expect_mode="full", allow_holes=false
    ))]
    #[allow(
        clippy::too_many_arguments,
        reason = "keyword arguments of a Python constructor"
    )]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        passfile: Option<PathBuf>,
        masterkey_file: Option<PathBuf>,
        key: Option<String>,
        key_format: &str,
        kbs_url: Option<String>,
        kbs_cert: Option<PathBuf>,
        tee: &str,
        kbs_timeout: f64,
        insecure_http: bool,
        expect: Option<String>,
        expect_mode: &str,
        allow_holes: bool,
    ) -> PyResult<Self> {
        let expect_mode = match expect_mode {
            "full" => CheckMode::Full,
            "structure" => CheckMode::Structure,
            other => {
                return Err(Failure::Usage(format!(
                    "expect_mode={other:?}: use \"full\" (every block hashed) or \"structure\""
                ))
                .into());
            }
        };
        if !(kbs_timeout.is_finite() && kbs_timeout > 0.0 && kbs_timeout < 86_400.0) {
            return Err(
                Failure::Usage("kbs_timeout must be between 0 and 86400 seconds".into()).into(),
            );
        }
        let req = Request {
            root: path,
            passfile,
            masterkey_file,
            key,
            key_format: KeyFormat::parse(key_format)?,
            kbs: kbs_url.map(|url| KbsSettings {
                url,
                cert: kbs_cert,
                tee: tee.to_owned(),
                timeout: Duration::from_secs_f64(kbs_timeout),
                insecure_http,
            }),
            expect,
            expect_mode,
            allow_holes,
        };
        let opened = py.detach(|| req.open())?;
        Ok(NativeDir {
            inner: RwLock::new(Some(Arc::new(opened))),
        })
    }

    /// Drops this object's reference to the key (zeroized once no open file holds it).
    fn close(&self) {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none()
    }

    /// The accepted model digest (`sha256:…`) when opened with `expect`, else None.
    #[getter]
    fn pinned_digest(&self) -> PyResult<Option<String>> {
        Ok(self.opened()?.pin.as_ref().map(|p| p.digest.to_string()))
    }

    /// `[(name, type, size)]` of a directory, sorted by name; type is "file", "dir",
    /// "symlink" or "other"; size is the plaintext size of files.
    fn listdir(&self, py: Python<'_>, path: &str) -> PyResult<Vec<(OsString, &'static str, u64)>> {
        let o = self.opened()?;
        let rel = relative(path)?;
        let out = py.detach(|| -> Result<_> {
            let entry = o.resolve(&rel)?;
            if entry.kind != FileKind::Dir {
                return Err(Failure::NotAFile(format!(
                    "{}: not a directory",
                    gocryptfs_format::escape::escaped(&rel)
                )));
            }
            let listing = o.dir.read_dir(&entry)?;
            Ok(listing
                .entries
                .into_iter()
                .map(|e| {
                    let kind = match e.kind {
                        FileKind::File => "file",
                        FileKind::Dir => "dir",
                        FileKind::Symlink => "symlink",
                        FileKind::Other => "other",
                    };
                    (e.name, kind, e.plain_size)
                })
                .collect())
        })?;
        Ok(out)
    }

    /// The whole plaintext of a file as `bytes`; with a pin, also held to its SHA-256.
    fn read<'py>(&self, py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyBytes>> {
        let o = self.opened()?;
        let rel = relative(path)?;
        let (plain, file) = py.detach(|| o.open_file(&rel))?;
        let len = usize::try_from(file.plain_size())
            .map_err(|_| Failure::Usage("the file is too large for this machine".into()))?;
        let want = o.pinned_sha256(&plain);
        PyBytes::new_with(py, len, |buf| {
            py.detach(|| -> Result<()> {
                read_parallel(&file, 0, buf)?;
                if let Some(want) = want
                    && Sha256::digest(&*buf).as_slice() != want
                {
                    buf.fill(0);
                    return Err(Failure::Pin {
                        message: format!(
                            "{}: the bytes read differ from the pinned SHA-256; the model is not the pinned one",
                            gocryptfs_format::escape::escaped(&plain)
                        ),
                        differences: vec!["content differs from the pinned SHA-256".into()],
                    });
                }
                Ok(())
            })
            .map_err(PyErr::from)
        })
    }

    /// Opens a file for random access (`ccmount.SafeOpen` and `Dir.open` use it).
    fn open(&self, py: Python<'_>, path: &str) -> PyResult<NativeFile> {
        let o = self.opened()?;
        let rel = relative(path)?;
        let (plain, file) = py.detach(|| o.open_file(&rel))?;
        Ok(NativeFile::new(plain, file, o))
    }

    /// Verifies every block, name and xattr; returns the report as JSON text (the shape of
    /// `ccmount verify --json`, docs/schemas/verify-report.schema.json).
    fn verify(&self, py: Python<'_>) -> PyResult<String> {
        let o = self.opened()?;
        let text = py.detach(|| {
            let report = verify(&o.dir, &VerifyOptions::default(), &NoProgress);
            report.to_json().to_string()
        });
        Ok(text)
    }
}
