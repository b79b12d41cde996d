//! Sealed secrets of the Confidential Containers data hub: `sealed.<header>.<payload>.<sig>`,
//! a JWS in compact serialization behind a `sealed.` prefix, whose payload names where the
//! secret is (kbs-protocol.md §5.5; guest-components `confidential-data-hub/hub/src/secret`).
//!
//! - header (base64url JSON): `alg` (only `ES256` is accepted) and `kid`, where the signing
//!   public key is: a `kbs:///` resource holding a JWK, or a relative path in a local key
//!   directory;
//! - payload (base64url JSON): `version`, `type` (`vault` or `envelope`), and for `vault`
//!   `provider` (`kbs`) and `name` (the `kbs:///` URI of the secret), plus fields we ignore
//!   (`provider_settings`, `annotations`);
//! - signature: ES256 (P-256, SHA-256, `r || s`, 64 bytes) over `header.payload`.
//!
//! Every input here is untrusted (a Kubernetes secret, an env var, a request): parsing never
//! panics, sizes are bounded, and a secret is never unsealed before its signature verifies
//! (unless the caller explicitly skips verification, as CDH allows).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::resource_uri::ResourceUri;

/// What every sealed secret starts with.
pub const PREFIX: &str = "sealed.";
/// The longest sealed secret accepted (a vault secret is a few hundred bytes).
pub const MAX_LEN: usize = 64 * 1024;

/// Why a sealed secret was refused. Never holds secret bytes (there are none in it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealedError {
    /// The text does not start with `sealed.`.
    #[error("not a sealed secret (it does not start with `sealed.`)")]
    NotSealed,
    /// Longer than [`MAX_LEN`].
    #[error("sealed secret longer than {MAX_LEN} bytes")]
    TooLong,
    /// Not three base64url sections of JSON.
    #[error("malformed sealed secret: {0}")]
    Malformed(&'static str),
    /// `alg` other than ES256.
    #[error("sealed secret signed with {0:?}: only ES256 is accepted")]
    Algorithm(String),
    /// No `kid` in the header.
    #[error("sealed secret header has no kid (the signing key's location)")]
    NoKeyId,
    /// A `kid` that is neither a `kbs:///` URI nor a safe relative path.
    #[error("sealed secret kid {0:?} is neither a kbs:/// URI nor a relative path without `..`")]
    BadKeyId(String),
    /// A `type` other than vault and envelope.
    #[error("sealed secret of unknown type {0:?} (vault and envelope exist)")]
    UnknownType(String),
    /// A vault secret of a provider other than `kbs`.
    #[error("vault sealed secret with provider {0:?}: only kbs is supported")]
    Provider(String),
    /// Envelope secrets need a KMS.
    #[error(
        "envelope sealed secrets (KMS provider {0:?}) are not supported: seal a vault secret with provider kbs"
    )]
    Envelope(String),
    /// The vault secret's `name` is not a resource URI.
    #[error("vault sealed secret name {0:?} is not a kbs:/// resource URI")]
    Name(String),
    /// The signing key is not a P-256 JWK.
    #[error("signing key is not a usable P-256 JWK: {0}")]
    Jwk(&'static str),
    /// The signature does not verify with the signing key.
    #[error("signature does not verify with the signing key")]
    BadSignature,
}

/// Where the signing key is (`kid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyId {
    /// A KBS resource holding the JWK.
    Kbs(ResourceUri),
    /// A path relative to a local key directory (no `..`, not absolute).
    Local(String),
}

/// A parsed sealed secret: where the secret is, and how to check who sealed it.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    alg: Option<String>,
    kid: Option<String>,
    name: ResourceUri,
    signing_input: String,
    signature: Vec<u8>,
}

impl SealedSecret {
    /// Parses `text` (trailing whitespace ignored).
    ///
    /// # Errors
    /// [`SealedError`] for anything but a well-formed vault secret of provider `kbs`.
    pub fn parse(text: &str) -> Result<Self, SealedError> {
        if text.len() > MAX_LEN {
            return Err(SealedError::TooLong);
        }
        let body = text
            .trim_end()
            .strip_prefix(PREFIX)
            .ok_or(SealedError::NotSealed)?;
        let mut parts = body.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SealedError::Malformed(
                "it must be sealed.HEADER.PAYLOAD.SIGNATURE",
            ));
        };
        let payload = json_section(p).ok_or(SealedError::Malformed(
            "the payload is not base64url-encoded JSON",
        ))?;
        // A header that is not JSON (CDH's old unsigned form) is only an error when the
        // signature is checked.
        let header = json_section(h);
        let text_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let alg = header.as_ref().and_then(|h| text_of(h, "alg"));
        let kid = header.as_ref().and_then(|h| text_of(h, "kid"));
        let signature = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok();

        let kind =
            text_of(&payload, "type").ok_or(SealedError::Malformed("the payload has no type"))?;
        let provider = text_of(&payload, "provider").unwrap_or_default();
        match kind.as_str() {
            "vault" => {}
            "envelope" => return Err(SealedError::Envelope(provider)),
            _ => return Err(SealedError::UnknownType(kind)),
        }
        if provider != "kbs" {
            return Err(SealedError::Provider(provider));
        }
        let name = text_of(&payload, "name")
            .ok_or(SealedError::Malformed("the vault payload has no name"))?;
        let name = ResourceUri::parse(&name).map_err(|_| SealedError::Name(name))?;
        Ok(Self {
            alg,
            kid,
            name,
            signing_input: format!("{h}.{p}"),
            signature: signature.unwrap_or_default(),
        })
    }

    /// The KBS resource that holds the secret.
    #[must_use]
    pub fn name(&self) -> &ResourceUri {
        &self.name
    }

    /// Where the signing key is; checks `alg` on the way.
    ///
    /// # Errors
    /// An `alg` other than ES256, no `kid`, or a `kid` that is neither form.
    pub fn key_id(&self) -> Result<KeyId, SealedError> {
        match self.alg.as_deref() {
            Some("ES256") => {}
            Some(other) => return Err(SealedError::Algorithm(other.to_owned())),
            None => return Err(SealedError::Malformed("the header has no alg")),
        }
        let kid = self.kid.as_deref().ok_or(SealedError::NoKeyId)?;
        if kid.starts_with("kbs:") {
            return ResourceUri::parse(kid)
                .map(KeyId::Kbs)
                .map_err(|_| SealedError::BadKeyId(kid.to_owned()));
        }
        let safe = !kid.is_empty()
            && !kid.starts_with('/')
            && kid.len() <= 255
            && kid
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if safe {
            Ok(KeyId::Local(kid.to_owned()))
        } else {
            Err(SealedError::BadKeyId(kid.to_owned()))
        }
    }

    /// Checks the ES256 signature with `jwk` (a JSON Web Key, `kty` EC, `crv` P-256).
    ///
    /// # Errors
    /// [`SealedError::Jwk`] for an unusable key, [`SealedError::BadSignature`] otherwise.
    pub fn verify(&self, jwk: &[u8]) -> Result<(), SealedError> {
        self.key_id()?;
        let point = p256_point(jwk)?;
        if self.signature.len() != 64 {
            return Err(SealedError::BadSignature);
        }
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &point,
        )
        .verify(self.signing_input.as_bytes(), &self.signature)
        .map_err(|_| SealedError::BadSignature)
    }
}

/// Whether `bytes` (a secret file's content) is a sealed secret.
#[must_use]
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(PREFIX.as_bytes())
}

fn json_section(s: &str) -> Option<Value> {
    let raw = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.is_object().then_some(v)
}

/// The uncompressed SEC1 point (`04 || x || y`) of a P-256 JWK.
fn p256_point(jwk: &[u8]) -> Result<Vec<u8>, SealedError> {
    if jwk.len() > 16 * 1024 {
        return Err(SealedError::Jwk("larger than 16 KiB"));
    }
    let v: Value = serde_json::from_slice(jwk).map_err(|_| SealedError::Jwk("not JSON"))?;
    if v.get("kty").and_then(Value::as_str) != Some("EC") {
        return Err(SealedError::Jwk("kty is not EC"));
    }
    if v.get("crv").and_then(Value::as_str) != Some("P-256") {
        return Err(SealedError::Jwk("crv is not P-256"));
    }
    let coord = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .filter(|b| b.len() == 32)
    };
    let (Some(x), Some(y)) = (coord("x"), coord("y")) else {
        return Err(SealedError::Jwk(
            "x and y must be 32-byte base64url coordinates",
        ));
    };
    let mut point = Vec::with_capacity(65);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn key() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pt = kp.public_key().as_ref().to_vec();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&pt[1..33]), "y": URL_SAFE_NO_PAD.encode(&pt[33..]),
        });
        (kp, serde_json::to_vec(&jwk).unwrap())
    }

    fn seal(kp: &EcdsaKeyPair, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("sealed.{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn vault() -> Value {
        serde_json::json!({"version": "0.1.0", "type": "vault", "provider": "kbs",
            "name": "kbs:///default/llm/model-pass", "provider_settings": {}, "annotations": {}})
    }

    #[test]
    fn a_signed_vault_secret_verifies_and_names_its_resource() {
        let (kp, jwk) = key();
        let hdr = serde_json::json!({"alg": "ES256", "kid": "kbs:///default/keys/sealing"});
        let s = SealedSecret::parse(&format!("{}\n", seal(&kp, &hdr, &vault()))).unwrap();
        assert_eq!(s.name().to_string(), "kbs:///default/llm/model-pass");
        assert!(matches!(s.key_id().unwrap(), KeyId::Kbs(_)));
        s.verify(&jwk).unwrap();
        // Another key, or one changed byte of the payload: refused.
        let (_, other) = key();
        assert_eq!(s.verify(&other), Err(SealedError::BadSignature));
        let text = seal(&kp, &hdr, &vault());
        let mut parts: Vec<String> = text.split('.').map(str::to_owned).collect();
        let mut payload = vault();
        payload["name"] = "kbs:///default/llm/other".into();
        parts[2] = b64(&payload);
        let forged = SealedSecret::parse(&parts.join(".")).unwrap();
        assert_eq!(forged.verify(&jwk), Err(SealedError::BadSignature));
    }

    #[test]
    fn hostile_or_unsupported_inputs_are_refused() {
        let (kp, jwk) = key();
        let hdr = serde_json::json!({"alg": "ES256", "kid": "keys/k.jwk"});
        for (text, want) in [
            ("hello".to_owned(), SealedError::NotSealed),
            (
                "sealed.a.b".to_owned(),
                SealedError::Malformed("it must be sealed.HEADER.PAYLOAD.SIGNATURE"),
            ),
            (
                "sealed.a.!!.c".to_owned(),
                SealedError::Malformed("the payload is not base64url-encoded JSON"),
            ),
            ("x".repeat(MAX_LEN + 1), SealedError::TooLong),
        ] {
            assert_eq!(SealedSecret::parse(&text).unwrap_err(), want, "{text:.40}");
        }
        let mut env = vault();
        env["type"] = "envelope".into();
        env["provider"] = "aliyun".into();
        assert_eq!(
            SealedSecret::parse(&seal(&kp, &hdr, &env)).unwrap_err(),
            SealedError::Envelope("aliyun".into())
        );
        let mut p = vault();
        p["provider"] = "vault".into();
        assert!(matches!(
            SealedSecret::parse(&seal(&kp, &hdr, &p)),
            Err(SealedError::Provider(_))
        ));
        let mut p = vault();
        p["name"] = "kbs:///../x/y".into();
        assert!(matches!(
            SealedSecret::parse(&seal(&kp, &hdr, &p)),
            Err(SealedError::Name(_))
        ));
        for kid in ["/etc/shadow", "../x", "a/../b", "a//b", "", "a b"] {
            let h = serde_json::json!({"alg": "ES256", "kid": kid});
            let s = SealedSecret::parse(&seal(&kp, &h, &vault())).unwrap();
            assert!(matches!(s.key_id(), Err(SealedError::BadKeyId(_))), "{kid}");
            assert!(s.verify(&jwk).is_err());
        }
        for alg in ["none", "HS256", "RS256"] {
            let h = serde_json::json!({"alg": alg, "kid": "k"});
            let s = SealedSecret::parse(&seal(&kp, &h, &vault())).unwrap();
            assert_eq!(s.verify(&jwk), Err(SealedError::Algorithm(alg.into())));
        }
        let s = SealedSecret::parse(&seal(&kp, &hdr, &vault())).unwrap();
        for bad in [
            &b"{}"[..],
            b"[]",
            b"{\"kty\":\"EC\",\"crv\":\"P-384\"}",
            b"\xff",
        ] {
            assert!(matches!(s.verify(bad), Err(SealedError::Jwk(_))));
        }
    }

    proptest::proptest! {
        /// Arbitrary text never panics; whatever parses names a valid resource URI.
        #[test]
        fn arbitrary_text_never_panics(s in "sealed\\.[A-Za-z0-9_=.-]{0,200}", raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            for t in [s, String::from_utf8_lossy(&raw).into_owned()] {
                if let Ok(p) = SealedSecret::parse(&t) {
                    let again = ResourceUri::parse(&p.name().to_string());
                    proptest::prop_assert!(again.is_ok());
                    let _ = p.verify(b"{}");
                }
            }
        }
    }
}
