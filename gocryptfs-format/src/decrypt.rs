//! Offline decryption of a whole cipher directory into a plaintext directory.
//!
//! There is no gocryptfs counterpart (gocryptfs needs a FUSE mount and `cp -a`); the format
//! rules come from the reader (`cipherdir`, `reader`). Output safety rules, from
//! `../shared/design/product.md`: every write is relative to a directory fd opened with
//! `O_NOFOLLOW` (never through a symlink, never outside OUTDIR, whatever the names are);
//! each file is written to a temp file and renamed into place only after every block
//! authenticated; a non-empty OUTDIR is refused unless `force`; modes, times, symlinks and
//! `user.*` xattrs are restored. Work is spread over the rayon pool across files and across
//! 1 MiB pieces of large files.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::Progress;
use crate::cipherdir::{CipherDir, Entry, FileKind};
use crate::contentenc::{PIECE_BLOCKS, PLAIN_BS};
use crate::cryptocore::fill_random;
use crate::error::{BlockError, BlockErrorKind, CorruptError, Error, ErrorKind, Result};
use crate::manifest::{EntryKind, Manifest};
use crate::reader::CipherFile;
use crate::walk::walk;

thread_local! {
    /// Per-thread (ciphertext, plaintext) piece buffers.
    static BUFS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Options for [`decrypt_tree`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecryptOptions {
    /// Write into a non-empty OUTDIR, replacing files and symlinks of the same name (and
    /// removing temporary files an interrupted run left there).
    pub force: bool,
    /// Set (from a signal handler) to stop: no new file or piece is started, and every
    /// temporary file of the files in progress is removed before returning.
    pub cancel: Option<&'static AtomicBool>,
}

impl DecryptOptions {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// The refusal of a cancelled run.
fn interrupted(path: &Path) -> Error {
    Error::refused(
        path,
        "interrupted before this file was complete (not written)",
    )
}

/// One problem met while decrypting.
#[derive(Debug)]
pub struct DecryptProblem {
    /// Plaintext path when known, else the cipher path.
    pub path: PathBuf,
    /// What went wrong.
    pub error: Error,
    /// Harmless (a skipped FIFO, a leftover temp file in the cipher tree).
    pub warning: bool,
}

/// What [`decrypt_tree`] did.
#[derive(Debug, Default)]
pub struct DecryptSummary {
    /// Files written.
    pub files: u64,
    /// Directories created or reused.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// All-zero (hole) blocks accepted as zeros (only with the `allow_holes` opt-in).
    pub holes: u64,
    /// Entries removed from OUTDIR because the pinned manifest does not list them (a
    /// pinned run with `force`).
    pub removed: u64,
    /// Problems; files with a problem were not written.
    pub problems: Vec<DecryptProblem>,
}

impl DecryptSummary {
    /// True when nothing but warnings was found.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.problems.iter().all(|p| p.warning)
    }

    /// `Ok(self)` if clean, else [`Error::Problems`] with the first real problem and the
    /// worst kind (corruption beats I/O beats the rest).
    ///
    /// # Errors
    /// [`Error::Problems`].
    pub fn into_result(mut self) -> Result<Self> {
        if self.is_ok() {
            return Ok(self);
        }
        let mut real: Vec<DecryptProblem> = Vec::new();
        self.problems.retain_mut(|p| {
            if p.warning {
                true
            } else {
                real.push(DecryptProblem {
                    path: std::mem::take(&mut p.path),
                    error: std::mem::replace(&mut p.error, Error::refused("", "")),
                    warning: false,
                });
                false
            }
        });
        let kind = worst_kind(real.iter().map(|p| p.error.kind()));
        let count = real.len();
        let first = real.into_iter().next().map_or_else(
            || Box::new(Error::refused("", "unknown")),
            |p| Box::new(p.error),
        );
        Err(Error::Problems { count, first, kind })
    }
}

/// The most serious of several error kinds.
#[must_use]
pub fn worst_kind(kinds: impl Iterator<Item = ErrorKind>) -> ErrorKind {
    let rank = |k: ErrorKind| match k {
        ErrorKind::WrongKey => 6,
        ErrorKind::Corrupt => 5,
        ErrorKind::BadCipherDir => 4,
        ErrorKind::Io => 3,
        ErrorKind::OutputExists => 2,
        _ => 1,
    };
    kinds.max_by_key(|k| rank(*k)).unwrap_or(ErrorKind::Corrupt)
}

/// Decrypts the whole tree of `dir` into `out` (created if absent).
///
/// Keeps going after a bad file or name and reports every problem in the summary; files
/// that fail are not written. Call [`DecryptSummary::into_result`] to turn problems into an
/// error.
///
/// # Errors
/// Only setup failures: [`Error::OutputNotEmpty`], [`Error::Refused`] (OUTDIR is a symlink
/// or not a directory), [`Error::Io`], or an unlistable cipher root.
pub fn decrypt_tree(
    dir: &CipherDir,
    out: &Path,
    opts: &DecryptOptions,
    progress: &dyn Progress,
) -> Result<DecryptSummary> {
    decrypt_impl(dir, out, opts, None, progress)
}

/// [`decrypt_tree`] that also holds every entry to `pin` while writing it, so that storage
/// changed after an earlier [`crate::manifest::check()`] cannot slip in: an entry not in the
/// manifest (or of another type) is not written; a file whose file ID or size differs is
/// not decrypted; a file whose decrypted content does not hash to the pinned SHA-256 (read
/// back from the temporary file) is not renamed into place; a symlink whose target differs
/// is not created; a pinned entry that is gone is a problem. Each is a
/// [`crate::CorruptError::Pin`] problem in the summary.
///
/// # Errors
/// As [`decrypt_tree`].
pub fn decrypt_tree_pinned(
    dir: &CipherDir,
    out: &Path,
    opts: &DecryptOptions,
    pin: &Manifest,
    progress: &dyn Progress,
) -> Result<DecryptSummary> {
    decrypt_impl(dir, out, opts, Some(pin), progress)
}

fn pin_error(path: &Path, what: impl Into<String>) -> Error {
    Error::corrupt(path, CorruptError::Pin(what.into()))
}

fn decrypt_impl(
    dir: &CipherDir,
    out: &Path,
    opts: &DecryptOptions,
    pin: Option<&Manifest>,
    progress: &dyn Progress,
) -> Result<DecryptSummary> {
    refuse_overlap(dir.root(), out)?;
    let root_fd = prepare_outdir(out, opts.force)?;
    if opts.force {
        // Temporary files of an interrupted earlier run are ours: they go.
        sweep_temp_files(&root_fd, Path::new(""))?;
    }
    let mut tree = walk(dir)?;
    let mut summary = DecryptSummary::default();
    if let Some(pin) = pin {
        let mut refused: Vec<PathBuf> = Vec::new();
        let seen: HashSet<&Path> = tree
            .entries
            .iter()
            .map(|e| e.plain_path.as_path())
            .collect();
        for p in &pin.entries {
            if !seen.contains(p.path.as_path()) {
                summary.problems.push(DecryptProblem {
                    path: p.path.clone(),
                    error: pin_error(&p.path, "missing"),
                    warning: false,
                });
            }
        }
        for e in &tree.entries {
            if refused.iter().any(|r| e.plain_path.starts_with(r)) {
                continue;
            }
            let ok = match (pin.get(&e.plain_path).map(|p| &p.kind), e.kind) {
                (Some(EntryKind::File(_)), FileKind::File)
                | (Some(EntryKind::Dir), FileKind::Dir)
                | (Some(EntryKind::Symlink(_)), FileKind::Symlink)
                | (Some(EntryKind::Other), FileKind::Other) => true,
                (None, _) => {
                    summary.problems.push(DecryptProblem {
                        path: e.plain_path.clone(),
                        error: pin_error(&e.plain_path, "not in the manifest (not written)"),
                        warning: false,
                    });
                    false
                }
                (Some(_), _) => {
                    summary.problems.push(DecryptProblem {
                        path: e.plain_path.clone(),
                        error: pin_error(&e.plain_path, "another type (not written)"),
                        warning: false,
                    });
                    false
                }
            };
            if !ok {
                refused.push(e.plain_path.clone());
            }
        }
        tree.entries
            .retain(|e| !refused.iter().any(|r| e.plain_path.starts_with(r)));
    }
    for p in tree.problems {
        summary.problems.push(DecryptProblem {
            path: p.cipher_path,
            error: p.error,
            warning: p.warning,
        });
    }
    progress.set_total(
        tree.entries
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.plain_size)
            .sum(),
    );
    let problems = Mutex::new(Vec::new());
    let report = |path: &Path, error: Error| {
        if let Ok(mut v) = problems.lock() {
            v.push(DecryptProblem {
                path: path.to_path_buf(),
                error,
                warning: false,
            });
        }
    };

    // Directories first, in order (parents before children).
    let mut made_dirs: Vec<&Entry> = Vec::new();
    let mut failed_dirs: Vec<&Path> = Vec::new();
    for e in tree.entries.iter().filter(|e| e.kind == FileKind::Dir) {
        if failed_dirs.iter().any(|f| e.plain_path.starts_with(f)) {
            continue;
        }
        match make_dir(&root_fd, &e.plain_path, opts.force) {
            Ok(()) => {
                made_dirs.push(e);
                summary.dirs += 1;
            }
            Err(err) => {
                report(&e.plain_path, err);
                failed_dirs.push(&e.plain_path);
            }
        }
    }
    let under_failed = |p: &Path| failed_dirs.iter().any(|f| p.starts_with(f));

    // Symlinks and others, sequentially (cheap).
    for e in &tree.entries {
        if under_failed(&e.plain_path) {
            continue;
        }
        match e.kind {
            FileKind::Symlink => match write_symlink(dir, &root_fd, e, opts.force, pin) {
                Ok(()) => summary.symlinks += 1,
                Err(err) => report(&e.plain_path, err),
            },
            FileKind::Other => summary.problems.push(DecryptProblem {
                path: e.plain_path.clone(),
                error: Error::refused(
                    &e.plain_path,
                    "FIFOs, sockets and device nodes are not decrypted (skipped)",
                ),
                warning: true,
            }),
            _ => {}
        }
    }

    // Files, in parallel.
    let mut files: Vec<&Entry> = tree
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::File && !under_failed(&e.plain_path))
        .collect();
    // Largest first, one file per work item, and large files split into pieces too: measured
    // faster than keeping each large file on one thread (tests/bench, docs/benchmarks.md).
    files.sort_by_key(|e| std::cmp::Reverse(e.plain_size));
    let results: Vec<((u64, u64), Option<Error>)> = files
        .par_iter()
        .with_max_len(1)
        .map(
            |e| match write_file(dir, &root_fd, e, opts, pin, progress) {
                Ok(n) => (n, None),
                Err(err) => ((0, 0), Some(err)),
            },
        )
        .collect();
    for (e, ((n, holes), err)) in files.iter().zip(results) {
        match err {
            None => {
                summary.files += 1;
                summary.bytes += n;
                summary.holes += holes;
            }
            Some(err) => report(&e.plain_path, err),
        }
    }

    // Directory modes and times last, deepest first (a 0555 dir must be filled first).
    for e in made_dirs.iter().rev() {
        if let Err(err) = finish_dir(dir, &root_fd, e) {
            report(&e.plain_path, err);
        }
    }
    summary
        .problems
        .extend(problems.into_inner().unwrap_or_default());
    // A pinned run over a non-empty OUTDIR leaves exactly the pinned tree: whatever else was
    // there (an older model's files, something planted) goes, once everything else worked.
    if let Some(pin) = pin
        && opts.force
        && summary.is_ok()
    {
        let keep: HashSet<&Path> = pin.entries.iter().map(|e| e.path.as_path()).collect();
        if let Err(err) = prune(&root_fd, Path::new(""), &keep, &mut summary.removed) {
            summary.problems.push(DecryptProblem {
                path: out.to_path_buf(),
                error: err,
                warning: false,
            });
        }
    }
    Ok(summary)
}

/// Removes every entry below `rel` (relative to OUTDIR's fd `root`) whose path is not in
/// `keep`, without following symlinks; counts them in `removed`.
fn prune(root: &OwnedFd, rel: &Path, keep: &HashSet<&Path>, removed: &mut u64) -> Result<()> {
    let fd = open_rel_dir(root, rel)?;
    let mut names = Vec::new();
    let dir = rustix::fs::Dir::read_from(&fd).map_err(|e| Error::io("listing", rel, e.into()))?;
    for ent in dir {
        let ent = ent.map_err(|e| Error::io("listing", rel, e.into()))?;
        let name = OsStr::from_bytes(ent.file_name().to_bytes()).to_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    for name in names {
        let path = rel.join(&name);
        let st = rustix::fs::statat(&fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("reading", &path, e.into()))?;
        let is_dir =
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
        if keep.contains(path.as_path()) {
            if is_dir {
                prune(root, &path, keep, removed)?;
            }
            continue;
        }
        if is_dir {
            // Empty it first (nothing below an unpinned directory is kept).
            prune(root, &path, &HashSet::new(), removed)?;
            rustix::fs::unlinkat(&fd, name.as_os_str(), AtFlags::REMOVEDIR)
        } else {
            rustix::fs::unlinkat(&fd, name.as_os_str(), AtFlags::empty())
        }
        .map_err(|e| Error::io("removing (not in the pinned manifest)", &path, e.into()))?;
        *removed += 1;
    }
    Ok(())
}

/// Refuses an OUTDIR inside the cipher directory (plaintext would land in the storage the
/// host holds) or containing it (a forced run could replace the cipher tree), before
/// anything is written.
///
/// # Errors
/// [`Error::Refused`]; I/O resolving either path.
pub fn refuse_overlap(cipher_root: &Path, out: &Path) -> Result<()> {
    let cipher = fs::canonicalize(cipher_root).map_err(|e| Error::Config {
        path: cipher_root.to_path_buf(),
        source: crate::error::ConfigError::NoDir(e.kind()),
    })?;
    let out_abs = resolve_lexically(out).map_err(|e| Error::io("resolving", out, e))?;
    if out_abs.starts_with(&cipher) {
        return Err(Error::refused(
            out,
            "the output directory is inside the cipher directory; plaintext would be written into the encrypted storage",
        ));
    }
    if cipher.starts_with(&out_abs) {
        return Err(Error::refused(
            out,
            "the output directory contains the cipher directory; decrypting there could replace it",
        ));
    }
    Ok(())
}

/// `path` made absolute, with its longest existing prefix canonicalized (symlinks
/// resolved) and the rest appended lexically (it does not exist yet).
pub(crate) fn resolve_lexically(path: &Path) -> std::io::Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut rest: Vec<OsString> = Vec::new();
    let mut cur = abs.as_path();
    loop {
        match fs::canonicalize(cur) {
            Ok(mut base) => {
                for c in rest.iter().rev() {
                    if c == ".." {
                        base.pop();
                    } else if c != "." {
                        base.push(c);
                    }
                }
                return Ok(base);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(parent) = cur.parent() else {
                    return Err(e);
                };
                rest.push(cur.file_name().map_or_else(|| "..".into(), OsStr::to_owned));
                cur = parent;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Creates or checks OUTDIR and opens it without following symlinks.
fn prepare_outdir(out: &Path, force: bool) -> Result<OwnedFd> {
    match fs::symlink_metadata(out) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::refused(
                out,
                "the output directory is a symlink; refusing to write through it (give its target)",
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::refused(
                out,
                "the output exists and is not a directory",
            ));
        }
        Ok(_) => {
            let mut rd = fs::read_dir(out).map_err(|e| Error::io("listing", out, e))?;
            if rd.next().is_some() && !force {
                return Err(Error::OutputNotEmpty {
                    path: out.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir(out).map_err(|e| Error::io("creating", out, e))?;
        }
        Err(e) => return Err(Error::io("reading", out, e)),
    }
    rustix::fs::openat(
        rustix::fs::CWD,
        out,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening", out, e.into()))
}

/// Opens the output directory `rel` below `root`, one component at a time, never following
/// a symlink.
fn open_rel_dir(root: &OwnedFd, rel: &Path) -> Result<OwnedFd> {
    let mut cur = rustix::io::dup(root).map_err(|e| Error::io("opening", rel, e.into()))?;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(Error::refused(
                rel,
                "invariant: plaintext paths are plain components",
            ));
        };
        cur = rustix::fs::openat(
            &cur,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => Error::refused(
                rel,
                "a symlink or non-directory is in the way in the output; refusing to write through it",
            ),
            e => Error::io("opening", rel, e.into()),
        })?;
    }
    Ok(cur)
}

fn split_path(rel: &Path) -> (&Path, &OsStr) {
    (
        rel.parent().unwrap_or(Path::new("")),
        rel.file_name().unwrap_or_default(),
    )
}

fn make_dir(root: &OwnedFd, rel: &Path, force: bool) -> Result<()> {
    let (parent, name) = split_path(rel);
    let pfd = open_rel_dir(root, parent)?;
    match rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) if force => {
            let st = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::io("reading", rel, e.into()))?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
                Ok(())
            } else {
                Err(Error::refused(
                    rel,
                    "a file or symlink of this name is in the way in the output",
                ))
            }
        }
        Err(Errno::EXIST) => Err(Error::Exists {
            path: rel.to_path_buf(),
        }),
        Err(e) => Err(Error::io("creating", rel, e.into())),
    }
}

fn temp_name() -> Result<OsString> {
    let mut r = [0u8; 8];
    fill_random(&mut r)?;
    Ok(OsString::from(format!(".ccmount-{}.tmp", hex::encode(r))))
}

fn timestamps(meta: &fs::Metadata) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    }
}

/// Renames `tmp` to `name` in `pfd`: refusing to replace anything unless `force`.
fn commit(pfd: &OwnedFd, tmp: &OsStr, name: &OsStr, rel: &Path, force: bool) -> Result<()> {
    let flags = if force {
        RenameFlags::empty()
    } else {
        RenameFlags::NOREPLACE
    };
    rustix::fs::renameat_with(pfd, tmp, pfd, name, flags).map_err(|e| {
        let _ = rustix::fs::unlinkat(pfd, tmp, AtFlags::empty());
        match e {
            Errno::EXIST => Error::Exists {
                path: rel.to_path_buf(),
            },
            Errno::ISDIR => {
                Error::refused(rel, "a directory of this name is in the way in the output")
            }
            e => Error::io("renaming into place", rel, e.into()),
        }
    })
}

fn write_symlink(
    dir: &CipherDir,
    root: &OwnedFd,
    e: &Entry,
    force: bool,
    pin: Option<&Manifest>,
) -> Result<()> {
    let target = dir.read_link(e)?;
    if let Some(EntryKind::Symlink(t)) = pin.and_then(|p| p.get(&e.plain_path)).map(|p| &p.kind)
        && *t != target
    {
        return Err(pin_error(
            &e.plain_path,
            "symlink target differs (not written)",
        ));
    }
    let (parent, name) = split_path(&e.plain_path);
    let pfd = open_rel_dir(root, parent)?;
    let tmp = temp_name()?;
    rustix::fs::symlinkat(target.as_os_str(), &pfd, tmp.as_os_str())
        .map_err(|err| Error::io("creating", &e.plain_path, err.into()))?;
    let _ = rustix::fs::utimensat(
        &pfd,
        tmp.as_os_str(),
        &timestamps(&e.meta),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    commit(&pfd, &tmp, name, &e.plain_path, force)
}

fn write_file(
    dir: &CipherDir,
    root: &OwnedFd,
    e: &Entry,
    opts: &DecryptOptions,
    pin: Option<&Manifest>,
    progress: &dyn Progress,
) -> Result<(u64, u64)> {
    if opts.cancelled() {
        return Err(interrupted(&e.plain_path));
    }
    let force = opts.force;
    let cf = dir.open_file(e)?;
    let pinned = match pin.and_then(|p| p.get(&e.plain_path)).map(|p| &p.kind) {
        Some(EntryKind::File(f)) => Some(*f),
        _ => None,
    };
    if let Some(f) = &pinned
        && (f.file_id != cf.file_id() || f.size != cf.plain_size())
    {
        return Err(pin_error(
            &e.plain_path,
            "file ID or size differs (not written)",
        ));
    }
    let (parent, name) = split_path(&e.plain_path);
    let pfd = open_rel_dir(root, parent)?;
    let tmp = temp_name()?;
    let fd = rustix::fs::openat(
        &pfd,
        tmp.as_os_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|err| Error::io("creating", &e.plain_path, err.into()))?;
    let out = File::from(fd);
    let res = (|| -> Result<(u64, u64)> {
        let holes = write_pieces(&cf, &out, opts, progress)?;
        out.set_len(cf.plain_size())
            .map_err(|err| Error::io("writing", &e.plain_path, err))?;
        if let Some(f) = &pinned
            && hash_written(&out, &e.plain_path)? != f.sha256
        {
            return Err(pin_error(
                &e.plain_path,
                "content differs (sha256; not renamed into place)",
            ));
        }
        let (xattrs, bad) = dir.xattrs(e)?;
        if let Some(err) = bad.into_iter().next() {
            return Err(err);
        }
        for x in xattrs {
            match rustix::fs::fsetxattr(
                &out,
                x.name.as_os_str(),
                &x.value,
                rustix::fs::XattrFlags::empty(),
            ) {
                Ok(()) | Err(Errno::NOTSUP | Errno::PERM) => {}
                Err(err) => return Err(Error::io("setting xattr on", &e.plain_path, err.into())),
            }
        }
        rustix::fs::fchmod(&out, Mode::from_raw_mode(dir.policy().mode(e.meta.mode())))
            .map_err(|err| Error::io("setting the mode of", &e.plain_path, err.into()))?;
        rustix::fs::futimens(&out, &timestamps(&e.meta))
            .map_err(|err| Error::io("setting the times of", &e.plain_path, err.into()))?;
        Ok((cf.plain_size(), holes))
    })();
    match res {
        Ok(n) => {
            drop(out);
            commit(&pfd, &tmp, name, &e.plain_path, force)?;
            Ok(n)
        }
        Err(err) => {
            drop(out);
            let _ = rustix::fs::unlinkat(&pfd, tmp.as_os_str(), AtFlags::empty());
            Err(err)
        }
    }
}

/// An output directory with the rules of [`decrypt_tree`] (every write below a directory fd
/// opened with `O_NOFOLLOW`, each file written to a temporary name and renamed into place
/// only when whole), for sources that are not a local cipher directory (object storage).
#[derive(Debug)]
pub struct OutDir {
    root: OwnedFd,
    force: bool,
}

impl OutDir {
    /// Opens (or creates) `out`; a non-empty `out` is refused unless `force`.
    ///
    /// # Errors
    /// [`Error::OutputNotEmpty`], a refusal (symlink, not a directory), [`Error::Io`].
    pub fn prepare(out: &Path, force: bool) -> Result<Self> {
        Ok(OutDir {
            root: prepare_outdir(out, force)?,
            force,
        })
    }

    /// Creates directory `rel` (its parent exists; with `force` an existing one is fine).
    ///
    /// # Errors
    /// [`Error::Exists`], a refusal (something else in the way), [`Error::Io`].
    pub fn make_dir(&self, rel: &Path) -> Result<()> {
        make_dir(&self.root, rel, self.force)
    }

    /// Sets the mode of directory `rel` (after its content is written).
    ///
    /// # Errors
    /// [`Error::Io`], a refusal (a symlink in the way).
    pub fn set_dir_mode(&self, rel: &Path, mode: u32) -> Result<()> {
        let fd = open_rel_dir(&self.root, rel)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
            .map_err(|e| Error::io("setting the mode of", rel, e.into()))
    }

    /// Starts file `rel` under a random temporary name in its (existing) parent directory.
    ///
    /// # Errors
    /// [`Error::Io`], a refusal (a symlink in the way).
    pub fn create_file(&self, rel: &Path) -> Result<OutFile> {
        let (parent, name) = split_path(rel);
        let pfd = open_rel_dir(&self.root, parent)?;
        let tmp = temp_name()?;
        let fd = rustix::fs::openat(
            &pfd,
            tmp.as_os_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|err| Error::io("creating", rel, err.into()))?;
        Ok(OutFile {
            file: File::from(fd),
            pfd,
            tmp,
            name: name.to_owned(),
            rel: rel.to_path_buf(),
            force: self.force,
            committed: false,
        })
    }

    /// Removes the temporary files an interrupted run left (as [`sweep_temp_files_in`]).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn sweep(&self) -> Result<u64> {
        sweep_temp_files(&self.root, Path::new(""))
    }
}

/// A file being written by [`OutDir::create_file`]: renamed into place by
/// [`OutFile::commit`]; dropped uncommitted, its temporary file is removed.
#[derive(Debug)]
pub struct OutFile {
    file: File,
    pfd: OwnedFd,
    tmp: OsString,
    name: OsString,
    rel: PathBuf,
    force: bool,
    committed: bool,
}

impl OutFile {
    /// Writes `data` at `offset`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<()> {
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::io("writing", &self.rel, e))
    }

    /// Sets the final length and mode, then renames the file into place (never replacing
    /// anything unless the directory was prepared with `force`).
    ///
    /// # Errors
    /// [`Error::Exists`], [`Error::Io`].
    pub fn commit(mut self, len: u64, mode: u32) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io("writing", &self.rel, e))?;
        rustix::fs::fchmod(&self.file, Mode::from_raw_mode(mode))
            .map_err(|e| Error::io("setting the mode of", &self.rel, e.into()))?;
        self.committed = true;
        commit(&self.pfd, &self.tmp, &self.name, &self.rel, self.force)
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(&self.pfd, self.tmp.as_os_str(), AtFlags::empty());
        }
    }
}

/// SHA-256 of what was written to the temporary file (read back through the same handle).
fn hash_written(out: &File, path: &Path) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        match out.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => {
                h.update(buf.get(..n).unwrap_or_default());
                off += n as u64;
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Error::io("reading back", path, err)),
        }
    }
    Ok(h.finalize().into())
}

/// Decrypts every piece of `cf` into `out`, in parallel. A hole block fails the file unless
/// holes are allowed; allowed hole blocks are not written, so holes stay holes. Fails with
/// the first bad block.
fn write_pieces(
    cf: &CipherFile,
    out: &File,
    opts: &DecryptOptions,
    progress: &dyn Progress,
) -> Result<u64> {
    if !cf.content().holes_allowed()
        && let Some(r) = cf.fs_hole_blocks().first()
    {
        // A sparse cipher file: refused at once, without reading its holes block by block.
        return Err(Error::from_block(
            cf.path().to_path_buf(),
            BlockError {
                block: r.start,
                kind: BlockErrorKind::Hole,
            },
        ));
    }
    let blocks = cf.blocks();
    let pieces: Vec<u64> = (0..blocks).step_by(PIECE_BLOCKS as usize).collect();
    let holes = std::sync::atomic::AtomicU64::new(0);
    let one = |&first: &u64| -> Result<()> {
        if opts.cancelled() {
            return Err(interrupted(cf.path()));
        }
        BUFS.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (ct, pt) = &mut *guard;
            let piece = cf.decrypt_piece(first, PIECE_BLOCKS, ct, pt)?;
            if let Some(bad) = piece.bad.first() {
                pt.fill(0);
                return Err(Error::from_block(cf.path().to_path_buf(), *bad));
            }
            // Write runs of non-hole blocks.
            let mut run: Option<usize> = None;
            let nblocks = piece.plain_len.div_ceil(PLAIN_BS as usize);
            for i in 0..=nblocks {
                let b = first + i as u64;
                let hole = i < nblocks && piece.holes.contains(&b);
                let end = i == nblocks;
                if (hole || end)
                    && let Some(s) = run.take()
                {
                    let lo = s * PLAIN_BS as usize;
                    let hi = (i * PLAIN_BS as usize).min(piece.plain_len);
                    out.write_all_at(&pt[lo..hi], first * PLAIN_BS + lo as u64)
                        .map_err(|err| Error::io("writing", cf.path(), err))?;
                } else if !hole && !end && run.is_none() {
                    run = Some(i);
                }
            }
            holes.fetch_add(piece.holes.len() as u64, Ordering::Relaxed);
            progress.advance(piece.plain_len as u64);
            Ok(())
        })
    };
    if pieces.len() > 1 {
        pieces.par_iter().try_for_each(one)?;
    } else {
        pieces.iter().try_for_each(one)?;
    }
    Ok(holes.into_inner())
}

fn finish_dir(dir: &CipherDir, root: &OwnedFd, e: &Entry) -> Result<()> {
    let fd = open_rel_dir(root, &e.plain_path)?;
    if let Ok((xattrs, _)) = dir.xattrs(e) {
        for x in xattrs {
            let _ = rustix::fs::fsetxattr(
                &fd,
                x.name.as_os_str(),
                &x.value,
                rustix::fs::XattrFlags::empty(),
            );
        }
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.policy().mode(e.meta.mode())))
        .map_err(|err| Error::io("setting the mode of", &e.plain_path, err.into()))?;
    rustix::fs::futimens(&fd, &timestamps(&e.meta))
        .map_err(|err| Error::io("setting the times of", &e.plain_path, err.into()))
}

/// Removes every temporary file of ours (`.ccmount-*.tmp`) below `rel` of OUTDIR, never
/// following a symlink: what a killed run leaves behind.
///
/// # Errors
/// A directory that cannot be listed or a file that cannot be removed.
pub fn sweep_temp_files_in(out: &Path) -> Result<u64> {
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        out,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening", out, e.into()))?;
    sweep_temp_files(&fd, Path::new(""))
}

fn sweep_temp_files(root: &OwnedFd, rel: &Path) -> Result<u64> {
    let fd = open_rel_dir(root, rel)?;
    let mut removed = 0;
    let mut dirs = Vec::new();
    let listing =
        rustix::fs::Dir::read_from(&fd).map_err(|e| Error::io("listing", rel, e.into()))?;
    for ent in listing {
        let ent = ent.map_err(|e| Error::io("listing", rel, e.into()))?;
        let name = OsStr::from_bytes(ent.file_name().to_bytes()).to_owned();
        if name == "." || name == ".." {
            continue;
        }
        match ent.file_type() {
            rustix::fs::FileType::Directory => dirs.push(name),
            rustix::fs::FileType::RegularFile | rustix::fs::FileType::Symlink
                if is_temp_name(&name) =>
            {
                rustix::fs::unlinkat(&fd, name.as_os_str(), AtFlags::empty())
                    .map_err(|e| Error::io("removing", rel.join(&name), e.into()))?;
                removed += 1;
            }
            _ => {}
        }
    }
    for d in dirs {
        removed += sweep_temp_files(root, &rel.join(d))?;
    }
    Ok(removed)
}

/// Whether a name is one of our temp files (for callers that clean up after a crash).
#[must_use]
pub fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b".ccmount-") && b.ends_with(b".tmp")
}
