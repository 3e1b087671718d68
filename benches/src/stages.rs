//! Where a run's write time went on our side, from the leader's `/metrics` read before and
//! after it: the mean of each stage's latency histogram over the run (the histograms'
//! `_sum` and `_count` differences, so exact whatever the buckets).
//!
//! The stages of a write on the leader, in order: waiting for its Raft entry (`queue`),
//! the log append until written and until fsynced (`log write`, `log fsync`, every
//! append), replication to a quorum, apply and the reply to the proposer, together
//! `commit`; `replicate` is one AppendEntries round to a follower as the leader sees it,
//! `follower append` the part of it spent in the follower's Raft (its log write and fsync;
//! from the other nodes' figures), `apply` is timed on its own (every replica). LMTP's own
//! figure (end of DATA to the commit) and IMAP commands are shown when the run had any.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// (metric, label shown) of each stage, in the order a write meets them.
const STAGES: [(&str, &str); 8] = [
    ("mail_write_queue_seconds", "queue"),
    ("mail_write_commit_seconds", "commit"),
    ("mail_raftlog_written_seconds", "log write"),
    ("mail_raftlog_durable_seconds", "log fsync"),
    ("mail_raft_replicate_seconds", "replicate"),
    ("mail_raft_apply_seconds", "apply"),
    ("mail_lmtp_commit_seconds", "LMTP DATA→commit"),
    ("mail_imap_command_seconds", "IMAP command"),
];

/// The `_sum` and `_count` of every histogram of one scrape (families summed over labels).
#[derive(Debug, Default, Clone)]
pub struct Scrape(BTreeMap<String, (f64, f64)>);

/// The response (header and body) to `GET /metrics` at `addr`.
pub fn get(addr: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// GET `/metrics` from `addr`, its histograms' sums and counts.
pub fn scrape(addr: &str) -> anyhow::Result<Scrape> {
    Ok(parse(&get(addr)?))
}

fn parse(text: &str) -> Scrape {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let name = name.split('{').next().unwrap_or(name);
        if let Some(base) = name.strip_suffix("_sum") {
            out.entry(base.to_string()).or_default().0 += value;
        } else if let Some(base) = name.strip_suffix("_count") {
            out.entry(base.to_string()).or_default().1 += value;
        }
    }
    Scrape(out)
}

/// A run being watched on a group: each node's scrape at the start.
pub struct Watch {
    before: Vec<(String, Scrape)>,
}

/// The metric that tells which node led: only a leader proposes entries.
const LEADER_WORK: &str = "mail_write_commit_seconds";

/// The followers' stage, summed over every node but the leader.
const FOLLOWER_STAGE: (&str, &str) = ("mail_raft_follower_append_seconds", "follower append");

impl Watch {
    /// Start watching `nodes` (those with a `/metrics` address that answers).
    pub fn start(nodes: &[crate::peers::Node]) -> Self {
        let addrs = nodes.iter().filter_map(|n| n.addrs.metrics.clone());
        Self { before: addrs.filter_map(|a| scrape(&a).ok().map(|s| (a, s))).collect() }
    }

    /// The line of means since the start on the node that committed the most entries
    /// meanwhile (the leader, also after an election) and the followers' stage over the
    /// others, or why there is none.
    pub fn finish(&self) -> String {
        let count = |s: &Scrape| s.0.get(LEADER_WORK).map_or(0.0, |(_, c)| *c);
        let runs: Vec<(&Scrape, Scrape)> =
            self.before.iter().filter_map(|(addr, before)| Some((before, scrape(addr).ok()?))).collect();
        let leader = (0..runs.len()).max_by(|a, b| {
            let proposed = |k: usize| count(&runs[k].1) - count(runs[k].0);
            proposed(*a).total_cmp(&proposed(*b))
        });
        let Some(leader) = leader else { return "no breakdown: no node's /metrics answered".into() };
        let mut line = breakdown(runs[leader].0, &runs[leader].1);
        let (mut sum, mut n) = (0.0, 0.0);
        for (_, (before, after)) in runs.iter().enumerate().filter(|(k, _)| *k != leader) {
            let (s1, c1) = after.0.get(FOLLOWER_STAGE.0).copied().unwrap_or_default();
            let (s0, c0) = before.0.get(FOLLOWER_STAGE.0).copied().unwrap_or_default();
            (sum, n) = (sum + s1 - s0, n + c1 - c0);
        }
        if n >= 1.0 {
            line.push_str(&format!(", {} {:.2} ms ×{n:.0}", FOLLOWER_STAGE.1, sum / n * 1e3));
        }
        line
    }
}

/// The mean of each stage between `before` and `after`, as one line:
/// `queue 0.41 ms, commit 2.30 ms, ...` (stages the run never reached are left out).
pub fn breakdown(before: &Scrape, after: &Scrape) -> String {
    let mut parts = Vec::new();
    for (metric, label) in STAGES {
        let (s1, c1) = after.0.get(metric).copied().unwrap_or_default();
        let (s0, c0) = before.0.get(metric).copied().unwrap_or_default();
        let count = c1 - c0;
        if count >= 1.0 {
            parts.push(format!("{label} {:.2} ms ×{count:.0}", (s1 - s0) / count * 1e3));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_over_the_run_with_families_summed() {
        let before = parse("# HELP x\nmail_write_queue_seconds_sum 1.0\nmail_write_queue_seconds_count 10\n");
        let after = parse(
            "mail_write_queue_seconds_sum 1.5\nmail_write_queue_seconds_count 20\n\
             mail_imap_command_seconds_sum{command=\"FETCH\"} 0.2\nmail_imap_command_seconds_count{command=\"FETCH\"} 100\n\
             mail_imap_command_seconds_sum{command=\"SORT\"} 0.8\nmail_imap_command_seconds_count{command=\"SORT\"} 100\n",
        );
        assert_eq!(breakdown(&before, &after), "queue 50.00 ms ×10, IMAP command 5.00 ms ×200");
    }
}
