//! Randomized robustness of the AoE codec (a seeded, repeatable pass that runs with the
//! ordinary tests): random bytes, and valid frames with random damage (truncation, flipped
//! bytes, inflated counts and lengths). Parsing never panics; whatever parses encodes and
//! parses again to the same frame, and the target's handler decides on it without panicking
//! or promising I/O outside the export. `FUZZ_SEED` and `FUZZ_ROUNDS` override the defaults;
//! the seed is printed so a failure can be replayed.

use aoe::codec::{Frame, MacAddr, CMD_ATA, CMD_CONFIG, CMD_MAC_MASK, CMD_RESERVE};
use aoe::target::handler::{decide, Decision, ExportConfig, ExportState};
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
    let cfg = ExportConfig {
        major: 7,
        minor: 3,
        sectors: 4096,
        read_only: false,
        buffer_count: 64,
        max_sectors: 2,
        firmware: 1,
        model: "fuzz".into(),
    };
    let mut state = ExportState::default();
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
            // Aim some frames at the export so the handler sees them.
            let mut aimed = frame.clone();
            if rng.gen_bool(0.5) {
                aimed.header.major = 7;
                aimed.header.minor = 3;
                aimed.header.dst = MacAddr([2, 0, 0, 0, 0, 0x10]);
            }
            match decide(&cfg, &mut state, MacAddr([2, 0, 0, 0, 0, 0x10]), &aimed) {
                Decision::Read { lba, sectors, .. } => assert!(lba + u64::from(sectors) <= cfg.sectors && sectors <= 2),
                Decision::Write { lba, data, .. } => {
                    assert!(lba + (data.len() / 512) as u64 <= cfg.sectors && data.len() <= 1024)
                }
                Decision::Reply(r) => assert!(Frame::parse(&r).is_ok_and(|f| f.header.response)),
                Decision::Drop | Decision::Flush { .. } => {}
            }
        }
    }
    assert!(parsed > 400, "the shaped frames must mostly parse ({parsed})");
}
