//! Observation: every request the server saw, and counts per endpoint.
//!
//! Not a Trustee feature (Trustee has Prometheus counters, `../shared/specs/kbs-protocol.md`
//! §1.1); it lets client tests count requests (token reuse, retries) and check the exact JSON
//! the client sent against the spec's shapes (§1.3–§1.5).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Which endpoint a request was for (classified from method and path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /kbs/v0/auth`.
    Auth,
    /// `POST /kbs/v0/attest`.
    Attest,
    /// `GET /kbs/v0/resource/<repo>/<type>/<tag>` (the guest's fetch).
    Resource,
    /// Admin `POST`/`DELETE /kbs/v0/resource/...` and `GET /kbs/v0/resource` (list).
    AdminResource,
    /// Admin `GET`/`POST /kbs/v0/resource-policy`.
    ResourcePolicy,
    /// Admin `POST /kbs/v0/attestation-policy` (accepted, ignored).
    AttestationPolicy,
    /// Anything else (unknown plugin, outside `/kbs/v0/`, other methods).
    Other,
}

impl Endpoint {
    /// Classify a request.
    #[must_use]
    pub fn classify(method: &str, path: &str) -> Self {
        let Some(rest) = path.strip_prefix("/kbs/v0/") else {
            return Self::Other;
        };
        let (plugin, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match (method, plugin) {
            ("POST", "auth") => Self::Auth,
            ("POST", "attest") => Self::Attest,
            ("GET", "resource") if !tail.is_empty() => Self::Resource,
            ("GET" | "POST" | "DELETE", "resource") => Self::AdminResource,
            ("GET" | "POST", "resource-policy") => Self::ResourcePolicy,
            ("POST", "attestation-policy") => Self::AttestationPolicy,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Auth => "auth",
            Self::Attest => "attest",
            Self::Resource => "resource",
            Self::AdminResource => "admin-resource",
            Self::ResourcePolicy => "resource-policy",
            Self::AttestationPolicy => "attestation-policy",
            Self::Other => "other",
        };
        f.write_str(name)
    }
}

/// One request as the server saw it, and what it answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// Arrival order, from 0.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Classification.
    pub endpoint: Endpoint,
    /// All request headers, lower-case names (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The `kbs-session-id` cookie value, if sent.
    pub session_cookie: Option<String>,
    /// The token of an `Authorization: Bearer` header, if sent.
    pub bearer: Option<String>,
    /// Body length in bytes.
    pub body_len: usize,
    /// Body parsed as JSON (None when empty, not JSON, or an admin resource upload).
    pub json: Option<Value>,
    /// Status answered; None when the connection was dropped by a fault.
    pub status: Option<u16>,
    /// The fault applied, if any (e.g. `drop`, `status 503`, `delay 200ms`).
    pub fault: Option<String>,
    /// For an error reply: the inner reason Trustee only logs (e.g. "nonce mismatch").
    pub error: Option<String>,
}

/// The log, kept in memory until cleared.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    pub(crate) entries: Vec<RecordedRequest>,
    next_seq: u64,
}

impl RequestLog {
    /// Append and return the index of the new entry.
    pub(crate) fn push(&mut self, mut r: RecordedRequest) -> usize {
        r.seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push(r);
        self.entries.len() - 1
    }

    /// Update the entry at `index` if it is still there (the log may have been cleared).
    pub(crate) fn update(&mut self, index: usize, seq: u64, f: impl FnOnce(&mut RecordedRequest)) {
        if let Some(e) = self.entries.get_mut(index).filter(|e| e.seq == seq) {
            f(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn classify() {
        assert_eq!(Endpoint::classify("POST", "/kbs/v0/auth"), Endpoint::Auth);
        assert_eq!(Endpoint::classify("GET", "/kbs/v0/auth"), Endpoint::Other);
        assert_eq!(
            Endpoint::classify("GET", "/kbs/v0/resource/a/b/c"),
            Endpoint::Resource
        );
        assert_eq!(
            Endpoint::classify("POST", "/kbs/v0/resource/a/b/c"),
            Endpoint::AdminResource
        );
        assert_eq!(
            Endpoint::classify("GET", "/kbs/v0/resource"),
            Endpoint::AdminResource
        );
        assert_eq!(Endpoint::classify("GET", "/other"), Endpoint::Other);
    }
}
