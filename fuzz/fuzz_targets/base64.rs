//! Fuzz target `base64`: the body and its property are `gocryptfs_format::internal::fuzzing::base64`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gocryptfs_format::internal::fuzzing::base64(data));
