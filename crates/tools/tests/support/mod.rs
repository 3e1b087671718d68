//! What the AoE tests share: two network namespaces joined by a veth pair (`aoe-t` in the
//! target's, `aoe-i` in the initiator's), created and removed by the test; daemons killed
//! on drop; `aoectl` run in a namespace; deterministic data patterns.

#![allow(dead_code)]

use std::process::{Child, Command};

/// Two namespaces joined by a veth pair; removed on drop.
pub struct Wire {
    pub target_ns: String,
    pub initiator_ns: String,
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Wire {
    pub fn new(tag: &str) -> Self {
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

/// A daemon process, killed on drop.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `aoectl -i aoe-i ARGS` in namespace `ns`; its standard output.
pub fn aoectl(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_aoectl"), "-i", "aoe-i"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "aoectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A deterministic pseudo-random pattern.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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
