//! The KBS client: protocol core ([`client`]) over a small HTTP boundary ([`crate::transport`]).
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1 (RCAR 0.4.0 on the wire).

pub mod client;
/// The HTTP boundary, a module of its own (the crate error names its error type).
pub use crate::transport;
