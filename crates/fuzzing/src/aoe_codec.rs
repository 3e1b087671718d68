//! AoE frames off the wire: parsing never panics, what parses encodes and parses back to
//! the same frame, and the target's handler, shown the frame aimed at its export, decides
//! without promising I/O outside the export or above the advertised sector count.

use aoe::codec::{Frame, MacAddr};
use aoe::target::handler::{decide, Decision, ExportConfig, ExportState};

const OUR_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);
const SECTORS: u64 = 4096;
const MAX_SECTORS: u8 = 2;

pub fn run(data: &[u8]) {
    let Ok(frame) = Frame::parse(data) else { return };
    let again = frame.to_bytes();
    assert_eq!(Frame::parse(&again).as_ref(), Ok(&frame), "round trip");
    let cfg = ExportConfig {
        major: 7,
        minor: 3,
        sectors: SECTORS,
        read_only: data.len() % 2 == 1,
        buffer_count: 64,
        max_sectors: MAX_SECTORS,
        firmware: 1,
        model: "fuzz".into(),
    };
    let mut state = ExportState::default();
    let mut aimed = frame.clone();
    aimed.header.major = cfg.major;
    aimed.header.minor = cfg.minor;
    aimed.header.dst = OUR_MAC;
    for f in [&frame, &aimed] {
        match decide(&cfg, &mut state, OUR_MAC, f) {
            Decision::Read { lba, sectors, .. } => {
                assert!(
                    lba + u64::from(sectors) <= SECTORS && sectors <= u32::from(MAX_SECTORS),
                    "read {lba}+{sectors}"
                )
            }
            Decision::Write { lba, data, .. } => {
                assert!(!cfg.read_only, "write to a read-only export");
                let sectors = (data.len() / 512) as u64;
                assert!(lba + sectors <= SECTORS && sectors <= u64::from(MAX_SECTORS), "write {lba}+{sectors}");
            }
            Decision::Reply(r) => assert!(Frame::parse(&r).is_ok_and(|f| f.header.response), "reply is a response"),
            Decision::Drop | Decision::Flush { .. } => {}
        }
    }
}
