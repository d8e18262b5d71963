#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| omero_sessiond::fuzzing::http_create(data));
