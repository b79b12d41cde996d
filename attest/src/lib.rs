//! Trustee KBS attestation client: proves TEE evidence to a Key Broker Service and returns
//! the requested resource, decrypted with a key that only this process holds.
//!
//! Spec: `../shared/specs/kbs-protocol.md` (RCAR protocol 0.4.0). This crate knows nothing
//! about gocryptfs; a fetched secret leaves it as zeroized bytes ([`Secret`]).
//!
//! ```text
//!  evidence::attester(TeeChoice, &Platform) ──> Box<dyn Attester>   (tdx | snp | sample)
//!        │
//!  KbsClient::builder(url, attester) ──> KbsClient<HttpTransport>
//!        │  get_resource(&ResourceUri)
//!        ├─ no usable token? auth → evidence over H(JCS(runtime data)) → attest → token
//!        ├─ GET resource (cookie + Bearer)  ── 401 token/session → one new handshake
//!        └─ jwe::decrypt(TEE key, JWE) ──> Secret
//! ```
//!
//! What it is not: a verifier, an attestation agent daemon, or a passport-model client. The
//! protocol core talks to a [`kbs::transport::Transport`], so it runs against in-process
//! fakes as well as over HTTPS.
//!
//! ```no_run
//! # async fn demo() -> Result<(), attest::Error> {
//! use attest::{KbsClient, ResourceUri, evidence};
//! let attester = evidence::attester(evidence::TeeChoice::Auto, &evidence::Platform::default())?;
//! let mut kbs = KbsClient::builder("https://kbs.example:8080", attester).build()?;
//! let key = kbs.get_resource(&ResourceUri::parse("kbs:///default/llm/model-key")?).await?;
//! assert!(!key.is_empty());
//! # Ok(()) }
//! ```

pub mod binding;
pub mod error;
pub mod evidence;
pub mod jwe;
pub mod kbs;
pub mod resource_uri;
mod sanitize;
pub mod sealed;
pub mod secret;
pub mod secure_mount;
pub mod token;
pub mod transport;

pub use error::{Error, PROTOCOL_VERSION, ProtocolError, Result, Step};
pub use evidence::{Attester, EvidenceError, Platform, Tee, TeeChoice};
pub use jwe::{JweError, KeyAlgorithm};
pub use kbs::client::{AttestationInfo, KbsClient, KbsClientBuilder, RetryPolicy, Stats};
pub use resource_uri::{ResourceUri, UriError};
pub use secret::Secret;
pub use token::{TokenClaims, TokenError};
pub use transport::{HttpTransport, TlsProblem, Transport, TransportError, TransportErrorKind};

/// Entry points for fuzzing and property tests. Not a stable API.
#[doc(hidden)]
pub mod internal {
    /// One function per parser of untrusted input; each asserts a property, not only "no
    /// panic". A hardening issue wraps them in cargo-fuzz targets.
    pub mod fuzzing {
        use crate::jwe::{self, TeeKeyPair};
        use crate::kbs::client::parsers;
        use crate::resource_uri::ResourceUri;
        use crate::token::Token;

        /// KBS JSON responses: challenge, token response, error body, cookie header.
        /// Property: an accepted challenge re-serializes and re-parses to the same nonce; an
        /// error detail is one line of printable ASCII.
        pub fn kbs_json(data: &[u8]) {
            if let Ok(c) = parsers::challenge(data)
                && let Ok(again) = serde_json::to_vec(&c)
            {
                let c2 = parsers::challenge(&again);
                assert!(
                    c2.is_ok_and(|c2| c2.nonce == c.nonce),
                    "challenge round trip"
                );
            }
            let _ = parsers::token_response(data);
            let (_, detail) = parsers::error(data);
            assert!(detail.chars().all(|c| c.is_ascii_graphic() || c == ' '));
            let header = String::from_utf8_lossy(data).into_owned();
            if let Some(v) = parsers::cookie(&[header]) {
                assert!(
                    v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                );
            }
        }

        /// JWE: decrypting arbitrary bytes with a fixed EC key. Property: nothing but a JWE
        /// for our `alg` and `A256GCM` can yield plaintext (arbitrary input never does).
        pub fn jwe(data: &[u8]) {
            let Some(key) = TeeKeyPair::from_ec_scalar(&[0x11; 32]) else {
                return;
            };
            if jwe::decrypt(&key, data).is_ok() {
                let v: serde_json::Value =
                    serde_json::from_slice(data).unwrap_or(serde_json::Value::Null);
                let protected = v["protected"].as_str().unwrap_or("");
                use base64::Engine as _;
                let hdr = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(protected)
                    .ok()
                    .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
                    .unwrap_or_default();
                assert_eq!(hdr["alg"], "ECDH-ES+A256KW");
                assert_eq!(hdr["enc"], "A256GCM");
            }
        }

        /// Resource URIs. Property: an accepted URI prints as `kbs:///a/b/c`, re-parses to
        /// itself, and no segment is empty, `.`, `..` or contains `/`.
        pub fn resource_uri(data: &[u8]) {
            let Ok(s) = std::str::from_utf8(data) else {
                return;
            };
            if let Ok(u) = ResourceUri::parse(s) {
                for seg in [u.repository(), u.kind(), u.tag()] {
                    assert!(!seg.is_empty() && seg != "." && seg != ".." && !seg.contains('/'));
                }
                let again = ResourceUri::parse(&u.to_string());
                assert!(again.is_ok_and(|a| a.path() == u.path()));
            }
        }

        /// CDH sealed secrets. Property: an accepted secret names a resource URI that
        /// re-parses, and nothing verifies against a key that is not a P-256 JWK.
        pub fn sealed_secret(data: &[u8]) {
            let Ok(s) = std::str::from_utf8(data) else {
                return;
            };
            if let Ok(sealed) = crate::sealed::SealedSecret::parse(s) {
                assert!(ResourceUri::parse(&sealed.name().to_string()).is_ok());
                assert!(sealed.verify(b"{\"kty\":\"RSA\"}").is_err());
                let _ = sealed.key_id();
            }
        }

        /// CDH secure-mount requests. Property: an accepted request has an absolute mount
        /// point, an `s3://` URL and an endpoint with a scheme; and once the secret options
        /// (`akId`, `akSecret`, `encPasswd`) of a JSON-shaped input are set to marker values,
        /// neither an error nor an accepted request's `Debug` shows them.
        pub fn secure_mount_request(data: &[u8]) {
            use crate::secure_mount::{SecureMountRequest, Volume};
            if let Ok(r) = SecureMountRequest::parse(data) {
                assert!(r.mount_point.starts_with('/'));
                let Volume::AlibabaCloudOss(o) = &r.volume;
                assert!(o.s3_url().starts_with("s3://"));
                assert!(o.endpoint().contains("://"));
            }
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) else {
                return;
            };
            let Some(options) = v.get_mut("options").and_then(|o| o.as_object_mut()) else {
                return;
            };
            // Not ASCII: whatever an error quotes is sanitized to printable ASCII, so only
            // a raw echo could show a marker.
            const MARKERS: [&str; 3] = [
                "\u{1f511}id-marker",
                "\u{1f511}ak-marker",
                "\u{1f511}pw-marker",
            ];
            for (k, m) in ["akId", "akSecret", "encPasswd"].iter().zip(MARKERS) {
                options.insert((*k).to_owned(), m.into());
            }
            let Ok(bytes) = serde_json::to_vec(&v) else {
                return;
            };
            let shown = match SecureMountRequest::parse(&bytes) {
                Ok(r) => format!("{r:?}"),
                Err(e) => e.to_string(),
            };
            for m in MARKERS {
                assert!(!shown.contains(m), "a secret value is shown: {shown}");
            }
        }

        /// Token claims. Property: a parsed token's `exp` equals the payload's integer `exp`.
        pub fn token_claims(data: &[u8]) {
            let Ok(s) = std::str::from_utf8(data) else {
                return;
            };
            if let Ok(t) = Token::parse(s)
                && let Some(exp) = t
                    .claims()
                    .all
                    .get("exp")
                    .and_then(serde_json::Value::as_u64)
            {
                assert_eq!(t.claims().exp, Some(exp));
            }
        }
    }
}
