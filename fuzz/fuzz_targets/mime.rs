//! libFuzzer entry for `fuzzing::mime` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::mime::run(data));
