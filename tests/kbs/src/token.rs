//! Attestation tokens: EAR-shaped JWTs signed ES256, and their verification.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1.4 (the built-in CoCo AS issues an EAR JWT,
//! ES256, signing key as `jwk` in the JOSE header; the KBS finds the JWE recipient key at
//! `/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey`) and §1.5
//! (the token is verified on every resource request).
//!
//! Deliberate difference: Trustee with `insecure_header_jwk = true` trusts *any* key in the
//! header; we verify against this server's own key only, as Trustee does with a configured
//! signer certificate, so a forged token is refused. Expiry: a token is expired when
//! `now >= exp` (whole seconds, no leeway), so a TTL of zero issues an already-expired token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToSec1Point as _;
use serde_json::{Value, json};

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The ES256 key that signs and verifies this server's tokens.
pub(crate) struct TokenSigner {
    key: SigningKey,
    jwk: Value,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("jwk", &self.jwk)
            .finish()
    }
}

impl TokenSigner {
    /// A fresh random key.
    pub(crate) fn generate() -> Result<Self, String> {
        for _ in 0..8 {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(bytes.as_mut_slice()).map_err(|e| format!("os random: {e}"))?;
            if let Ok(key) = SigningKey::from_slice(bytes.as_slice()) {
                let point = key.verifying_key().as_affine().to_sec1_point(false);
                let raw = point.as_bytes();
                let (x, y) = (raw.get(1..33), raw.get(33..65));
                let (Some(x), Some(y)) = (x, y) else {
                    return Err("unexpected P-256 point encoding".to_owned());
                };
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "x": URL_SAFE_NO_PAD.encode(x),
                    "y": URL_SAFE_NO_PAD.encode(y),
                });
                return Ok(Self { key, jwk });
            }
        }
        Err("could not draw a P-256 signing key".to_owned())
    }

    /// The public key as a JWK (also put in each token's header).
    pub(crate) fn public_jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// Sign `claims` into a compact JWT.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({"alg": "ES256", "typ": "JWT", "jwk": self.jwk});
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig: Signature = self.key.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.to_bytes())
        ))
    }

    /// Verify signature (against our key), `alg`, `exp` and `nbf`; return the claims.
    pub(crate) fn verify(&self, token: &str, now: u64) -> Result<Value, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("token is not a compact JWS with three parts".to_owned());
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("token header is not base64url JSON")?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err("token alg is not ES256".to_owned());
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or("token signature is not a 64-byte ES256 signature")?;
        let verifying: &VerifyingKey = self.key.verifying_key();
        let signing_input_len = h.len() + 1 + p.len();
        let signing_input = token
            .get(..signing_input_len)
            .ok_or("token signing input out of range")?;
        verifying
            .verify(signing_input.as_bytes(), &sig)
            .map_err(|_| "token signature does not verify with this KBS's key".to_owned())?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("token payload is not base64url JSON")?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("token has no numeric exp")?;
        if now >= exp {
            return Err(format!("token expired at {exp} (now {now})"));
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
            && now < nbf
        {
            return Err(format!("token not valid before {nbf} (now {now})"));
        }
        Ok(claims)
    }
}

/// Appraisal of one TEE for the token (one `submods` entry).
#[derive(Debug, Clone)]
pub(crate) struct Appraisal {
    /// kbs-types TEE name.
    pub(crate) tee: String,
    /// Parsed evidence claims.
    pub(crate) tee_claims: Value,
    /// The report data found in the evidence.
    pub(crate) report_data: Vec<u8>,
    /// `runtime_data_claims`: what was hashed into the report data.
    pub(crate) runtime_data: Value,
    /// Init-data digest and claims (primary TEE only).
    pub(crate) init_data: Option<(Vec<u8>, Value)>,
    /// Sample or structural-only verification.
    pub(crate) structural_only: bool,
}

fn submod(a: &Appraisal) -> Value {
    let mut annotated = serde_json::Map::new();
    annotated.insert(a.tee.clone(), a.tee_claims.clone());
    annotated.insert(
        "report_data".into(),
        Value::String(hex::encode(&a.report_data)),
    );
    annotated.insert("runtime_data_claims".into(), a.runtime_data.clone());
    if let Some((digest, claims)) = &a.init_data {
        annotated.insert("init_data".into(), Value::String(hex::encode(digest)));
        annotated.insert("init_data_claims".into(), claims.clone());
    }
    // What Trustee's default AS policy yields without reference values (§6.5): sample is
    // contraindicated; our structural TDX/SNP checks claim no more than "warning".
    let (status, vector) = if a.tee == "sample" || a.tee == "sampledevice" {
        ("contraindicated", (2, 33, 97))
    } else {
        ("warning", (2, 2, 32))
    };
    json!({
        "ear.status": status,
        "ear.trustworthiness-vector": {
            "instance-identity": 0,
            "configuration": vector.0,
            "executables": vector.1,
            "file-system": 0,
            "hardware": vector.2,
            "runtime-opaque": 0,
            "storage-opaque": 0,
            "sourced-data": 0,
        },
        "ear.appraisal-policy-id": if a.tee == "sampledevice" { "default_gpu" } else { "default_cpu" },
        "ear.veraison.annotated-evidence": Value::Object(annotated),
        "test-kbs.structural-only": a.structural_only,
    })
}

/// EAR-like claims: `eat_profile`, `iat`, `exp`, `iss`, `ear.verifier-id`, and `submods`
/// (`cpu0` for the primary TEE, `gpu0`, `gpu1`, ... for additional devices).
pub(crate) fn ear_claims(
    primary: &Appraisal,
    devices: &[Appraisal],
    iat: u64,
    ttl_secs: u64,
) -> Value {
    let mut submods = serde_json::Map::new();
    submods.insert("cpu0".into(), submod(primary));
    for (i, d) in devices.iter().enumerate() {
        submods.insert(format!("gpu{i}"), submod(d));
    }
    json!({
        "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
        "iat": iat,
        "exp": iat.saturating_add(ttl_secs),
        "iss": "test-kbs",
        "ear.verifier-id": {
            "developer": "https://github.com/confidential-containers (reproduced by ccmount test-kbs)",
            "build": concat!("test-kbs ", env!("CARGO_PKG_VERSION")),
        },
        "submods": Value::Object(submods),
    })
}

/// The JWE recipient key from verified claims.
pub(crate) fn tee_pubkey_from_claims(claims: &Value) -> Result<kbs_types::TeePubKey, String> {
    let key = claims
        .pointer("/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey")
        .ok_or("token has no runtime_data_claims.tee-pubkey")?;
    serde_json::from_value(key.clone()).map_err(|e| format!("token tee-pubkey is not a JWK: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn sign_verify_expire_forge() {
        let s = TokenSigner::generate().unwrap();
        let t = s.sign(&json!({"exp": 100, "iat": 50})).unwrap();
        assert_eq!(s.verify(&t, 99).unwrap()["iat"], 50);
        assert!(s.verify(&t, 100).is_err());
        let other = TokenSigner::generate().unwrap();
        assert!(other.verify(&t, 10).is_err());
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"exp":999999}"#);
        parts[1] = &forged;
        assert!(s.verify(&parts.join("."), 10).is_err());
        assert!(s.verify("a.b", 10).is_err());
        assert!(s.verify(&format!("{t}.x"), 10).is_err());
        let no_exp = s.sign(&json!({"iat": 1})).unwrap();
        assert!(s.verify(&no_exp, 10).is_err());
    }
}
