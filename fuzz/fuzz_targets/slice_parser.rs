#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slice2rs::fuzzing::compile_text(data));
