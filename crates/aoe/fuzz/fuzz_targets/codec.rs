//! Any bytes into the AoE codec: parsing must not panic, and what parses must encode and
//! parse back to the same frame.
#![no_main]

use aoe::codec::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(frame) = Frame::parse(bytes) {
        let again = frame.to_bytes();
        assert_eq!(Frame::parse(&again).as_ref(), Ok(&frame));
    }
});
