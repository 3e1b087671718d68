//! Our AoE initiator (`aoectl`) against a real target, Debian's `vblade`, across a veth
//! pair between two network namespaces the test creates and removes: discovery, IDENTIFY,
//! a write, a flush and a read back; the bytes match, and the exported file holds them.
//! Needs root (namespaces, raw sockets) and vblade (`scripts/install-test-deps`).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{aoectl, pattern, Daemon, Wire};

#[test]
fn our_initiator_reads_and_writes_through_vblade() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    const DISK_BYTES: usize = 32 << 20;
    std::fs::write(&disk, pattern(DISK_BYTES, 7)).unwrap();
    let wire = Wire::new(&std::process::id().to_string());
    let _vblade = Daemon(
        Command::new("ip")
            .args(["netns", "exec", &wire.target_ns, "vblade", "7", "3", "aoe-t"])
            .arg(&disk)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("vblade (scripts/install-test-deps)"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let ns = wire.initiator_ns.as_str();

    let found = aoectl(ns, &["discover"]);
    assert!(found.lines().any(|l| l.starts_with("7.3 ")), "{found}");
    let identity = aoectl(ns, &["identify", "7.3"]);
    assert!(identity.contains(&format!("sectors {}", DISK_BYTES / 512)), "{identity}");

    // Write 1 MiB at LBA 4096, flush, read it back; the exported file holds it too.
    let data = pattern(1 << 20, 99);
    let input = tmp.path().join("in.bin");
    std::fs::write(&input, &data).unwrap();
    aoectl(ns, &["write", "7.3", "--lba", "4096", "--in", input.to_str().unwrap()]);
    aoectl(ns, &["flush", "7.3"]);
    let output = tmp.path().join("out.bin");
    aoectl(ns, &["read", "7.3", "--lba", "4096", "--sectors", "2048", "--out", output.to_str().unwrap()]);
    assert!(std::fs::read(&output).unwrap() == data, "read back differs");
    let file = std::fs::read(Path::new(&disk)).unwrap();
    assert!(file[4096 * 512..4096 * 512 + data.len()] == data[..], "the exported file does not hold the write");
    // What was not written is untouched.
    assert!(file[..4096 * 512] == pattern(DISK_BYTES, 7)[..4096 * 512]);
}
