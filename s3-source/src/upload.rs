//! Uploads a cipher tree that ccmount just wrote locally (`encrypt PLAINDIR s3://…`): every
//! regular file becomes one object under the prefix, large ones in multipart uploads, many
//! at once. The tree is ours, but the bucket is not: a prefix that already holds objects is
//! refused unless the caller forces it, and a symlink (which S3 cannot hold faithfully) is
//! refused by name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::{ObjectStoreExt as _, PutPayload, WriteMultipart};

use crate::error::S3Error;
use crate::store::Bucket;

/// Files above this size go up in multipart uploads of this part size.
const PART: usize = 16 << 20;

/// What an upload did.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadSummary {
    /// Objects written.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
}

impl Bucket {
    /// Whether the prefix holds any object.
    ///
    /// # Errors
    /// Listing failures.
    pub fn is_empty(&self) -> Result<bool, S3Error> {
        Ok(self.list()?.is_empty())
    }

    /// Uploads every file below `root` (a local cipher tree) under the prefix.
    ///
    /// # Errors
    /// [`S3Error::Refused`] for a symlink or special file; request failures; local I/O as
    /// [`S3Error::Format`].
    pub fn upload_tree(&self, root: &Path) -> Result<UploadSummary, S3Error> {
        let mut files: Vec<(String, PathBuf, u64)> = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let abs = root.join(&rel);
            let rd = std::fs::read_dir(&abs)
                .map_err(|e| gocryptfs_format::Error::io("listing", &abs, e))?;
            for de in rd {
                let de = de.map_err(|e| gocryptfs_format::Error::io("listing", &abs, e))?;
                let r = rel.join(de.file_name());
                let ft = de
                    .file_type()
                    .map_err(|e| gocryptfs_format::Error::io("reading", root.join(&r), e))?;
                let key = r.to_str().ok_or_else(|| S3Error::Refused {
                    key: r.display().to_string(),
                    reason: "not valid UTF-8 (object keys are UTF-8)".into(),
                })?;
                if ft.is_dir() {
                    stack.push(r);
                } else if ft.is_file() {
                    let len = de
                        .metadata()
                        .map_err(|e| gocryptfs_format::Error::io("reading", root.join(&r), e))?
                        .len();
                    files.push((key.to_owned(), root.join(&r), len));
                } else {
                    return Err(S3Error::Refused {
                        key: key.to_owned(),
                        reason: "a symlink or special file cannot be stored in a bucket; remove it from the plaintext tree (or decrypt from a local cipher tree)".into(),
                    });
                }
            }
        }
        let mut jobs = Vec::with_capacity(files.len());
        for (key, abs, len) in files {
            jobs.push((self.path(&key)?, key, abs, len));
        }
        let store = Arc::clone(&self.store);
        let n = self.opts.concurrency.min(8);
        self.rt.block_on(async move {
            let results: Vec<Result<u64, S3Error>> =
                futures::stream::iter(jobs.into_iter().map(|(path, key, abs, len)| {
                    let store = Arc::clone(&store);
                    async move {
                        let data = tokio::fs::read(&abs)
                            .await
                            .map_err(|e| gocryptfs_format::Error::io("reading", &abs, e))?;
                        if data.len() <= PART {
                            store
                                .put(&path, PutPayload::from(data))
                                .await
                                .map_err(|e| S3Error::from_store(&key, e))?;
                        } else {
                            let up = store
                                .put_multipart(&path)
                                .await
                                .map_err(|e| S3Error::from_store(&key, e))?;
                            let mut w = WriteMultipart::new_with_chunk_size(up, PART);
                            for part in data.chunks(PART) {
                                w.wait_for_capacity(4)
                                    .await
                                    .map_err(|e| S3Error::from_store(&key, e))?;
                                w.write(part);
                            }
                            w.finish().await.map_err(|e| S3Error::from_store(&key, e))?;
                        }
                        Ok(len)
                    }
                }))
                .buffer_unordered(n)
                .collect()
                .await;
            let mut s = UploadSummary::default();
            for r in results {
                s.bytes += r?;
                s.objects += 1;
            }
            Ok(s)
        })
    }
}
