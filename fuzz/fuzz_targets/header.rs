//! Fuzz target `header`: the body and its property are `fuse_decrypt::internal::fuzzing::header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuse_decrypt::internal::fuzzing::header(data));
