//! Whether this node may serve reads of a group now: it leads the group, and it has applied
//! every entry its log held when that leadership began, so everything any client was ever
//! told (a `250`, a tagged `OK`) is in the state it reads.
//!
//! Why a leader is not enough: openraft restores a node that led before a restart as
//! leader of the same term at once, while it is still replaying its log onto the last
//! checkpoint; a newly elected leader has not yet applied what its predecessor committed.
//! Serving either would show a client fewer messages, a lower UIDNEXT or HIGHESTMODSEQ
//! than it saw before: reads going back in time. Every entry committed anywhere is in the
//! leader's log (Raft's leader completeness) and the leader commits all of it, so "applied
//! up to the last index held when the term began" is the barrier. It is kept per term and
//! never carried from one term to the next.

use std::sync::Mutex;

use openraft::ServerState;

/// What a read may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadGate {
    /// This node leads and has applied everything it must.
    Ready,
    /// Another node leads (its id, if known); reads belong there.
    NotLeader(Option<u64>),
    /// This node leads but is still applying entries up to `needed_index`.
    CatchingUp { applied_index: u64, needed_index: u64 },
}

/// What the gate reads of Raft's metrics.
#[derive(Debug, Clone, Copy)]
pub struct RaftView {
    pub term: u64,
    pub state: ServerState,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
}

/// The barrier of the current leadership: (term, last log index when it was first seen).
#[derive(Debug, Default)]
pub struct Barrier(Mutex<Option<(u64, u64)>>);

impl Barrier {
    /// Where node `me` stands for reads, given Raft's view of itself.
    pub fn gate(&self, me: u64, view: RaftView) -> ReadGate {
        if view.state != ServerState::Leader || view.leader != Some(me) {
            return ReadGate::NotLeader(view.leader.filter(|l| *l != me));
        }
        let mut barrier = self.0.lock().expect("barrier lock");
        let needed_index = match *barrier {
            Some((term, index)) if term == view.term => index,
            // First sight of this term's leadership: everything the log holds now. (Seen
            // later than the term began, the index is only higher: still a barrier.)
            _ => {
                let index = view.last_log_index.unwrap_or(0);
                *barrier = Some((view.term, index));
                index
            }
        };
        let applied_index = view.applied_index.unwrap_or(0);
        if applied_index >= needed_index {
            ReadGate::Ready
        } else {
            ReadGate::CatchingUp { applied_index, needed_index }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(term: u64, last: u64, applied: u64) -> RaftView {
        RaftView {
            term,
            state: ServerState::Leader,
            leader: Some(1),
            last_log_index: Some(last),
            applied_index: Some(applied),
        }
    }

    #[test]
    fn a_restored_leader_serves_only_after_replaying_its_log() {
        let b = Barrier::default();
        // Restarted as leader of term 4 with entries up to 900, checkpoint at 800.
        assert_eq!(b.gate(1, leader(4, 900, 800)), ReadGate::CatchingUp { applied_index: 800, needed_index: 900 });
        // New entries arrive meanwhile: the barrier stays where the leadership began.
        assert_eq!(b.gate(1, leader(4, 950, 899)), ReadGate::CatchingUp { applied_index: 899, needed_index: 900 });
        assert_eq!(b.gate(1, leader(4, 960, 900)), ReadGate::Ready);
        assert_eq!(b.gate(1, leader(4, 990, 930)), ReadGate::Ready, "later lag is ordinary pipelining");
    }

    #[test]
    fn a_new_term_sets_a_new_barrier_and_followers_never_serve() {
        let b = Barrier::default();
        assert_eq!(b.gate(1, leader(4, 10, 10)), ReadGate::Ready);
        let follower = RaftView { state: ServerState::Follower, leader: Some(2), ..leader(5, 20, 12) };
        assert_eq!(b.gate(1, follower), ReadGate::NotLeader(Some(2)));
        let candidate = RaftView { state: ServerState::Candidate, leader: None, ..leader(6, 20, 12) };
        assert_eq!(b.gate(1, candidate), ReadGate::NotLeader(None));
        // Leader again in term 7: its log ends at 21 (the new term's first entry).
        assert_eq!(b.gate(1, leader(7, 21, 12)), ReadGate::CatchingUp { applied_index: 12, needed_index: 21 });
        assert_eq!(b.gate(1, leader(7, 21, 21)), ReadGate::Ready);
    }
}
