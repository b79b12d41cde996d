//! Fuzz target `block_open`: the body and its property are `fuse_decrypt::internal::fuzzing::block_open`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuse_decrypt::internal::fuzzing::block_open(data));
