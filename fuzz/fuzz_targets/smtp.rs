//! libFuzzer entry for `fuzzing::smtp` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::smtp::run(data));
