//! End-to-end tests of the gocryptfs format core: the real-gocryptfs corpus, hostile input,
//! interop with the real binary, and writer → reader round trips. One binary (link once).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests"
)]

mod corpus;
mod gpu;
mod hostile;
mod interop;
mod roundtrip;
