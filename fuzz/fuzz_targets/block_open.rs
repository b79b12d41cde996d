//! Fuzz target `block_open`: the body and its property are `gocryptfs_format::internal::fuzzing::block_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gocryptfs_format::internal::fuzzing::block_open(data));
