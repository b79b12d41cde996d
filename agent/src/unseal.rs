//! Sealed secrets (the Confidential Containers data hub's `sealed.…` format,
//! `attest::sealed`) wherever ccmount reads a secret file (`--passfile`,
//! `--masterkey-file`, `[[secrets]] sealed_file`) and in `ccmount unseal`.
//!
//! A sealed secret names a KBS resource; its ES256 signature is checked first with the
//! signing key its `kid` names (a JWK in the KBS, fetched over the same attested session, or
//! a file under `--sealed-key-dir`), then the resource is fetched. Nothing is unsealed
//! before the signature verifies, unless `--insecure-skip-sealed-signature`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use anyhow::{Context as _, Result};
use attest::sealed::{KeyId, SealedError, SealedSecret};
use attest::{ResourceUri, Secret};

use crate::cli::GlobalArgs;
use crate::exit::{Exit, coded};
use crate::kbs;

/// Where `kid` paths are looked up when `--sealed-key-dir` is not given.
pub(crate) const DEFAULT_KEY_DIR: &str = "/etc/ccmount/sealing-keys";

#[derive(Debug)]
struct Options {
    key_dir: PathBuf,
    skip_signature: bool,
}

static OPTIONS: OnceLock<Options> = OnceLock::new();

/// Records the run's sealed-secret options (`main`, once).
pub(crate) fn install(g: &GlobalArgs) {
    let _ = OPTIONS.set(Options {
        key_dir: g
            .sealed_key_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_DIR)),
        skip_signature: g.insecure_skip_sealed_signature,
    });
}

fn options() -> &'static Options {
    OPTIONS.get_or_init(|| Options {
        key_dir: PathBuf::from(DEFAULT_KEY_DIR),
        skip_signature: false,
    })
}

/// Whether a secret file's bytes are a sealed secret.
pub(crate) fn is_sealed(bytes: &[u8]) -> bool {
    attest::sealed::is_sealed(bytes)
}

/// Parses a sealed secret read from `what` (a file named in messages).
pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<SealedSecret> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        coded(
            Exit::Usage,
            format!("{what}: sealed secret is not UTF-8 text"),
        )
    })?;
    SealedSecret::parse(text).map_err(|e| refused(what, e))
}

/// Checks who sealed `sealed` (unless skipped) and returns the resource it names.
pub(crate) fn checked_name(sealed: &SealedSecret, what: &str) -> Result<ResourceUri> {
    let o = options();
    if o.skip_signature {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "sealed secret signatures are not checked (--insecure-skip-sealed-signature): anyone who can write the sealed secret chooses the resource"
            );
        });
        return Ok(sealed.name().clone());
    }
    let jwk = match sealed.key_id().map_err(|e| refused(what, e))? {
        KeyId::Kbs(uri) => kbs::with_shared(|s| {
            let url = s.url().to_owned();
            s.get_resource(&uri)
                .with_context(|| format!("{what}: fetching the signing key {uri} from {url}"))
        })?,
        KeyId::Local(rel) => read_local_key(&o.key_dir, &rel)
            .with_context(|| format!("{what}: reading its signing key {rel}"))?,
    };
    sealed.verify(jwk.expose()).map_err(|e| refused(what, e))?;
    tracing::debug!(name = %sealed.name(), "sealed secret signature verified");
    Ok(sealed.name().clone())
}

/// Unseals the content of a secret file: verifies, then fetches the resource it names.
pub(crate) fn unseal(bytes: &[u8], what: &str) -> Result<Secret> {
    let sealed = parse(bytes, what)?;
    let uri = checked_name(&sealed, what)?;
    kbs::with_shared(|s| {
        let url = s.url().to_owned();
        s.get_resource(&uri)
            .with_context(|| format!("{what}: fetching {uri} from {url}"))
    })
}

/// A signing key file under the key directory: no symlinks, a regular file, at most 16 KiB.
fn read_local_key(dir: &Path, rel: &str) -> Result<Secret> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(rel);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if !f.metadata()?.is_file() {
        return Err(coded(
            Exit::Usage,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut buf = Vec::new();
    f.take(16 * 1024 + 1).read_to_end(&mut buf)?;
    Ok(Secret::from_slice(&buf))
}

/// The exit code of a refusal: a signature that does not verify is tampering (26, like a
/// block that fails authentication); anything else is a bad input (2).
fn refused(what: &str, e: SealedError) -> anyhow::Error {
    let code = match e {
        SealedError::BadSignature => Exit::Corrupt,
        _ => Exit::Usage,
    };
    coded(code, format!("{what}: {e}"))
}
