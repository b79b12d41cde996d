//! `s3://BUCKET/PREFIX` as a CIPHERDIR: the flags and credentials of the object-storage
//! source (`s3-source` crate), and the commands' S3 paths. The key and the storage
//! credentials come through the same attested KBS session (one attestation for both).

use std::path::Path;

use anyhow::{Context as _, Result};
use gocryptfs_format::{KeySource, OpenOptions};
use s3_source::{Addressing, Bucket, Credentials, RemoteTree, S3Location, S3Options};

use crate::cli::GlobalArgs;
use crate::exit::{Exit, coded};

/// Whether a CIPHERDIR argument names object storage.
pub(crate) fn is_s3(p: &Path) -> bool {
    S3Location::is_s3(p.as_os_str())
}

/// The location a CIPHERDIR names.
pub(crate) fn location(p: &Path) -> Result<S3Location> {
    let s = p.to_str().ok_or_else(|| {
        coded(
            Exit::Usage,
            "an s3:// location must be valid UTF-8 (object keys are UTF-8)",
        )
    })?;
    Ok(S3Location::parse(s)?)
}

/// The storage options of this run, with the credentials resolved (a `kbs:///` source is
/// fetched now, over the shared attested session).
pub(crate) fn options(g: &GlobalArgs) -> Result<S3Options> {
    let mut o = S3Options {
        endpoint: g.s3_endpoint.clone(),
        region: g.s3_region.clone(),
        addressing: if g.s3_virtual_hosted {
            Addressing::VirtualHosted
        } else if g.s3_path_style {
            Addressing::Path
        } else {
            Addressing::Auto
        },
        allow_http: g.s3_allow_http,
        ..S3Options::default()
    };
    if let Some(n) = g.s3_concurrency {
        o.concurrency = n;
    }
    if let Some(c) = &g.s3_chunk_size {
        let n = crate::policy::parse_size(c)
            .map_err(|e| coded(Exit::Usage, format!("--s3-chunk-size {c}: {e}")))?;
        if !(64 << 10..=64 << 20).contains(&n) {
            return Err(coded(
                Exit::Usage,
                format!("--s3-chunk-size {c}: must be between 64KiB and 64MiB"),
            ));
        }
        o.chunk = n;
    }
    if let Some(t) = g.timeout {
        o.deadline = t;
    }
    // Refuse bad options before any attestation.
    o.check()?;
    if let Some(src) = &g.s3_credentials {
        o.credentials = Some(credentials(src)?);
    }
    Ok(o)
}

/// Reads `--s3-credentials SRC`: a KBS resource or a (possibly sealed) file.
fn credentials(src: &str) -> Result<Credentials> {
    let bytes = if src.starts_with("kbs://") {
        let uri =
            attest::ResourceUri::parse(src).with_context(|| format!("--s3-credentials {src}"))?;
        let secret = crate::kbs::with_shared(|s| {
            let url = s.url().to_owned();
            s.get_resource(&uri)
                .with_context(|| format!("fetching the storage credentials {uri} from {url}"))
        })?;
        zeroize::Zeroizing::new(secret.expose().to_vec())
    } else {
        crate::keys::read_secret(Path::new(src), "storage credentials file")?
    };
    Credentials::from_json(&bytes).with_context(|| format!("--s3-credentials {src}"))
}

/// Connects to the bucket a CIPHERDIR names (no request yet).
pub(crate) fn bucket(g: &GlobalArgs, p: &Path) -> Result<Bucket> {
    let loc = location(p)?;
    Ok(Bucket::connect(loc, options(g)?)?)
}

/// Connects, lists and opens the tree with `key`, under the run's policy.
pub(crate) fn open_tree(g: &GlobalArgs, b: Bucket, key: KeySource) -> Result<RemoteTree> {
    let opts = OpenOptions {
        policy: crate::policy::current(g)?,
        ..OpenOptions::default()
    };
    let what = b.location().to_string();
    RemoteTree::open(b, key, &opts).with_context(|| format!("opening {what}"))
}
