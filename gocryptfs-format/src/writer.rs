//! Writing gocryptfs trees: `init` (config + root IV) and `encrypt_tree` (a whole plaintext
//! tree into a new cipher directory), plus the per-entry [`Writer`].
//!
//! Mirrors what gocryptfs' write path leaves on disk (`init_dir.go`, `node_dir_ops.go`
//! `Mkdir`, `node.go` `Create`/`Symlink`, `file.go` `doWrite`, `longnames.go`
//! `WriteLongNameAt`); spec §2.7, §3.1, §3.5, §2.8. Invariants kept: a fresh random file ID
//! per file and a fresh random nonce per block; the header only for non-empty files; long
//! names write their `.name` file (0444, `O_EXCL`) before the entry; `gocryptfs.diriv` (0444)
//! in every new directory; **no holes** — every block is encrypted, zeros and source holes
//! included, so a tree we write never holds an all-zero (unauthenticated) block and never
//! needs the `allow_holes` opt-in (gocryptfs keeps source holes as all-zero blocks).

use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::Progress;
use crate::cipherdir::{CipherDir, FileKind};
use crate::configfile::{Config, Layout, NameLayout, scrypt::DEFAULT_LOG_N};
use crate::contentenc::{FileHeader, FileId, HEADER_LEN, PIECE_BLOCKS, PLAIN_BS};
use crate::cryptocore::{Backend, MasterKey};
use crate::error::{Error, Result};
use crate::manifest::{EntryKind, FilePin, Manifest, ManifestEntry, Params};
use crate::nametransform::{self, DIRIV_NAME, DirIv, DiskName, LONGNAME_SUFFIX};

/// Longest symlink target the backing filesystem stores.
const MAX_BACKING_TARGET: usize = 4095;

/// Options for a new tree (the `gocryptfs -init` switches we support).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// Content cipher and name layout.
    pub layout: Layout,
    /// scrypt cost, log2(N) (gocryptfs default 16; tests use 10).
    pub scrypt_log_n: u8,
    /// `Creator` field.
    pub creator: String,
    /// AES-GCM backend for the content.
    pub backend: Backend,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            layout: Layout::default(),
            scrypt_log_n: DEFAULT_LOG_N,
            creator: format!("ccmount {}", env!("CARGO_PKG_VERSION")),
            backend: Backend::preferred(),
        }
    }
}

/// What [`encrypt_tree`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncryptSummary {
    /// Regular files written.
    pub files: u64,
    /// Directories created (not counting the root).
    pub dirs: u64,
    /// Symlinks written.
    pub symlinks: u64,
    /// Plaintext bytes encrypted.
    pub bytes: u64,
    /// Entries skipped: FIFOs, sockets, device nodes (plaintext paths).
    pub skipped: Vec<PathBuf>,
}

/// Creates a new cipher directory at `root` (absent, or an empty directory) protected by
/// `password`: a fresh master key, `gocryptfs.conf` (0400) and the root `gocryptfs.diriv`.
///
/// # Errors
/// [`Error::OutputNotEmpty`], [`Error::Config`], [`Error::Io`], [`Error::Key`].
pub fn init(root: &Path, password: &[u8], opts: &InitOptions) -> Result<CipherDir> {
    let master = MasterKey::generate()?;
    init_with_key(root, &master, password, opts)
}

/// [`init`] with a given master key (tests, and re-encrypting under a known key).
///
/// # Errors
/// As [`init`].
pub fn init_with_key(
    root: &Path,
    master: &MasterKey,
    password: &[u8],
    opts: &InitOptions,
) -> Result<CipherDir> {
    prepare_empty_dir(root)?;
    let config = Config::create(
        &opts.layout,
        master,
        password,
        opts.scrypt_log_n,
        &opts.creator,
    )?;
    config.write(root)?;
    let layout = config.layout();
    if matches!(layout.names, NameLayout::Encrypted { dir_iv: true, .. }) {
        write_dir_iv(root)?;
    }
    CipherDir::from_parts(root, Some(config), layout, master, opts.backend)
}

/// Creates `dir` if absent; refuses a non-empty one (as `gocryptfs -init`).
fn prepare_empty_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut rd = fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
            if rd.next().is_some() {
                return Err(Error::OutputNotEmpty {
                    path: dir.to_path_buf(),
                });
            }
            Ok(())
        }
        Ok(_) => Err(Error::refused(dir, "exists and is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .mode(0o755)
            .create(dir)
            .map_err(|e| Error::io("creating", dir, e)),
        Err(e) => Err(Error::io("reading", dir, e)),
    }
}

fn write_dir_iv(dir: &Path) -> Result<DirIv> {
    let iv = DirIv::generate()?;
    let path = dir.join(DIRIV_NAME);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| Error::io("creating", &path, e))?;
    f.write_all(&iv.0)
        .map_err(|e| Error::io("writing", &path, e))?;
    Ok(iv)
}

/// Writes entries into an open cipher directory. Parents are cipher paths relative to the
/// root (`""` for the root).
#[derive(Debug)]
pub struct Writer<'a> {
    dir: &'a CipherDir,
}

impl<'a> Writer<'a> {
    /// A writer for `dir`.
    #[must_use]
    pub fn new(dir: &'a CipherDir) -> Self {
        Writer { dir }
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.dir.root().join(rel)
    }

    /// Computes the on-disk name and, for a long name, writes its `.name` file first.
    fn place(&self, parent: &Path, name: &OsStr) -> Result<PathBuf> {
        let is_root = parent.as_os_str().is_empty();
        if !self.dir.names().encrypted() && is_root && name.as_bytes() == b"gocryptfs.conf" {
            return Err(Error::refused(
                name,
                "gocryptfs.conf is reserved in the root of a -plaintextnames tree; rename the file",
            ));
        }
        let iv = self.dir.dir_iv(parent)?;
        let disk = self.dir.names().to_disk(name, &iv).map_err(|e| {
            Error::refused(parent.join(name), format!("cannot store this name: {e}"))
        })?;
        if let DiskName::Long { hashed, cipher } = &disk {
            let side = self.abs(parent).join(format!("{hashed}{LONGNAME_SUFFIX}"));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&side)
                .map_err(|e| Error::io("creating", &side, e))?;
            f.write_all(cipher.as_bytes())
                .map_err(|e| Error::io("writing", &side, e))?;
        }
        Ok(parent.join(disk.on_disk()))
    }

    /// Creates a directory (mode 0700 until [`Writer::finish_dir`]) with its
    /// `gocryptfs.diriv`; returns its cipher path.
    ///
    /// # Errors
    /// [`Error::Refused`] for an unrepresentable name, [`Error::Io`].
    pub fn mkdir(&self, parent: &Path, name: &OsStr) -> Result<PathBuf> {
        let rel = self.place(parent, name)?;
        let abs = self.abs(&rel);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&abs)
            .map_err(|e| Error::io("creating", &abs, e))?;
        if self.dir.names().uses_dir_iv() {
            write_dir_iv(&abs)?;
        }
        Ok(rel)
    }

    /// Sets a directory's final mode and times (after its children are written).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn finish_dir(&self, rel: &Path, meta: &fs::Metadata) -> Result<()> {
        let abs = self.abs(rel);
        fs::set_permissions(&abs, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("setting the mode of", &abs, e))?;
        set_times_nofollow(&abs, meta)
    }

    /// Writes a regular file from `data`; returns its cipher path and file ID.
    ///
    /// # Errors
    /// [`Error::Refused`], [`Error::Io`], [`Error::Key`].
    pub fn write_bytes(
        &self,
        parent: &Path,
        name: &OsStr,
        data: &[u8],
        mode: u32,
    ) -> Result<(PathBuf, Option<FileId>)> {
        let rel = self.place(parent, name)?;
        let abs = self.abs(&rel);
        let out = create_new(&abs)?;
        let id = self.encrypt_into(&out, &abs, data.len() as u64, |off, buf| {
            let s = usize::try_from(off).unwrap_or(usize::MAX);
            let src = data.get(s..s.saturating_add(buf.len())).unwrap_or_default();
            buf.get_mut(..src.len())
                .unwrap_or_default()
                .copy_from_slice(src);
            Ok(src.len())
        })?;
        out.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| Error::io("setting the mode of", &abs, e))?;
        Ok((rel, id))
    }

    /// Encrypts the regular file `src` (with metadata `meta`) into `parent/name`, keeping
    /// its mode and times (its holes are encrypted as zeros); returns its cipher path and
    /// file ID.
    ///
    /// # Errors
    /// [`Error::Refused`], [`Error::Io`], [`Error::Key`].
    pub fn write_file(
        &self,
        parent: &Path,
        name: &OsStr,
        src: &File,
        src_path: &Path,
        meta: &fs::Metadata,
        progress: &dyn Progress,
    ) -> Result<(PathBuf, Option<FileId>)> {
        let rel = self.place(parent, name)?;
        let abs = self.abs(&rel);
        let out = create_new(&abs)?;
        let size = meta.len();
        let id = self.encrypt_into(&out, &abs, size, |off, buf| {
            let mut got = 0;
            while got < buf.len() {
                match src.read_at(&mut buf[got..], off + got as u64) {
                    Ok(0) => break,
                    Ok(n) => {
                        got += n;
                        progress.advance(n as u64);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("reading", src_path, e)),
                }
            }
            Ok(got)
        })?;
        out.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("setting the mode of", &abs, e))?;
        out.set_times(file_times(meta))
            .map_err(|e| Error::io("setting the times of", &abs, e))?;
        Ok((rel, id))
    }

    /// The core of file writing: header, then pieces of up to 256 blocks encrypted in
    /// parallel, each written with one `pwrite`; every block is written (no holes).
    fn encrypt_into(
        &self,
        out: &File,
        abs: &Path,
        size: u64,
        read: impl Fn(u64, &mut [u8]) -> Result<usize> + Sync,
    ) -> Result<Option<FileId>> {
        if size == 0 {
            return Ok(None);
        }
        let content = self.dir.content();
        let geo = content.geometry();
        let id = FileId::generate()?;
        out.write_all_at(&FileHeader { id }.to_bytes(), 0)
            .map_err(|e| Error::io("writing", abs, e))?;
        let blocks = size.div_ceil(PLAIN_BS);
        let pieces: Vec<u64> = (0..blocks).step_by(PIECE_BLOCKS as usize).collect();
        pieces.par_iter().try_for_each(|&first| -> Result<()> {
            let last = (first + PIECE_BLOCKS).min(blocks);
            let plain_len = (size.min(last * PLAIN_BS) - first * PLAIN_BS) as usize;
            let mut pt = vec![0u8; plain_len];
            let got = read(first * PLAIN_BS, &mut pt)?;
            if got != plain_len {
                return Err(Error::refused(
                    abs,
                    "the source file changed size while it was being encrypted; retry",
                ));
            }
            let mut ct = vec![0u8; geo.cipher_bs() as usize * (last - first) as usize];
            let mut pos = 0usize;
            for b in first..last {
                let s = ((b - first) * PLAIN_BS) as usize;
                let e = (s + PLAIN_BS as usize).min(plain_len);
                pos += content.encrypt_block(&pt[s..e], b, &id, &mut ct[pos..])?;
            }
            let off = geo.block_cipher_offset(first).unwrap_or(HEADER_LEN);
            out.write_all_at(&ct[..pos], off)
                .map_err(|e| Error::io("writing", abs, e))
        })?;
        let csize = geo
            .plain_to_cipher_size(size)
            .ok_or_else(|| Error::refused(abs, "file too large"))?;
        out.set_len(csize)
            .map_err(|e| Error::io("writing", abs, e))?;
        Ok(Some(id))
    }

    /// Creates a symlink to `target` (encrypted unless `PlaintextNames`); returns its cipher
    /// path.
    ///
    /// # Errors
    /// [`Error::Refused`] (name, or target too long), [`Error::Io`].
    pub fn symlink(&self, parent: &Path, name: &OsStr, target: &OsStr) -> Result<PathBuf> {
        let backing = if self.dir.names().encrypted() {
            let blob = self.dir.content().seal_blob(target.as_bytes())?;
            nametransform::b64_encode(&blob, self.dir.names().raw64()).into_bytes()
        } else {
            target.as_bytes().to_vec()
        };
        if backing.len() > MAX_BACKING_TARGET {
            return Err(Error::refused(
                parent.join(name),
                "symlink target too long once encrypted (gocryptfs' limit is 3039 bytes with Raw64)",
            ));
        }
        let rel = self.place(parent, name)?;
        let abs = self.abs(&rel);
        std::os::unix::fs::symlink(OsStr::from_bytes(&backing), &abs)
            .map_err(|e| Error::io("creating", &abs, e))?;
        Ok(rel)
    }

    /// Sets an encrypted xattr on an entry (`user.gocryptfs.<EME name>` = sealed value).
    ///
    /// # Errors
    /// [`Error::Refused`] for a bad name, [`Error::Io`].
    pub fn set_xattr(&self, rel: &Path, name: &OsStr, value: &[u8]) -> Result<()> {
        let backing = self
            .dir
            .names()
            .encrypt_xattr_name(name.as_bytes())
            .map_err(|e| Error::refused(rel, format!("xattr name: {e}")))?;
        let sealed = if value.is_empty() {
            Vec::new()
        } else {
            self.dir.content().seal_blob(value)?
        };
        let abs = self.abs(rel);
        rustix::fs::lsetxattr(
            &abs,
            backing.as_str(),
            &sealed,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(|e| Error::io("setting xattr on", &abs, e.into()))
    }
}

fn create_new(abs: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(abs)
        .map_err(|e| Error::io("creating", abs, e))
}

fn file_times(meta: &fs::Metadata) -> FileTimes {
    let t = |s: i64, ns: i64| {
        let d = Duration::new(s.unsigned_abs(), u32::try_from(ns).unwrap_or(0));
        if s >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    };
    FileTimes::new()
        .set_accessed(t(meta.atime(), meta.atime_nsec()))
        .set_modified(t(meta.mtime(), meta.mtime_nsec()))
}

/// Sets atime/mtime from `meta` without following a symlink at `abs`.
pub(crate) fn set_times_nofollow(abs: &Path, meta: &fs::Metadata) -> Result<()> {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        abs,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io("setting the times of", abs, e.into()))
}

/// One entry of the plaintext tree, found by the pre-walk.
struct PlainItem {
    rel: PathBuf,
    kind: FileKind,
    meta: fs::Metadata,
}

/// Lists a plaintext tree (never following symlinks): parents first, siblings sorted.
fn plain_walk(root: &Path) -> Result<Vec<PlainItem>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&abs)
            .map_err(|e| Error::io("listing", &abs, e))?
            .map(|d| d.map(|d| d.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io("listing", &abs, e))?;
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let r = rel.join(&n);
            let meta = fs::symlink_metadata(root.join(&r))
                .map_err(|e| Error::io("reading", root.join(&r), e))?;
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                FileKind::Dir
            } else if ft.is_file() {
                FileKind::File
            } else if ft.is_symlink() {
                FileKind::Symlink
            } else {
                FileKind::Other
            };
            if kind == FileKind::Dir {
                subdirs.push(r.clone());
            }
            out.push(PlainItem { rel: r, kind, meta });
        }
        stack.extend(subdirs.into_iter().rev());
    }
    // Component-wise path order puts every parent before its children.
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Encrypts the plaintext tree `plain` into a new cipher directory `cipher` (absent or
/// empty) with `password`. Directories and symlinks are created in order; files are
/// encrypted in parallel (rayon, and inside large files). FIFOs, sockets and devices are
/// skipped and listed in the summary. `user.*` xattrs of files and directories are copied
/// (encrypted) where the source has them.
///
/// # Errors
/// The first error: [`Error::OutputNotEmpty`], [`Error::Refused`], [`Error::Io`], ...
pub fn encrypt_tree(
    plain: &Path,
    cipher: &Path,
    password: &[u8],
    opts: &InitOptions,
    progress: &dyn Progress,
) -> Result<EncryptSummary> {
    let pmeta = fs::metadata(plain).map_err(|e| Error::io("reading", plain, e))?;
    if !pmeta.is_dir() {
        return Err(Error::refused(plain, "not a directory"));
    }
    let items = plain_walk(plain)?;
    let dir = init(cipher, password, opts)?;
    encrypt_items(&dir, plain, &items, progress, None)
}

/// [`encrypt_tree`] that also returns the model manifest of the new tree, built by the
/// writer itself: each source file is hashed right after it is encrypted (same handle) and
/// paired with the file ID it was given, directories and symlink targets come from the
/// source walk. Independent of `verify` on purpose, so the two can check each other.
///
/// # Errors
/// As [`encrypt_tree`]; [`Error::Refused`] if a source file changed while being read.
pub fn encrypt_tree_with_manifest(
    plain: &Path,
    cipher: &Path,
    password: &[u8],
    opts: &InitOptions,
    progress: &dyn Progress,
) -> Result<(EncryptSummary, Manifest)> {
    let pmeta = fs::metadata(plain).map_err(|e| Error::io("reading", plain, e))?;
    if !pmeta.is_dir() {
        return Err(Error::refused(plain, "not a directory"));
    }
    let items = plain_walk(plain)?;
    let dir = init(cipher, password, opts)?;
    let mut entries = Vec::new();
    let summary = encrypt_items(&dir, plain, &items, progress, Some(&mut entries))?;
    let manifest = Manifest::new(Params::of(&dir), entries)
        .map_err(|e| Error::refused(plain, format!("manifest: {e}")))?;
    Ok((summary, manifest))
}

/// [`encrypt_tree`] into an already initialised cipher directory (e.g. from
/// [`init_with_key`]).
///
/// # Errors
/// As [`encrypt_tree`].
pub fn encrypt_tree_into(
    dir: &CipherDir,
    plain: &Path,
    progress: &dyn Progress,
) -> Result<EncryptSummary> {
    let items = plain_walk(plain)?;
    encrypt_items(dir, plain, &items, progress, None)
}

/// SHA-256 of a whole source file, which must still be `size` bytes long.
fn hash_source(src: &File, src_path: &Path, size: u64) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        match src.read_at(&mut buf, off) {
            Ok(0) => break,
            Ok(n) => {
                h.update(buf.get(..n).unwrap_or_default());
                off += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading", src_path, e)),
        }
    }
    if off != size {
        return Err(Error::refused(
            src_path,
            "the source file changed size while it was being encrypted; retry",
        ));
    }
    Ok(h.finalize().into())
}

fn encrypt_items(
    dir: &CipherDir,
    plain: &Path,
    items: &[PlainItem],
    progress: &dyn Progress,
    mut record: Option<&mut Vec<ManifestEntry>>,
) -> Result<EncryptSummary> {
    let w = Writer::new(dir);
    let mut summary = EncryptSummary::default();
    let mut cipher_of: std::collections::HashMap<&Path, PathBuf> = std::collections::HashMap::new();
    cipher_of.insert(Path::new(""), PathBuf::new());
    let parent_of = |rel: &Path| rel.parent().unwrap_or(Path::new("")).to_path_buf();
    let total: u64 = items
        .iter()
        .filter(|i| i.kind == FileKind::File)
        .map(|i| i.meta.len())
        .sum();
    progress.set_total(total);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let hashing = record.is_some();
    for it in items {
        let name = it.rel.file_name().unwrap_or_default();
        let parent = parent_of(&it.rel);
        let Some(cparent) = cipher_of.get(parent.as_path()).cloned() else {
            continue; // parent was skipped
        };
        match it.kind {
            FileKind::Dir => {
                let c = w.mkdir(&cparent, name)?;
                copy_xattrs(&w, &plain.join(&it.rel), &c);
                cipher_of.insert(&it.rel, c.clone());
                dirs.push((c, &it.meta));
                summary.dirs += 1;
                if let Some(r) = record.as_deref_mut() {
                    r.push(ManifestEntry {
                        path: it.rel.clone(),
                        kind: EntryKind::Dir,
                    });
                }
            }
            FileKind::Symlink => {
                let target = fs::read_link(plain.join(&it.rel))
                    .map_err(|e| Error::io("reading link", plain.join(&it.rel), e))?;
                let c = w.symlink(&cparent, name, target.as_os_str())?;
                set_times_nofollow(&dir.root().join(&c), &it.meta)?;
                summary.symlinks += 1;
                if let Some(r) = record.as_deref_mut() {
                    r.push(ManifestEntry {
                        path: it.rel.clone(),
                        kind: EntryKind::Symlink(target.into_os_string()),
                    });
                }
            }
            FileKind::File => files.push((cparent, it)),
            FileKind::Other => summary.skipped.push(it.rel.clone()),
        }
    }
    let written: Vec<Result<(u64, Option<ManifestEntry>)>> = files
        .par_iter()
        .map(|(cparent, it)| {
            let src_path = plain.join(&it.rel);
            let src = File::options()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&src_path)
                .map_err(|e| Error::io("opening", &src_path, e))?;
            let name = it.rel.file_name().unwrap_or_default();
            let (c, id) = w.write_file(cparent, name, &src, &src_path, &it.meta, progress)?;
            copy_xattrs(&w, &src_path, &c);
            let entry = if hashing {
                let sha256 = hash_source(&src, &src_path, it.meta.len())?;
                Some(ManifestEntry {
                    path: it.rel.clone(),
                    kind: EntryKind::File(FilePin {
                        size: it.meta.len(),
                        sha256,
                        file_id: id,
                    }),
                })
            } else {
                None
            };
            Ok((it.meta.len(), entry))
        })
        .collect();
    for r in written {
        let (len, entry) = r?;
        summary.files += 1;
        summary.bytes += len;
        if let (Some(rec), Some(e)) = (record.as_deref_mut(), entry) {
            rec.push(e);
        }
    }
    for (c, meta) in dirs.iter().rev() {
        w.finish_dir(c, meta)?;
    }
    Ok(summary)
}

/// Copies the `user.*` xattrs of a plaintext entry, encrypted. Best effort: a filesystem
/// without xattr support simply yields none.
fn copy_xattrs(w: &Writer<'_>, src: &Path, rel: &Path) {
    let Ok(names) = crate::cipherdir::list_xattrs(src) else {
        return;
    };
    for n in names.iter().filter(|n| n.starts_with(b"user.")) {
        if let Ok(Some(v)) = crate::cipherdir::get_xattr(src, n) {
            let _ = w.set_xattr(rel, OsStr::from_bytes(n), &v);
        }
    }
}
