//! Where a tree's key comes from: a password file, a master-key file, or a `kbs:///`
//! resource fetched over one attested KBS session (which also serves a `kbs:///` pin).
//!
//! Mirrors `agent/src/keys.rs` (file rules, resource formats) and `agent/src/kbs.rs` (one
//! session per open, so the key and the pin cost one attestation). Secrets are read into
//! zeroizing buffers and never reach Python objects: the Python side passes only paths and
//! URIs.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use attest::evidence::{self, Platform, TeeChoice};
use attest::{KbsClient, ResourceUri, Secret};
use gocryptfs_format::{KeySource, MasterKey};
use zeroize::Zeroizing;

use crate::errors::{Failure, Result};

/// Largest key, password or pin file read (as the agent).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// How a `kbs:///` key resource is to be read (the agent's `--key-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFormat {
    /// A password (first line), as a passfile.
    Password,
    /// 32 raw bytes or 64 hex digits.
    Masterkey,
}

impl KeyFormat {
    pub(crate) fn parse(s: &str) -> Result<KeyFormat> {
        match s {
            "password" => Ok(KeyFormat::Password),
            "masterkey" => Ok(KeyFormat::Masterkey),
            other => Err(Failure::Usage(format!(
                "key_format={other:?}: use \"password\" or \"masterkey\""
            ))),
        }
    }
}

/// The KBS settings of one open.
#[derive(Debug, Clone)]
pub(crate) struct KbsSettings {
    /// Base URL.
    pub(crate) url: String,
    /// A CA certificate file (PEM) to trust besides the system roots.
    pub(crate) cert: Option<PathBuf>,
    /// `auto`, `tdx`, `snp` or `sample`.
    pub(crate) tee: String,
    /// Deadline per KBS operation.
    pub(crate) timeout: Duration,
    /// Allow `http://` (tests only).
    pub(crate) insecure_http: bool,
}

/// One attested session: a current-thread runtime driving the async client. Built on first
/// use; its token serves every later resource of the same open.
pub(crate) struct KbsSession {
    rt: tokio::runtime::Runtime,
    client: KbsClient,
}

impl std::fmt::Debug for KbsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbsSession")
            .field("url", &self.client.url())
            .finish_non_exhaustive()
    }
}

impl KbsSession {
    /// Builds the client; no traffic until the first resource.
    pub(crate) fn new(s: &KbsSettings) -> Result<KbsSession> {
        let kbs_err = |source: attest::Error| Failure::Kbs {
            what: format!("KBS {}", s.url),
            source: Box::new(source),
        };
        let tee: TeeChoice = s
            .tee
            .parse()
            .map_err(|e: attest::EvidenceError| Failure::Usage(format!("tee={:?}: {e}", s.tee)))?;
        let attester = evidence::attester(tee, &Platform::default())
            .map_err(|e| kbs_err(attest::Error::from(e)))?;
        let mut b = KbsClient::builder(&s.url, attester)
            .insecure_http(s.insecure_http)
            .timeout(s.timeout)
            .request_timeout(s.timeout.min(attest::kbs::client::DEFAULT_REQUEST_TIMEOUT));
        if let Some(path) = &s.cert {
            let pem = std::fs::read(path).map_err(|e| {
                Failure::Usage(format!(
                    "kbs_cert {}: {e}",
                    gocryptfs_format::escape::escaped(path)
                ))
            })?;
            b = b.extra_ca_pem(pem);
        }
        let client = b.build().map_err(kbs_err)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Usage(format!("starting the KBS client's runtime: {e}")))?;
        Ok(KbsSession { rt, client })
    }

    /// Fetches one resource (attesting first when there is no usable token).
    pub(crate) fn get(&mut self, uri: &ResourceUri, what: &str) -> Result<Secret> {
        let url = self.client.url().to_owned();
        self.rt
            .block_on(self.client.get_resource(uri))
            .map_err(|source| Failure::Kbs {
                what: format!("fetching {what} {uri} from {url}"),
                source: Box::new(source),
            })
    }
}

/// Parses a `kbs:///REPO/TYPE/TAG` URI.
pub(crate) fn parse_uri(s: &str) -> Result<ResourceUri> {
    ResourceUri::parse(s).map_err(|e| Failure::Usage(format!("{s:?}: {e}")))
}

/// A small secret file's bytes, zeroized on drop (at most 64 KiB).
pub(crate) fn read_small(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let shown = gocryptfs_format::escape::escaped(path);
    let f = File::open(path).map_err(|e| Failure::Usage(format!("opening {what} {shown}: {e}")))?;
    // Sized up front so that reading never reallocates (which would leave a copy behind).
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE as usize + 1));
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::Usage(format!("reading {what} {shown}: {e}")))?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(Failure::Usage(format!(
            "{what} {shown} is larger than 64 KiB; is it the right file?"
        )));
    }
    Ok(buf)
}

/// A password from a passfile (gocryptfs `-passfile` rule: first line, `\n` stripped).
pub(crate) fn from_passfile(path: &Path) -> Result<KeySource> {
    let buf = read_small(path, "password file")?;
    KeySource::password_from_passfile(&buf).map_err(|e| {
        Failure::Usage(format!(
            "password file {}: {e}",
            gocryptfs_format::escape::escaped(path)
        ))
    })
}

/// A master key from a file of 64 hex digits (dashes and line breaks allowed).
pub(crate) fn from_masterkey_file(path: &Path) -> Result<KeySource> {
    let buf = read_small(path, "master key file")?;
    let shown = gocryptfs_format::escape::escaped(path);
    let text = std::str::from_utf8(&buf).map_err(|_| {
        Failure::Usage(format!(
            "master key file {shown}: not text; it must hold 64 hex digits"
        ))
    })?;
    MasterKey::from_hex(text)
        .map(KeySource::MasterKey)
        .map_err(|e| Failure::Usage(format!("master key file {shown}: {e}")))
}

/// Interprets a KBS resource as a key (the agent's `key_from_resource`).
pub(crate) fn from_resource(bytes: &[u8], format: KeyFormat, uri: &str) -> Result<KeySource> {
    let wrong = |why: String| {
        Failure::WrongKey(format!(
            "the KBS resource {uri} is {why}; check what the KBS stores, or key_format"
        ))
    };
    match format {
        KeyFormat::Password => KeySource::password_from_passfile(bytes)
            .map_err(|e| wrong(format!("not a usable password ({e})"))),
        KeyFormat::Masterkey => {
            let key = if bytes.len() == 32 {
                MasterKey::from_bytes(bytes)
            } else {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    wrong(format!(
                        "{} bytes that are not hex: a master key is 32 raw bytes or 64 hex digits",
                        bytes.len()
                    ))
                })?;
                MasterKey::from_hex(text.trim())
            };
            key.map(KeySource::MasterKey)
                .map_err(|e| wrong(format!("not a master key ({e})")))
        }
    }
}
