//! Deterministic test payloads: the bytes of entry `n` are a function of `n` alone, so a
//! checker can verify any entry it reads without remembering what was written.

/// Payload bytes for sequence number `n`, between `min` and `max` bytes long.
pub fn payload_for(n: u64, min: usize, max: usize) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let span = (max - min + 1) as u64;
    let len = min + (x % span) as usize;
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&n.to_le_bytes());
    while out.len() < len.max(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

/// Sequence number encoded in a payload made by [`payload_for`], if it is one.
pub fn check_payload(bytes: &[u8], min: usize, max: usize) -> Option<u64> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    (payload_for(n, min, max) == bytes).then_some(n)
}
