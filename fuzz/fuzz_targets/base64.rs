//! Fuzz target `base64`: the body and its property are `fuse_decrypt::internal::fuzzing::base64`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuse_decrypt::internal::fuzzing::base64(data));
