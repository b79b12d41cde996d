//! Fuzz target `manifest`: the body and its property are `fuse_decrypt::internal::fuzzing::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuse_decrypt::internal::fuzzing::manifest(data));
