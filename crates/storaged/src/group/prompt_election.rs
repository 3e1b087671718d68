//! Elections as soon as a silent leader's lease runs out, not a whole election timeout
//! later.
//!
//! openraft 0.9 has a follower that hears nothing from its leader wait the leader's lease
//! (`election_timeout_max`: no voter grants a vote before it ends) *plus* a random election
//! timeout before it stands, so a paused or partitioned leader leaves its group without one
//! for `max + [min, max]` — 3 to 4 s with the defaults, every write refused meanwhile. This
//! task watches, on each voter that follows, when it last heard from the leader, and asks
//! openraft for an election a short random moment after the lease: the earliest an election
//! can succeed. Only a voter whose log is as long as any other's can win (the others refuse
//! a shorter log without taking its term, and two candidates of one term split the vote),
//! so before standing it asks the other voters for their last log index
//! (`RaftRequest::LastLogIndex`) and lets one with a longer log stand first, for at most
//! [`DEFER_MAX`]. The random moment (up to [`JITTER_MAX`]) keeps equals from standing at
//! once. openraft's own timer stays as it was, the fallback (held only while a snapshot
//! streams in, below).
//!
//! A snapshot chunk from the leader counts as hearing from it (`raft::snapshot_receipt`),
//! and while chunks stream in this task also holds openraft's own election timer, which
//! knows only the vote's time: a follower taking a snapshot that outlasts the lease would
//! otherwise stand with a log it cannot win on, depose the leader sending it, and have the
//! next one start the transfer over, for good. A peer that is the leader or heard from it
//! outweighs a peer's longer log, for the same reason.
//!
//! It must never stand while the lease runs (that election would fail and only bump the
//! term), nor on a learner, a candidate or the leader, nor when another voter heard from
//! the leader within the lease (`RaftRequest::LeaderContact`): the silence is then this
//! node's own (its Raft stalled behind a busy disk, or only its link is down) and an
//! election would depose a leader that works — a pre-vote of sorts, which openraft 0.9
//! lacks.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use openraft::ServerState;

use super::peer_query::PeerLink;
use super::Group;
use crate::raft::rpc::{RaftReply, RaftRequest};
use crate::raft::snapshot_receipt::leader_silence;

/// How often the watch looks.
const TICK: Duration = Duration::from_millis(50);
/// The random wait after the lease, at most.
const JITTER_MAX: Duration = Duration::from_millis(300);
/// How long a voter waits for a peer with a longer log to stand, at most.
const DEFER_MAX: Duration = Duration::from_millis(600);
/// How long a peer has to say how long its log is.
const ASK_TIMEOUT: Duration = Duration::from_millis(100);

/// Watch `group` (until it is dropped) and prompt an election once its leader has been
/// silent for `lease` and a random moment.
pub(super) async fn prompt_elections(group: Weak<Group>, lease: Duration) {
    let mut patience = lease + jitter();
    let mut links: BTreeMap<u64, Option<PeerLink>> = BTreeMap::new();
    let mut timer_on = true;
    let mut told_leader_heard = false;
    loop {
        tokio::time::sleep(TICK).await;
        let Some(group) = group.upgrade() else { return };
        timer_on = group.gate_election_timer(lease, timer_on);
        let Some(peers) = voting_peers(&group) else { continue };
        let heard = group.raft.with_raft_state(|st| st.vote_last_modified().map(|at| at.elapsed())).await;
        let Ok(vote) = heard else { continue };
        let Some(silent) = leader_silence(vote, &group.snapshot_receipt) else { continue };
        if silent < patience {
            told_leader_heard = false;
            continue;
        }
        let mine = group.raft.metrics().borrow().last_log_index;
        match group.objection_among(&peers, mine, lease, &mut links).await {
            Some(Objection::LongerLog) if silent < lease + DEFER_MAX => continue,
            Some(Objection::LeaderHeard(peer, heard_ms)) => {
                // Once per silence, not every tick.
                if !std::mem::replace(&mut told_leader_heard, true) {
                    tracing::info!(group = %group.name, peer, heard_ms, "the leader is silent here only: not standing");
                }
                continue;
            }
            _ => {}
        }
        tracing::info!(group = %group.name, silent_ms = silent.as_millis() as u64, "leader silent past its lease: standing");
        if let Err(e) = group.raft.trigger().elect().await {
            tracing::warn!(group = %group.name, error = %e, "election not started");
        }
        // Standing updates the vote's time; the next chance comes a lease later.
        patience = lease + jitter();
    }
}

/// The other voters of `group` (id, Raft address) if this node is a voter that follows.
fn voting_peers(group: &Group) -> Option<Vec<(u64, String)>> {
    let metrics = group.raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    if m.state != ServerState::Follower || !membership.voter_ids().any(|id| id == group.node_id) {
        return None;
    }
    let voters: Vec<u64> = membership.voter_ids().filter(|id| *id != group.node_id).collect();
    Some(membership.nodes().filter(|(id, _)| voters.contains(id)).map(|(id, n)| (*id, n.addr.clone())).collect())
}

/// Why a follower that finds its leader silent does not stand yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Objection {
    /// A peer holds a longer log: it stands first (for at most [`DEFER_MAX`]).
    LongerLog,
    /// A peer heard from the leader within its lease (or is the leader): the leader lives,
    /// and the silence is this node's own (its Raft was stalled, or only its link is down).
    /// An election now would only depose a working leader. (The peer, how many ms ago.)
    LeaderHeard(u64, u64),
}

impl Group {
    /// Keep openraft's own election timer off while a snapshot from the leader streams in
    /// (`snapshot_receipt`: openraft would take the transfer for silence), on otherwise.
    /// Returns whether it is on now (`on`: whether it was).
    fn gate_election_timer(&self, lease: Duration, on: bool) -> bool {
        let receiving = self.snapshot_receipt.since().is_some_and(|since| since < lease);
        if receiving == on {
            tracing::info!(group = %self.name, receiving, "election timer {}", if receiving { "held while a snapshot streams in" } else { "back on" });
            self.raft.runtime_config().elect(!receiving);
        }
        !receiving
    }

    /// What the peers that answer say against standing now (`mine`: the last index here).
    /// A peer that is the leader or heard from it within the lease outweighs one with a
    /// longer log: after [`DEFER_MAX`] a longer log no longer holds this node back, a live
    /// leader always does (it may be sending this node a snapshot).
    async fn objection_among(
        &self,
        peers: &[(u64, String)],
        mine: Option<u64>,
        lease: Duration,
        links: &mut BTreeMap<u64, Option<PeerLink>>,
    ) -> Option<Objection> {
        let mut objection = None;
        for (id, raft) in peers {
            let link = links.entry(*id).or_default();
            if let Some(RaftReply::LeaderContact(Some(ms))) =
                self.ask_peer(link, raft, RaftRequest::LeaderContact, ASK_TIMEOUT).await
            {
                if Duration::from_millis(ms) < lease {
                    return Some(Objection::LeaderHeard(*id, ms));
                }
            }
            // Silent or dead: no objection from it.
            if let Some(RaftReply::LastLogIndex(theirs)) =
                self.ask_peer(link, raft, RaftRequest::LastLogIndex, ASK_TIMEOUT).await
            {
                if theirs > mine {
                    tracing::debug!(group = %self.name, peer = id, ?theirs, ?mine, "a longer log stands first");
                    objection = Some(Objection::LongerLog);
                }
            }
        }
        objection
    }
}

fn jitter() -> Duration {
    JITTER_MAX.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_after_the_lease_is_bounded_and_varies() {
        let waits: Vec<Duration> = (0..64).map(|_| jitter()).collect();
        assert!(waits.iter().all(|w| *w <= JITTER_MAX));
        assert!(waits.iter().any(|w| *w != waits[0]), "two followers must not wait alike");
    }
}
