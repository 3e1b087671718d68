//! The chaos cluster's network: one namespace per storage node, a veth link from the host
//! to each node (the front's path) and one veth link per pair of nodes (Raft traffic), so
//! any node-to-node link can be cut or degraded alone. Each node answers on a service
//! address (`10.88.0.N` on its loopback) routed over those links. Everything is removed on
//! drop; the host only gains the links it created (`10.88.10+N.1/30`) and their routes.

use std::process::Command;

use crate::netns::ip;

/// The namespaces and links of one chaos run.
#[derive(Debug)]
pub struct Net {
    tag: String,
    pub nodes: usize,
    /// Held for the run: two runs at once would share the service addresses and routes.
    _lock: std::fs::File,
}

/// The lock file that keeps chaos runs on one machine from overlapping.
const LOCK_PATH: &str = "/run/mailstore-chaos.lock";

/// Take the machine's chaos lock, or say who holds it.
fn lock() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK_PATH)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::other(format!(
            "another chaos run holds {LOCK_PATH}: runs share 10.88.0.0/16 and cannot overlap"
        )));
    }
    Ok(f)
}

/// Node `n` (1-based): its service address.
pub fn service_ip(n: usize) -> String {
    format!("10.88.0.{n}")
}

/// The /30 between nodes `a < b`: `a` is .1, `b` is .2.
fn pair_subnet(a: usize, b: usize) -> String {
    format!("10.88.{}", 100 + a * 10 + b)
}

impl Net {
    /// Build the namespaces and links for `nodes` nodes.
    pub fn build(tag: &str, nodes: usize) -> std::io::Result<Self> {
        let net = Self { tag: tag.to_string(), nodes, _lock: lock()? };
        for n in 1..=nodes {
            let ns = net.ns(n);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/32", service_ip(n)), "dev", "lo"])?;
            // Host ↔ node.
            let host_dev = format!("{}h{n}", net.tag);
            ip(&["link", "add", &host_dev, "type", "veth", "peer", "name", "up0", "netns", &ns])?;
            ip(&["addr", "add", &format!("10.88.{}.1/30", 10 + n), "dev", &host_dev])?;
            ip(&["link", "set", &host_dev, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("10.88.{}.2/30", 10 + n), "dev", "up0"])?;
            ip(&["-n", &ns, "link", "set", "up0", "up"])?;
            ip(&["route", "replace", &format!("{}/32", service_ip(n)), "via", &format!("10.88.{}.2", 10 + n)])?;
        }
        for a in 1..=nodes {
            for b in a + 1..=nodes {
                let (na, nb) = (net.ns(a), net.ns(b));
                ip(&[
                    "-n",
                    &na,
                    "link",
                    "add",
                    &format!("p{b}"),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &format!("p{a}"),
                    "netns",
                    &nb,
                ])?;
                let subnet = pair_subnet(a, b);
                ip(&["-n", &na, "addr", "add", &format!("{subnet}.1/30"), "dev", &format!("p{b}")])?;
                ip(&["-n", &nb, "addr", "add", &format!("{subnet}.2/30"), "dev", &format!("p{a}")])?;
                net.link_up(a, b)?;
            }
        }
        Ok(net)
    }

    /// The namespace of node `n`.
    pub fn ns(&self, n: usize) -> String {
        format!("{}n{n}", self.tag)
    }

    /// Bring the link between `a` and `b` up, with the routes over it.
    pub fn link_up(&self, a: usize, b: usize) -> std::io::Result<()> {
        let (a, b) = (a.min(b), a.max(b));
        let subnet = pair_subnet(a, b);
        for (me, peer, peer_end) in [(a, b, 2), (b, a, 1)] {
            let ns = self.ns(me);
            let dev = format!("p{peer}");
            ip(&["-n", &ns, "link", "set", &dev, "up"])?;
            let via = format!("{subnet}.{peer_end}");
            ip(&["-n", &ns, "route", "replace", &format!("{}/32", service_ip(peer)), "via", &via, "dev", &dev])?;
        }
        Ok(())
    }

    /// Cut the link between `a` and `b` (both ends down: no packet passes either way).
    pub fn link_down(&self, a: usize, b: usize) -> std::io::Result<()> {
        ip(&["-n", &self.ns(a), "link", "set", &format!("p{b}"), "down"])?;
        ip(&["-n", &self.ns(b), "link", "set", &format!("p{a}"), "down"])
    }

    /// Degrade the link between `a` and `b`: `tc netem` loss and delay where the kernel has
    /// netem, else a `tbf` rate limit (`rate_kbit`) whose small queue drops what overflows —
    /// loss and delay under load either way. Returns what was applied.
    pub fn degrade(&self, a: usize, b: usize, loss_pct: u32, delay_ms: u32, rate_kbit: u32) -> std::io::Result<String> {
        let mut applied = String::new();
        for (me, peer) in [(a, b), (b, a)] {
            let dev = format!("p{peer}");
            let netem = [
                "qdisc",
                "replace",
                "dev",
                &dev,
                "root",
                "netem",
                "loss",
                &format!("{loss_pct}%"),
                "delay",
                &format!("{delay_ms}ms"),
            ];
            applied = match tc(&self.ns(me), &netem) {
                Ok(()) => format!("netem {loss_pct}% loss, {delay_ms} ms delay"),
                Err(_) => {
                    let rate = format!("{rate_kbit}kbit");
                    tc(
                        &self.ns(me),
                        &[
                            "qdisc",
                            "replace",
                            "dev",
                            &dev,
                            "root",
                            "tbf",
                            "rate",
                            &rate,
                            "burst",
                            "8kb",
                            "latency",
                            &format!("{delay_ms}ms"),
                        ],
                    )?;
                    format!("tbf {rate} (drops beyond {delay_ms} ms of queue; no netem in this kernel)")
                }
            };
        }
        Ok(applied)
    }

    /// Remove any degradation of the link between `a` and `b`.
    pub fn restore(&self, a: usize, b: usize) {
        for (me, peer) in [(a, b), (b, a)] {
            let _ = tc(&self.ns(me), &["qdisc", "del", "dev", &format!("p{peer}"), "root"]);
        }
    }

    /// Cut (`up` false) or restore the fronts' path to node `n` (the host end of its
    /// link); the node still reaches its peers.
    pub fn front_link(&self, n: usize, up: bool) -> std::io::Result<()> {
        ip(&["link", "set", &format!("{}h{n}", self.tag), if up { "up" } else { "down" }])?;
        if up {
            ip(&["route", "replace", &format!("{}/32", service_ip(n)), "via", &format!("10.88.{}.2", 10 + n)])?;
        }
        Ok(())
    }

    /// Every link up and clean.
    pub fn heal(&self) -> std::io::Result<()> {
        for n in 1..=self.nodes {
            self.front_link(n, true)?;
        }
        for a in 1..=self.nodes {
            for b in a + 1..=self.nodes {
                self.restore(a, b);
                self.link_up(a, b)?;
            }
        }
        Ok(())
    }
}

fn tc(ns: &str, args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip").args(["netns", "exec", ns, "tc"]).args(args).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("tc {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in 1..=self.nodes {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(n)]).stderr(std::process::Stdio::null()).status();
            // Usually gone with the link already.
            let _ = Command::new("ip")
                .args(["route", "del", &format!("{}/32", service_ip(n))])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
