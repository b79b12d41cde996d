//! Fuzz target `token_claims`: the body and its property are `attest::internal::fuzzing::token_claims`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| attest::internal::fuzzing::token_claims(data));
