//! Fuzz target `encrypted_name`: the body and its property are `fuse_decrypt::internal::fuzzing::encrypted_name`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuse_decrypt::internal::fuzzing::encrypted_name(data));
