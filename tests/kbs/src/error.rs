//! Errors of the test KBS.
//!
//! Two kinds live here: [`Error`], what the *library* returns to a test (start-up, bad
//! arguments), and [`KbsError`], what the *server* answers on the wire, mirroring Trustee's
//! `kbs/src/error.rs` variant names, `Display` texts and status codes
//! (`../shared/specs/kbs-protocol.md` §1.6).

use std::io;
use std::path::PathBuf;

/// What the test-KBS library returns to its caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free 127.0.0.1 port or use port 0")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The server thread or its tokio runtime could not be started.
    #[error("cannot start the test kbs runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Certificate generation or TLS configuration failed.
    #[error("cannot set up tls for the test kbs: {0}")]
    Tls(String),
    /// A resource path that Trustee would refuse (three segments of `[A-Za-z0-9_-][A-Za-z0-9_.-]*`).
    #[error(
        "invalid resource path {path:?}: expected repo/type/tag, each [A-Za-z0-9_-][A-Za-z0-9_.-]*"
    )]
    InvalidResourcePath {
        /// The path given.
        path: String,
    },
    /// A TEE name that `kbs-types` does not know.
    #[error("unknown tee {tee:?}: use a kbs-types name such as sample, tdx, snp, az-snp-vtpm")]
    UnknownTee {
        /// The name given.
        tee: String,
    },
    /// A policy document (admin endpoint or `--policy-file`) could not be parsed.
    #[error("invalid test-kbs policy: {0}")]
    Policy(String),
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A token could not be issued (bad claims or key).
    #[error("cannot issue a token: {0}")]
    Token(String),
}

/// Prefix of the `type` member of Trustee's error JSON.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors";

/// An error the server answers with, named like Trustee's `kbs::Error` variants.
///
/// The `Display` text of each variant is what Trustee puts in `detail`; `reason` carries the
/// inner cause that Trustee only logs (we keep it in the request log for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KbsError {
    /// `/auth` failures: detail names the cause (Trustee shows the anyhow context).
    AuthFailed(String),
    /// `/attest` failures: detail never names the cause.
    AttestFailed(String),
    /// Admin endpoint refused.
    AdminAuthAccess { endpoint: String, reason: String },
    /// JWE could not be built for the key in the token.
    Jwe(String),
    /// Unknown plugin (first path segment after `/kbs/v0/`).
    PluginNotFound(String),
    /// Plugin failure, including invalid path and missing resource.
    PluginInternal(String),
    /// The resource policy said no.
    PolicyDeny,
    /// The resource policy could not be parsed.
    ParsePolicy(String),
    /// Request body was not the expected JSON.
    Serde(String),
    /// Neither an attested session cookie nor a Bearer token.
    TokenNotFound,
    /// Token signature, expiry or claims are wrong.
    TokenVerifier(String),
}

impl KbsError {
    /// Trustee's variant name, the last part of `type`.
    pub(crate) fn variant(&self) -> &'static str {
        match self {
            Self::AuthFailed(_) | Self::AttestFailed(_) => "AttestationError",
            Self::AdminAuthAccess { .. } => "AdminAuthAccess",
            Self::Jwe(_) => "JweError",
            Self::PluginNotFound(_) => "PluginNotFound",
            Self::PluginInternal(_) => "PluginInternalError",
            Self::PolicyDeny => "PolicyDeny",
            Self::ParsePolicy(_) => "ParsePolicyError",
            Self::Serde(_) => "SerdeError",
            Self::TokenNotFound => "TokenNotFound",
            Self::TokenVerifier(_) => "TokenVerifierError",
        }
    }

    /// The `detail` member: Trustee's top-level `Display` text.
    pub(crate) fn detail(&self) -> String {
        match self {
            Self::AuthFailed(cause) => {
                format!("Attestation error: RCAR handshake Auth failed: {cause}")
            }
            Self::AttestFailed(_) => "Attestation error: RCAR handshake Attest failed".to_owned(),
            Self::AdminAuthAccess { endpoint, reason } => {
                format!("admin access denied for endpoint {endpoint}: {reason}")
            }
            Self::Jwe(_) => "JWE failed".to_owned(),
            Self::PluginNotFound(name) => format!("Plugin {name} not found"),
            Self::PluginInternal(_) => "Plugin internal error".to_owned(),
            Self::PolicyDeny => "Access denied by policy".to_owned(),
            Self::ParsePolicy(cause) => format!("Failed to parse policy: {cause}"),
            Self::Serde(_) => "Serialize/Deserialize failed".to_owned(),
            Self::TokenNotFound => "Attestation Token not found".to_owned(),
            Self::TokenVerifier(_) => "Token Verifier error".to_owned(),
        }
    }

    /// The inner cause, for the request log (Trustee writes it to its own log only).
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::AuthFailed(r)
            | Self::AttestFailed(r)
            | Self::Jwe(r)
            | Self::PluginInternal(r)
            | Self::ParsePolicy(r)
            | Self::Serde(r)
            | Self::TokenVerifier(r) => r.clone(),
            Self::AdminAuthAccess { reason, .. } => reason.clone(),
            Self::PluginNotFound(name) => format!("no plugin named {name:?}"),
            Self::PolicyDeny => "resource policy denied the request".to_owned(),
            Self::TokenNotFound => {
                "no attested session cookie and no Authorization: Bearer header".to_owned()
            }
        }
    }

    /// HTTP status: 404 for an unknown plugin, 401 for everything else (Trustee `main`).
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::PluginNotFound(_) => 404,
            _ => 401,
        }
    }

    /// The JSON body `{"type": ..., "detail": ...}` (kbs-types `ErrorInformation`).
    pub(crate) fn body(&self) -> String {
        let info = kbs_types::ErrorInformation {
            error_type: format!("{ERROR_TYPE_PREFIX}/{}", self.variant()),
            detail: self.detail(),
        };
        // Two plain strings always serialize; fall back to a fixed text rather than panic.
        serde_json::to_string(&info).unwrap_or_else(|_| String::from("{}"))
    }
}
