//! Integration tests of the test KBS over real HTTP(S) on 127.0.0.1, with a minimal client
//! written here (reqwest + hand-rolled JWE decryption), independent of the server code.
//! Spec: `../shared/specs/kbs-protocol.md` §1–§3, §6.7.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
#![allow(missing_docs, unreachable_pub, reason = "tests")]

mod admin;
mod binary;
mod client;
mod errors;
mod faults;
mod flow;
