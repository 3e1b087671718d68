//! libFuzzer entry for `fuzzing::pop3` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::pop3::run(data));
