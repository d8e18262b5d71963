#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| omero_sessiond::fuzzing::request_1_1(data));
