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
//! It must never build on its own timer alone (only on applied entries), nor while this
//! node's disk is below its reserve (`MailStateMachine::build_snapshot` would only hand back
//! the last one). A request while a build runs is ignored by openraft.

use std::sync::Weak;
use std::time::Duration;

use super::Group;

/// How often the schedule looks at the applied index.
const TICK: Duration = Duration::from_millis(500);

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

/// Watch `group` (until it is dropped) and trigger a snapshot when [`due`].
pub(super) async fn schedule(group: Weak<Group>, every: u64) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(group) = group.upgrade() else { return };
        let (applied, last) = {
            let m = group.raft.metrics();
            let m = m.borrow();
            let applied = m.last_applied.map_or(0, |l| l.index);
            (applied, m.snapshot.map_or(0, |l| l.index))
        };
        let members: Vec<u64> = group.members.keys().copied().collect();
        if !group.disk.low() && due(applied, last, every, slot_of(&members, group.node_id)) {
            if let Err(e) = group.raft.trigger().snapshot().await {
                tracing::warn!(group = %group.name, error = %e, "snapshot not started");
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
}
