//! libFuzzer entry for `fuzzing::snapshot_archive` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::snapshot_archive::run(data));
