//! The nemesis: from a seed, a schedule of faults, one at a time, each held for a few
//! seconds and then healed — SIGKILL and restart, SIGSTOP and SIGCONT, a node (half the
//! time a group's leader) isolated from its peers (a minority of one), a bridge (two nodes cut from each other, both still
//! reaching the third), a majority/minority split (the node and, with five nodes, one more
//! cut from the rest), a lossy, slow link (`tc netem`, or `tbf` where the kernel has
//! no netem), a full disk (the node's filesystem filled to the last byte, then freed; a
//! node that stopped on it is restarted, as its supervisor would), and the fronts cut off
//! from a node that still reaches its peers. Every step goes into the history, so a
//! failing seed can be read and replayed.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::cluster::{Cluster, GROUPS};
use super::workload::{Event, History};

/// Longest a fault is held, and the pause between faults.
const HOLD_MS: std::ops::Range<u64> = 1500..5000;
const GAP_MS: std::ops::Range<u64> = 300..1500;

fn note(history: &History, what: String) {
    eprintln!("nemesis: {what}");
    history.record(Event::Nemesis { what });
}

/// The kinds of fault, by name (`--nemesis kill,pause,isolate,bridge,slow,split,disk,front`).
pub const KINDS: [&str; 8] = ["kill", "pause", "isolate", "bridge", "slow", "split", "disk", "front"];

/// Inject faults of the `kinds` (indexes into [`KINDS`]) until `until`; how many.
pub fn run(
    cluster: &mut Cluster,
    rng: &mut StdRng,
    until: Instant,
    kinds: &[usize],
    history: &History,
) -> anyhow::Result<usize> {
    let n = cluster.nodes();
    let mut faults = 0;
    while Instant::now() + Duration::from_millis(HOLD_MS.end) < until {
        let node = rng.gen_range(1..=n);
        let others: Vec<usize> = (1..=n).filter(|o| *o != node).collect();
        let hold = Duration::from_millis(rng.gen_range(HOLD_MS));
        let kind = rng.gen_range(0..KINDS.len());
        // Drawn in full either way, so a restricted run keeps the seed's other choices.
        if !kinds.contains(&kind) {
            continue;
        }
        match kind {
            0 => {
                note(history, format!("kill node {node}"));
                cluster.kill(node);
                std::thread::sleep(hold);
                cluster.restart(node)?;
                note(history, format!("restart node {node}"));
            }
            1 => {
                note(history, format!("pause node {node}"));
                cluster.pause(node);
                std::thread::sleep(hold);
                cluster.resume(node);
                note(history, format!("resume node {node}"));
            }
            2 => {
                // Half the time the isolated node is a group's leader (if one is known).
                let group = GROUPS[rng.gen_range(0..GROUPS.len())];
                let leader = if rng.gen_bool(0.5) { cluster.leader(group) } else { None };
                let node = leader.unwrap_or(node);
                let others: Vec<usize> = (1..=n).filter(|o| *o != node).collect();
                let role = if leader.is_some() { format!(" (leader of {group})") } else { String::new() };
                note(history, format!("isolate node {node}{role} from its peers"));
                for o in &others {
                    cluster.net.link_down(node, *o)?;
                }
                std::thread::sleep(hold);
                for o in &others {
                    cluster.net.link_up(node, *o)?;
                }
                note(history, format!("reconnect node {node}"));
            }
            3 => {
                let (a, b) = (others[0], others[1 % others.len()]);
                note(history, format!("bridge: cut {a}-{b}, node {node} reaches both"));
                cluster.net.link_down(a, b)?;
                std::thread::sleep(hold);
                cluster.net.link_up(a, b)?;
                note(history, format!("heal {a}-{b}"));
            }
            5 => {
                // A minority of n/2 nodes (the drawn node first) against the majority.
                let mut minority = vec![node];
                minority.extend(others.choose_multiple(rng, n / 2 - 1).copied());
                let majority: Vec<usize> = (1..=n).filter(|o| !minority.contains(o)).collect();
                note(history, format!("split: {minority:?} | {majority:?}"));
                for a in &minority {
                    for b in &majority {
                        cluster.net.link_down(*a, *b)?;
                    }
                }
                std::thread::sleep(hold);
                for a in &minority {
                    for b in &majority {
                        cluster.net.link_up(*a, *b)?;
                    }
                }
                note(history, format!("heal split {minority:?} | {majority:?}"));
            }
            6 => {
                let bytes = cluster.fill_disk(node)?;
                note(history, format!("disk of node {node} full ({} MiB filler)", bytes >> 20));
                std::thread::sleep(hold);
                cluster.free_disk(node);
                note(history, format!("disk of node {node} freed"));
                for (n, status) in cluster.exits() {
                    note(history, format!("node {n} had stopped ({status}); restart"));
                    cluster.restart(n)?;
                }
            }
            7 => {
                note(history, format!("fronts cut off from node {node}"));
                cluster.net.front_link(node, false)?;
                std::thread::sleep(hold);
                cluster.net.front_link(node, true)?;
                note(history, format!("fronts reach node {node} again"));
            }
            _ => {
                let peer = others[rng.gen_range(0..others.len())];
                let loss = rng.gen_range(10..40);
                let rate_kbit = rng.gen_range(200..2000);
                let applied = cluster.net.degrade(node, peer, loss, 30, rate_kbit)?;
                note(history, format!("link {node}-{peer}: {applied}"));
                std::thread::sleep(hold);
                cluster.net.restore(node, peer);
                note(history, format!("link {node}-{peer} clean"));
            }
        }
        faults += 1;
        // A node that stopped by itself under another fault is a finding to record; it is
        // restarted so the run goes on (the checker still holds it to every promise).
        for (n, status) in cluster.exits() {
            note(history, format!("node {n} stopped by itself ({status}); restart"));
            cluster.restart(n)?;
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(GAP_MS)));
    }
    Ok(faults)
}
