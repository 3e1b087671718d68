//! libFuzzer entry for `fuzzing::sieve::compile` (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::sieve::compile(data));
