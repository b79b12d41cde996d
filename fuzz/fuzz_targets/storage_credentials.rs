//! Fuzz target `storage_credentials`: the body and its property are `s3_source::internal::fuzzing::storage_credentials`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| s3_source::internal::fuzzing::storage_credentials(data));
