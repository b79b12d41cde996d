//! Errors of the object-storage source: each names the object or file, its cause, and (in
//! the agent's wording) the fix. Secrets never appear: credentials are not part of any
//! message, and request URLs carry none (SigV4 signs in headers).

use std::path::PathBuf;

/// What went wrong talking to the bucket or reading the tree in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The `s3://` location or an option is malformed.
    #[error("{0}")]
    Usage(String),
    /// A plain-HTTP endpoint without the explicit opt-in.
    #[error(
        "object storage endpoint {endpoint} is plain HTTP: the bucket's traffic (and its signed requests) would travel unprotected"
    )]
    PlainHttp {
        /// Scheme and host.
        endpoint: String,
    },
    /// User name or password in the endpoint URL.
    #[error("object storage endpoint: credentials do not belong in the URL")]
    CredentialsInUrl,
    /// The endpoint could not be reached or kept failing (5xx, `SlowDown`, connection
    /// errors) until the retries or the deadline ran out.
    #[error("object storage unreachable ({what}): {message}")]
    Unreachable {
        /// The request's object or listing.
        what: String,
        /// The last failure.
        message: String,
    },
    /// The credentials were refused (wrong key, bad signature, access denied).
    #[error("object storage refused the credentials for {what}: {message}")]
    Auth {
        /// The request's object or listing.
        what: String,
        /// The server's answer.
        message: String,
    },
    /// The bucket, the prefix or an object does not exist.
    #[error("{what}: not found in object storage")]
    NotFound {
        /// What is missing.
        what: String,
    },
    /// An object was replaced or changed after it was listed: never mixed content.
    #[error(
        "{path}: the object changed in the bucket while it was read (ETag no longer matches); nothing of it was used"
    )]
    Changed {
        /// The plaintext path (or object key).
        path: PathBuf,
    },
    /// The listing holds something the format does not allow (a key we refuse, a file and
    /// a directory of one name, too many objects).
    #[error("{key}: {reason}")]
    Refused {
        /// The object key (relative to the prefix).
        key: String,
        /// Why.
        reason: String,
    },
    /// The tree's structure has errors (bad names, missing dirivs, impossible sizes);
    /// nothing was written.
    #[error("{count} problem(s) in the tree, nothing decrypted; the first: {first}")]
    Problems {
        /// How many.
        count: usize,
        /// The first, as its message.
        first: String,
        /// Its kind (for the exit code).
        kind: gocryptfs_format::ErrorKind,
    },
    /// A format error of the tree (config, key, name, header, block) from the core.
    #[error(transparent)]
    Format(#[from] gocryptfs_format::Error),
    /// A failure shared by every read that waited on the same fetch
    /// ([`crate::RemoteReader`]); [`S3Error::root`] gives the failure itself.
    #[error(transparent)]
    Shared(std::sync::Arc<S3Error>),
}

impl S3Error {
    /// The failure itself, through any [`S3Error::Shared`] wrapping.
    #[must_use]
    pub fn root(&self) -> &S3Error {
        match self {
            S3Error::Shared(inner) => inner.root(),
            e => e,
        }
    }

    /// Maps an `object_store` error of a request about `what`.
    pub(crate) fn from_store(what: &str, e: object_store::Error) -> Self {
        use object_store::Error as E;
        let what = what.to_owned();
        match e {
            E::NotFound { .. } => S3Error::NotFound { what },
            E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
                S3Error::Auth {
                    what,
                    message: one_line(&source.to_string()),
                }
            }
            E::Precondition { .. } => S3Error::Changed { path: what.into() },
            other => {
                // The causes too: "error sending request" alone hides a TLS refusal.
                let mut message = other.to_string();
                let mut cause = std::error::Error::source(&other);
                while let Some(c) = cause {
                    let c_msg = c.to_string();
                    if !message.contains(&c_msg) {
                        message.push_str(": ");
                        message.push_str(&c_msg);
                    }
                    cause = c.source();
                }
                if message.contains("invalid peer certificate") {
                    message.push_str(" (the endpoint's TLS certificate is not trusted)");
                }
                let message = one_line(&message);
                // Some servers answer a missing bucket or bad key with a generic error.
                if message.contains("NoSuchBucket") {
                    S3Error::NotFound {
                        what: format!("the bucket ({what})"),
                    }
                } else if [
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "AccessDenied",
                ]
                .iter()
                .any(|m| message.contains(m))
                {
                    S3Error::Auth { what, message }
                } else if message.contains("PreconditionFailed") || message.contains("412") {
                    S3Error::Changed { path: what.into() }
                } else {
                    S3Error::Unreachable { what, message }
                }
            }
        }
    }

    /// Whether retrying the same request may help.
    pub(crate) fn transient(&self) -> bool {
        matches!(self.root(), S3Error::Unreachable { .. })
    }
}

/// Server messages can span lines (XML bodies): one line, bounded.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 400 {
        let mut cut = 400;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}
