//! Fuzz target `diriv`: the body and its property are `gocryptfs_format::internal::fuzzing::diriv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gocryptfs_format::internal::fuzzing::diriv(data));
