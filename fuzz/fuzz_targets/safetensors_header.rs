//! Fuzz target `safetensors_header`: the body and its property are `gpu_loader::internal::fuzzing::safetensors_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gpu_loader::internal::fuzzing::safetensors_header(data));
