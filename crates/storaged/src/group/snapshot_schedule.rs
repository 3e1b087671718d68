//! When this replica builds a snapshot: every `[raft] snapshot_every` entries, like
//! openraft's `LogsSinceLast` policy, but each member in a slot of its own so that the
//! replicas of a group never build at once.
//!
//! A build reads and writes the whole store (and, with one disk, slows everything on it
//! for seconds). With openraft's policy every replica reached the same index together and
//! all three built at the same moment; under load the leader fell silent past its lease,
//! a follower stood, and the group spent the next seconds electing instead of taking mail
//! (seen in `metrics-overhead` after a restart: terms 2 to 5 in 20 s). Here the cycle of
//! `snapshot_every` indexes is cut into one slot per member (by node id order) and a
//! member builds only while the applied index is in its slot, so at most one replica of a
//! group is building and the other two keep a quorum. A replica twice the interval behind
//! builds anyway (its log must not grow without end); so does one without a slot (a new
//! member before the configuration names it).
//!
//! The interval is `snapshot_every` entries, or fewer when entries of the size the log has
//! seen since the last snapshot would reach `snapshot_log_bytes` sooner, so the log's size is
//! bounded in bytes. After a snapshot, openraft keeps `keep_logs` entries behind it; this
//! task purges further when those hold more than `keep_log_bytes` — on a leader, never past
//! what its slowest live follower holds (openraft's `keep_logs` bound still applies to that
//! one). A follower whose matched index has not moved for [`STALLED_AFTER`] while behind is
//! down or cut off, not slow: it does not hold the log (a replica down for a day would pin
//! a day of mail in the leader's log); it takes a snapshot when it is back.
//!
//! It must never build on its own timer alone (only on applied entries), nor while this
//! node's disk is below its reserve (`MailStateMachine::build_snapshot` would only hand back
//! the last one). A request while a build runs is ignored by openraft.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use raftlog::Log;

use super::Group;
use crate::config::RaftTuning;

/// How often the schedule looks at the applied index.
const TICK: Duration = Duration::from_millis(500);

/// How long a follower behind the leader's log may go without its matched index moving
/// before the byte purge stops keeping the log for it: several election timeouts, far
/// longer than a live follower takes to store one large entry.
const STALLED_AFTER: Duration = Duration::from_secs(10);

/// On a leader, when each follower's matched index last moved: which followers are live
/// enough to keep the log for.
#[derive(Debug, Default)]
pub(super) struct FollowerWatch {
    /// Per follower: its matched index and since when it has been behind at that index
    /// (a follower holding the leader's whole log is never behind, however long it waits).
    seen: HashMap<u64, (u64, Instant)>,
}

impl FollowerWatch {
    /// Record the leader's replication figures at `now` (`last`: the leader's last log
    /// index) and answer the lowest matched index among followers not stalled (`None` on a
    /// follower, or when every follower is stalled).
    pub(super) fn slowest_live(&mut self, matched: &[(u64, u64)], last: u64, now: Instant) -> Option<u64> {
        self.seen.retain(|id, _| matched.iter().any(|(m, _)| m == id));
        let mut slowest = None;
        for &(id, index) in matched {
            let since = match self.seen.get(&id) {
                Some(&(was, since)) if was == index && index < last => since,
                _ => {
                    self.seen.insert(id, (index, now));
                    now
                }
            };
            let stalled = index < last && now.saturating_duration_since(since) >= STALLED_AFTER;
            if !stalled {
                slowest = Some(slowest.map_or(index, |s: u64| s.min(index)));
            }
        }
        slowest
    }

    /// Forget every follower (this replica is not leading).
    pub(super) fn clear(&mut self) {
        self.seen.clear();
    }
}

/// Which member of how many this replica is, in node id order (`None` if not a member).
pub(super) fn slot_of(members: &[u64], me: u64) -> Option<(u64, u64)> {
    let mut ids = members.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.iter().position(|id| *id == me).map(|k| (k as u64, ids.len() as u64))
}

/// Whether a replica in `slot` (of `slots`) that applied `applied` and last snapshotted at
/// `last` builds now, with a build due every `every` entries.
pub(super) fn due(applied: u64, last: u64, every: u64, slot: Option<(u64, u64)>) -> bool {
    let behind = applied.saturating_sub(last);
    if behind < every.max(1) {
        return false;
    }
    let Some((k, n)) = slot else { return true };
    if behind >= every.saturating_mul(2) {
        return true;
    }
    let phase = applied % every.max(1);
    phase * n / every.max(1) == k
}

/// Entries between snapshots: `snapshot_every`, or fewer if entries of the average size of
/// those since the last snapshot (`entries_since` of them in `bytes_since` bytes) would
/// hold `snapshot_log_bytes` sooner.
pub(super) fn interval(entries_since: u64, bytes_since: u64, tuning: &RaftTuning) -> u64 {
    let every = tuning.snapshot_every.max(1);
    if entries_since == 0 || bytes_since == 0 {
        return every;
    }
    let per_entry = (bytes_since / entries_since).max(1);
    (tuning.snapshot_log_bytes / per_entry).clamp(1, every)
}

/// Watch `group` (until it is dropped) and trigger a snapshot when [`due`]; purge the log
/// behind the snapshot down to `keep_log_bytes`.
pub(super) async fn schedule(group: Weak<Group>, log: Log, tuning: RaftTuning) {
    let mut followers = FollowerWatch::default();
    loop {
        tokio::time::sleep(TICK).await;
        let Some(group) = group.upgrade() else { return };
        let (applied, last, slowest) = {
            let m = group.raft.metrics();
            let m = m.borrow();
            let applied = m.last_applied.map_or(0, |l| l.index);
            // On a leader, what its slowest live follower holds: a byte purge never goes
            // past it, or a follower merely slow (taking a large message) would need a whole
            // snapshot.
            let slowest = match m.replication.as_ref() {
                Some(r) => {
                    let matched: Vec<(u64, u64)> = r
                        .iter()
                        .filter(|(id, _)| **id != group.node_id)
                        .map(|(id, l)| (*id, l.map_or(0, |l| l.index)))
                        .collect();
                    followers.slowest_live(&matched, m.last_log_index.unwrap_or(0), Instant::now())
                }
                None => {
                    followers.clear();
                    None
                }
            };
            (applied, m.snapshot.map_or(0, |l| l.index), slowest)
        };
        let members: Vec<u64> = group.members.keys().copied().collect();
        let since = log.bytes_after(last);
        let every = interval(applied.saturating_sub(last), since, &tuning);
        if !group.disk.low() && due(applied, last, every, slot_of(&members, group.node_id)) {
            if let Err(e) = group.raft.trigger().snapshot().await {
                tracing::warn!(group = %group.name, error = %e, "snapshot not started");
            }
        }
        // Never past the snapshot: what follows it is not in any snapshot yet.
        let purge = log
            .purge_point_keeping(since.saturating_add(tuning.keep_log_bytes))
            .map(|p| p.min(last).min(slowest.unwrap_or(u64::MAX)));
        if let Some(upto) = purge.filter(|upto| *upto >= log.bounds().0) {
            if let Err(e) = group.raft.trigger().purge_log(upto).await {
                tracing::warn!(group = %group.name, error = %e, "log purge not started");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_member_builds_in_its_own_slot_and_a_far_behind_one_at_once() {
        let slot = |me| slot_of(&[3, 1, 2], me);
        assert_eq!((slot(1), slot(2), slot(3), slot(9)), (Some((0, 3)), Some((1, 3)), Some((2, 3)), None));
        let every = 300;
        // Not yet due: fewer than `every` entries since the last snapshot.
        assert!(!due(250, 0, every, slot(1)));
        // Due, but each in its own third of the cycle: 300..400 is node 1's, 400..500
        // node 2's, 500..600 node 3's.
        let builders =
            |applied| [1, 2, 3].into_iter().filter(|me| due(applied, 0, every, slot(*me))).collect::<Vec<_>>();
        assert_eq!((builders(320), builders(420), builders(590)), (vec![1], vec![2], vec![3]));
        for applied in 300..600 {
            assert_eq!(builders(applied).len(), 1, "exactly one builds at {applied}");
        }
        // Twice the interval behind: now, whatever the slot.
        assert!(due(600, 0, every, slot(3)) && due(650, 0, every, slot(1)));
        // Not a member (yet): as openraft's policy would.
        assert!(due(300, 0, every, None));
    }

    #[test]
    fn a_follower_whose_matched_index_stands_still_behind_stops_holding_the_log() {
        let mut watch = FollowerWatch::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Node 2 keeps up, node 3 is behind at 40.
        assert_eq!(watch.slowest_live(&[(2, 100), (3, 40)], 100, at(0)), Some(40));
        assert_eq!(watch.slowest_live(&[(2, 150), (3, 40)], 150, at(9)), Some(40), "slow, not yet stalled");
        assert_eq!(watch.slowest_live(&[(2, 200), (3, 40)], 200, at(10)), Some(200), "stalled: not waited for");
        // It moves again: waited for again.
        assert_eq!(watch.slowest_live(&[(2, 200), (3, 41)], 200, at(11)), Some(41));
        // A follower caught up with an idle leader is never stalled, however long, nor the
        // moment the leader appends again.
        assert_eq!(watch.slowest_live(&[(2, 200), (3, 41)], 200, at(12)), Some(41));
        assert_eq!(watch.slowest_live(&[(2, 200), (3, 200)], 200, at(100)), Some(200));
        assert_eq!(watch.slowest_live(&[(2, 200), (3, 200)], 250, at(101)), Some(200));
        // Every follower stalled: nothing holds the log.
        assert_eq!(watch.slowest_live(&[(2, 200), (3, 200)], 300, at(111)), None);
        // A follower gone from the figures is forgotten: back later, it starts afresh.
        assert_eq!(watch.slowest_live(&[(2, 300)], 300, at(112)), Some(300));
        assert_eq!(watch.slowest_live(&[(2, 300), (3, 200)], 300, at(200)), Some(200));
    }

    #[test]
    fn the_interval_shrinks_so_the_log_since_a_snapshot_stays_within_its_bytes() {
        let tuning = RaftTuning { snapshot_every: 20_000, snapshot_log_bytes: 16 << 20, ..RaftTuning::default() };
        assert_eq!(interval(0, 0, &tuning), 20_000, "nothing seen yet");
        assert_eq!(interval(1000, 100_000, &tuning), 20_000, "small entries: the entry count comes first");
        // 16 KiB entries: 1,024 of them hold 16 MiB.
        assert_eq!(interval(500, 500 * (16 << 10), &tuning), 1024);
        assert_eq!(interval(10, 10 * (64 << 20), &tuning), 1, "entries above the budget: every one");
    }
}
