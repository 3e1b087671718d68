//! Our AoE initiator (`aoectl`) against a real target, Debian's `vblade`, across a veth
//! pair between two network namespaces the test creates and removes: discovery, IDENTIFY,
//! a write, a flush and a read back; the bytes match, and the exported file holds them.
//! Needs root (namespaces, raw sockets) and vblade (`scripts/install-test-deps`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Two namespaces joined by a veth pair; removed on drop.
struct Wire {
    target_ns: String,
    initiator_ns: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Wire {
    fn new(tag: &str) -> Self {
        let w = Self { target_ns: format!("aoeT{tag}"), initiator_ns: format!("aoeI{tag}") };
        let (t, i) = (w.target_ns.as_str(), w.initiator_ns.as_str());
        ip(&["netns", "add", t]);
        ip(&["netns", "add", i]);
        ip(&["link", "add", "aoe-t", "netns", t, "type", "veth", "peer", "name", "aoe-i", "netns", i]);
        ip(&["-n", t, "link", "set", "aoe-t", "up"]);
        ip(&["-n", i, "link", "set", "aoe-i", "up"]);
        w
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        for ns in [&self.target_ns, &self.initiator_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Vblade(Child);

impl Drop for Vblade {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn aoectl(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_aoectl"), "-i", "aoe-i"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "aoectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A deterministic pseudo-random pattern.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn our_initiator_reads_and_writes_through_vblade() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    const DISK_BYTES: usize = 32 << 20;
    std::fs::write(&disk, pattern(DISK_BYTES, 7)).unwrap();
    let wire = Wire::new(&std::process::id().to_string());
    let _vblade = Vblade(
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
