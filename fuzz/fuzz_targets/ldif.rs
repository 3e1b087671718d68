//! libFuzzer entry for `fuzzing::ldif` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::ldif::run(data));
