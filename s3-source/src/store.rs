//! The connection to one bucket prefix: an `object_store` S3 client plus the tokio runtime
//! that drives it (the rest of ccmount is synchronous). Listing with pagination, small
//! control objects read whole (bounded), content read in ranged GETs pinned to the listed
//! ETag and retried inside the deadline when the connection fails mid-body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _,
    RetryConfig,
};

use crate::error::S3Error;
use crate::location::S3Location;
use crate::options::S3Options;

/// Most objects one tree may have (a bound on the listing's memory).
pub(crate) const MAX_OBJECTS: usize = 2_000_000;

/// One listed object, its key relative to the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) rel: String,
    pub(crate) size: u64,
    pub(crate) etag: Option<String>,
}

/// A connected bucket prefix.
#[derive(Debug)]
pub struct Bucket {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) loc: S3Location,
    pub(crate) rt: Rt,
    pub(crate) opts: S3Options,
}

/// The bucket's runtime. The last owner of a bucket may be one of the runtime's own tasks
/// (a mount's read-ahead finishing after the mount went away); a runtime cannot be dropped
/// there, so it is then dropped on a thread of its own.
#[derive(Debug)]
pub(crate) struct Rt(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for Rt {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        // Some until drop.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("the runtime lives until drop"))
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("ccmount-s3-drop".into())
                    .spawn(move || drop(rt));
            } else {
                drop(rt);
            }
        }
    }
}

/// The HTTP client's options: timeouts, the HTTP rule, and the extra roots of `--s3-ca-cert`
/// (used for the storage endpoint and for a web-identity STS endpoint alike).
fn client_options(opts: &S3Options) -> Result<ClientOptions, S3Error> {
    let mut co = ClientOptions::new()
        .with_allow_http(opts.allow_http)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(120))
        .with_pool_max_idle_per_host(opts.concurrency.max(8));
    if let Some(pem) = &opts.ca_pem {
        let bad = |why: String| S3Error::Usage(format!("extra CA certificates: {why}"));
        let certs = object_store::Certificate::from_pem_bundle(pem)
            .map_err(|e| bad(format!("not a PEM certificate bundle ({e})")))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for c in certs {
            co = co.with_root_certificate(c);
        }
    }
    Ok(co)
}

impl Bucket {
    /// Builds the client (no request yet).
    ///
    /// # Errors
    /// [`S3Error::Usage`] for bad options; an I/O error starting the runtime.
    pub fn connect(loc: S3Location, opts: S3Options) -> Result<Self, S3Error> {
        let path_style = opts.check()?;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(loc.bucket())
            .with_virtual_hosted_style_request(!path_style)
            .with_allow_http(opts.allow_http)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 8,
                retry_timeout: opts.deadline,
            })
            .with_client_options(client_options(&opts)?);
        if let Some(ep) = opts.effective_endpoint() {
            b = b.with_endpoint(ep);
        }
        let region = opts
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
            .or_else(|| {
                std::env::var("AWS_DEFAULT_REGION")
                    .ok()
                    .filter(|r| !r.is_empty())
            });
        if let Some(r) = region {
            b = b.with_region(r);
        }
        if let Some(c) = &opts.credentials {
            b = b
                .with_access_key_id(c.access_key_id.clone())
                .with_secret_access_key(c.secret_access_key.as_str());
            if let Some(t) = &c.session_token {
                b = b.with_token(t.as_str());
            }
        }
        let store = b
            .build()
            .map_err(|e| S3Error::Usage(format!("object storage client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ccmount-s3")
            .enable_all()
            .build()
            .map_err(|e| S3Error::Unreachable {
                what: "runtime".into(),
                message: e.to_string(),
            })?;
        Ok(Bucket {
            store: Arc::new(store),
            loc,
            rt: Rt(Some(rt)),
            opts,
        })
    }

    /// The location this bucket reads.
    #[must_use]
    pub fn location(&self) -> &S3Location {
        &self.loc
    }

    /// The options in effect.
    #[must_use]
    pub fn options(&self) -> &S3Options {
        &self.opts
    }

    pub(crate) fn path(&self, rel: &str) -> Result<ObjPath, S3Error> {
        ObjPath::parse(self.loc.key(rel)).map_err(|e| S3Error::Refused {
            key: rel.to_owned(),
            reason: format!("not a usable object key ({e})"),
        })
    }

    /// Every object under the prefix (all pages), keys relative to it.
    pub(crate) fn list(&self) -> Result<Vec<Listed>, S3Error> {
        let prefix = if self.loc.prefix().is_empty() {
            None
        } else {
            Some(self.path("")?)
        };
        let what = format!("listing {}", self.loc);
        let store = Arc::clone(&self.store);
        let plen = self.loc.prefix().len();
        self.rt.block_on(async move {
            let mut stream = store.list(prefix.as_ref());
            let mut out = Vec::new();
            while let Some(meta) = stream
                .try_next()
                .await
                .map_err(|e| S3Error::from_store(&what, e))?
            {
                let full = meta.location.as_ref();
                let rel = if plen == 0 {
                    full
                } else {
                    // object_store matched on whole segments; strip "prefix/".
                    full.get(plen + 1..).unwrap_or_default()
                };
                if out.len() >= MAX_OBJECTS {
                    return Err(S3Error::Refused {
                        key: String::new(),
                        reason: format!(
                            "more than {MAX_OBJECTS} objects under the prefix; not a model tree"
                        ),
                    });
                }
                out.push(Listed {
                    rel: rel.to_owned(),
                    size: meta.size,
                    etag: meta.e_tag,
                });
            }
            Ok(out)
        })
    }

    /// Reads the whole object `rel` (relative to the prefix) of at most `max` bytes, e.g.
    /// `gocryptfs.conf` for `info`.
    ///
    /// # Errors
    /// [`S3Error::NotFound`], [`S3Error::Refused`] when larger than `max`, request failures.
    pub fn read_small(&self, rel: &str, max: u64) -> Result<Bytes, S3Error> {
        let path = self.path(rel)?;
        let store = Arc::clone(&self.store);
        let what = format!("{}/{rel}", self.loc);
        self.rt.block_on(async move {
            let head = store
                .head(&path)
                .await
                .map_err(|e| S3Error::from_store(&what, e))?;
            Self::get_small(store, path, what, head.size, max, head.e_tag).await
        })
    }

    /// Reads a whole small object (a control file) of at most `max` bytes, at version
    /// `etag`.
    pub(crate) async fn get_small(
        store: Arc<dyn ObjectStore>,
        path: ObjPath,
        rel: String,
        size: u64,
        max: u64,
        etag: Option<String>,
    ) -> Result<Bytes, S3Error> {
        if size > max {
            return Err(S3Error::Refused {
                key: rel,
                reason: format!("a control file of {size} bytes (at most {max} expected)"),
            });
        }
        if size == 0 {
            return Ok(Bytes::new());
        }
        let b = Self::get_range(
            store,
            path,
            rel.clone(),
            0..size,
            etag,
            Duration::from_secs(60),
        )
        .await?;
        if b.len() as u64 != size {
            return Err(S3Error::Changed { path: rel.into() });
        }
        Ok(b)
    }

    /// Reads `range` of one object at version `etag`, retrying transient failures
    /// (including a connection cut mid-body: the range is asked again) until `deadline`.
    pub(crate) async fn get_range(
        store: Arc<dyn ObjectStore>,
        path: ObjPath,
        what: String,
        range: std::ops::Range<u64>,
        etag: Option<String>,
        deadline: Duration,
    ) -> Result<Bytes, S3Error> {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let opts = GetOptions {
                if_match: etag.clone(),
                range: Some(GetRange::Bounded(range.clone())),
                ..GetOptions::default()
            };
            let res = async {
                let r = store.get_opts(&path, opts).await?;
                if let Some(mode) = r
                    .attributes
                    .get(&object_store::Attribute::Metadata("mode".into()))
                    .and_then(|m| m.parse::<u32>().ok())
                    && mode & 0o170000 != 0o100000
                    && mode & 0o170000 != 0
                {
                    return Ok(Err(mode));
                }
                r.bytes().await.map(Ok)
            }
            .await;
            let err = match res {
                Ok(Ok(b)) if b.len() as u64 == range.end - range.start => return Ok(b),
                Ok(Ok(b)) => S3Error::Unreachable {
                    what: what.clone(),
                    message: format!(
                        "short read: {} of {} bytes",
                        b.len(),
                        range.end - range.start
                    ),
                },
                Ok(Err(mode)) => {
                    return Err(S3Error::Refused {
                        key: what,
                        reason: format!(
                            "the object is stored as a {} (s3fs/ossfs mode {mode:o}), not a regular file; symlinks and special files in buckets are not supported",
                            if mode & 0o170000 == 0o120000 {
                                "symlink"
                            } else {
                                "special file"
                            }
                        ),
                    });
                }
                Err(e) => S3Error::from_store(&what, e),
            };
            if !err.transient() || attempt >= 6 || start.elapsed() >= deadline {
                return Err(err);
            }
            tracing::debug!("retrying {what} (attempt {attempt}): {err}");
            tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(5))).await;
        }
    }
}
