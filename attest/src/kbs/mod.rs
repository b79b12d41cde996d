//! The KBS client: protocol core ([`client`]) over a small HTTP boundary ([`transport`]).
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1 (RCAR 0.4.0 on the wire).

pub mod client;
pub mod transport;
