//! Fuzz target `encrypted_name`: the body and its property are `gocryptfs_format::internal::fuzzing::encrypted_name`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gocryptfs_format::internal::fuzzing::encrypted_name(data));
