//! Fuzz target `long_name_file`: the body and its property are `fuse_decrypt::internal::fuzzing::long_name_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuse_decrypt::internal::fuzzing::long_name_file(data));
