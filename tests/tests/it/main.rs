//! End-to-end tests (one binary, ripgrep style, link once): the real-gocryptfs corpus,
//! hostile input, interop with the real binary, writer → reader round trips, real FUSE mounts of
//! ccmount, the attestation flow against the test KBS, and whole-model pinning.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests"
)]

mod attest_cli;
mod attest_flow;
mod corpus;
mod demo;
mod faults_cli;
mod fuzz_corpus;
mod gpu;
mod host_attacks;
mod hostile;
mod hygiene;
mod interop;
mod kbs_key;
mod layering;
mod mount;
mod pinning;
mod roundtrip;
mod s3;
mod sealed;
mod secrets;
mod secure_mount;
