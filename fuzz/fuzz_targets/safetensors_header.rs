//! Fuzz target `safetensors_header`: the body and its property are `fuse_decrypt::internal::fuzzing::safetensors_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuse_decrypt::internal::fuzzing::safetensors_header(data));
