//! When this replica last took part of a snapshot from its leader, so that a long snapshot
//! transfer counts as word from the leader.
//!
//! openraft 0.9 refreshes a follower's view of its leader (the vote's time, which its
//! election timer and `group::prompt_election` read) from AppendEntries and from the *last*
//! chunk of a snapshot only, and a leader sends no heartbeat to a follower while a snapshot
//! streams to it. A snapshot that takes longer than the leader's lease to send (a few
//! hundred MiB of mail on a loaded node) had the follower stand for election mid-transfer
//! with a log it cannot win on; the term it took deposed the leader, the next leader
//! started the transfer over, and the group lost its leader every few seconds, for good.
//! The RPC server records each chunk here (`SnapshotReceipt::begin`), and the election
//! prompts treat a chunk in progress or just taken as contact with the leader.
//!
//! What this must never do: count a chunk the replica refused (from a deposed leader), or
//! keep counting one after its RPC ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Snapshot chunks under way and the time the last accepted one ended.
#[derive(Debug, Default)]
pub struct SnapshotReceipt {
    in_flight: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

impl SnapshotReceipt {
    /// A chunk's RPC begins; while the returned guard lives the leader counts as heard now
    /// (it is waiting on this replica: the last chunk installs the whole snapshot).
    pub fn begin(&self) -> Receiving<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Receiving { receipt: self, accepted: false }
    }

    /// How long since a chunk from the leader was last under way, if one ever was.
    pub fn since(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Some(Duration::ZERO);
        }
        self.last.lock().expect("receipt lock").map(|at| at.elapsed())
    }
}

/// One snapshot chunk's RPC in progress (see [`SnapshotReceipt::begin`]).
#[derive(Debug)]
pub struct Receiving<'a> {
    receipt: &'a SnapshotReceipt,
    accepted: bool,
}

impl Receiving<'_> {
    /// The replica took the chunk (its sender holds a vote at least this replica's).
    pub fn accepted(&mut self) {
        self.accepted = true;
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        if self.accepted {
            *self.receipt.last.lock().expect("receipt lock") = Some(Instant::now());
        }
        let before = self.receipt.in_flight.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(before > 0, "a chunk ended that never began");
    }
}

/// The shorter of `vote` (since the replica's vote last moved or was confirmed) and the time
/// since a snapshot chunk: how long this replica has gone without word from its leader.
pub fn leader_silence(vote: Option<Duration>, receipt: &SnapshotReceipt) -> Option<Duration> {
    match (vote, receipt.since()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_under_way_is_contact_now_and_an_accepted_one_is_remembered() {
        let r = SnapshotReceipt::default();
        assert_eq!(r.since(), None);
        let mut chunk = r.begin();
        assert_eq!(r.since(), Some(Duration::ZERO));
        chunk.accepted();
        drop(chunk);
        let since = r.since().expect("an accepted chunk is remembered");
        assert!(since < Duration::from_secs(5));
        assert_eq!(leader_silence(Some(Duration::from_secs(60)), &r).map(|d| d < Duration::from_secs(5)), Some(true));
    }

    #[test]
    fn a_refused_chunk_is_not_contact_once_its_rpc_ends() {
        let r = SnapshotReceipt::default();
        drop(r.begin());
        assert_eq!(r.since(), None);
        assert_eq!(leader_silence(Some(Duration::from_secs(9)), &r), Some(Duration::from_secs(9)));
        assert_eq!(leader_silence(None, &r), None);
    }
}
