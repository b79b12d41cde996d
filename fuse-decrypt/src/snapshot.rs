//! A read-only FUSE file system over a tree listed once, up front, whose file contents come
//! from a [`ContentSource`]: the mount of an `s3://` cipher tree (`s3-source` lists the
//! bucket, decrypts every name, and reads file contents with ranged GETs pinned to the
//! listed object versions).
//!
//! No gocryptfs counterpart (gocryptfs reads a local directory; upstream users stack s3fs or
//! ossfs under it). The tree cannot change while mounted: every node, name and size is fixed
//! at mount time, so inode numbers are indices, lookups never touch the network, and the
//! kernel may keep cached pages across opens (`FOPEN_KEEP_CACHE`: a file's content is pinned
//! to one object version by its source). Objects carry no trustworthy owner or mode, so
//! files are `0444` and directories `0555`, owned by the mounting user, dated at the mount.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr,
    Request,
};
use tracing::{debug, warn};

use gocryptfs_format::escape::escaped;

use crate::fs::MAX_REQUEST;

/// Most distinct read failures logged before staying quiet (a host that breaks every block
/// must not fill the log).
const MAX_WARNED: usize = 4096;
/// Reads larger than this are refused (fuser's own receive limit is 16 MiB).
const MAX_READ_BUF: usize = 16 << 20;
/// Most nodes a snapshot holds (a bound on what a hostile listing can make us allocate; the
/// listing itself is bounded by the source).
pub const MAX_NODES: usize = 4_000_000;

/// Where the plaintext of a snapshot's files comes from.
pub trait ContentSource: Send + Sync + 'static {
    /// Reads plaintext of file `file` (the index given to [`Snapshot::add_file`]) at
    /// `offset` into `buf`; returns the bytes read, short only at the end of the file.
    ///
    /// # Errors
    /// A one-line description (it is logged, with the file's path; the reader gets `EIO`).
    /// Content that fails authentication must be an error, never returned.
    fn read_at(&self, file: usize, offset: u64, buf: &mut [u8]) -> Result<usize, String>;
}

/// Why a node cannot be added to a [`Snapshot`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A path with a component other than a plain name (`..`, `/`, `.`), or empty.
    #[error("{}: not a relative path of plain names", escaped(.0))]
    BadPath(std::path::PathBuf),
    /// The same name twice, or a file where a directory is needed.
    #[error("{}: given twice, or as both a file and a directory", escaped(.0))]
    Conflict(std::path::PathBuf),
    /// More than [`MAX_NODES`] nodes.
    #[error("more than {MAX_NODES} entries in one tree")]
    TooLarge,
}

#[derive(Debug)]
enum Kind {
    Dir(Vec<u64>),
    File { size: u64, file: usize },
}

#[derive(Debug)]
struct Node {
    name: OsString,
    parent: u64,
    kind: Kind,
}

/// A fixed tree of directories and regular files. Node 1 is the root.
#[derive(Debug)]
pub struct Snapshot {
    /// `nodes[i]` is inode `i + 1`.
    nodes: Vec<Node>,
    by_name: HashMap<(u64, OsString), u64>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}

impl Snapshot {
    /// An empty tree (the root only).
    #[must_use]
    pub fn new() -> Self {
        Snapshot {
            nodes: vec![Node {
                name: OsString::new(),
                parent: ROOT,
                kind: Kind::Dir(Vec::new()),
            }],
            by_name: HashMap::new(),
        }
    }

    /// Number of nodes, the root included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root exists.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Adds directory `path` (relative to the root) and its missing parents.
    ///
    /// # Errors
    /// [`SnapshotError`].
    pub fn add_dir(&mut self, path: &Path) -> Result<(), SnapshotError> {
        self.dir_of(path, path)?;
        Ok(())
    }

    /// Adds regular file `path` of `size` plaintext bytes, read as `file` from the source.
    ///
    /// # Errors
    /// [`SnapshotError`].
    pub fn add_file(&mut self, path: &Path, size: u64, file: usize) -> Result<(), SnapshotError> {
        let name = path
            .file_name()
            .ok_or_else(|| SnapshotError::BadPath(path.to_path_buf()))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => self.dir_of(p, path)?,
            _ => ROOT,
        };
        if !matches!(path.components().next_back(), Some(Component::Normal(_))) {
            return Err(SnapshotError::BadPath(path.to_path_buf()));
        }
        if self.by_name.contains_key(&(parent, name.to_os_string())) {
            return Err(SnapshotError::Conflict(path.to_path_buf()));
        }
        self.push(parent, name, Kind::File { size, file })?;
        Ok(())
    }

    /// The directory node of `path`, made with its parents when missing.
    fn dir_of(&mut self, path: &Path, whole: &Path) -> Result<u64, SnapshotError> {
        let mut at = ROOT;
        let mut any = false;
        for c in path.components() {
            let Component::Normal(name) = c else {
                return Err(SnapshotError::BadPath(whole.to_path_buf()));
            };
            any = true;
            at = match self.by_name.get(&(at, name.to_os_string())) {
                Some(&id) => match self.node(id).map(|n| &n.kind) {
                    Some(Kind::Dir(_)) => id,
                    _ => return Err(SnapshotError::Conflict(whole.to_path_buf())),
                },
                None => self.push(at, name, Kind::Dir(Vec::new()))?,
            };
        }
        if !any {
            return Err(SnapshotError::BadPath(whole.to_path_buf()));
        }
        Ok(at)
    }

    fn push(&mut self, parent: u64, name: &OsStr, kind: Kind) -> Result<u64, SnapshotError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(SnapshotError::TooLarge);
        }
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(Node {
            name: name.to_os_string(),
            parent,
            kind,
        });
        if let Some(Node {
            kind: Kind::Dir(children),
            ..
        }) = self.node_mut(parent)
        {
            children.push(id);
        }
        self.by_name.insert((parent, name.to_os_string()), id);
        Ok(id)
    }

    fn node(&self, id: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(id.checked_sub(1)?).ok()?)
    }

    fn node_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.nodes
            .get_mut(usize::try_from(id.checked_sub(1)?).ok()?)
    }

    /// The path of node `id`, for messages.
    fn path_of(&self, id: u64) -> std::path::PathBuf {
        let mut parts = Vec::new();
        let mut at = id;
        // Bounded: a parent always has a smaller id than its child.
        while at != ROOT {
            let Some(n) = self.node(at) else { break };
            parts.push(n.name.clone());
            if n.parent >= at {
                break;
            }
            at = n.parent;
        }
        parts.iter().rev().collect()
    }
}

const ROOT: u64 = 1;

/// The file system serving a [`Snapshot`].
pub(crate) struct SnapFs {
    tree: Snapshot,
    source: Arc<dyn ContentSource>,
    ttl: Duration,
    direct_io: bool,
    uid: u32,
    gid: u32,
    time: SystemTime,
    warned: Mutex<std::collections::HashSet<(u64, String)>>,
}

impl std::fmt::Debug for SnapFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapFs")
            .field("nodes", &self.tree.len())
            .finish_non_exhaustive()
    }
}

impl SnapFs {
    pub(crate) fn new(
        tree: Snapshot,
        source: Arc<dyn ContentSource>,
        ttl: Duration,
        direct_io: bool,
    ) -> Self {
        SnapFs {
            tree,
            source,
            ttl,
            direct_io,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            time: SystemTime::now(),
            warned: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn attr(&self, id: u64, n: &Node) -> FileAttr {
        let (kind, perm, size, nlink) = match &n.kind {
            Kind::Dir(_) => (FileType::Directory, 0o555, 4096, 2),
            Kind::File { size, .. } => (FileType::RegularFile, 0o444, *size, 1),
        };
        FileAttr {
            ino: INodeNo(id),
            size,
            blocks: size.div_ceil(512),
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            crtime: self.time,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn node(&self, ino: INodeNo) -> Result<&Node, Errno> {
        self.tree.node(ino.0).ok_or(Errno::ENOENT)
    }

    fn warn_once(&self, id: u64, msg: String) {
        let mut w = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.tree.path_of(id);
        if w.len() < MAX_WARNED && w.insert((id, msg.clone())) {
            warn!("read {}: {msg}; answering EIO", escaped(&path));
        } else {
            debug!("read {}: {msg}; answering EIO", escaped(&path));
        }
    }

    /// `.`, `..` and the children of directory `ino`, with their next-offsets.
    fn items(&self, ino: INodeNo) -> Result<Vec<(u64, OsString, FileType)>, Errno> {
        let n = self.node(ino)?;
        let Kind::Dir(children) = &n.kind else {
            return Err(Errno::ENOTDIR);
        };
        let mut out = Vec::with_capacity(children.len() + 2);
        out.push((ino.0, OsString::from("."), FileType::Directory));
        out.push((n.parent, OsString::from(".."), FileType::Directory));
        for &c in children {
            if let Some(cn) = self.tree.node(c) {
                let t = match cn.kind {
                    Kind::Dir(_) => FileType::Directory,
                    Kind::File { .. } => FileType::RegularFile,
                };
                out.push((c, cn.name.clone(), t));
            }
        }
        Ok(out)
    }
}

impl Filesystem for SnapFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut flags = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS;
        if self.direct_io {
            flags |= InitFlags::FUSE_ASYNC_DIO | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
        }
        crate::fs::want(config, flags);
        let _ = config.set_max_write(MAX_REQUEST);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.tree.by_name.get(&(parent.0, name.to_os_string())) {
            Some(&id) => match self.tree.node(id) {
                Some(n) => reply.entry(&self.ttl, &self.attr(id, n), Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            None => match self.node(parent) {
                Ok(Node {
                    kind: Kind::Dir(_), ..
                }) => reply.error(Errno::ENOENT),
                Ok(_) => reply.error(Errno::ENOTDIR),
                Err(e) => reply.error(e),
            },
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Ok(n) => reply.attr(&self.ttl, &self.attr(ino.0, n)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let trunc = rustix::fs::OFlags::TRUNC.bits() as i32;
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & trunc != 0 {
            return reply.error(Errno::EROFS);
        }
        match self.node(ino) {
            Ok(Node {
                kind: Kind::File { .. },
                ..
            }) => {
                let mut fl = FopenFlags::FOPEN_NOFLUSH;
                if self.direct_io {
                    fl |= FopenFlags::FOPEN_DIRECT_IO;
                } else {
                    // The source reads one object version for the whole mount.
                    fl |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.opened(FileHandle(ino.0), fl);
            }
            Ok(_) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (plain_size, file) = match self.node(ino) {
            Ok(Node {
                kind: Kind::File { size, file },
                ..
            }) => (*size, *file),
            Ok(_) => return reply.error(Errno::EISDIR),
            Err(e) => return reply.error(e),
        };
        let len = plain_size
            .saturating_sub(offset)
            .min((size as usize).min(MAX_READ_BUF) as u64) as usize;
        if len == 0 {
            return reply.data(&[]);
        }
        let mut buf = vec![0u8; len];
        match self.source.read_at(file, offset, &mut buf) {
            Ok(n) => reply.data(buf.get(..n).unwrap_or_default()),
            Err(msg) => {
                self.warn_once(ino.0, msg);
                reply.error(Errno::EIO);
            }
        }
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
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.node(ino) {
            Ok(Node {
                kind: Kind::Dir(_), ..
            }) => reply.opened(
                FileHandle(ino.0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let items = match self.items(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (id, name, kind)) in items.iter().enumerate().skip(start) {
            if reply.add(INodeNo(*id), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let items = match self.items(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (id, name, _)) in items.iter().enumerate().skip(start) {
            let Some(n) = self.tree.node(*id) else {
                continue;
            };
            let attr = self.attr(*id, n);
            if reply.add(
                INodeNo(*id),
                i as u64 + 1,
                name,
                &self.ttl,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bytes: u64 = self
            .tree
            .nodes
            .iter()
            .map(|n| match n.kind {
                Kind::File { size, .. } => size.div_ceil(4096),
                Kind::Dir(_) => 1,
            })
            .sum();
        reply.statfs(bytes, 0, 0, self.tree.len() as u64, 0, 4096, 255, 4096);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let n = match self.node(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        let is_dir = matches!(n.kind, Kind::Dir(_));
        // r--r--r-- files, r-xr-xr-x directories, for everyone the mount lets in.
        if mask.contains(AccessFlags::X_OK) && !is_dir {
            return reply.error(Errno::EACCES);
        }
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn builds_parents_and_refuses_conflicts() {
        let mut t = Snapshot::new();
        t.add_file(Path::new("a/b/c.bin"), 5, 0).unwrap();
        t.add_dir(Path::new("a/d")).unwrap();
        t.add_dir(Path::new("a/b")).unwrap();
        t.add_file(Path::new("top"), 1, 1).unwrap();
        assert_eq!(t.len(), 6);
        assert!(matches!(
            t.add_file(Path::new("a/b/c.bin"), 1, 2),
            Err(SnapshotError::Conflict(_))
        ));
        assert!(matches!(
            t.add_dir(Path::new("top/x")),
            Err(SnapshotError::Conflict(_))
        ));
        assert!(matches!(
            t.add_file(Path::new("a/b"), 1, 2),
            Err(SnapshotError::Conflict(_))
        ));
        for bad in ["", "/etc", "../x", "a/../b", "./x"] {
            assert!(
                matches!(
                    t.add_file(Path::new(bad), 1, 3),
                    Err(SnapshotError::BadPath(_))
                ),
                "{bad}"
            );
        }
        let c = t.by_name[&(ROOT, OsString::from("a"))];
        let b = t.by_name[&(c, OsString::from("b"))];
        let f = t.by_name[&(b, OsString::from("c.bin"))];
        assert_eq!(t.path_of(f), Path::new("a/b/c.bin"));
    }
}
