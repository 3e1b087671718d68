//! What a session pays when another one changes its mailbox (`View::sync`, issue 26): one
//! flag change in a mailbox of `--messages` messages, found by MODSEQ (the messages above
//! the last sync's) against the full comparison of every message's flags (what every sync
//! did before, and still does for a change that did not raise the highest MODSEQ). Both
//! paths of the same code on the same index, alternating; the ratio is full / incremental.
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
        });
    }
    idx.highest_modseq = u64::from(n);
    idx.uid_next = n + 1;
    idx
}

/// Microseconds per sync: `syncs` times, one message's flags flipped and the view synced;
/// `raise` gives the change a new highest MODSEQ (the incremental path) or not (full).
fn time_syncs(idx: &mut MailboxIndex, view: &mut View, syncs: u32, raise: bool) -> f64 {
    let n = idx.messages.len();
    let start = Instant::now();
    for k in 0..syncs as usize {
        let m = &mut idx.messages[(k * 7919) % n];
        m.flags ^= storaged::mailstore::ops::flag::SEEN;
        if raise {
            idx.highest_modseq += 1;
            m.modseq = idx.highest_modseq;
        }
        idx.applied_index += 1;
        let out = view.sync(idx, Sync::Full, u32::MAX);
        assert_eq!(out.len(), 1, "one FETCH per change");
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(syncs)
}

fn main() {
    let args = Args::parse();
    let mut idx = mailbox(args.messages);
    let (mut view, _) = View::open(MailboxName::inbox(), false, &idx, u32::MAX);
    println!("| round | incremental µs/sync | full µs/sync | full / incremental |");
    println!("|---|---|---|---|");
    let mut ratios = Vec::new();
    for round in 1..=args.rounds {
        let incremental = time_syncs(&mut idx, &mut view, args.syncs, true);
        let full = time_syncs(&mut idx, &mut view, args.syncs, false);
        ratios.push(full / incremental);
        println!("| {round} | {incremental:.1} | {full:.1} | {:.1} |", full / incremental);
    }
    ratios.sort_by(f64::total_cmp);
    println!("{} messages: median full / incremental {:.1}", args.messages, ratios[ratios.len() / 2]);
}
