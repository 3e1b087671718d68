//! libFuzzer entry for `fuzzing::smtp_reply` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::smtp_reply::run(data));
