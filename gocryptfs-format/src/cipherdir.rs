//! An open cipher directory: key unlock, per-directory IV cache, name lookup and listing,
//! symlink targets, xattrs, and opening files for random access.
//!
//! Mirrors the read side of gocryptfs `internal/fusefrontend` (`node_dir_ops.go`
//! `Readdir`/`Lookup`, `node_helpers.go` `readlink`, `node_xattr.go`, `dircache.go`) without
//! FUSE; spec §3.1, §3.4, §3.5, §2.8, §3.8. Everything works on paths *relative to the cipher
//! root*; symlinks inside the cipher tree are never followed (`lstat`, `O_NOFOLLOW`).
//!
//! This is the API the FUSE mount builds on: an inode maps to an [`Entry`], `lookup` and
//! `read_dir` take the parent [`Entry`], `open_file` gives a thread-safe [`CipherFile`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::configfile::{CONF_NAME, Config, Layout, REVERSE_CONF_NAME};
use crate::contentenc::{ContentEnc, FileHeader};
use crate::cryptocore::{Backend, ContentCipher, KeySource, MasterKey};
use crate::error::{ConfigError, CorruptError, DirIvError, Error, LongNameError, Result};
use crate::listing::{self, Item};
use crate::nametransform::{
    self, DIRIV_NAME, DirIv, DiskName, EntryClass, LONGNAME_SUFFIX, MAX_LONGNAME_FILE,
    NameTransform, classify,
};
use crate::policy::Policy;
use crate::reader::CipherFile;
use crate::safeio::{self, OpenFail};

/// Most directory IVs kept in the cache before it is cleared.
const DIRIV_CACHE_MAX: usize = 16_384;
/// Regular files sampled when checking a master key.
const KEY_CHECK_FILES: usize = 4;
/// Directory entries scanned when looking for files to check a master key with.
const KEY_CHECK_SCAN: usize = 4096;

/// How to open a cipher directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// AES-GCM implementation (default: the fastest compiled in).
    pub backend: Backend,
    /// Layout of a tree without `gocryptfs.conf`, opened with a master key (as
    /// `gocryptfs -masterkey`/`-zerokey` with their default flags).
    pub layout_without_config: Layout,
    /// With a master key, check it against a few file blocks (or names) before returning,
    /// so that a wrong key fails fast as [`Error::WrongMasterKey`].
    pub check_master_key: bool,
    /// What the storage host may not choose (layouts, scrypt cost, symlinks, modes).
    pub policy: Policy,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            backend: Backend::preferred(),
            layout_without_config: Layout::default(),
            check_master_key: true,
            policy: Policy::default(),
        }
    }
}

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device node (stored as is, not encrypted).
    Other,
}

impl FileKind {
    fn of(ft: fs::FileType) -> Self {
        if ft.is_file() {
            FileKind::File
        } else if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        }
    }
}

/// One entry of the plaintext view.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Plaintext name (bytes; may be non-UTF-8). Empty for the root.
    pub name: OsString,
    /// Plaintext path relative to the root.
    pub plain_path: PathBuf,
    /// Cipher path relative to the root (the entry itself; for long names the hashed name).
    pub cipher_path: PathBuf,
    /// Type.
    pub kind: FileKind,
    /// `lstat` of the backing entry: mode, times, owner, ciphertext size.
    pub meta: fs::Metadata,
    /// Plaintext size for regular files (from the ciphertext size, as `stat` reports it);
    /// 0 for others (a symlink's size needs [`CipherDir::read_link`]).
    pub plain_size: u64,
}

/// A problem met while listing or walking, with the cipher-side path it concerns.
#[derive(Debug)]
pub struct Problem {
    /// Cipher path relative to the root.
    pub cipher_path: PathBuf,
    /// Plaintext path of the containing directory (the entry's own name is unknown).
    pub plain_dir: PathBuf,
    /// What is wrong.
    pub error: Error,
    /// A harmless oddity (leftover temp file, orphan `.name`) rather than corruption.
    pub warning: bool,
}

/// The decrypted listing of one directory.
#[derive(Debug, Default)]
pub struct DirListing {
    /// Entries that decrypted, sorted by plaintext name.
    pub entries: Vec<Entry>,
    /// Entries that did not (hidden from `entries`, as gocryptfs hides them).
    pub problems: Vec<Problem>,
}

/// A decrypted extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Plaintext attribute name (e.g. `user.comment`).
    pub name: OsString,
    /// Plaintext value.
    pub value: Vec<u8>,
}

/// An open cipher directory. `Send + Sync`: share it in an `Arc` between threads.
#[derive(Debug)]
pub struct CipherDir {
    root: PathBuf,
    config: Option<Config>,
    layout: Layout,
    content: Arc<ContentEnc>,
    names: NameTransform,
    diriv_cache: RwLock<HashMap<PathBuf, DirIv>>,
    policy: Policy,
}

impl CipherDir {
    /// Opens a cipher directory.
    ///
    /// With a password, `gocryptfs.conf` is required and unlocks the master key. With a master
    /// key, the config (if present) only supplies the layout, and the key is checked against a
    /// few blocks or names unless `opts.check_master_key` is off.
    ///
    /// # Errors
    /// [`Error::Config`] (missing, malformed or refused config), [`Error::WrongPassword`],
    /// [`Error::WrongMasterKey`], [`Error::Io`].
    pub fn open(root: &Path, key: KeySource, opts: &OpenOptions) -> Result<Self> {
        check_root(root)?;
        let config = match Config::load(root) {
            Ok(c) => Some(c),
            Err(Error::Config {
                source: ConfigError::Missing,
                ..
            }) if matches!(key, KeySource::MasterKey(_)) => None,
            Err(e) => return Err(e),
        };
        Self::open_with_config(root, config, key, opts)
    }

    /// Opens a cipher directory whose `gocryptfs.conf` the caller already read and parsed
    /// (`None`: the tree has none), e.g. from object storage. `root` is what errors name.
    /// The same checks as [`CipherDir::open`]: layout policy, scrypt cost before any
    /// allocation, the password, and (with a master key and `opts.check_master_key`) a few
    /// blocks or names of a local tree.
    ///
    /// # Errors
    /// As [`CipherDir::open`]; a password without a config is [`ConfigError::Missing`].
    pub fn open_with_config(
        root: &Path,
        config: Option<Config>,
        key: KeySource,
        opts: &OpenOptions,
    ) -> Result<Self> {
        let key_unchecked = matches!(key, KeySource::MasterKey(_));
        let conf_err = |source| Error::Config {
            path: root.join(CONF_NAME),
            source,
        };
        if let Some(c) = &config {
            check_layout(c, &opts.policy).map_err(conf_err)?;
        }
        let master = match key {
            KeySource::Password(pw) => {
                let Some(config) = &config else {
                    return Err(conf_err(ConfigError::Missing));
                };
                // Before scrypt allocates anything: the cost is the host's to choose.
                config
                    .scrypt
                    .check_cost(opts.policy.max_scrypt_memory)
                    .map_err(conf_err)?;
                config.unlock(&pw).map_err(|()| Error::WrongPassword {
                    path: root.join(CONF_NAME),
                })?
            }
            KeySource::MasterKey(mk) => mk,
        };
        let layout = config
            .as_ref()
            .map_or(opts.layout_without_config, Config::layout);
        let dir = Self::build(root, config, layout, &master, opts.backend, opts.policy)?;
        if opts.check_master_key && key_unchecked {
            dir.check_key()?;
        }
        Ok(dir)
    }

    /// Builds a `CipherDir` from an already unlocked key (used by the writer and tests), with
    /// the default policy.
    ///
    /// # Errors
    /// [`Error::Key`] if the cipher cannot be set up.
    pub fn from_parts(
        root: &Path,
        config: Option<Config>,
        layout: Layout,
        master: &MasterKey,
        backend: Backend,
    ) -> Result<Self> {
        Self::build(root, config, layout, master, backend, Policy::default())
    }

    fn build(
        root: &Path,
        config: Option<Config>,
        layout: Layout,
        master: &MasterKey,
        backend: Backend,
        policy: Policy,
    ) -> Result<Self> {
        let cipher = ContentCipher::from_master(layout.content, backend, master, layout.hkdf)
            .map_err(|_| {
                Error::Key(crate::error::KeyError::Random(
                    "cannot set up the content cipher".into(),
                ))
            })?;
        Ok(CipherDir {
            root: root.to_path_buf(),
            config,
            layout,
            content: Arc::new(ContentEnc::new(cipher).allow_holes(policy.allow_holes)),
            names: NameTransform::new(layout.names, master, layout.hkdf),
            diriv_cache: RwLock::new(HashMap::new()),
            policy,
        })
    }

    /// The cipher root on disk.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parsed config, if the tree has one.
    #[must_use]
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// The policy this directory was opened with.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The layout in use.
    #[must_use]
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The content codec, shareable with any number of threads (GPU loader, FUSE).
    #[must_use]
    pub fn content(&self) -> &Arc<ContentEnc> {
        &self.content
    }

    /// The name codec.
    #[must_use]
    pub fn names(&self) -> &NameTransform {
        &self.names
    }

    /// The root as an [`Entry`].
    ///
    /// # Errors
    /// [`Error::Io`] if the root cannot be `lstat`ed.
    pub fn root_entry(&self) -> Result<Entry> {
        let meta =
            fs::symlink_metadata(&self.root).map_err(|e| Error::io("reading", &self.root, e))?;
        Ok(Entry {
            name: OsString::new(),
            plain_path: PathBuf::new(),
            cipher_path: PathBuf::new(),
            kind: FileKind::Dir,
            meta,
            plain_size: 0,
        })
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// The IV of directory `cipher_dir` (relative to the root): read once from its
    /// `gocryptfs.diriv`, then cached; zero for deterministic names.
    ///
    /// # Errors
    /// [`Error::Corrupt`] with [`DirIvError`], [`Error::Io`].
    pub fn dir_iv(&self, cipher_dir: &Path) -> Result<DirIv> {
        if !self.names.uses_dir_iv() {
            return Ok(DirIv::ZERO);
        }
        if let Ok(cache) = self.diriv_cache.read()
            && let Some(iv) = cache.get(cipher_dir)
        {
            return Ok(*iv);
        }
        let path = self.abs(cipher_dir).join(DIRIV_NAME);
        let iv = read_dir_iv(&path)?;
        if let Ok(mut cache) = self.diriv_cache.write() {
            if cache.len() >= DIRIV_CACHE_MAX {
                cache.clear();
            }
            cache.insert(cipher_dir.to_path_buf(), iv);
        }
        Ok(iv)
    }

    /// The on-disk name of `name` in directory `dir`.
    ///
    /// # Errors
    /// [`Error::Refused`] for an invalid name; IV errors as [`CipherDir::dir_iv`].
    pub fn disk_name(&self, dir: &Entry, name: &OsStr) -> Result<DiskName> {
        let iv = self.dir_iv(&dir.cipher_path)?;
        self.names
            .to_disk(name, &iv)
            .map_err(|e| Error::refused(dir.plain_path.join(name), format!("invalid name: {e}")))
    }

    /// Looks up a plaintext name in a directory. `Ok(None)` if it does not exist.
    ///
    /// # Errors
    /// IV errors, [`Error::Io`]; an invalid name (`/`, `..`, ...) is simply not found.
    pub fn lookup(&self, dir: &Entry, name: &OsStr) -> Result<Option<Entry>> {
        if nametransform::validate_plain_name(name.as_bytes()).is_err() {
            return Ok(None);
        }
        if !self.names.encrypted()
            && dir.cipher_path.as_os_str().is_empty()
            && name.as_bytes() == CONF_NAME.as_bytes()
        {
            // PlaintextNames: the root config name is reserved (gocryptfs answers EPERM).
            return Ok(None);
        }
        let disk = self.disk_name(dir, name)?;
        let cipher_path = dir.cipher_path.join(disk.on_disk());
        let abs = self.abs(&cipher_path);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", abs, e)),
        };
        Ok(Some(self.make_entry(
            dir,
            name.to_owned(),
            cipher_path,
            meta,
        )))
    }

    fn make_entry(
        &self,
        dir: &Entry,
        name: OsString,
        cipher_path: PathBuf,
        meta: fs::Metadata,
    ) -> Entry {
        let kind = FileKind::of(meta.file_type());
        let plain_size = if kind == FileKind::File {
            self.content.geometry().cipher_to_plain_size(meta.len())
        } else {
            0
        };
        Entry {
            plain_path: dir.plain_path.join(&name),
            name,
            cipher_path,
            kind,
            meta,
            plain_size,
        }
    }

    /// Resolves a plaintext path (relative to the root) component by component.
    ///
    /// # Errors
    /// [`Error::Io`] with `NotFound` if a component is missing; [`Error::Refused`] for `..`
    /// or an absolute path.
    pub fn resolve(&self, plain: &Path) -> Result<Entry> {
        let mut cur = self.root_entry()?;
        for comp in plain.components() {
            match comp {
                Component::Normal(name) => {
                    if cur.kind != FileKind::Dir {
                        return Err(Error::io(
                            "resolving",
                            plain,
                            std::io::Error::from(std::io::ErrorKind::NotADirectory),
                        ));
                    }
                    cur = self.lookup(&cur, name)?.ok_or_else(|| {
                        Error::io(
                            "resolving",
                            plain,
                            std::io::Error::from(std::io::ErrorKind::NotFound),
                        )
                    })?;
                }
                Component::CurDir => {}
                _ => {
                    return Err(Error::refused(
                        plain,
                        "only relative paths without '..' resolve inside a cipher directory",
                    ));
                }
            }
        }
        Ok(cur)
    }

    /// Lists a directory: every entry whose name decrypts, sorted by plaintext name, plus a
    /// problem for every entry that does not (bad name, missing `.name`, ...).
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be read; a bad `gocryptfs.diriv` is an error
    /// for the whole directory (no name can be decrypted without it).
    pub fn read_dir(&self, dir: &Entry) -> Result<DirListing> {
        let abs = self.abs(&dir.cipher_path);
        let raw = listing::read_names(&abs)?;
        let mut out = DirListing::default();
        let iv = if self.names.encrypted() {
            self.dir_iv(&dir.cipher_path)?
        } else {
            DirIv::ZERO
        };
        for item in listing::classify_listing(&dir.cipher_path, &raw, self.layout.names) {
            let (name, stored) = match item {
                Item::Oddity(name, error) => {
                    out.problems.push(Problem {
                        cipher_path: dir.cipher_path.join(name),
                        plain_dir: dir.plain_path.clone(),
                        error,
                        warning: true,
                    });
                    continue;
                }
                Item::Name(name) => (name, None),
                Item::LongName(name) => {
                    match self.read_long_name(&dir.cipher_path.join(name), name) {
                        Ok(c) => (name, Some(c)),
                        Err(error) => {
                            out.problems.push(Problem {
                                cipher_path: dir.cipher_path.join(name),
                                plain_dir: dir.plain_path.clone(),
                                error,
                                warning: false,
                            });
                            continue;
                        }
                    }
                }
            };
            let cipher_path = dir.cipher_path.join(name);
            let problem = |error: Error| Problem {
                cipher_path: cipher_path.clone(),
                plain_dir: dir.plain_path.clone(),
                error,
                warning: false,
            };
            let plain = if self.names.encrypted() {
                let stored = stored.as_deref().unwrap_or(name.as_bytes());
                match self.names.decrypt_name(stored, &iv) {
                    Ok(p) => nametransform::os(p),
                    Err(source) => {
                        out.problems.push(problem(Error::corrupt(
                            &cipher_path,
                            CorruptError::Name {
                                name: name.to_owned(),
                                source,
                            },
                        )));
                        continue;
                    }
                }
            } else {
                name.to_owned()
            };
            match self.lstat(&cipher_path) {
                Ok(meta) => out
                    .entries
                    .push(self.make_entry(dir, plain, cipher_path, meta)),
                Err(error) => out.problems.push(problem(error)),
            }
        }
        out.entries.sort_by(|a, b| a.name.cmp(&b.name));
        // Two cipher names decrypting to one plaintext name means a copied entry.
        let dups: Vec<usize> = out
            .entries
            .windows(2)
            .enumerate()
            .filter(|(_, w)| matches!(w, [a, b] if a.name == b.name))
            .map(|(i, _)| i + 1)
            .collect();
        for i in dups.into_iter().rev() {
            let e = out.entries.remove(i);
            out.problems.push(Problem {
                error: Error::refused(
                    &e.cipher_path,
                    format!(
                        "a second entry decrypts to the name {:?} (a copied entry)",
                        e.name
                    ),
                ),
                cipher_path: e.cipher_path,
                plain_dir: dir.plain_path.clone(),
                warning: false,
            });
        }
        Ok(out)
    }

    fn lstat(&self, cipher_path: &Path) -> Result<fs::Metadata> {
        let abs = self.abs(cipher_path);
        fs::symlink_metadata(&abs).map_err(|e| Error::io("reading", abs, e))
    }

    /// Reads and checks the `.name` file of long-name entry `cipher_path`.
    fn read_long_name(&self, cipher_path: &Path, name: &OsStr) -> Result<Vec<u8>> {
        let stored = read_long_name_file(&self.root, cipher_path, name)?;
        self.names
            .check_long_name(name, &stored)
            .map_err(|e| Error::corrupt(cipher_path, e))?;
        Ok(stored)
    }

    /// Decrypts a symlink's target. A target that is absolute or climbs above the root is
    /// refused unless the policy allows it ([`Policy::allow_outside_symlinks`]).
    ///
    /// # Errors
    /// [`Error::Corrupt`] with [`CorruptError::Symlink`] or
    /// [`CorruptError::SymlinkOutside`] (naming the link's plaintext path), [`Error::Io`].
    pub fn read_link(&self, entry: &Entry) -> Result<OsString> {
        let target = self.decrypt_link(entry)?;
        if !self.policy.symlink_allowed(&entry.plain_path, &target) {
            return Err(Error::corrupt(
                &entry.plain_path,
                CorruptError::SymlinkOutside,
            ));
        }
        Ok(target)
    }

    fn decrypt_link(&self, entry: &Entry) -> Result<OsString> {
        let abs = self.abs(&entry.cipher_path);
        let raw = fs::read_link(&abs).map_err(|e| Error::io("reading link", &abs, e))?;
        if !self.names.encrypted() {
            return Ok(raw.into_os_string());
        }
        let raw = raw.into_os_string();
        if raw.is_empty() {
            return Ok(raw);
        }
        let bad = |why: String| Error::corrupt(&entry.cipher_path, CorruptError::Symlink(why));
        let blob = nametransform::b64_decode(raw.as_bytes(), self.names.raw64())
            .map_err(|e| bad(e.to_string()))?;
        let target = self
            .content
            .open_blob(&blob)
            .map_err(|k| bad(k.to_string()))?;
        if target.is_empty() || target.contains(&0) {
            return Err(bad(
                "decrypts to an empty target or one containing NUL".into()
            ));
        }
        Ok(nametransform::os(target))
    }

    /// Lists and decrypts the `user.gocryptfs.*` xattrs of an entry. Returns the ones that
    /// decrypt, and an error for each one that does not. Backing attributes without the
    /// prefix are ignored, as gocryptfs does.
    ///
    /// # Errors
    /// [`Error::Io`] if the attributes cannot be listed (not for "unsupported").
    pub fn xattrs(&self, entry: &Entry) -> Result<(Vec<Xattr>, Vec<Error>)> {
        let abs = self.abs(&entry.cipher_path);
        let names = match list_xattrs(&abs) {
            Ok(n) => n,
            Err(e) => return Err(Error::io("listing xattrs of", abs, e)),
        };
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for backing in names {
            let Some(plain) = self.names.decrypt_xattr_name(&backing) else {
                continue;
            };
            let backing_str = String::from_utf8_lossy(&backing).into_owned();
            let xerr = |reason: String| {
                Error::corrupt(
                    &entry.cipher_path,
                    CorruptError::Xattr {
                        name: backing_str.clone(),
                        reason,
                    },
                )
            };
            let plain = match plain {
                Ok(p) => p,
                Err(e) => {
                    bad.push(xerr(e.to_string()));
                    continue;
                }
            };
            let value = match get_xattr(&abs, &backing) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(e) => {
                    bad.push(Error::io("reading xattr of", &abs, e));
                    continue;
                }
            };
            match self.decrypt_xattr_value(&value) {
                Ok(v) => ok.push(Xattr {
                    name: nametransform::os(plain),
                    value: v,
                }),
                Err(k) => bad.push(xerr(k.to_string())),
            }
        }
        Ok((ok, bad))
    }

    /// Reads one xattr by plaintext name; `Ok(None)` if absent.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the value does not decrypt, [`Error::Io`].
    pub fn get_xattr(&self, entry: &Entry, name: &OsStr) -> Result<Option<Vec<u8>>> {
        let Ok(backing) = self.names.encrypt_xattr_name(name.as_bytes()) else {
            return Ok(None);
        };
        let abs = self.abs(&entry.cipher_path);
        let Some(value) = get_xattr(&abs, backing.as_bytes())
            .map_err(|e| Error::io("reading xattr of", &abs, e))?
        else {
            return Ok(None);
        };
        self.decrypt_xattr_value(&value).map(Some).map_err(|k| {
            Error::corrupt(
                &entry.cipher_path,
                CorruptError::Xattr {
                    name: backing,
                    reason: k.to_string(),
                },
            )
        })
    }

    fn decrypt_xattr_value(
        &self,
        value: &[u8],
    ) -> std::result::Result<Vec<u8>, crate::BlockErrorKind> {
        if value.is_empty() {
            return Ok(Vec::new());
        }
        self.content.open_blob(value)
    }

    /// Opens a regular file for random access.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a bad header, [`Error::Io`].
    pub fn open_file(&self, entry: &Entry) -> Result<CipherFile> {
        CipherFile::open(
            Arc::clone(&self.content),
            &self.abs(&entry.cipher_path),
            entry.plain_path.clone(),
        )
    }

    /// Checks the key against up to four non-empty files (first block) or, in a tree with no
    /// files, the root's names: if something was checked and nothing authenticated, the key
    /// is wrong.
    ///
    /// # Errors
    /// [`Error::WrongMasterKey`].
    pub fn check_key(&self) -> Result<()> {
        let mut files = Vec::new();
        let mut scanned = 0usize;
        let mut queue = vec![PathBuf::new()];
        while let Some(d) = queue.pop() {
            let Ok(rd) = fs::read_dir(self.abs(&d)) else {
                continue;
            };
            let mut ents: Vec<_> = rd.filter_map(|e| e.ok()).collect();
            ents.sort_by_key(fs::DirEntry::file_name);
            for de in ents {
                scanned += 1;
                let name = de.file_name();
                if matches!(
                    classify(&name),
                    EntryClass::Conf | EntryClass::DirIv | EntryClass::LongNameFile
                ) {
                    continue;
                }
                let Ok(ft) = de.file_type() else { continue };
                if ft.is_dir() {
                    queue.push(d.join(&name));
                } else if ft.is_file() && de.metadata().is_ok_and(|m| m.len() > 18) {
                    files.push(d.join(&name));
                }
                if files.len() >= KEY_CHECK_FILES || scanned >= KEY_CHECK_SCAN {
                    break;
                }
            }
            if files.len() >= KEY_CHECK_FILES || scanned >= KEY_CHECK_SCAN {
                break;
            }
        }
        // Some(true): authenticates; Some(false): fails; None: says nothing (a hole block,
        // an unreadable or malformed file).
        let checks: Vec<Option<bool>> = files.iter().map(|f| self.first_block_check(f)).collect();
        if checks.contains(&Some(true)) {
            return Ok(());
        }
        if checks.contains(&Some(false)) {
            return Err(Error::WrongMasterKey {
                path: self.root.clone(),
            });
        }
        if self.names.encrypted() {
            let root = self.root_entry()?;
            let listing = self.read_dir(&root)?;
            let tried =
                listing.entries.len() + listing.problems.iter().filter(|p| !p.warning).count();
            // A wrong EME key still yields valid padding about once in 256 names, so one
            // name that decodes among many failing ones does not prove the key right: the
            // key is wrong when fewer than a quarter of the names decode.
            if tried > 0 && listing.entries.len() * 4 < tried {
                return Err(Error::WrongMasterKey {
                    path: self.root.clone(),
                });
            }
        }
        Ok(())
    }

    fn first_block_check(&self, cipher_path: &Path) -> Option<bool> {
        let geo = self.content.geometry();
        let mut f = safeio::open_regular(&self.abs(cipher_path)).ok()?;
        let mut buf = vec![0u8; 18 + geo.cipher_bs() as usize];
        let mut n = 0;
        while n < buf.len() {
            match f.read(buf.get_mut(n..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(_) => return None,
            }
        }
        let data = buf.get(..n)?;
        let h = FileHeader::parse(data).ok()?;
        let block = data.get(18..).unwrap_or_default();
        // A hole block says nothing about the key.
        if block.iter().all(|&b| b == 0) {
            return None;
        }
        let mut out = vec![0u8; block.len()];
        Some(
            self.content
                .decrypt_block(block, 0, &h.id, &mut out)
                .is_ok(),
        )
    }
}

/// Refuses layouts weaker than what ccmount writes unless the policy opts in: plaintext
/// names put names and symlink targets outside the key (the host can choose them).
fn check_layout(config: &Config, policy: &Policy) -> std::result::Result<(), ConfigError> {
    if matches!(
        config.layout().names,
        crate::configfile::NameLayout::Plaintext
    ) && !policy.allow_plaintext_names
    {
        return Err(ConfigError::PlaintextNames);
    }
    Ok(())
}

/// Fails early with a clear message when `root` is not a cipher directory at all.
fn check_root(root: &Path) -> Result<()> {
    // Missing or unreadable: exit class "bad cipher directory", the same for every command.
    let meta = fs::metadata(root).map_err(|e| Error::Config {
        path: root.to_path_buf(),
        source: ConfigError::NoDir(e.kind()),
    })?;
    if !meta.is_dir() {
        return Err(Error::Config {
            path: root.to_path_buf(),
            source: ConfigError::Unsupported("not a directory"),
        });
    }
    if !root.join(CONF_NAME).exists() && root.join(REVERSE_CONF_NAME).exists() {
        return Err(Error::Config {
            path: root.join(REVERSE_CONF_NAME),
            source: ConfigError::Unsupported(
                "this is the plaintext side of a gocryptfs -reverse tree, not a cipher directory",
            ),
        });
    }
    Ok(())
}

/// Reads `gocryptfs.diriv`: exactly 16 bytes, not all zero, a regular file (never through a
/// symlink, never blocking on a FIFO).
///
/// # Errors
/// [`Error::Corrupt`] with [`DirIvError`] or [`CorruptError::NotRegular`], [`Error::Io`].
pub fn read_dir_iv(path: &Path) -> Result<DirIv> {
    match safeio::read_small(path, 16) {
        Ok(Some(b)) => DirIv::parse(&b).map_err(|e| Error::corrupt(path, e)),
        Ok(None) => {
            let len = fs::symlink_metadata(path).map_or(17, |m| m.len());
            Err(Error::corrupt(path, DirIvError::Length(len)))
        }
        Err(OpenFail::NotRegular(kind)) => {
            Err(Error::corrupt(path, CorruptError::NotRegular(kind)))
        }
        Err(OpenFail::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::corrupt(path, DirIvError::Missing))
        }
        Err(OpenFail::Io(e)) => Err(Error::io("reading", path, e)),
    }
}

/// Reads the `.name` side file of the long-name entry `rel` (cipher path relative to
/// `root`), bounded by `MAX_LONGNAME_FILE`; a missing, oversized or non-regular file is
/// corruption of `rel`.
pub(crate) fn read_long_name_file(root: &Path, rel: &Path, name: &OsStr) -> Result<Vec<u8>> {
    let mut side = name.to_owned();
    side.push(LONGNAME_SUFFIX);
    let side_path = root.join(rel.with_file_name(&side));
    match safeio::read_small(&side_path, MAX_LONGNAME_FILE) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(Error::corrupt(
            rel,
            LongNameError::TooLarge(MAX_LONGNAME_FILE + 1),
        )),
        Err(OpenFail::NotRegular(kind)) => Err(Error::corrupt(
            rel.with_file_name(&side),
            CorruptError::NotRegular(kind),
        )),
        Err(OpenFail::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::corrupt(rel, LongNameError::MissingNameFile))
        }
        Err(OpenFail::Io(e)) => Err(Error::io("reading", side_path, e)),
    }
}

/// Lists xattr names of `path` (not following symlinks); empty if unsupported.
pub(crate) fn list_xattrs(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                let list = buf.get(..n).unwrap_or_default();
                return Ok(list
                    .split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < (1 << 20) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads one xattr value (not following symlinks); `Ok(None)` if absent or unsupported.
pub(crate) fn get_xattr(path: &Path, name: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; 4096];
    loop {
        match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) if buf.len() < (1 << 20) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}
