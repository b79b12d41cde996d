//! The `fuser::Filesystem` of a mount: a read-only plaintext view of a [`CipherDir`].
//!
//! Mirrors the read side of gocryptfs `internal/fusefrontend` (`node.go` Lookup/Getattr,
//! `node_dir_ops.go` Readdir, `file.go` Read, `node_xattr.go`, `node_helpers.go`
//! readlink) on fuser 0.18 (spec §7, crate-stack §2). Every write operation answers
//! `EROFS`. Handlers never panic: library errors become an errno, and a block that fails
//! authentication becomes `EIO` with one warning naming the file and the block.
//!
//! Fast path (crate-stack §2): 1 MiB requests (`max_write` = 1 MiB so `max_pages` = 256),
//! decryption straight into a per-thread reply buffer (the reader `pread`s the ciphertext of
//! the whole request into its own per-thread buffer first), `FOPEN_KEEP_CACHE` and long
//! TTLs because the tree does not change, one shared backing fd per open inode.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr,
    Request,
};
use tracing::{debug, warn};

use gocryptfs_format::escape::escaped;
use gocryptfs_format::manifest::{EntryKind, VerifiedTree};
use gocryptfs_format::{CipherDir, CipherFile, Entry, Error, FileKind, Stamp};

use crate::errno::errno_of;
use crate::inodes::{Handles, Inodes, ROOT};

/// Largest read request we ask the kernel for (`max_pages` follows `max_write`).
pub(crate) const MAX_REQUEST: u32 = 1 << 20;
/// Reads larger than this are refused (fuser's own receive limit is 16 MiB).
const MAX_READ_BUF: usize = 16 << 20;
/// Distinct (file, block) authentication failures logged before staying quiet.
const MAX_WARNED: usize = 4096;
/// Nodes whose backing identity is remembered (a full table is cleared: the next opens then
/// drop their caches once, which is only slower).
const MAX_STAMPS: usize = 1 << 16;
/// Keys of directory summaries in the warned set: counts down from here, below the
/// per-file key `u64::MAX`.
const HIDDEN_KEY: u64 = u64::MAX - 1;
/// Largest xattr list or value we return (the kernel's limit).
const XATTR_MAX: usize = 64 * 1024;

thread_local! {
    /// Per-thread plaintext reply buffer: decrypted into, then written to /dev/fuse.
    static REPLY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Options of the file system itself (the mount options live in [`super::MountConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FsOptions {
    /// Attribute and entry TTL.
    pub(crate) ttl: Duration,
    /// `FOPEN_DIRECT_IO` on every file (and `FUSE_DIRECT_IO_ALLOW_MMAP` where offered).
    pub(crate) direct_io: bool,
}

/// One open directory: the listing taken at `opendir`.
#[derive(Debug)]
pub(crate) struct DirHandle {
    items: Vec<DirItem>,
}

#[derive(Debug)]
struct DirItem {
    name: OsString,
    id: u64,
    kind: FileType,
    /// `None` for `.` and `..` (never counted as lookups).
    entry: Option<Arc<Entry>>,
}

/// The file system. `Send + Sync`; every handler takes `&self`.
#[derive(Debug)]
pub(crate) struct CcFs {
    dir: Arc<CipherDir>,
    inodes: Inodes,
    files: Handles<CipherFile>,
    dirs: Handles<DirHandle>,
    opts: FsOptions,
    warned: Mutex<HashSet<(std::path::PathBuf, u64)>>,
    /// With `mount --expect`: the tree as checked before going live. Entries it does not
    /// list are hidden, and a file whose file ID, size or type changed since is refused.
    pin: Option<Arc<VerifiedTree>>,
    /// The backing file's identity at the last open of each node: the kernel may keep the
    /// cached plaintext (`FOPEN_KEEP_CACHE`) only while it is unchanged.
    stamps: Mutex<Stamps>,
}

/// [`CcFs::stamps`]: per node, the identity at its last open; `forgot` once the table had to
/// be cleared (then a node without a stamp may still have cached pages).
#[derive(Debug, Default)]
struct Stamps {
    by_node: HashMap<u64, Stamp>,
    forgot: bool,
}

fn file_type(e: &Entry) -> FileType {
    match e.kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Other => FileType::from_std(e.meta.file_type()).unwrap_or(FileType::NamedPipe),
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = u32::try_from(nsecs).unwrap_or(0).min(999_999_999);
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::new(s, nsecs),
        Err(_) => UNIX_EPOCH
            .checked_sub(Duration::new(secs.unsigned_abs(), 0))
            .unwrap_or(UNIX_EPOCH),
    }
}

impl CcFs {
    /// A file system over `dir`.
    ///
    /// # Errors
    /// The root cannot be `lstat`ed.
    pub(crate) fn new(dir: Arc<CipherDir>, opts: FsOptions) -> Result<Self, Error> {
        let root = dir.root_entry()?;
        Ok(CcFs {
            inodes: Inodes::new(root),
            dir,
            files: Handles::default(),
            dirs: Handles::default(),
            opts,
            warned: Mutex::new(HashSet::new()),
            pin: None,
            stamps: Mutex::new(Stamps::default()),
        })
    }

    /// Serves only what `pin` accepted (see the field).
    pub(crate) fn with_pin(mut self, pin: Option<Arc<VerifiedTree>>) -> Self {
        self.pin = pin;
        self
    }

    /// Whether `e` may be served at all: under the pin, and (for a symlink) with a target
    /// the policy allows. A refused symlink is hidden (not found), logged once.
    fn servable(&self, e: &Entry) -> bool {
        if !self.pinned_ok(e) {
            return false;
        }
        if e.kind == FileKind::Other {
            // A FIFO would hang its readers in the kernel's pipe code, a socket or device
            // serves nothing a model needs: not served (decrypt skips them too).
            self.hide(&e.plain_path, "a FIFO, socket or device node is not served");
            return false;
        }
        if e.kind == FileKind::Symlink
            && let Err(err) = self.dir.read_link(e)
        {
            self.report("symlink hidden", &err);
            return false;
        }
        true
    }

    /// Whether `e` may be served under the pin (always without one). Logs a refusal.
    fn pinned_ok(&self, e: &Entry) -> bool {
        let Some(pin) = &self.pin else { return true };
        if e.plain_path.as_os_str().is_empty() {
            return true;
        }
        let ok = match (pin.pinned(&e.plain_path).map(|m| &m.kind), e.kind) {
            (Some(EntryKind::File(f)), FileKind::File) => f.size == e.plain_size,
            (Some(EntryKind::Dir), FileKind::Dir)
            | (Some(EntryKind::Symlink(_)), FileKind::Symlink)
            | (Some(EntryKind::Other), FileKind::Other) => true,
            _ => false,
        };
        if !ok {
            self.refuse_unpinned(
                &e.plain_path,
                "not in the pinned manifest, or its type or size changed",
            );
        }
        ok
    }

    fn refuse_unpinned(&self, path: &Path, why: &str) {
        self.hide(path, &format!("{why} (the mount is pinned)"));
    }

    /// Logs once per path why an entry is not served.
    fn hide(&self, path: &Path, why: &str) {
        let key = (path.to_path_buf(), u64::MAX);
        let mut w = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if w.len() < MAX_WARNED && w.insert(key) {
            warn!("{}: refused: {why}", escaped(path));
        }
    }

    /// Logs a library error once per (path, block) for content failures; I/O errors such as
    /// a vanished file are only debug noise.
    fn report(&self, op: &str, e: &Error) {
        let key = match e {
            Error::Authentication { path, block } | Error::Block { path, block, .. } => {
                Some((path.clone(), *block))
            }
            Error::Corrupt { path, .. } => Some((path.clone(), u64::MAX)),
            Error::Io { .. } => {
                debug!("{op}: {e}");
                return;
            }
            _ => None,
        };
        if let Some(key) = key {
            let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
            if warned.contains(&key) {
                debug!("{op}: {e} (again)");
                return;
            }
            if warned.len() < MAX_WARNED {
                warned.insert(key);
            }
        }
        warn!("{op}: {e}; answering EIO");
    }

    fn attr(&self, id: u64, e: &Entry) -> FileAttr {
        let m = &e.meta;
        let size = match e.kind {
            FileKind::File => e.plain_size,
            // gocryptfs reports the plaintext target length.
            FileKind::Symlink => match self.dir.read_link(e) {
                Ok(t) => t.len() as u64,
                Err(err) => {
                    self.report("stat", &err);
                    0
                }
            },
            FileKind::Dir | FileKind::Other => m.len(),
        };
        let mtime = time(m.mtime(), m.mtime_nsec());
        FileAttr {
            ino: INodeNo(id),
            size,
            blocks: m.blocks(),
            atime: time(m.atime(), m.atime_nsec()),
            mtime,
            ctime: time(m.ctime(), m.ctime_nsec()),
            crtime: mtime,
            kind: file_type(e),
            // No setuid/setgid/sticky, no group/other write unless the user opted in.
            perm: (self.dir.policy().mode(m.mode())) as u16,
            nlink: u32::try_from(m.nlink()).unwrap_or(u32::MAX),
            uid: m.uid(),
            gid: m.gid(),
            rdev: u32::try_from(m.rdev()).unwrap_or(0),
            blksize: 4096,
            flags: 0,
        }
    }

    /// A negative entry (cached by the kernel for the TTL: the tree does not change).
    fn negative(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo(0),
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Records `stamp` as the node's backing identity; true when it equals the one of the
    /// previous open (so pages the kernel cached then are still this file's plaintext), or
    /// on a first open (nothing cached yet). Otherwise (the host replaced or rewrote the
    /// cipher file) the kernel drops the node's cache on this open, as gocryptfs does on
    /// every open: old and new content are never served mixed.
    fn unchanged_since_last_open(&self, node: u64, stamp: Stamp) -> bool {
        let mut st = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        if st.by_node.len() >= MAX_STAMPS && !st.by_node.contains_key(&node) {
            st.by_node.clear();
            st.forgot = true;
        }
        match st.by_node.insert(node, stamp) {
            Some(prev) => prev == stamp,
            // The first open of the node: pages can only have been cached by an earlier open,
            // which left a stamp, unless the table was cleared since.
            None => !st.forgot,
        }
    }

    fn entry_of(&self, ino: INodeNo) -> Result<Arc<Entry>, Errno> {
        self.inodes.get(ino.0).ok_or(Errno::ENOENT)
    }

    fn do_read(&self, fh: FileHandle, offset: u64, size: u32, reply: ReplyData) {
        let Some(file) = self.files.get(fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        let want = (size as usize).min(MAX_READ_BUF);
        let len = file.plain_size().saturating_sub(offset).min(want as u64) as usize;
        if len == 0 {
            reply.data(&[]);
            return;
        }
        REPLY_BUF.with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                reply.error(Errno::EIO);
                return;
            };
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let Some(dst) = buf.get_mut(..len) else {
                reply.error(Errno::EIO);
                return;
            };
            match file.read_at(offset, dst) {
                Ok(n) => reply.data(dst.get(..n).unwrap_or_default()),
                Err(e) => {
                    self.report("read", &e);
                    reply.error(errno_of(&e));
                }
            }
        });
    }

    fn list(&self, ino: INodeNo) -> Result<DirHandle, Errno> {
        let entry = self.entry_of(ino)?;
        if entry.kind != FileKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        let listing = self.dir.read_dir(&entry).map_err(|e| {
            self.report("readdir", &e);
            errno_of(&e)
        })?;
        // One summary per directory (and per change of its count), however many bad names
        // the host planted: never a log line per entry on every `ls`.
        let hidden = listing.problems.iter().filter(|p| !p.warning).count();
        let harmless = listing.problems.len() - hidden;
        if let Some(first) = listing.problems.iter().find(|p| !p.warning) {
            let key = (entry.plain_path.clone(), HIDDEN_KEY - hidden as u64);
            let mut w = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
            if w.len() < MAX_WARNED && w.insert(key) {
                warn!(
                    "readdir {}: {hidden} entries hidden (they do not decrypt or are damaged; the first: {})",
                    escaped(&entry.plain_path),
                    first.error
                );
            } else {
                debug!(
                    "readdir {}: {hidden} entries hidden",
                    escaped(&entry.plain_path)
                );
            }
        }
        if harmless > 0 {
            debug!(
                "readdir {}: {harmless} harmless leftovers skipped",
                escaped(&entry.plain_path)
            );
        }
        let parent = self.inodes.parent(ino.0).unwrap_or(ROOT);
        let mut items = Vec::with_capacity(listing.entries.len() + 2);
        for (name, id) in [(".", ino.0), ("..", parent)] {
            items.push(DirItem {
                name: OsString::from(name),
                id,
                kind: FileType::Directory,
                entry: None,
            });
        }
        for e in listing.entries {
            if !self.servable(&e) {
                continue;
            }
            let id = self.inodes.id_for(&e);
            items.push(DirItem {
                name: e.name.clone(),
                id,
                kind: file_type(&e),
                entry: Some(Arc::new(e)),
            });
        }
        Ok(DirHandle { items })
    }

    fn xattr_reply(data: &[u8], size: u32, reply: ReplyXattr) {
        if data.len() > XATTR_MAX {
            reply.error(Errno::E2BIG);
        } else if size == 0 {
            reply.size(data.len() as u32);
        } else if data.len() > size as usize {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(data);
        }
    }
}

/// Adds the capabilities the kernel offers, one at a time (an unsupported one is skipped).
pub(crate) fn want(config: &mut KernelConfig, flags: InitFlags) {
    for flag in flags.iter() {
        if let Err(missing) = config.add_capabilities(flag) {
            debug!("kernel does not offer FUSE capability {missing:?}");
        }
    }
}

impl Filesystem for CcFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut flags = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_PARALLEL_DIROPS;
        if self.opts.direct_io {
            flags |= InitFlags::FUSE_ASYNC_DIO | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
        }
        want(config, flags);
        if self.opts.direct_io
            && !config
                .capabilities()
                .contains(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
        {
            warn!(
                "this kernel lacks FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6+): with direct I/O, shared mmap of files fails (ENODEV)"
            );
        }
        // max_pages = max(max_write, max_readahead) / page: 1 MiB read requests.
        let _ = config.set_max_write(MAX_REQUEST);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        debug!(
            "FUSE ABI {:?}, kernel capabilities {:?}",
            config.kernel_abi(),
            config.capabilities()
        );
        Ok(())
    }

    fn destroy(&mut self) {
        debug!(
            "FUSE session ended with {} open files, {} open directories, {} inodes",
            self.files.len(),
            self.dirs.len(),
            self.inodes.len()
        );
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let p = match self.entry_of(parent) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        if p.kind != FileKind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        match self.dir.lookup(&p, name) {
            Ok(Some(e)) if !self.servable(&e) => {
                reply.entry(&self.opts.ttl, &self.negative(), Generation(0));
            }
            Ok(Some(e)) => {
                let e = Arc::new(e);
                let id = self.inodes.remember(parent.0, Arc::clone(&e));
                let attr = self.attr(id, &e);
                reply.entry(&self.opts.ttl, &attr, Generation(0));
            }
            Ok(None) => reply.entry(&self.opts.ttl, &self.negative(), Generation(0)),
            Err(e) => {
                self.report("lookup", &e);
                reply.error(errno_of(&e));
            }
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.entry_of(ino) {
            Ok(e) => reply.attr(&self.opts.ttl, &self.attr(ino.0, &e)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let e = match self.entry_of(ino) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        if e.kind != FileKind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        match self.dir.read_link(&e) {
            Ok(t)
                if self.pin.as_ref().is_some_and(|pin| {
                    !matches!(pin.pinned(&e.plain_path).map(|m| &m.kind),
                    Some(EntryKind::Symlink(want)) if *want == t)
                }) =>
            {
                self.refuse_unpinned(&e.plain_path, "its target differs from the pinned one");
                reply.error(Errno::EIO);
            }
            Ok(t) => reply.data(t.as_bytes()),
            Err(err) => {
                self.report("readlink", &err);
                reply.error(errno_of(&err));
            }
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let trunc = rustix::fs::OFlags::TRUNC.bits() as i32;
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & trunc != 0 {
            return reply.error(Errno::EROFS);
        }
        let opened = self.inodes.open_file(ino.0, |e| {
            if e.kind == FileKind::File {
                let file = self.dir.open_file(e).map_err(|err| {
                    self.report("open", &err);
                    errno_of(&err)
                })?;
                // The entry itself passed `pinned_ok` when it was looked up or listed; what
                // can have changed since is the file behind it, so check the opened file.
                if let Some(pin) = &self.pin {
                    let size_ok = matches!(
                        pin.pinned(&e.plain_path).map(|m| &m.kind),
                        Some(EntryKind::File(f)) if f.size == file.plain_size()
                    );
                    if pin.file_id(&e.plain_path) != file.file_id() || !size_ok {
                        self.refuse_unpinned(
                            &e.plain_path,
                            "its file ID or size differs from the pinned one (the file was replaced)",
                        );
                        return Err(Errno::EIO);
                    }
                }
                Ok(file)
            } else {
                Err(Errno::EINVAL)
            }
        });
        match opened {
            Some(Ok(file)) => {
                let stamp = file.stamp();
                let fh = self.files.insert(file);
                let mut fl = FopenFlags::FOPEN_NOFLUSH;
                if self.opts.direct_io {
                    fl |= FopenFlags::FOPEN_DIRECT_IO;
                } else if self.unchanged_since_last_open(ino.0, stamp) {
                    // Same inode, ctime, size and file ID as when the pages were cached.
                    fl |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.opened(FileHandle(fh), fl);
            }
            Some(Err(e)) => reply.error(e),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.do_read(fh, offset, size, reply);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.remove(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.list(ino) {
            Ok(h) => {
                let fh = self.dirs.insert(Arc::new(h));
                reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                );
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(h) = self.dirs.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, item) in h.items.iter().enumerate().skip(start) {
            if reply.add(INodeNo(item.id), i as u64 + 1, item.kind, &item.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(h) = self.dirs.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, item) in h.items.iter().enumerate().skip(start) {
            let next = i as u64 + 1;
            match &item.entry {
                Some(e) => {
                    let attr = self.attr(item.id, e);
                    if reply.add(
                        INodeNo(item.id),
                        next,
                        &item.name,
                        &self.opts.ttl,
                        &attr,
                        Generation(0),
                    ) {
                        break;
                    }
                    // The kernel counts every entry it receives as one lookup.
                    self.inodes.remember(ino.0, Arc::clone(e));
                }
                None => {
                    // `.` and `..`: not lookups; attributes of the node when known.
                    let Some(e) = self.inodes.get(item.id) else {
                        continue;
                    };
                    let attr = self.attr(item.id, &e);
                    if reply.add(
                        INodeNo(item.id),
                        next,
                        &item.name,
                        &self.opts.ttl,
                        &attr,
                        Generation(0),
                    ) {
                        break;
                    }
                }
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.remove(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(self.dir.root()) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                u32::try_from(s.f_bsize).unwrap_or(4096),
                255,
                u32::try_from(s.f_frsize).unwrap_or(4096),
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let e = match self.entry_of(ino) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        match self.dir.get_xattr(&e, name) {
            Ok(Some(v)) => Self::xattr_reply(&v, size, reply),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(err) => {
                self.report("getxattr", &err);
                reply.error(errno_of(&err));
            }
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let e = match self.entry_of(ino) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        match self.dir.xattrs(&e) {
            Ok((xs, bad)) => {
                for b in &bad {
                    self.report("listxattr (attribute hidden)", b);
                }
                let mut list = Vec::new();
                for x in &xs {
                    list.extend_from_slice(x.name.as_bytes());
                    list.push(0);
                }
                Self::xattr_reply(&list, size, reply);
            }
            Err(err) => {
                self.report("listxattr", &err);
                reply.error(errno_of(&err));
            }
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let e = match self.entry_of(ino) {
            Ok(e) => e,
            Err(e) => return reply.error(e),
        };
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        let mode = self.dir.policy().mode(e.meta.mode());
        let need = (if mask.contains(AccessFlags::R_OK) {
            4
        } else {
            0
        }) | (if mask.contains(AccessFlags::X_OK) {
            1
        } else {
            0
        });
        let ok = if req.uid() == 0 {
            // Root may read anything, and execute what anyone may execute (or search dirs).
            need & 1 == 0 || e.kind == FileKind::Dir || mode & 0o111 != 0
        } else {
            let bits = if req.uid() == e.meta.uid() {
                (mode >> 6) & 7
            } else if req.gid() == e.meta.gid() {
                (mode >> 3) & 7
            } else {
                mode & 7
            };
            bits & need == need
        };
        if ok {
            reply.ok();
        } else {
            reply.error(Errno::EACCES);
        }
    }

    // ---- Everything that would write answers EROFS (the mount is also MS_RDONLY). ----

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: fuser::ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}
