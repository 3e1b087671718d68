//! A storage node exporting block volumes over ATA over Ethernet (`[aoe]` in its
//! configuration): storaged runs in one network namespace, our initiator in another, joined
//! by a veth pair the test creates. Data written through the export is read back and is in
//! the backing file; a read-only export refuses writes; storaged stops cleanly with the
//! target running. Needs root and iproute2.

use std::process::Command;
use std::time::Duration;

use aoe::initiator::{discover, Initiator};
use aoe::packet::PacketSocket;
use clusterkit::storage::{self, NodeAddrs};
use storaged::config::{AoeConfig, AoeExport};
use tools::netns::{in_namespace, ip, Wire};

#[test]
fn storaged_serves_its_configured_aoe_exports() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = tmp.path();
    let volume = root.join("volume.img");
    std::fs::File::create(&volume).unwrap().set_len(8 << 20).unwrap();
    let frozen: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(root.join("frozen.img"), &frozen).unwrap();
    let wire = Wire::new(&format!("s{}", std::process::id()), 1500).unwrap();
    // storaged's own listeners are on the target namespace's loopback, where any port is free.
    ip(&["-n", &wire.target_ns, "link", "set", "lo", "up"]).unwrap();
    let node = NodeAddrs {
        id: 1,
        raft: "127.0.0.1:7101".into(),
        lmtp: "127.0.0.1:7102".into(),
        imap: None,
        pop3: None,
        imaps: None,
        pop3s: None,
        admin: None,
        sieve: None,
        metrics: None,
    };
    let mut cfg = storage::node_config(&node, &[storage::group("hermes", std::slice::from_ref(&node))]);
    cfg.cluster_key = Some("aoe test".into());
    let export = |slot, path: &str| AoeExport { shelf: 3, slot, path: path.into(), read_only: false, direct: false };
    cfg.aoe = Some(AoeConfig {
        interface: "aoe-t".into(),
        buffer_count: 64,
        exports: vec![
            AoeExport { direct: true, ..export(1, "volume.img") },
            AoeExport { read_only: true, ..export(2, "frozen.img") },
        ],
    });
    storage::write(&root.join("node.toml"), &cfg).unwrap();
    let log = std::fs::File::create(root.join("storaged.log")).unwrap();
    let mut storaged = Command::new("ip")
        .args(["netns", "exec", &wire.target_ns, env!("CARGO_BIN_EXE_sys-storaged"), "--config"])
        .arg(root.join("node.toml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let expected = frozen.clone();
    let outcome = std::panic::catch_unwind(|| {
        in_namespace(&wire.initiator_ns, move || {
            let sock = PacketSocket::open("aoe-i").unwrap();
            let mut found = Vec::new();
            for _ in 0..50 {
                found = discover(&sock, Duration::from_millis(200)).unwrap();
                if found.len() == 2 {
                    break;
                }
            }
            found.sort_by_key(|t| t.minor);
            assert_eq!(found.iter().map(|t| (t.major, t.minor)).collect::<Vec<_>>(), [(3, 1), (3, 2)]);
            let mut volume = Initiator::new(&sock, found[0].clone());
            let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            volume.write(9, &data).unwrap();
            volume.flush().unwrap();
            assert_eq!(volume.read(9, (data.len() / 512) as u64).unwrap(), data);
            let mut frozen = Initiator::new(&sock, found[1].clone());
            assert_eq!(frozen.read(0, 2048).unwrap(), expected);
            let refused = frozen.write(0, &[1u8; 512]).unwrap_err();
            assert!(refused.is_abort(), "a write to a read-only export: {refused}");
            data
        })
    });
    // SAFETY: signalling our own child (ip netns exec execs storaged in place).
    unsafe { libc::kill(storaged.id() as i32, libc::SIGTERM) };
    let status = storaged.wait().unwrap();
    let log = std::fs::read_to_string(root.join("storaged.log")).unwrap_or_default();
    let data = outcome.unwrap_or_else(|_| panic!("AoE exchange failed; storaged log:\n{log}"));
    assert!(status.success(), "storaged did not stop cleanly ({status}):\n{log}");
    let file = std::fs::read(&volume).unwrap();
    assert!(file[9 * 512..9 * 512 + data.len()] == data[..], "the backing file differs");
    assert_eq!(std::fs::read(root.join("frozen.img")).unwrap(), frozen, "the read-only export changed");
}
