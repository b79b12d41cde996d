//! `--expect PIN` and `--expect-signed-by PUBKEY`: resolves a pin into a
//! [`gocryptfs_format::manifest::Expected`] before any work starts, and reports a mismatch
//! (one line per difference on stderr, then exit 26).
//!
//! PIN is a manifest file, `sha256:<digest>`, or `kbs:///REPO/TYPE/TAG` whose resource holds
//! either; the resource is fetched on the process-wide session ([`kbs::with_shared`]), so the
//! key and the pin cost one attestation. `docs/manifests.md` describes the forms.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use attest::ResourceUri;
use gocryptfs_format::escape::escape_text;
use gocryptfs_format::manifest::signature;
use gocryptfs_format::manifest::{CheckError, Expected, MAX_MANIFEST_LEN, Mismatches};

use crate::cli::ExpectArgs;
use crate::exit::{Exit, coded};
use crate::kbs;

/// Most differences printed one per line (the summary counts them all).
const MAX_PRINTED: usize = 1000;

/// Where a pin came from (for messages and the receipt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PinSource {
    /// A manifest (or digest) file.
    File(PathBuf),
    /// `sha256:<digest>` on the command line.
    Digest,
    /// A KBS resource.
    Kbs(String),
}

impl PinSource {
    /// Short form name for the receipt.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PinSource::File(_) => "file",
            PinSource::Digest => "digest",
            PinSource::Kbs(_) => "kbs",
        }
    }

    /// The file path or URI, if any.
    pub(crate) fn location(&self) -> Option<String> {
        match self {
            PinSource::File(p) => Some(p.display().to_string()),
            PinSource::Digest => None,
            PinSource::Kbs(u) => Some(u.clone()),
        }
    }
}

/// A resolved pin.
#[derive(Debug)]
pub(crate) struct Pin {
    /// What the tree must be.
    pub(crate) expected: Expected,
    /// Where it came from.
    pub(crate) source: PinSource,
    /// The trusted comment of a verified signature.
    pub(crate) signed: Option<String>,
}

/// Reads a file of at most `max` bytes.
fn read_limited(path: &Path, max: usize, what: &str) -> Result<Vec<u8>> {
    let f =
        std::fs::File::open(path).with_context(|| format!("opening {what} {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if buf.len() > max {
        return Err(coded(
            Exit::Usage,
            format!("{what} {} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}

fn parse_pin(bytes: &[u8], from: &str) -> Result<Expected> {
    Expected::parse(bytes).map_err(|e| {
        coded(
            Exit::Corrupt,
            format!("--expect {from}: not a ccmount manifest or sha256:<digest>: {e}"),
        )
    })
}

/// Resolves `--expect`/`--expect-signed-by`; `None` when no pin was given. KBS pins are
/// fetched on the shared session (attesting only if it has no token yet).
pub(crate) fn resolve(args: &ExpectArgs) -> Result<Option<Pin>> {
    let Some(spec) = args.expect.as_deref() else {
        return Ok(None);
    };
    let spec = spec.trim();
    let (expected, source, data_for_sig) = if spec.starts_with("sha256:") {
        let d = spec
            .parse()
            .map_err(|e| coded(Exit::Usage, format!("--expect: {e}")))?;
        (Expected::Digest(d), PinSource::Digest, None)
    } else if spec.starts_with("kbs:") {
        let uri = ResourceUri::parse(spec).with_context(|| format!("--expect {spec}"))?;
        let secret = kbs::with_shared(|s| {
            let url = s.url().to_owned();
            s.get_resource(&uri)
                .with_context(|| format!("fetching the pinned manifest {uri} from {url}"))
        })?;
        let e = parse_pin(secret.expose(), spec)?;
        (e, PinSource::Kbs(spec.to_owned()), None)
    } else {
        let path = PathBuf::from(spec);
        let bytes = read_limited(&path, MAX_MANIFEST_LEN, "manifest")?;
        let e = parse_pin(&bytes, spec)?;
        (e, PinSource::File(path), Some(bytes))
    };
    let signed = match &args.expect_signed_by {
        None => None,
        Some(pubkey) => {
            let (PinSource::File(path), Some(data)) = (&source, &data_for_sig) else {
                return Err(coded(
                    Exit::Usage,
                    "--expect-signed-by applies to a manifest file (FILE + FILE.minisig); a sha256: pin is already exact and a kbs:/// pin arrives over the attested channel",
                ));
            };
            Some(check_signature(path, data, pubkey)?)
        }
    };
    check_model(&expected, args)?;
    Ok(Some(Pin {
        expected,
        source,
        signed,
    }))
}

/// `--expect-model` / `--expect-min-version`: the pinned manifest must name this model at
/// this release or a later one (a signature alone accepts every older signed release).
fn check_model(expected: &Expected, args: &ExpectArgs) -> Result<()> {
    let Some(want) = args.expect_model.as_deref() else {
        return Ok(());
    };
    let Expected::Manifest(m) = expected else {
        return Err(coded(
            Exit::Usage,
            "--expect-model needs a manifest pin (a file or a kbs:/// resource holding one); a sha256: digest names no model",
        ));
    };
    let Some(model) = &m.model else {
        return Err(coded(
            Exit::Corrupt,
            format!(
                "the pinned manifest names no model, --expect-model wants {}; write it with `ccmount manifest --model NAME --model-version N`",
                escape_text(want)
            ),
        ));
    };
    if model.name != want {
        return Err(coded(
            Exit::Corrupt,
            format!(
                "the pinned manifest is for model {}, not {} (another model signed with the same key)",
                escape_text(&model.name),
                escape_text(want)
            ),
        ));
    }
    if let Some(min) = args.expect_min_version
        && model.version < min
    {
        return Err(coded(
            Exit::Corrupt,
            format!(
                "the pinned manifest is version {} of {}, older than --expect-min-version {min} (a rollback)",
                model.version,
                escape_text(want)
            ),
        ));
    }
    Ok(())
}

/// Verifies `FILE.minisig` over the manifest bytes with the trusted public key.
fn check_signature(manifest: &Path, data: &[u8], pubkey: &Path) -> Result<String> {
    let key_text = read_limited(pubkey, signature::MAX_SIG_FILE, "public key")?;
    let key_text = String::from_utf8(key_text).map_err(|_| {
        coded(
            Exit::Usage,
            format!("public key {}: not text", pubkey.display()),
        )
    })?;
    let key = signature::parse_public_key(&key_text).map_err(|e| {
        coded(
            Exit::Usage,
            format!("--expect-signed-by {}: {e}", pubkey.display()),
        )
    })?;
    let mut sig_path = manifest.as_os_str().to_owned();
    sig_path.push(".minisig");
    let sig_path = PathBuf::from(sig_path);
    let sig = match read_limited(&sig_path, signature::MAX_SIG_FILE, "signature") {
        Ok(s) => s,
        Err(e) => {
            return Err(coded(
                Exit::Corrupt,
                format!(
                    "--expect-signed-by: no readable signature {} ({e:#}); sign with `minisign -Sm {}`",
                    sig_path.display(),
                    manifest.display()
                ),
            ));
        }
    };
    let sig = String::from_utf8_lossy(&sig);
    let comment = signature::verify(data, &sig, &key).map_err(|e| {
        coded(
            Exit::Corrupt,
            format!(
                "manifest {} refused: {} ({e})",
                manifest.display(),
                sig_path.display()
            ),
        )
    })?;
    tracing::info!(manifest = %manifest.display(), trusted_comment = %comment, "manifest signature verified");
    Ok(comment)
}

/// Prints every difference on stderr (one line each, capped) and returns the exit-26 error.
pub(crate) fn mismatch_error(err: CheckError) -> anyhow::Error {
    match err {
        CheckError::Mismatch(m) => {
            print_differences(&m);
            coded(Exit::Corrupt, m.to_string())
        }
        CheckError::DigestNeedsFullCheck => coded(Exit::Usage, err.to_string()),
        CheckError::Tree(e) => anyhow::Error::new(e),
        other => anyhow::Error::new(other),
    }
}

fn print_differences(m: &Mismatches) {
    for d in m.differences.iter().take(MAX_PRINTED) {
        eprintln!("mismatch: {d}");
    }
    if m.differences.len() > MAX_PRINTED {
        eprintln!(
            "mismatch: ... and {} more differences",
            m.differences.len() - MAX_PRINTED
        );
    }
}
