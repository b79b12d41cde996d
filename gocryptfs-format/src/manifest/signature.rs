//! Detached minisign signatures over manifest files (`manifest.json.minisig`), checked with
//! the `minisign-verify` crate: Ed25519 over the BLAKE2b-512 of the file (the "prehashed"
//! `ED` algorithm every minisign since 0.8 writes), plus the signed trusted comment.
//!
//! Legacy non-prehashed (`Ed`) signatures are refused, as `minisign -V` refuses them unless
//! asked. Signing is the owner's business (`minisign -Sm manifest.json`); nothing here holds
//! a secret key. Format: <https://jedisct1.github.io/minisign/>.

use minisign_verify::{PublicKey, Signature};

/// Largest public-key or signature file we read.
pub const MAX_SIG_FILE: usize = 4096;

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The public key is not a minisign public key (file or base64 line).
    #[error("not a minisign public key: {0}")]
    PublicKey(#[source] minisign_verify::Error),
    /// The signature file is not a minisign signature.
    #[error("not a minisign signature file: {0}")]
    Format(#[source] minisign_verify::Error),
    /// The signature was made by another key.
    #[error("signed by another key (key ID differs from the trusted public key)")]
    OtherKey,
    /// A legacy (non-prehashed) signature.
    #[error("legacy minisign signature (not prehashed): re-sign with a current minisign")]
    Legacy,
    /// The signature does not verify: the file or the trusted comment was changed.
    #[error("signature does not verify: the manifest or the signature was altered")]
    Invalid,
    /// A file was too large to be a key or signature.
    #[error("larger than {MAX_SIG_FILE} bytes: not a minisign file")]
    TooLarge,
}

/// Parses a public key: a `minisign.pub` file (comment line + base64 line) or the bare
/// base64 line `minisign -G` prints.
///
/// # Errors
/// [`SignatureError::PublicKey`], [`SignatureError::TooLarge`].
pub fn parse_public_key(text: &str) -> Result<PublicKey, SignatureError> {
    if text.len() > MAX_SIG_FILE {
        return Err(SignatureError::TooLarge);
    }
    let t = text.trim();
    if t.lines().count() <= 1 {
        PublicKey::from_base64(t).map_err(SignatureError::PublicKey)
    } else {
        PublicKey::decode(t).map_err(SignatureError::PublicKey)
    }
}

/// Verifies that `signature_text` (a `.minisig` file) is `key`'s signature of `data`.
/// Returns the trusted comment.
///
/// # Errors
/// [`SignatureError`] naming why it was refused.
pub fn verify(
    data: &[u8],
    signature_text: &str,
    key: &PublicKey,
) -> Result<String, SignatureError> {
    if signature_text.len() > MAX_SIG_FILE {
        return Err(SignatureError::TooLarge);
    }
    let sig = Signature::decode(signature_text).map_err(SignatureError::Format)?;
    match key.verify(data, &sig, false) {
        Ok(()) => Ok(sig.trusted_comment().to_owned()),
        Err(minisign_verify::Error::UnexpectedKeyId) => Err(SignatureError::OtherKey),
        Err(minisign_verify::Error::UnexpectedAlgorithm) => Err(SignatureError::Legacy),
        Err(_) => Err(SignatureError::Invalid),
    }
}
