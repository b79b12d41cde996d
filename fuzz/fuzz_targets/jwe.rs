//! Fuzz target `jwe`: the body and its property are `attest::internal::fuzzing::jwe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| attest::internal::fuzzing::jwe(data));
