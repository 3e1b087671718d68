//! libFuzzer entry for `fuzzing::raftlog_record` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::raftlog_record::run(data));
