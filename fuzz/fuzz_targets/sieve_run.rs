//! libFuzzer entry for `fuzzing::sieve::run` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::sieve::run(data));
