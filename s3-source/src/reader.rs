//! Random access to the plaintext of a remote tree's files, for the FUSE mount of an
//! `s3://` tree and for reading a safetensors header before a load: each file is cut into
//! segments of whole cipher blocks (the `--s3-chunk-size` of ciphertext), fetched with one
//! ranged GET pinned to the listed ETag, decrypted, and kept in a bounded LRU cache
//! (`--cache-size`). A reader that goes on where it stopped (sequential) gets the next
//! segments fetched ahead, in parallel, up to the concurrency.
//!
//! Memory stays bounded whatever the model size: the cache plus the segments in flight
//! (at most `concurrency`, each a segment of ciphertext and its plaintext). A segment that
//! fails (network, a changed object, a block that does not authenticate) fails the reads
//! that need it, naming the file (and block); it is not cached, so a later read asks again.
//! No gocryptfs counterpart: gocryptfs reads a local file per request (`fusefrontend/file.go`
//! `doRead`), which is what this does over the network, a segment at a time.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use gocryptfs_format::contentenc::{FileHeader, HEADER_LEN, PLAIN_BS};
use gocryptfs_format::{ContentEnc, CorruptError, Error, FileId};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::S3Error;
use crate::store::Bucket;
use crate::tree::RemoteTree;

/// Default bound of the decrypted-segment cache of a mount.
pub const DEFAULT_CACHE: u64 = 128 << 20;

/// How a [`RemoteReader`] caches and reads ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Most bytes of decrypted segments kept (at least two segments are always allowed).
    pub cache_bytes: u64,
    /// Segments fetched ahead of a sequential reader (0: none); also bounded by half the
    /// cache and by the concurrency.
    pub readahead: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            cache_bytes: DEFAULT_CACHE,
            readahead: usize::MAX,
        }
    }
}

enum State {
    Pending,
    Ready(Arc<Vec<u8>>),
    Failed(Arc<S3Error>),
}

struct Slot {
    state: Mutex<State>,
    done: Condvar,
}

impl Slot {
    fn set(&self, s: State) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = s;
        self.done.notify_all();
    }

    fn wait(&self) -> Result<Arc<Vec<u8>>, Arc<S3Error>> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*st {
                State::Ready(d) => return Ok(Arc::clone(d)),
                State::Failed(e) => return Err(Arc::clone(e)),
                State::Pending => {
                    st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

struct Entry {
    slot: Arc<Slot>,
    used: u64,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<(usize, u64), Entry>,
    tick: u64,
    /// Per file: the last segment a read asked for (sequential detection).
    last: HashMap<usize, u64>,
}

/// Random-access plaintext reads of a [`RemoteTree`]'s files. `Send + Sync`; reads from
/// many threads share the cache and the requests in flight.
pub struct RemoteReader {
    tree: Arc<RemoteTree>,
    /// Cipher blocks per segment.
    seg_blocks: u64,
    /// Segments the cache may hold.
    max_segs: usize,
    readahead: u64,
    cache: Mutex<Cache>,
    headers: Vec<OnceCell<FileId>>,
    /// Per file, the file ID a pinned check accepted: a header that differs (a host that
    /// serves another object under the same version) fails the read.
    expected: Vec<Option<FileId>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for RemoteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteReader")
            .field("seg_blocks", &self.seg_blocks)
            .field("max_segs", &self.max_segs)
            .field("readahead", &self.readahead)
            .finish_non_exhaustive()
    }
}

impl RemoteReader {
    /// A reader of `tree`'s files, with segments of the bucket's chunk size.
    #[must_use]
    pub fn new(tree: Arc<RemoteTree>, opts: ReaderOptions) -> Arc<Self> {
        Self::with_expected_ids(tree, opts, Vec::new())
    }

    /// [`RemoteReader::new`], holding each file's header to the file ID in `expected`
    /// (indexed like [`RemoteTree::files`]; `None` or a missing index: no check).
    #[must_use]
    pub fn with_expected_ids(
        tree: Arc<RemoteTree>,
        opts: ReaderOptions,
        expected: Vec<Option<FileId>>,
    ) -> Arc<Self> {
        let bo = tree.bucket().options();
        let cbs = tree.cipher_dir().content().geometry().cipher_bs();
        let seg_blocks = (bo.chunk / cbs).max(1);
        let seg_bytes = seg_blocks * PLAIN_BS;
        let max_segs = usize::try_from(opts.cache_bytes / seg_bytes)
            .unwrap_or(usize::MAX)
            .max(2);
        let readahead = opts.readahead.min(max_segs / 2).min(bo.concurrency) as u64;
        let headers = (0..tree.files.len()).map(|_| OnceCell::new()).collect();
        Arc::new(RemoteReader {
            permits: Arc::new(Semaphore::new(bo.concurrency.max(1))),
            tree,
            seg_blocks,
            max_segs,
            readahead,
            cache: Mutex::new(Cache::default()),
            headers,
            expected,
        })
    }

    /// The tree read.
    #[must_use]
    pub fn tree(&self) -> &Arc<RemoteTree> {
        &self.tree
    }

    /// Plaintext bytes per segment.
    #[must_use]
    pub fn segment_bytes(&self) -> u64 {
        self.seg_blocks * PLAIN_BS
    }

    /// Reads plaintext of file `file` (an index into [`RemoteTree::files`]) at `offset`
    /// into `buf`; returns the bytes read, short only at the end of the file.
    ///
    /// # Errors
    /// [`S3Error::Shared`] holding the failure of a segment the read needs: storage errors,
    /// [`S3Error::Changed`], or a format error naming the file and block. Nothing of a
    /// failed segment is returned.
    pub fn read_at(
        self: &Arc<Self>,
        file: usize,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, S3Error> {
        let f = self
            .tree
            .files
            .get(file)
            .ok_or_else(|| S3Error::Usage(format!("no file number {file} in the tree")))?;
        if offset >= f.plain_size || buf.is_empty() {
            return Ok(0);
        }
        let end = f.plain_size.min(offset.saturating_add(buf.len() as u64));
        let seg = self.segment_bytes();
        let first = offset / seg;
        let last = (end - 1) / seg;
        let n_segs = f.plain_size.div_ceil(seg);
        let mut slots = Vec::with_capacity(usize::try_from(last - first + 1).unwrap_or(1));
        {
            let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            let prev = c.last.insert(file, last);
            let sequential = prev.map_or(first == 0, |p| first == p || first == p + 1);
            let ahead_to = if sequential {
                (last + self.readahead).min(n_segs - 1)
            } else {
                last
            };
            for s in first..=ahead_to {
                let slot = self.slot(&mut c, file, s);
                if s <= last {
                    slots.push(slot);
                }
            }
        }
        let mut done = 0usize;
        for (i, slot) in slots.iter().enumerate() {
            let data = slot.wait().map_err(S3Error::Shared)?;
            let seg_start = (first + i as u64) * seg;
            let from = offset.max(seg_start);
            let to = end.min(seg_start + data.len() as u64);
            if to <= from {
                break;
            }
            let src = data
                .get(usize::try_from(from - seg_start).unwrap_or(usize::MAX)..)
                .and_then(|d| d.get(..usize::try_from(to - from).unwrap_or(usize::MAX)))
                .unwrap_or_default();
            let Some(dst) = buf.get_mut(done..done + src.len()) else {
                break;
            };
            dst.copy_from_slice(src);
            done += src.len();
        }
        Ok(done)
    }

    /// The slot of segment `s` of `file`, started when absent; evicts the least recently
    /// used finished segments beyond the bound.
    fn slot(self: &Arc<Self>, c: &mut Cache, file: usize, s: u64) -> Arc<Slot> {
        c.tick += 1;
        let tick = c.tick;
        if let Some(e) = c.slots.get_mut(&(file, s)) {
            e.used = tick;
            return Arc::clone(&e.slot);
        }
        while c.slots.len() >= self.max_segs {
            let victim = c
                .slots
                .iter()
                .filter(|(_, e)| {
                    !matches!(
                        *e.slot.state.lock().unwrap_or_else(PoisonError::into_inner),
                        State::Pending
                    )
                })
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    c.slots.remove(&k);
                }
                // Everything is in flight: the bound is exceeded by at most the
                // concurrency, which limits the requests anyway.
                None => break,
            }
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Pending),
            done: Condvar::new(),
        });
        c.slots.insert(
            (file, s),
            Entry {
                slot: Arc::clone(&slot),
                used: tick,
            },
        );
        let me = Arc::clone(self);
        let task_slot = Arc::clone(&slot);
        self.tree.bucket().rt.spawn(async move {
            let r = match Arc::clone(&me.permits).acquire_owned().await {
                Ok(_permit) => me.fetch(file, s).await,
                Err(_) => Err(S3Error::Unreachable {
                    what: "the reader".into(),
                    message: "closed".into(),
                }),
            };
            match r {
                Ok(d) => task_slot.set(State::Ready(Arc::new(d))),
                Err(e) => {
                    // Not cached: a later read asks again (the failure may be transient).
                    let mut c = me.cache.lock().unwrap_or_else(PoisonError::into_inner);
                    if c.slots
                        .get(&(file, s))
                        .is_some_and(|e| Arc::ptr_eq(&e.slot, &task_slot))
                    {
                        c.slots.remove(&(file, s));
                    }
                    drop(c);
                    task_slot.set(State::Failed(Arc::new(e)));
                }
            }
        });
        slot
    }

    /// Fetches and decrypts segment `s` of `file`.
    async fn fetch(&self, file: usize, s: u64) -> Result<Vec<u8>, S3Error> {
        let f = self
            .tree
            .files
            .get(file)
            .ok_or_else(|| S3Error::Usage(format!("no file number {file} in the tree")))?;
        let bucket = self.tree.bucket();
        let content = Arc::clone(self.tree.cipher_dir().content());
        let cbs = content.geometry().cipher_bs();
        let b0 = s * self.seg_blocks;
        let b1 = b0 + self.seg_blocks;
        let path = bucket.path(&f.key)?;
        let what = f.plain.display().to_string();
        let deadline = bucket.opts.deadline;
        let end = (HEADER_LEN + b1 * cbs).min(f.cipher_size);
        let changed = |e: S3Error| match e {
            S3Error::Changed { .. } => S3Error::Changed {
                path: f.plain.clone(),
            },
            e => e,
        };
        let want = self.expected.get(file).copied().flatten();
        let parse = |hdr: &[u8]| {
            let id = FileHeader::parse(hdr).map(|h| h.id).map_err(|e| {
                S3Error::from(Error::corrupt(f.plain.clone(), CorruptError::Header(e)))
            })?;
            match want {
                Some(w) if w != id => Err(S3Error::Changed {
                    path: f.plain.clone(),
                }),
                _ => Ok(id),
            }
        };
        let cell = self
            .headers
            .get(file)
            .ok_or_else(|| S3Error::Usage(format!("no file number {file} in the tree")))?;
        let (id, body) = if b0 == 0 {
            let bytes = Bucket::get_range(
                Arc::clone(&bucket.store),
                path,
                what,
                0..end,
                f.etag.clone(),
                deadline,
            )
            .await
            .map_err(changed)?;
            let id = parse(bytes.get(..HEADER_LEN as usize).unwrap_or_default())?;
            let _ = cell.set(id);
            (id, bytes.slice(HEADER_LEN as usize..))
        } else {
            let id = *cell
                .get_or_try_init(|| async {
                    let h = Bucket::get_range(
                        Arc::clone(&bucket.store),
                        path.clone(),
                        what.clone(),
                        0..HEADER_LEN.min(f.cipher_size),
                        f.etag.clone(),
                        deadline,
                    )
                    .await
                    .map_err(changed)?;
                    parse(&h)
                })
                .await?;
            let start = HEADER_LEN + b0 * cbs;
            if start >= end {
                return Ok(Vec::new());
            }
            let bytes = Bucket::get_range(
                Arc::clone(&bucket.store),
                path,
                what,
                start..end,
                f.etag.clone(),
                deadline,
            )
            .await
            .map_err(changed)?;
            (id, bytes)
        };
        let plain = f.plain.clone();
        bucket
            .rt
            .spawn_blocking(move || decrypt(&content, &plain, b0, &id, &body))
            .await
            .map_err(|e| S3Error::Unreachable {
                what: f.plain.display().to_string(),
                message: e.to_string(),
            })?
    }
}

/// Decrypts `body`, whole cipher blocks starting at block `first` of the file `plain`.
pub(crate) fn decrypt(
    content: &ContentEnc,
    plain: &std::path::Path,
    first: u64,
    id: &FileId,
    body: &[u8],
) -> Result<Vec<u8>, S3Error> {
    let geo = content.geometry();
    let need = geo.plain_len_of_blocks(body.len() as u64).ok_or_else(|| {
        Error::corrupt(
            plain.to_path_buf(),
            CorruptError::Size {
                cipher_size: body.len() as u64,
                overhead: geo.overhead(),
            },
        )
    })?;
    let mut out = vec![0u8; usize::try_from(need).unwrap_or(usize::MAX)];
    let n = content
        .decrypt_blocks(first, id, body, &mut out)
        .map_err(|e| Error::from_block(plain.to_path_buf(), e))?;
    out.truncate(n);
    Ok(out)
}
