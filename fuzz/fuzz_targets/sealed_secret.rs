//! Fuzz target `sealed_secret`: the body and its property are `attest::internal::fuzzing::sealed_secret`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| attest::internal::fuzzing::sealed_secret(data));
