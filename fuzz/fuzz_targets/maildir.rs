//! libFuzzer entry for `fuzzing::maildir` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::maildir::run(data));
