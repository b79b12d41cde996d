//! Binding evidence to the challenge: `report_data` = H(JCS(runtime data)).
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §2.1–2.3 (protocol 0.4.0): the digest covers the
//! RFC 8785 canonical JSON of `{"additional-evidence": A, "nonce": N, "tee-pubkey": K}`, where
//! `N` is the challenge nonce string exactly as received, `K` the JWK exactly as we send it
//! (kbs-types' typed form, which is what the KBS re-serializes), and `A` the exact
//! additional-evidence string we send (`""`: we attach no devices). H is SHA-384 unless the
//! challenge selects another algorithm (§1.3); each TEE then zero-pads the digest to its own
//! field (§2.2).

use kbs_types::TeePubKey;
use sha2::Digest as _;

/// Hash algorithms the binding can use (what we advertise in `/auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-384 (48 bytes), the default of every TEE but IBM SE.
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

/// The challenge selects a hash algorithm we did not offer (the reason, for the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedHash(pub &'static str);

impl HashAlgorithm {
    /// The algorithms we can compute, by their wire names (lower case, as kbs-types).
    pub const SUPPORTED: [&'static str; 3] = ["sha256", "sha384", "sha512"];

    /// Picks the algorithm from the challenge's `extra-params`: `selected-hash-algorithm`
    /// (case-insensitive) if present, otherwise SHA-384 (§1.3).
    ///
    /// # Errors
    /// [`UnsupportedHash`] when the KBS selects an algorithm we did not offer.
    pub fn from_challenge(extra_params: &serde_json::Value) -> Result<Self, UnsupportedHash> {
        let Some(sel) = extra_params.get("selected-hash-algorithm") else {
            return Ok(Self::Sha384);
        };
        let name = sel
            .as_str()
            .ok_or(UnsupportedHash("selected-hash-algorithm is not a string"))?;
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Ok(Self::Sha256),
            "sha384" => Ok(Self::Sha384),
            "sha512" => Ok(Self::Sha512),
            _ => Err(UnsupportedHash(
                "the KBS selected a hash algorithm we did not offer",
            )),
        }
    }

    /// Digest of `data`.
    #[must_use]
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// Wire name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }
}

/// The binding digest handed to an attester, before any TEE-specific padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportData(Vec<u8>);

impl ReportData {
    /// Wraps a digest (tests and attesters that receive one from elsewhere).
    #[must_use]
    pub fn from_digest(digest: Vec<u8>) -> Self {
        Self(digest)
    }

    /// The raw digest (what the `sample` verifier compares exactly).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The digest zero-padded to a TEE field of `N` bytes (TDX and SNP: 64). `None` if the
    /// digest is longer than the field, which no algorithm we offer produces for `N = 64`.
    #[must_use]
    pub fn padded<const N: usize>(&self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        out.get_mut(..self.0.len())?.copy_from_slice(&self.0);
        Some(out)
    }
}

/// The canonical JSON that is hashed (exposed for tests and `ccmount attest`).
///
/// # Errors
/// Only if serialization fails, which cannot happen for these types.
pub fn canonical_runtime_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<String, serde_json::Error> {
    let value = serde_json::json!({
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": serde_json::to_value(tee_pubkey)?,
    });
    serde_json_canonicalizer::to_string(&value)
}

/// `report_data` for the primary attester.
///
/// # Errors
/// Only if serialization fails, which cannot happen for these types.
pub fn report_data(
    alg: HashAlgorithm,
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<ReportData, serde_json::Error> {
    let jcs = canonical_runtime_data(nonce, tee_pubkey, additional_evidence)?;
    Ok(ReportData(alg.digest(jcs.as_bytes())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn appendix_a_key() -> TeePubKey {
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "yTcIfMv2s8YMhy_teK65WqlOpeDGLk6Gwt3lmPQHlqA".into(),
            y: "e-51oxTPP7J4S3bGc2DISWhh4oo6_urDArcE4VA_5hc".into(),
        }
    }

    /// Known answer from `../shared/specs/kbs-protocol.md` Appendix A (verified there against
    /// Trustee's own code path).
    #[test]
    fn appendix_a_known_answer() {
        let nonce = "q1w2e3r4t5y6u7i8o9p0AAAAAAAAAAAAAAAAAAAAAAA=";
        let jcs = canonical_runtime_data(nonce, &appendix_a_key(), "").unwrap();
        assert_eq!(
            jcs,
            r#"{"additional-evidence":"","nonce":"q1w2e3r4t5y6u7i8o9p0AAAAAAAAAAAAAAAAAAAAAAA=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"yTcIfMv2s8YMhy_teK65WqlOpeDGLk6Gwt3lmPQHlqA","y":"e-51oxTPP7J4S3bGc2DISWhh4oo6_urDArcE4VA_5hc"}}"#
        );
        let rd = report_data(HashAlgorithm::Sha384, nonce, &appendix_a_key(), "").unwrap();
        assert_eq!(
            hex::encode(rd.as_bytes()),
            "564d2f258e98933907397ad04c3a7b06b19a57fc78ee844b6634b76481c7044114d26b96503a09f327afbee4c89ec115"
        );
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(rd.as_bytes()),
            "Vk0vJY6YkzkHOXrQTDp7BrGaV/x47oRLZjS3ZIHHBEEU0muWUDoJ8yevvuTInsEV"
        );
        let padded = rd.padded::<64>().unwrap();
        assert_eq!(&padded[..48], rd.as_bytes());
        assert_eq!(padded[48..], [0u8; 16]);
        assert!(rd.padded::<32>().is_none());
    }

    #[test]
    fn rsa_key_members_are_sorted() {
        let k = TeePubKey::RSA {
            alg: "RSA-OAEP-256".into(),
            k_mod: "bW9k".into(),
            k_exp: "AQAB".into(),
        };
        let jcs = canonical_runtime_data("n", &k, "{\"x\":1}").unwrap();
        assert_eq!(
            jcs,
            r#"{"additional-evidence":"{\"x\":1}","nonce":"n","tee-pubkey":{"alg":"RSA-OAEP-256","e":"AQAB","kty":"RSA","n":"bW9k"}}"#
        );
    }

    #[test]
    fn hash_selection() {
        assert_eq!(
            HashAlgorithm::from_challenge(&serde_json::json!("")).unwrap(),
            HashAlgorithm::Sha384
        );
        assert_eq!(
            HashAlgorithm::from_challenge(
                &serde_json::json!({"selected-hash-algorithm": "SHA512"})
            )
            .unwrap(),
            HashAlgorithm::Sha512
        );
        assert!(
            HashAlgorithm::from_challenge(&serde_json::json!({"selected-hash-algorithm": "sm3"}))
                .is_err()
        );
        assert!(
            HashAlgorithm::from_challenge(&serde_json::json!({"selected-hash-algorithm": 3}))
                .is_err()
        );
    }

    proptest! {
        /// The digest equals SHA-384 of a canonical JSON we build by hand, for nonces and
        /// coordinates of the shapes the protocol uses (base64 alphabets, no escapes needed).
        #[test]
        fn digest_matches_hand_built_canonical_json(
            nonce in "[A-Za-z0-9+/]{43}=",
            x in "[A-Za-z0-9_-]{43}",
            y in "[A-Za-z0-9_-]{43}",
        ) {
            let k = TeePubKey::EC { crv: "P-256".into(), alg: "ECDH-ES+A256KW".into(), x: x.clone(), y: y.clone() };
            let by_hand = format!(
                r#"{{"additional-evidence":"","nonce":"{nonce}","tee-pubkey":{{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}}}"#
            );
            let rd = report_data(HashAlgorithm::Sha384, &nonce, &k, "").unwrap();
            let want = sha2::Sha384::digest(by_hand.as_bytes());
            prop_assert_eq!(rd.as_bytes(), want.as_slice());
        }
    }
}
