//! Fuzz target `long_name_file`: the body and its property are `gocryptfs_format::internal::fuzzing::long_name_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gocryptfs_format::internal::fuzzing::long_name_file(data));
