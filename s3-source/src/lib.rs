//! gocryptfs cipher trees in S3-compatible object storage (AWS S3, Alibaba Cloud OSS, MinIO,
//! Ceph RGW, GCS through its S3 API): list, fetch and decrypt a tree straight from the bucket
//! with many concurrent ranged GETs, and upload a tree we wrote.
//!
//! No gocryptfs counterpart: upstream users stack ossfs/s3fs under the gocryptfs binary. The
//! format rules are the core's (`gocryptfs-format`: names, dirivs, long names, blocks);
//! this crate only moves bytes. Everything from the bucket is hostile: object keys, sizes,
//! ETags and contents are checked like a local cipher tree's, a file is read at one object
//! version (`If-Match` on its listed ETag), and memory stays bounded by concurrency × chunk
//! whatever the model size. Requests, SigV4, retries of failed requests and listing
//! pagination come from the Arrow project's `object_store` crate.
//!
//! ```text
//!  S3Location + S3Options ─► Bucket::connect ─► RemoteTree::open (list, conf, dirivs,
//!                                  │                 long names, decrypted names)
//!                                  ├── RemoteTree::stream (ranged GETs ─► decrypt ─► in order)
//!                                  ├── RemoteReader::read_at (segments, LRU cache, read-ahead)
//!                                  └── Bucket::upload_tree (encrypt's upload)
//! ```

mod error;
mod location;
mod nokey;
mod ops;
mod options;
mod reader;
mod store;
mod stream;
mod tree;
mod upload;

pub use error::S3Error;
pub use location::S3Location;
pub use ops::{DecryptSummary, FilePin};
pub use options::{Addressing, Credentials, DEFAULT_CHUNK, DEFAULT_CONCURRENCY, S3Options};
pub use reader::{DEFAULT_CACHE, ReaderOptions, RemoteReader};
pub use store::Bucket;
pub use stream::{Chunk, FileEvent};
pub use tree::{Problem, RemoteFile, RemoteTree};
pub use upload::UploadSummary;

#[doc(hidden)]
pub mod internal;
