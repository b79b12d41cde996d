//! Fuzz target `resource_uri`: the body and its property are `attest::internal::fuzzing::resource_uri`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| attest::internal::fuzzing::resource_uri(data));
