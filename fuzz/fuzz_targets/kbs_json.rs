//! Fuzz target `kbs_json`: the body and its property are `attest::internal::fuzzing::kbs_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| attest::internal::fuzzing::kbs_json(data));
