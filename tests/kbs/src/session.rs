//! RCAR sessions: the `kbs-session-id` cookie, its expiry, and the per-session state.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1.3–§1.4 (Trustee
//! `kbs/src/attestation/session.rs`): the id is a UUIDv4 in "simple" form (32 lower-case hex),
//! the cookie is `kbs-session-id=<id>; Expires=<auth time + timeout>` with no other attribute,
//! the expiry is fixed at `/auth` and not extended by `/attest`, and an expired session is
//! treated as absent.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;

/// Cookie name.
pub(crate) const COOKIE: &str = "kbs-session-id";

/// One handshake.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// kbs-types TEE name from `/auth`; it picks the verifier.
    pub(crate) tee: String,
    /// The challenge nonce, compared byte for byte.
    pub(crate) nonce: String,
    /// When the session (and its cookie) expires.
    pub(crate) expires: SystemTime,
    /// The token once attested.
    pub(crate) token: Option<String>,
}

/// All sessions by id.
#[derive(Debug, Default)]
pub(crate) struct SessionMap {
    map: HashMap<String, Session>,
}

impl SessionMap {
    /// Store a new session; expired ones are swept at the same time (Trustee sweeps every 60 s).
    pub(crate) fn insert(&mut self, id: String, session: Session, now: SystemTime) {
        self.map.retain(|_, s| s.expires > now);
        self.map.insert(id, session);
    }

    /// The live session `id`, removing it when it has expired.
    pub(crate) fn live(&mut self, id: &str, now: SystemTime) -> Option<&mut Session> {
        if self.map.get(id).is_some_and(|s| s.expires <= now) {
            self.map.remove(id);
            return None;
        }
        self.map.get_mut(id)
    }

    /// Make every session expire now (tests: "stale session").
    pub(crate) fn expire_all(&mut self) {
        self.map.clear();
    }

    /// Number of stored sessions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("os random: {e}"))?;
    Ok(b)
}

/// A UUIDv4 in simple form.
pub(crate) fn new_session_id() -> Result<String, String> {
    let mut b = random_bytes::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(hex::encode(b))
}

/// 32 random bytes, standard base64 with padding (44 characters).
pub(crate) fn new_nonce() -> Result<String, String> {
    Ok(STANDARD.encode(random_bytes::<32>()?))
}

/// The `Set-Cookie` value.
pub(crate) fn set_cookie(id: &str, expires: SystemTime) -> String {
    format!(
        "{COOKIE}={id}; Expires={}",
        httpdate::fmt_http_date(expires)
    )
}

/// `now + timeout`, saturating.
pub(crate) fn expiry(now: SystemTime, timeout: Duration) -> SystemTime {
    now.checked_add(timeout).unwrap_or(now)
}

/// The `kbs-session-id` value from the `Cookie` header(s), if any.
pub(crate) fn cookie_from(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn ids_nonces_cookies() {
        let id = new_session_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(&id[12..13], "4");
        let n = new_nonce().unwrap();
        assert_eq!(n.len(), 44);
        assert_eq!(STANDARD.decode(&n).unwrap().len(), 32);
        let c = set_cookie(
            "ab",
            SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777),
        );
        assert_eq!(
            c,
            "kbs-session-id=ab; Expires=Sun, 06 Nov 1994 08:49:37 GMT"
        );
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::COOKIE,
            "a=b; kbs-session-id=xyz; c=d".parse().unwrap(),
        );
        assert_eq!(cookie_from(&h).as_deref(), Some("xyz"));
    }

    #[test]
    fn expiry_removes() {
        let now = SystemTime::now();
        let mut m = SessionMap::default();
        let s = Session {
            tee: "sample".into(),
            nonce: "n".into(),
            expires: now + Duration::from_secs(1),
            token: None,
        };
        m.insert("a".into(), s, now);
        assert!(m.live("a", now).is_some());
        assert!(m.live("a", now + Duration::from_secs(2)).is_none());
        assert_eq!(m.len(), 0);
    }
}
