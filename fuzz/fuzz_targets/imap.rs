//! libFuzzer entry for `fuzzing::imap` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::imap::run(data));
