//! End-to-end tests (one binary, ripgrep style): modules below.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod attest_cli;
mod attest_flow;
