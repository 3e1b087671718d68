//! libFuzzer entry for `fuzzing::submission` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::submission::run(data));
