//! The inode table of a mount: stable node IDs, kernel lookup counts (`forget`), shared
//! open backing files, and the open-file / open-directory handle tables.
//!
//! Mirrors gocryptfs `internal/inomap` (a backing `(dev, ino)` becomes a unique inode
//! number: the backing number itself when it is on the cipher root's device, else one from a
//! spill range) and go-fuse `fs/bridge.go` (one node per kernel inode, dropped when the
//! kernel's lookup count falls to zero). The node ID doubles as `st_ino`, so numbers are
//! stable for as long as the backing files are, even across `forget`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use gocryptfs_format::{CipherFile, Entry};

/// The FUSE root node ID.
pub(crate) const ROOT: u64 = 1;
/// Node IDs with this bit come from the spill range; backing numbers never use it here.
const SPILL: u64 = 1 << 63;

/// One inode the kernel knows about.
#[derive(Debug)]
struct Node {
    entry: Arc<Entry>,
    parent: u64,
    nlookup: u64,
    /// The open backing file shared by every open of this inode.
    file: Weak<CipherFile>,
}

/// Node IDs and the nodes the kernel holds references to. All methods take `&self`.
#[derive(Debug)]
pub(crate) struct Inodes {
    root_key: (u64, u64),
    root_dev: u64,
    nodes: RwLock<HashMap<u64, Node>>,
    spill: Mutex<HashMap<(u64, u64), u64>>,
}

impl Inodes {
    /// A table holding the root (never forgotten).
    pub(crate) fn new(root: Entry) -> Self {
        let root_key = (root.meta.dev(), root.meta.ino());
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                entry: Arc::new(root),
                parent: ROOT,
                nlookup: 1,
                file: Weak::new(),
            },
        );
        Inodes {
            root_key,
            root_dev: root_key.0,
            nodes: RwLock::new(nodes),
            spill: Mutex::new(HashMap::new()),
        }
    }

    /// The node ID of a backing inode: the same `(dev, ino)` always gets the same ID.
    pub(crate) fn id_for(&self, entry: &Entry) -> u64 {
        let key = (entry.meta.dev(), entry.meta.ino());
        if key == self.root_key {
            return ROOT;
        }
        if key.0 == self.root_dev && key.1 > ROOT && key.1 & SPILL == 0 {
            return key.1;
        }
        let mut spill = self.spill.lock().unwrap_or_else(PoisonError::into_inner);
        let next = SPILL | (spill.len() as u64 + 1);
        *spill.entry(key).or_insert(next)
    }

    /// The entry of node `id`, if the kernel holds it.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Entry>> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        nodes.get(&id).map(|n| Arc::clone(&n.entry))
    }

    /// The parent node ID of `id` (the root is its own parent).
    pub(crate) fn parent(&self, id: u64) -> Option<u64> {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        nodes.get(&id).map(|n| n.parent)
    }

    /// Records one kernel lookup of `entry` under `parent` (lookup, readdirplus) and
    /// returns its node ID. A fresh `Entry` replaces the stored one (newer metadata).
    pub(crate) fn remember(&self, parent: u64, entry: Arc<Entry>) -> u64 {
        let id = self.id_for(&entry);
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        nodes
            .entry(id)
            .and_modify(|n| {
                n.nlookup = n.nlookup.saturating_add(1);
                if id != ROOT {
                    n.entry = Arc::clone(&entry);
                    n.parent = parent;
                }
            })
            .or_insert_with(|| Node {
                entry,
                parent,
                nlookup: 1,
                file: Weak::new(),
            });
        id
    }

    /// The kernel dropped `n` references to `id`; the node goes when none are left.
    pub(crate) fn forget(&self, id: u64, n: u64) {
        if id == ROOT {
            return;
        }
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(node) = nodes.get_mut(&id) {
            node.nlookup = node.nlookup.saturating_sub(n);
            if node.nlookup == 0 {
                nodes.remove(&id);
            }
        }
    }

    /// Number of nodes held (for tests and debug logs).
    pub(crate) fn len(&self) -> usize {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The open backing file of node `id`, opened with `open` if no open handle shares one.
    /// `None` if the node is unknown.
    pub(crate) fn open_file<E>(
        &self,
        id: u64,
        open: impl FnOnce(&Entry) -> Result<CipherFile, E>,
    ) -> Option<Result<Arc<CipherFile>, E>> {
        let entry = {
            let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
            let node = nodes.get(&id)?;
            if let Some(f) = node.file.upgrade() {
                return Some(Ok(f));
            }
            Arc::clone(&node.entry)
        };
        // Open without holding the lock (a header read); another thread may race us.
        let fresh = match open(&entry) {
            Ok(f) => Arc::new(f),
            Err(e) => return Some(Err(e)),
        };
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        let Some(node) = nodes.get_mut(&id) else {
            return Some(Ok(fresh));
        };
        if let Some(f) = node.file.upgrade() {
            return Some(Ok(f));
        }
        node.file = Arc::downgrade(&fresh);
        Some(Ok(fresh))
    }
}

/// A table of open handles (`fh` numbers) to shared values.
#[derive(Debug)]
pub(crate) struct Handles<T> {
    map: RwLock<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles {
            map: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> Handles<T> {
    /// Stores `v` under a new handle number.
    pub(crate) fn insert(&self, v: Arc<T>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fh, v);
        fh
    }

    /// The value of handle `fh`.
    pub(crate) fn get(&self, fh: u64) -> Option<Arc<T>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fh)
            .cloned()
    }

    /// Drops handle `fh`.
    pub(crate) fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fh)
    }

    /// Number of open handles.
    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use gocryptfs_format::FileKind;
    use std::path::PathBuf;

    fn entry(path: &std::path::Path) -> Entry {
        Entry {
            name: path.file_name().unwrap_or_default().to_owned(),
            plain_path: PathBuf::from(path.file_name().unwrap_or_default()),
            cipher_path: PathBuf::from(path.file_name().unwrap_or_default()),
            kind: FileKind::File,
            meta: std::fs::symlink_metadata(path).unwrap(),
            plain_size: 0,
        }
    }

    #[test]
    fn ids_are_stable_and_lookups_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Entry {
            kind: FileKind::Dir,
            ..entry(tmp.path())
        };
        let t = Inodes::new(root);
        std::fs::write(tmp.path().join("a"), b"x").unwrap();
        let a = Arc::new(entry(&tmp.path().join("a")));
        let id = t.remember(ROOT, Arc::clone(&a));
        assert_eq!(id, a.meta.ino());
        assert_eq!(t.remember(ROOT, Arc::clone(&a)), id);
        assert_eq!(t.len(), 2);
        t.forget(id, 1);
        assert!(t.get(id).is_some());
        t.forget(id, 1);
        assert!(t.get(id).is_none());
        // Forgotten and looked up again: the same number.
        assert_eq!(t.remember(ROOT, a), id);
        t.forget(ROOT, 100);
        assert!(t.get(ROOT).is_some());
    }

    #[test]
    fn handles_round_trip() {
        let h: Handles<u32> = Handles::default();
        let a = h.insert(Arc::new(7));
        let b = h.insert(Arc::new(8));
        assert_ne!(a, b);
        assert_eq!(*h.get(a).unwrap(), 7);
        assert_eq!(h.len(), 2);
        assert!(h.remove(a).is_some());
        assert!(h.get(a).is_none());
    }
}
