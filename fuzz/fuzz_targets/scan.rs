//! libFuzzer entry for `fuzzing::scan` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::scan::run(data));
