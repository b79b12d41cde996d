//! Fuzz target `s3_location`: the body and its property are `s3_source::internal::fuzzing::s3_location`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| s3_source::internal::fuzzing::s3_location(data));
