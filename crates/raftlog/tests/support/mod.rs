//! What the log's integration tests share.

use raftlog::{EntryIn, Log};

/// Append the entries `entry` makes for `range` in batches of 5, waiting for durability
/// of each batch.
pub fn append_durable_with(log: &Log, range: std::ops::Range<u64>, entry: impl Fn(u64) -> EntryIn) {
    let entries: Vec<u64> = range.collect();
    for chunk in entries.chunks(5) {
        let (tx, rx) = std::sync::mpsc::channel();
        log.append_blocking(chunk.iter().map(|i| entry(*i)).collect(), Box::new(move |r| tx.send(r).unwrap())).unwrap();
        rx.recv().unwrap().unwrap();
    }
}
