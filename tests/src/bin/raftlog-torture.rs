//! Crash-test child: append to a raftlog as fast as possible and print `ack <index>` on
//! stdout once entries up to `index` are durable. The parent SIGKILLs it at random moments
//! and checks that every acknowledged entry survived. Purges old entries as it goes, so
//! segment slots are recycled under the crash too.
//!
//! Usage: raftlog-torture DIR

use std::io::Write;
use std::sync::mpsc;

use raftlog::{EntryIn, EntryKind, Log, Options, RecordId};
use tests::payload::payload_for;

/// Payload sizes used by the torture test; the checker uses the same bounds.
pub const MIN_PAYLOAD: usize = 16;
pub const MAX_PAYLOAD: usize = 6000;
/// Batches written but not yet durable, at most.
const IN_FLIGHT_MAX: usize = 64;
/// Entries kept behind the purge point.
const KEEP: u64 = 3000;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: raftlog-torture DIR"))?;
    let opts = Options { segment_bytes: 256 << 10, max_payload_bytes: 8 << 10, ..Options::default() };
    let log = Log::open(&dir, opts)?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let mut next = log.bounds().1.map_or(0, |l| l.index + 1);
    let (ack_tx, ack_rx) = mpsc::sync_channel::<std::io::Result<u64>>(IN_FLIGHT_MAX);
    let (slot_tx, slot_rx) = mpsc::sync_channel::<()>(IN_FLIGHT_MAX);
    for _ in 0..IN_FLIGHT_MAX {
        slot_tx.send(())?;
    }
    let printer = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        for ack in ack_rx {
            let index = ack?;
            writeln!(out, "ack {index}")?;
            out.flush()?;
            let _ = slot_tx.send(());
        }
        Ok(())
    });
    let mut batch_no = 0u64;
    loop {
        slot_rx.recv()?;
        let n = 1 + (batch_no % 7);
        let entries: Vec<EntryIn> = (next..next + n)
            .map(|index| EntryIn {
                id: RecordId { term: 1, node: 1, index },
                kind: EntryKind::Normal,
                payload: payload_for(index, MIN_PAYLOAD, MAX_PAYLOAD),
            })
            .collect();
        let last = next + n - 1;
        let tx = ack_tx.clone();
        log.append_blocking(entries, Box::new(move |r| drop(tx.send(r.map(|()| last)))))?;
        next += n;
        batch_no += 1;
        if batch_no.is_multiple_of(500) && next > KEEP {
            let upto = next - KEEP;
            rt.block_on(log.purge(RecordId { term: 1, node: 1, index: upto }))?;
        }
        if printer.is_finished() {
            break;
        }
    }
    printer.join().map_err(|_| anyhow::anyhow!("printer panicked"))??;
    Ok(())
}
