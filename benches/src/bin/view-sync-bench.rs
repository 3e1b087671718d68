//! What a session pays when another one changes its mailbox (`View::sync`, issue 26): one
//! flag change in a mailbox of `--messages` messages, found through the mailbox's change
//! log (what the store keeps), by a scan of MODSEQs (an index just read from its file), and
//! by the full comparison of every message's flags (what every sync did before). Three
//! paths of the same code on the same index, in turn; ratios against the full comparison.
//!
//! `cargo build --release -p benches && target/release/view-sync-bench`

use std::time::Instant;

use clap::Parser;
use storaged::imap::view::{Sync, View};
use storaged::mailstore::index::{MailboxIndex, MessageMeta};
use storaged::mailstore::MailboxName;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    messages: u32,
    /// Syncs timed per path and round.
    #[arg(long, default_value_t = 200)]
    syncs: u32,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn mailbox(n: u32) -> MailboxIndex {
    let mut idx = MailboxIndex::new(7, 1);
    for uid in 1..=n {
        idx.messages.push(MessageMeta {
            uid,
            base: format!("1700000000.M{uid}P1.host"),
            in_cur: true,
            flags: (uid % 3) as u8,
            keywords: if uid % 10 == 0 { vec!["$Label1".into(), "NonJunk".into()] } else { Vec::new() },
            size: 4096,
            internal_date: 1_700_000_000,
            modseq: u64::from(uid),
            crc32c: 0,
            email_id: 0,
            saved_s: 0,
        });
    }
    idx.highest_modseq = u64::from(n);
    idx.uid_next = n + 1;
    idx
}

/// How a change reaches the view.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// Recorded in the change log, as the store does.
    Log,
    /// Not in a log (one just read from its file) but with a new highest MODSEQ.
    Modseq,
    /// Neither: every message compared.
    Full,
}

/// Microseconds per sync: `syncs` times, one message's flags flipped and the view synced.
fn time_syncs(idx: &mut MailboxIndex, view: &mut View, syncs: u32, path: Path) -> f64 {
    let n = idx.messages.len();
    idx.changes = match path {
        Path::Log => storaged::mailstore::index::ChangeLog::complete_after(idx.applied_index),
        Path::Modseq | Path::Full => Default::default(),
    };
    let start = Instant::now();
    for k in 0..syncs as usize {
        let at = (k * 7919) % n;
        let m = &mut idx.messages[at];
        m.flags ^= storaged::mailstore::ops::flag::SEEN;
        if path != Path::Full {
            idx.highest_modseq += 1;
            m.modseq = idx.highest_modseq;
        }
        let uid = m.uid;
        let before = idx.applied_index;
        idx.applied_index += 1;
        if path == Path::Log {
            idx.changes.record(idx.applied_index, before, [uid]);
        }
        let out = view.sync(idx, Sync::Full, u32::MAX);
        assert_eq!(out.len(), 1, "one FETCH per change");
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(syncs)
}

fn main() {
    let args = Args::parse();
    let mut idx = mailbox(args.messages);
    let (mut view, _) = View::open(MailboxName::inbox(), false, &idx, u32::MAX);
    println!("| round | change log µs/sync | MODSEQ scan µs/sync | full µs/sync | full / log | full / scan |");
    println!("|---|---|---|---|---|---|");
    let (mut by_log, mut by_scan) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let log = time_syncs(&mut idx, &mut view, args.syncs, Path::Log);
        let scan = time_syncs(&mut idx, &mut view, args.syncs, Path::Modseq);
        let full = time_syncs(&mut idx, &mut view, args.syncs, Path::Full);
        by_log.push(full / log);
        by_scan.push(full / scan);
        println!("| {round} | {log:.1} | {scan:.1} | {full:.1} | {:.0} | {:.1} |", full / log, full / scan);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{} messages: median full / change log {:.0}, full / MODSEQ scan {:.1}",
        args.messages,
        median(by_log),
        median(by_scan)
    );
}
