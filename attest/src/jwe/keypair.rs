//! The TEE key pair whose public half goes into `runtime-data.tee-pubkey`.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1.4 (the JWK shapes the KBS accepts) and
//! `../shared/specs/crate-stack.md` §4 (EC by hand with RustCrypto `p256`; RSA-OAEP-256 with
//! aws-lc-rs, never the `rsa` crate, RUSTSEC-2023-0071). P-256 `ECDH-ES+A256KW` is the default,
//! as in guest-components; RSA keys are 2048-bit, as there. The private half never leaves this
//! module except through [`super::decrypt`]: the p256 key zeroizes itself on drop, and the RSA
//! key lives in aws-lc memory, which aws-lc wipes when it frees it.

#![warn(clippy::indexing_slicing)]

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kbs_types::TeePubKey;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use zeroize::Zeroizing;

/// JWK `alg` of an EC key (and the JWE `alg` we then accept).
pub const ALG_ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
/// JWK `alg` of an RSA key (and the JWE `alg` we then accept).
pub const ALG_RSA_OAEP_256: &str = "RSA-OAEP-256";

/// Which key pair to offer the KBS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// EC P-256 with `ECDH-ES+A256KW` (default; small and fast).
    #[default]
    EcP256,
    /// RSA 2048 with `RSA-OAEP-256`.
    Rsa2048,
}

impl KeyAlgorithm {
    /// The JOSE `alg` name offered in the JWK.
    #[must_use]
    pub fn jose_alg(self) -> &'static str {
        match self {
            Self::EcP256 => ALG_ECDH_ES_A256KW,
            Self::Rsa2048 => ALG_RSA_OAEP_256,
        }
    }
}

/// An ephemeral key pair held by this process only.
pub struct TeeKeyPair {
    pub(super) inner: Inner,
    public: TeePubKey,
}

pub(super) enum Inner {
    Ec(p256::SecretKey),
    Rsa(OaepPrivateDecryptingKey),
}

impl std::fmt::Debug for TeeKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeKeyPair")
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

/// Why a TEE key pair could not be generated (a fixed reason, no key material).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyGenError(pub &'static str);

impl TeeKeyPair {
    /// Generates a fresh key pair from the OS RNG.
    ///
    /// # Errors
    /// [`KeyGenError`] if the RNG or aws-lc fails.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, KeyGenError> {
        match alg {
            KeyAlgorithm::EcP256 => {
                // Rejection sampling: a uniform 32-byte string is a valid scalar with
                // probability ~1 - 2^-32, so a handful of tries is plenty.
                for _ in 0..8 {
                    let mut bytes = Zeroizing::new([0u8; 32]);
                    getrandom::fill(bytes.as_mut_slice())
                        .map_err(|_| KeyGenError("the OS random number generator failed"))?;
                    if let Ok(sk) = p256::SecretKey::from_slice(bytes.as_slice()) {
                        return Ok(Self::from_ec(sk));
                    }
                }
                Err(KeyGenError("no valid P-256 scalar after 8 tries"))
            }
            KeyAlgorithm::Rsa2048 => {
                let key = PrivateDecryptingKey::generate(KeySize::Rsa2048)
                    .map_err(|_| KeyGenError("aws-lc could not generate an RSA key"))?;
                Self::from_rsa(key)
            }
        }
    }

    /// An EC key pair from a fixed scalar (tests and fuzzing only).
    #[doc(hidden)]
    #[must_use]
    pub fn from_ec_scalar(scalar: &[u8; 32]) -> Option<Self> {
        p256::SecretKey::from_slice(scalar).ok().map(Self::from_ec)
    }

    /// An RSA key pair from a PKCS#8 document (tests only).
    #[doc(hidden)]
    #[must_use]
    pub fn from_rsa_pkcs8(der: &[u8]) -> Option<Self> {
        PrivateDecryptingKey::from_pkcs8(der)
            .ok()
            .and_then(|k| Self::from_rsa(k).ok())
    }

    fn from_ec(sk: p256::SecretKey) -> Self {
        let point = sk.public_key().to_sec1_point(false);
        let coord = |c: Option<&p256::FieldBytes>| c.map(|b| URL_SAFE_NO_PAD.encode(b));
        let public = TeePubKey::EC {
            crv: "P-256".into(),
            alg: ALG_ECDH_ES_A256KW.into(),
            // An uncompressed point always has both coordinates.
            x: coord(point.x()).unwrap_or_default(),
            y: coord(point.y()).unwrap_or_default(),
        };
        Self {
            inner: Inner::Ec(sk),
            public,
        }
    }

    fn from_rsa(key: PrivateDecryptingKey) -> Result<Self, KeyGenError> {
        const BAD: KeyGenError = KeyGenError("cannot read the RSA public key");
        let der = key.public_key().as_der().map_err(|_| BAD)?;
        let (n, e) = spki_rsa_components(der.as_ref()).ok_or(BAD)?;
        let public = TeePubKey::RSA {
            alg: ALG_RSA_OAEP_256.into(),
            k_mod: URL_SAFE_NO_PAD.encode(n),
            k_exp: URL_SAFE_NO_PAD.encode(e),
        };
        let oaep = OaepPrivateDecryptingKey::new(key).map_err(|_| BAD)?;
        Ok(Self {
            inner: Inner::Rsa(oaep),
            public,
        })
    }

    /// The public JWK to send as `tee-pubkey` (and to hash into the binding).
    #[must_use]
    pub fn public_jwk(&self) -> &TeePubKey {
        &self.public
    }

    /// Which algorithm this key pair is for.
    #[must_use]
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            Inner::Ec(_) => KeyAlgorithm::EcP256,
            Inner::Rsa(_) => KeyAlgorithm::Rsa2048,
        }
    }
}

/// Reads `(n, e)` from a DER SubjectPublicKeyInfo holding an RSAPublicKey (RFC 8017 A.1.1),
/// without leading zero bytes. Only our own aws-lc output reaches this, but it is still
/// parsed defensively.
fn spki_rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (spki, _) = der_element(der, 0x30)?;
    let (_alg, rest) = der_element(spki, 0x30)?;
    let (bits, _) = der_element(rest, 0x03)?;
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    let (rsa, _) = der_element(key, 0x30)?;
    let (n, rest) = der_element(rsa, 0x02)?;
    let (e, _) = der_element(rest, 0x02)?;
    Some((strip_leading_zeros(n), strip_leading_zeros(e)))
}

fn strip_leading_zeros(mut v: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = v {
        v = rest;
    }
    v
}

/// Splits one DER element with the given tag off `input`: `(contents, rest)`.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(n)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    rest.split_at_checked(len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn ec_jwk_shape() {
        let k = TeeKeyPair::generate(KeyAlgorithm::EcP256).unwrap();
        let v = serde_json::to_value(k.public_jwk()).unwrap();
        assert_eq!(v["kty"], "EC");
        assert_eq!(v["crv"], "P-256");
        assert_eq!(v["alg"], "ECDH-ES+A256KW");
        // Fixed-length coordinates: 32 bytes -> 43 base64url characters, no padding.
        assert_eq!(v["x"].as_str().unwrap().len(), 43);
        assert_eq!(v["y"].as_str().unwrap().len(), 43);
        assert_eq!(v.as_object().unwrap().len(), 5, "no extra JWK members");
    }

    #[test]
    fn rsa_jwk_shape() {
        let k = TeeKeyPair::generate(KeyAlgorithm::Rsa2048).unwrap();
        let v = serde_json::to_value(k.public_jwk()).unwrap();
        assert_eq!(v["kty"], "RSA");
        assert_eq!(v["alg"], "RSA-OAEP-256");
        assert_eq!(v["e"], "AQAB");
        let n = URL_SAFE_NO_PAD.decode(v["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert!(
            n[0] & 0x80 != 0,
            "no sign byte, top bit set for a 2048-bit modulus"
        );
        assert_eq!(format!("{k:?}"), "TeeKeyPair { alg: Rsa2048, .. }");
    }

    #[test]
    fn der_parser_rejects_garbage() {
        assert!(spki_rsa_components(&[]).is_none());
        assert!(spki_rsa_components(&[0x30, 0x84, 1, 2, 3, 4]).is_none());
        assert!(spki_rsa_components(&[0x30, 0x05, 0x30]).is_none());
    }
}
