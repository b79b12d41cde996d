//! Integration tests of the format core: known answers from the corpus' `KAT.json`, property
//! tests, and the fuzz bodies replayed on seeds (stable toolchain, no libFuzzer).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests"
)]

mod fuzz_seeds;
mod kat;
mod props;

use std::path::PathBuf;

pub(crate) fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gocryptfs-2.3")
}

pub(crate) fn kat() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(corpus().join("KAT.json")).unwrap()).unwrap()
}

pub(crate) fn h(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}
