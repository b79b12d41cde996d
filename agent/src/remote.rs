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

/// `[source]` of `--config`: the same settings as the `--s3-*` flags (a flag wins).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceTable {
    endpoint: Option<String>,
    region: Option<String>,
    /// `"path"` or `"virtual-hosted"`.
    addressing: Option<String>,
    concurrency: Option<usize>,
    chunk_size: Option<String>,
    allow_http: Option<bool>,
    ca_cert: Option<std::path::PathBuf>,
    credentials: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    source: Option<SourceTable>,
}

fn source_table(g: &GlobalArgs) -> Result<SourceTable> {
    let Some(path) = &g.config else {
        return Ok(SourceTable::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let cfg: ConfigFile = toml::from_str(&text).map_err(|e| {
        coded(
            Exit::Usage,
            format!(
                "invalid config file {}: {}",
                path.display(),
                e.message().replace('\n', " ")
            ),
        )
    })?;
    Ok(cfg.source.unwrap_or_default())
}

/// The storage options of this run (flags, then `[source]` of `--config`, then the
/// environment), with the credentials resolved (a `kbs:///` source is fetched now, over the
/// shared attested session).
pub(crate) fn options(g: &GlobalArgs) -> Result<S3Options> {
    let t = source_table(g)?;
    let addressing = if g.s3_virtual_hosted {
        Addressing::VirtualHosted
    } else if g.s3_path_style {
        Addressing::Path
    } else {
        match t.addressing.as_deref() {
            None => Addressing::Auto,
            Some("path") => Addressing::Path,
            Some("virtual-hosted") => Addressing::VirtualHosted,
            Some(other) => {
                return Err(coded(
                    Exit::Usage,
                    format!("[source] addressing {other:?}: give \"path\" or \"virtual-hosted\""),
                ));
            }
        }
    };
    let mut o = S3Options {
        endpoint: g.s3_endpoint.clone().or(t.endpoint),
        region: g.s3_region.clone().or(t.region),
        addressing,
        allow_http: g.s3_allow_http || t.allow_http.unwrap_or(false),
        ..S3Options::default()
    };
    if let Some(n) = g.s3_concurrency.or(t.concurrency) {
        o.concurrency = n;
    }
    if let Some(c) = g.s3_chunk_size.as_ref().or(t.chunk_size.as_ref()) {
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
    if let Some(p) = g.s3_ca_cert.as_ref().or(t.ca_cert.as_ref()) {
        o.ca_pem = Some(read_ca(p)?);
    }
    // Refuse bad options before any attestation.
    o.check()?;
    if let Some(src) = g.s3_credentials.as_ref().or(t.credentials.as_ref()) {
        o.credentials = Some(credentials(src)?);
    }
    Ok(o)
}

/// Reads the PEM file of `--s3-ca-cert` (public data; bounded, since a path could name
/// anything).
fn read_ca(p: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    const MAX: u64 = 1 << 20;
    let unreadable = |e: std::io::Error| {
        coded(
            Exit::Usage,
            format!(
                "--s3-ca-cert {}: {e}; give a readable PEM file",
                p.display()
            ),
        )
    };
    let mut buf = Vec::new();
    std::fs::File::open(p)
        .map_err(unreadable)?
        .take(MAX + 1)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    if buf.len() as u64 > MAX {
        return Err(coded(
            Exit::Usage,
            format!(
                "--s3-ca-cert {}: larger than 1 MiB; give a PEM file of CA certificates",
                p.display()
            ),
        ));
    }
    Ok(buf)
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
