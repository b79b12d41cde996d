//! Fuzz target `listing_keys`: the body and its property are `s3_source::internal::fuzzing::listing_keys`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| s3_source::internal::fuzzing::listing_keys(data));
