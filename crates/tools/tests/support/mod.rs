//! What the AoE tests share: two network namespaces joined by a veth pair (`aoe-t` in the
//! target's, `aoe-i` in the initiator's), created and removed by the test; daemons killed
//! on drop; `aoectl` run in a namespace; deterministic data patterns.

#![allow(dead_code)]

use std::process::{Child, Command};

/// The two namespaces and their veth pair (standard 1500-byte MTU).
pub struct Wire(tools::netns::Wire);

impl Wire {
    pub fn new(tag: &str) -> Self {
        Self(tools::netns::Wire::new(tag, 1500).expect("network namespaces (root, iproute2)"))
    }
}

impl std::ops::Deref for Wire {
    type Target = tools::netns::Wire;

    fn deref(&self) -> &Self::Target {
        &self.0
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
