//! `raftlog` as a [`DurableSink`]: consecutive indices, pipelined appends, and periodic
//! purges so segment files are recycled as in a running node.

use raftlog::{EntryIn, EntryKind, Log, RecordId};

use crate::closed_loop::DurableSink;

/// Our log under benchmark.
pub struct RaftlogSink {
    log: Log,
    next: u64,
    keep: u64,
    rt: tokio::runtime::Runtime,
}

impl RaftlogSink {
    /// `keep`: entries kept behind the purge point.
    pub fn new(log: Log, keep: u64, entry_bytes: usize) -> Self {
        let next = log.bounds().1.map_or(0, |l| l.index + 1);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut sink = Self { log, next, keep, rt };
        sink.warm_up(entry_bytes);
        sink
    }
}

impl RaftlogSink {
    /// Reach the steady state of a running node before measuring: write and purge about
    /// four purge windows of entries, so recycled segment slots are available as they are
    /// after the first minutes of service (the raw baseline's file is likewise preallocated
    /// outside the measurement).
    fn warm_up(&mut self, entry_bytes: usize) {
        let total = 4 * self.keep;
        let per_batch = 64;
        let mut written = 0;
        while written < total {
            let (tx, rx) = std::sync::mpsc::channel();
            self.append(vec![vec![0u8; entry_bytes]; per_batch], Box::new(move || tx.send(()).expect("warm-up")));
            rx.recv().expect("warm-up durable");
            written += per_batch as u64;
        }
    }
}

impl DurableSink for RaftlogSink {
    fn append(&mut self, batch: Vec<Vec<u8>>, done: Box<dyn FnOnce() + Send>) {
        let n = batch.len() as u64;
        let entries = batch
            .into_iter()
            .enumerate()
            .map(|(k, payload)| EntryIn {
                id: RecordId { term: 1, node: 1, index: self.next + k as u64 },
                kind: EntryKind::Normal,
                payload,
            })
            .collect();
        let before = self.next;
        self.next += n;
        self.log
            .append_blocking(
                entries,
                Box::new(move |r| {
                    r.expect("durable append");
                    done();
                }),
            )
            .expect("append");
        // Purge about once per `keep` entries, as snapshots would.
        if self.next > 2 * self.keep && before / self.keep != self.next / self.keep {
            let upto = self.next - self.keep;
            self.rt.block_on(self.log.purge(RecordId { term: 1, node: 1, index: upto })).expect("purge");
        }
    }
}
