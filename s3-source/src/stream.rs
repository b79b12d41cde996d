//! Streaming decryption of files from the bucket: each file is cut into ranged GETs aligned
//! to cipher blocks (the first one also carries the 18-byte header), up to `concurrency`
//! requests are in flight across files, each piece is decrypted on a blocking thread as it
//! arrives, and pieces are handed to the caller in file order. Memory is bounded by
//! concurrency × (chunk of ciphertext + its plaintext) whatever the model size. A block that
//! fails authentication fails its file with the file's path and block number; nothing of a
//! bad block is handed out.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use gocryptfs_format::contentenc::{FileHeader, HEADER_LEN};
use gocryptfs_format::{ContentEnc, CorruptError, Error, FileId};
use tokio::sync::watch;

use crate::error::S3Error;
use crate::store::Bucket;
use crate::tree::RemoteTree;

/// One decrypted piece of a file, handed out in order.
#[derive(Debug)]
pub struct Chunk {
    /// Index into [`RemoteTree::files`].
    pub file: usize,
    /// Plaintext offset of `data`.
    pub offset: u64,
    /// The plaintext.
    pub data: Vec<u8>,
    /// Whether this is the file's last piece.
    pub last: bool,
    /// The file's ID (from its header; `None` for an empty file).
    pub file_id: Option<FileId>,
}

/// What the stream hands to its consumer.
#[derive(Debug)]
pub enum FileEvent {
    /// The next piece of a file.
    Data(Chunk),
    /// The file failed (its later pieces are not handed out).
    Failed {
        /// Index into [`RemoteTree::files`].
        file: usize,
        /// Why.
        error: S3Error,
    },
}

struct Job {
    file: usize,
    plain: PathBuf,
    path: object_store::path::Path,
    etag: Option<String>,
    /// Cipher byte range to fetch.
    range: std::ops::Range<u64>,
    /// First content block of the range.
    first_block: u64,
    /// Plaintext offset of the first block.
    offset: u64,
    last: bool,
    /// Header of the file: the first job sends it, the others wait for it.
    header_tx: Option<watch::Sender<Option<FileId>>>,
    header_rx: watch::Receiver<Option<FileId>>,
    cancel: Arc<AtomicBool>,
}

impl RemoteTree {
    /// Streams the plaintext of `files` (indices into [`RemoteTree::files`]) to `sink`, in
    /// order of `files` and of offsets. The sink's error stops the stream.
    ///
    /// # Errors
    /// Whatever `sink` returns.
    pub fn stream<E>(
        &self,
        files: &[usize],
        mut sink: impl FnMut(FileEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        let bucket = self.bucket();
        let content = Arc::clone(self.cipher_dir().content());
        let geo = content.geometry();
        let cbs = geo.cipher_bs();
        let chunk_blocks = (bucket.opts.chunk / cbs).max(1);
        let deadline = bucket.opts.deadline;
        let mut jobs: Vec<Result<Job, (usize, S3Error)>> = Vec::new();
        for &fi in files {
            let Some(f) = self.files.get(fi) else {
                continue;
            };
            let path = match bucket.path(&f.key) {
                Ok(p) => p,
                Err(e) => {
                    jobs.push(Err((fi, e)));
                    continue;
                }
            };
            let (tx, rx) = watch::channel(None);
            let cancel = Arc::new(AtomicBool::new(false));
            let blocks = f.cipher_size.saturating_sub(HEADER_LEN).div_ceil(cbs);
            let n_jobs = blocks.div_ceil(chunk_blocks).max(1);
            let mut tx = Some(tx);
            for j in 0..n_jobs {
                let b0 = j * chunk_blocks;
                let b1 = (b0 + chunk_blocks).min(blocks);
                let start = if j == 0 { 0 } else { HEADER_LEN + b0 * cbs };
                let end = (HEADER_LEN + b1 * cbs).min(f.cipher_size);
                jobs.push(Ok(Job {
                    file: fi,
                    plain: f.plain.clone(),
                    path: path.clone(),
                    etag: f.etag.clone(),
                    range: start..end,
                    first_block: b0,
                    offset: b0 * gocryptfs_format::contentenc::PLAIN_BS,
                    last: j + 1 == n_jobs,
                    header_tx: tx.take(),
                    header_rx: rx.clone(),
                    cancel: Arc::clone(&cancel),
                }));
            }
        }
        let store = Arc::clone(&bucket.store);
        let n = bucket.opts.concurrency;
        let handle = bucket.rt.handle().clone();
        bucket.rt.block_on(async move {
            let mut results = futures::stream::iter(jobs.into_iter().map(|job| {
                let store = Arc::clone(&store);
                let content = Arc::clone(&content);
                let handle2 = handle.clone();
                handle.spawn(async move {
                    match job {
                        Ok(job) => {
                            let file = job.file;
                            let cancel = Arc::clone(&job.cancel);
                            let r = run_job(store, content, job, deadline, handle2).await;
                            if r.is_err() {
                                cancel.store(true, Ordering::Relaxed);
                            }
                            r.map_err(|e| (file, e))
                        }
                        Err(e) => Err(e),
                    }
                })
            }))
            .buffered(n);
            let mut failed: HashSet<usize> = HashSet::new();
            while let Some(joined) = results.next().await {
                let r = joined.unwrap_or_else(|e| {
                    Err((
                        usize::MAX,
                        S3Error::Unreachable {
                            what: "a download task".into(),
                            message: e.to_string(),
                        },
                    ))
                });
                match r {
                    Ok(chunk) if failed.contains(&chunk.file) => {}
                    Ok(chunk) => sink(FileEvent::Data(chunk))?,
                    Err((file, error)) => {
                        if failed.insert(file) {
                            sink(FileEvent::Failed { file, error })?;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

async fn run_job(
    store: Arc<dyn object_store::ObjectStore>,
    content: Arc<ContentEnc>,
    job: Job,
    deadline: std::time::Duration,
    handle: tokio::runtime::Handle,
) -> Result<Chunk, S3Error> {
    let plain_s = job.plain.display().to_string();
    if job.cancel.load(Ordering::Relaxed) {
        return Err(S3Error::Unreachable {
            what: plain_s,
            message: "cancelled after an earlier failure of the file".into(),
        });
    }
    if job.range.is_empty() {
        // An empty object: an empty file, no header.
        return Ok(Chunk {
            file: job.file,
            offset: 0,
            data: Vec::new(),
            last: true,
            file_id: None,
        });
    }
    let bytes = Bucket::get_range(
        store,
        job.path,
        plain_s,
        job.range.clone(),
        job.etag,
        deadline,
    )
    .await
    .map_err(|e| match e {
        S3Error::Changed { .. } => S3Error::Changed {
            path: job.plain.clone(),
        },
        e => e,
    })?;
    let (id, body) = if let Some(tx) = job.header_tx {
        let hdr = bytes.get(..HEADER_LEN as usize).unwrap_or_default();
        let header = FileHeader::parse(hdr)
            .map_err(|e| Error::corrupt(job.plain.clone(), CorruptError::Header(e)))?;
        let _ = tx.send(Some(header.id));
        (header.id, bytes.slice(HEADER_LEN as usize..))
    } else {
        let mut rx = job.header_rx;
        let id = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| *v)
            .ok_or_else(|| S3Error::Unreachable {
                what: job.plain.display().to_string(),
                message: "the file's header could not be read".into(),
            })?;
        (id, bytes)
    };
    let first = job.first_block;
    let plain = job.plain.clone();
    let data = handle
        .spawn_blocking(move || crate::reader::decrypt(&content, &plain, first, &id, &body))
        .await
        .map_err(|e| S3Error::Unreachable {
            what: job.plain.display().to_string(),
            message: e.to_string(),
        })??;
    Ok(Chunk {
        file: job.file,
        offset: job.offset,
        data,
        last: job.last,
        file_id: Some(id),
    })
}
