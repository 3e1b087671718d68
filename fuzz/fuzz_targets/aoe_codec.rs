//! libFuzzer entry for `fuzzing::aoe_codec` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::aoe_codec::run(data));
