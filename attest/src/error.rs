//! The crate's one public [`Error`] and its typed parts.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1.6 (Trustee's error JSON and status codes) and
//! §7 item 5 (users want errors that say what went wrong). Each variant names the cause and
//! the fix in one lowercase line; the agent maps variants to exit codes 30–37
//! (`docs/kbs-protocol.md` has the table). Text that comes from the KBS is untrusted: it is
//! reduced to printable ASCII and bounded ([`sanitize_detail`]) before it reaches a message.
//! No variant carries secret bytes.

use std::fmt;
use std::time::Duration;

use crate::evidence::EvidenceError;
use crate::jwe::JweError;
use crate::resource_uri::{ResourceUri, UriError};
use crate::token::TokenError;
use crate::transport::TransportError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// The protocol version this client speaks (exact match required by Trustee ≥ v0.14.0).
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// Which call of the handshake an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// `POST /kbs/v0/auth`.
    Auth,
    /// `POST /kbs/v0/attest`.
    Attest,
    /// `GET /kbs/v0/resource/...`.
    Resource,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auth => "POST /kbs/v0/auth",
            Self::Attest => "POST /kbs/v0/attest",
            Self::Resource => "GET /kbs/v0/resource",
        })
    }
}

/// Everything that can go wrong talking to a KBS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The KBS URL is not a usable `https://` (or, when allowed, `http://`) URL.
    #[error("invalid KBS URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A plain-HTTP KBS URL without the explicit opt-in.
    #[error(
        "refusing plain-HTTP KBS URL {url}: a plain-HTTP KBS is allowed only when explicitly requested (local test KBS)"
    )]
    InsecureHttp {
        /// The URL as given.
        url: String,
    },
    /// The extra CA certificate could not be used.
    #[error("unusable KBS CA certificate: {reason}")]
    InvalidCaCert {
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTPS client")]
    HttpClient {
        /// The underlying error.
        #[source]
        source: TransportError,
    },
    /// No connection to the KBS could be made (after retries, within the deadline).
    #[error(
        "KBS at {url} is unreachable after {attempts} attempt(s) (check the KBS URL, DNS and the network)"
    )]
    Unreachable {
        /// The KBS base URL.
        url: String,
        /// How many connection attempts were made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: TransportError,
    },
    /// The operation did not finish within the total deadline.
    #[error(
        "KBS at {url} did not answer {step} within the {deadline:?} deadline; check the KBS, or allow more time"
    )]
    Timeout {
        /// The KBS base URL.
        url: String,
        /// The call that was in flight.
        step: Step,
        /// The total deadline that expired.
        deadline: Duration,
    },
    /// TLS to the KBS failed (unknown CA, wrong name, handshake).
    #[error("TLS to the KBS at {url} failed: {}", .problem.text())]
    Tls {
        /// The KBS base URL.
        url: String,
        /// What went wrong, for the message and the fix.
        problem: crate::transport::TlsProblem,
        /// The TLS error (not a `source`: the library's chain repeats the problem in its
        /// own words; [`TlsProblem`](crate::transport::TlsProblem) already says it).
        transport: TransportError,
    },
    /// The KBS speaks another protocol version.
    #[error(
        "KBS protocol version mismatch: ccmount speaks {ours}, the KBS wants {theirs}; use a Trustee KBS v0.14.0 or newer (protocol 0.4.0)"
    )]
    ProtocolVersion {
        /// The version we sent.
        ours: String,
        /// What the KBS said it expects (from its error text), or `unknown`.
        theirs: String,
    },
    /// The KBS rejected the evidence (or the token it issued no longer verifies).
    #[error(
        "the KBS rejected the {tee} attestation ({detail}); check the KBS attestation policy and reference values, and the KBS log for the reason"
    )]
    AttestationRejected {
        /// The TEE whose evidence was sent.
        tee: String,
        /// The KBS's (sanitized) error detail.
        detail: String,
    },
    /// The KBS resource policy refused the resource.
    #[error(
        "the KBS refused {resource} ({detail}): check the KBS resource policy for this TEE (Trustee denies sample evidence by default)"
    )]
    PolicyDenied {
        /// The resource asked for.
        resource: ResourceUri,
        /// The KBS's (sanitized) error detail.
        detail: String,
    },
    /// The KBS has no such resource (Trustee reports a missing resource as a plugin error).
    #[error(
        "the KBS has no resource {resource} ({detail}); check the URI and that the resource was uploaded to this KBS"
    )]
    ResourceMissing {
        /// The resource asked for.
        resource: ResourceUri,
        /// The KBS's (sanitized) error detail.
        detail: String,
    },
    /// The resource URI is malformed.
    #[error("invalid resource URI")]
    Uri(#[from] UriError),
    /// Evidence could not be produced, or no usable TEE was found.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// The KBS answered something this client cannot accept.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The encrypted resource could not be decrypted.
    #[error("cannot decrypt the KBS response")]
    Jwe(#[from] JweError),
    /// The TEE key pair could not be generated.
    #[error("cannot generate the TEE key pair: {reason}")]
    KeyGeneration {
        /// What failed.
        reason: &'static str,
    },
}

/// The KBS answered something we cannot accept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The body is not the JSON this step expects.
    #[error("malformed JSON from {step} (is the URL a Trustee KBS?)")]
    MalformedJson {
        /// The call.
        step: Step,
        /// The parse error (position only, never input bytes).
        #[source]
        source: serde_json::Error,
    },
    /// A status code this step does not allow.
    #[error("unexpected HTTP {status} from {step}{}; is the URL a Trustee KBS?", detail_suffix(.detail))]
    UnexpectedStatus {
        /// The call.
        step: Step,
        /// HTTP status.
        status: u16,
        /// The KBS's (sanitized) error detail, if any.
        detail: Option<String>,
    },
    /// The KBS kept answering with a server error (5xx) until the deadline.
    #[error("KBS server error HTTP {status} from {step}{} after {attempts} attempt(s); check the KBS log", detail_suffix(.detail))]
    ServerError {
        /// The call.
        step: Step,
        /// The last HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The KBS's (sanitized) error detail, if any.
        detail: Option<String>,
    },
    /// The body exceeded the response size limit.
    #[error("response to {step} exceeds the {limit}-byte limit; is the URL a Trustee KBS?")]
    TooLarge {
        /// The call.
        step: Step,
        /// The limit in bytes.
        limit: usize,
    },
    /// `/auth` did not set the `kbs-session-id` cookie.
    #[error("the KBS did not set the kbs-session-id cookie on {step}")]
    MissingSessionCookie {
        /// The call.
        step: Step,
    },
    /// The challenge is unusable (empty or absurd nonce, unknown hash algorithm).
    #[error("unusable challenge from the KBS: {reason}")]
    BadChallenge {
        /// What is wrong.
        reason: &'static str,
    },
    /// The attestation token is malformed.
    #[error("malformed attestation token")]
    Token(#[from] TokenError),
    /// The KBS still refused our fresh token for the resource.
    #[error(
        "the KBS rejected a freshly issued token ({detail}); check the KBS [attestation_token] trust settings"
    )]
    FreshTokenRejected {
        /// The KBS's (sanitized) error detail.
        detail: String,
    },
    /// A request could not be sent for a reason other than connectivity.
    #[error("request to {step} failed")]
    Transport {
        /// The call.
        step: Step,
        /// The transport error.
        #[source]
        source: TransportError,
    },
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

pub use crate::sanitize::sanitize_detail;

impl From<crate::jwe::KeyGenError> for Error {
    fn from(e: crate::jwe::KeyGenError) -> Self {
        Error::KeyGeneration { reason: e.0 }
    }
}

impl From<crate::binding::UnsupportedHash> for ProtocolError {
    fn from(e: crate::binding::UnsupportedHash) -> Self {
        ProtocolError::BadChallenge { reason: e.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_one_line() {
        assert_eq!(sanitize_detail("a\nb\t c\u{1b}[31m"), "a b c [31m");
        let long = "x".repeat(500);
        assert_eq!(sanitize_detail(&long).len(), 203);
    }

    #[test]
    fn messages_are_one_line_and_name_the_fix() {
        let e = Error::ProtocolVersion {
            ours: PROTOCOL_VERSION.into(),
            theirs: "=0.5.0".into(),
        };
        let m = e.to_string();
        assert!(m.contains("0.4.0") && m.contains("=0.5.0"), "{m}");
        assert!(!m.contains('\n'));
        let e = Error::PolicyDenied {
            resource: ResourceUri::parse("kbs:///a/b/c").unwrap_or_else(|_| unreachable!()),
            detail: "Access denied by policy".into(),
        };
        let m = e.to_string();
        assert!(
            m.contains("refused kbs:///a/b/c") && m.contains("resource policy"),
            "{m}"
        );
    }
}
