//! Fault knobs for client tests, settable while the server runs.
//!
//! Not a Trustee feature: it reproduces what a client meets in the field
//! (`../shared/specs/kbs-protocol.md` §5.3, §7.5) — slow servers, dropped connections, 5xx
//! from a proxy, a stale session (401, which makes a client re-attest, §1.6), oversized and
//! malformed bodies. Counted faults are consumed in the order they were added, one per
//! matching request; a delay stays until cleared. Every fault can be limited to one
//! [`Endpoint`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::observe::Endpoint;

/// What a counted fault does to the request it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// Close the connection without any response.
    Drop,
    /// Answer this status (e.g. 500, 502, 503) with a short plain-text body.
    Status(u16),
    /// Answer 401 as Trustee does for a stale session: `AttestationError` on `/attest`,
    /// `TokenNotFound` elsewhere.
    Unauthorized,
    /// Answer 200 with a JSON-looking body of this many bytes; `chunked` leaves out
    /// `Content-Length` so a client must count while reading.
    Oversized {
        /// Body size in bytes.
        bytes: usize,
        /// Send without `Content-Length`.
        chunked: bool,
    },
    /// Answer 200 with `Content-Type: application/json` and a truncated JSON body.
    Malformed,
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Drop => f.write_str("drop"),
            Self::Status(s) => write!(f, "status {s}"),
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::Oversized { bytes, chunked } => {
                write!(
                    f,
                    "oversized {bytes}{}",
                    if *chunked { " chunked" } else { "" }
                )
            }
            Self::Malformed => f.write_str("malformed"),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    kind: FaultKind,
    endpoint: Option<Endpoint>,
    remaining: u32,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    delay: Option<(Duration, Option<Endpoint>)>,
}

/// Handle on the server's fault knobs (cheap to clone; all clones act on one server).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<State>>,
}

impl Faults {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Queue `kind` for the next `times` requests to `endpoint` (None: any endpoint).
    pub fn inject(&self, kind: FaultKind, times: u32, endpoint: Option<Endpoint>) {
        if times == 0 {
            return;
        }
        self.with(|s| {
            s.rules.push(Rule {
                kind,
                endpoint,
                remaining: times,
            });
        });
    }

    /// Delay every response to `endpoint` (None: all) by `delay`, until cleared.
    pub fn set_delay(&self, delay: Duration, endpoint: Option<Endpoint>) {
        self.with(|s| s.delay = Some((delay, endpoint)));
    }

    /// Close the connection without a response for the next `n` matching requests.
    pub fn drop_next(&self, n: u32, endpoint: Option<Endpoint>) {
        self.inject(FaultKind::Drop, n, endpoint);
    }

    /// Answer `status` (5xx usually) to the next `n` matching requests.
    pub fn fail_next(&self, n: u32, status: u16, endpoint: Option<Endpoint>) {
        self.inject(FaultKind::Status(status), n, endpoint);
    }

    /// Answer the next matching request with a stale-session 401.
    pub fn unauthorized_once(&self, endpoint: Option<Endpoint>) {
        self.inject(FaultKind::Unauthorized, 1, endpoint);
    }

    /// Answer the next `n` matching requests with a 200 body of `bytes` bytes.
    pub fn oversized_next(&self, n: u32, bytes: usize, chunked: bool, endpoint: Option<Endpoint>) {
        self.inject(FaultKind::Oversized { bytes, chunked }, n, endpoint);
    }

    /// Answer the next `n` matching requests with truncated JSON.
    pub fn malformed_next(&self, n: u32, endpoint: Option<Endpoint>) {
        self.inject(FaultKind::Malformed, n, endpoint);
    }

    /// Remove every queued fault and the delay.
    pub fn clear(&self) {
        self.with(|s| *s = State::default());
    }

    /// How many counted faults are still queued (sum of remaining counts).
    #[must_use]
    pub fn pending(&self) -> u32 {
        self.with(|s| s.rules.iter().map(|r| r.remaining).sum())
    }

    /// For the server: the delay and the counted fault (consumed) for this request.
    pub(crate) fn take(&self, endpoint: Endpoint) -> (Option<Duration>, Option<FaultKind>) {
        self.with(|s| {
            let delay = s
                .delay
                .filter(|(_, e)| e.is_none_or(|e| e == endpoint))
                .map(|(d, _)| d);
            let mut fault = None;
            if let Some(i) = s
                .rules
                .iter()
                .position(|r| r.endpoint.is_none_or(|e| e == endpoint))
                && let Some(rule) = s.rules.get_mut(i)
            {
                fault = Some(rule.kind);
                rule.remaining = rule.remaining.saturating_sub(1);
                if rule.remaining == 0 {
                    s.rules.remove(i);
                }
            }
            (delay, fault)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_in_order_per_endpoint() {
        let f = Faults::default();
        f.fail_next(2, 503, Some(Endpoint::Resource));
        f.drop_next(1, None);
        assert_eq!(f.pending(), 3);
        assert_eq!(f.take(Endpoint::Auth).1, Some(FaultKind::Drop));
        assert_eq!(f.take(Endpoint::Auth).1, None);
        assert_eq!(f.take(Endpoint::Resource).1, Some(FaultKind::Status(503)));
        assert_eq!(f.take(Endpoint::Resource).1, Some(FaultKind::Status(503)));
        assert_eq!(f.take(Endpoint::Resource).1, None);
        f.set_delay(Duration::from_millis(5), Some(Endpoint::Attest));
        assert_eq!(f.take(Endpoint::Attest).0, Some(Duration::from_millis(5)));
        assert_eq!(f.take(Endpoint::Auth).0, None);
        f.clear();
        assert_eq!(f.take(Endpoint::Attest), (None, None));
    }
}
