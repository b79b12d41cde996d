//! Fuzz target `secure_mount_request`: the body and its property are `attest::internal::fuzzing::secure_mount_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| attest::internal::fuzzing::secure_mount_request(data));
