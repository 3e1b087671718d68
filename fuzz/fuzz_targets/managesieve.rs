//! libFuzzer entry for `fuzzing::managesieve::run` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::managesieve::run(data));
