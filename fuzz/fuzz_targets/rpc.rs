//! libFuzzer entry for `fuzzing::rpc` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::rpc::run(data));
