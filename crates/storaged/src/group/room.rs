//! Whether a group may take writes that grow its store: a majority of its voters must have
//! disk room. The leader asks each other voter every [`ASK_EVERY`] (`RaftRequest::DiskRoom`)
//! over a connection kept per peer, and remembers who said it is low; a voter that does not answer counts as having room (it
//! takes no appends while down, and a node of an older version does not know the question).
//! A refusal is answered at once (`452 4.3.1`, `NO [LIMIT]`) instead of a commit that
//! would wait for replicas that cannot write; reads, and writes that free space (expunges,
//! deletions), go on. What this must never do: block a write that does not grow the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use super::peer_query::PeerLink;
use super::Group;
use crate::raft::rpc::{RaftReply, RaftRequest};

/// How often the leader asks its peers.
pub const ASK_EVERY: Duration = Duration::from_millis(500);
/// How long a peer has to answer.
const ASK_TIMEOUT: Duration = Duration::from_millis(400);
/// A peer's answer older than this is forgotten.
const ANSWER_TTL: Duration = Duration::from_secs(3);

/// The peers that last said their disk is low, and when.
#[derive(Debug, Default)]
pub struct PeerRoom(Mutex<BTreeMap<u64, Instant>>);

impl PeerRoom {
    fn set(&self, id: u64, low: bool) {
        let mut low_since = self.0.lock().expect("room lock");
        if low {
            low_since.insert(id, Instant::now());
        } else {
            low_since.remove(&id);
        }
    }

    /// The peers known to be low now.
    fn low(&self) -> BTreeSet<u64> {
        let low_since = self.0.lock().expect("room lock");
        low_since.iter().filter(|(_, at)| at.elapsed() < ANSWER_TTL).map(|(id, _)| *id).collect()
    }
}

/// Whether `voters` still make a majority without those in `low`.
pub fn majority_has_room(voters: &BTreeSet<u64>, low: &BTreeSet<u64>) -> bool {
    let with_room = voters.iter().filter(|v| !low.contains(v)).count();
    with_room > voters.len() / 2
}

impl Group {
    /// Whether writes that grow the store are taken now (see the module).
    pub fn has_room(&self) -> bool {
        let mut low = self.peer_room.low();
        if self.disk.low() {
            low.insert(self.node_id);
        }
        if low.is_empty() {
            return true;
        }
        let voters: BTreeSet<u64> = self.raft.metrics().borrow().membership_config.voter_ids().collect();
        majority_has_room(&voters, &low)
    }

    /// Ask one peer at `raft` whether its disk has room (`None`: no answer), over `link`.
    async fn ask_room(&self, link: &mut Option<PeerLink>, raft: &str) -> Option<bool> {
        match self.ask_peer(link, raft, RaftRequest::DiskRoom, ASK_TIMEOUT).await? {
            RaftReply::DiskRoom(room) => Some(room),
            _ => None,
        }
    }
}

/// While the group lives: as its leader, ask every other voter about its disk.
pub async fn ask_peers(group: Weak<Group>) {
    let mut tick = tokio::time::interval(ASK_EVERY);
    let mut links: BTreeMap<u64, Option<PeerLink>> = BTreeMap::new();
    loop {
        tick.tick().await;
        let Some(g) = group.upgrade() else { return };
        if !g.is_leader(g.node_id) {
            links.clear();
            continue;
        }
        let membership = g.raft.metrics().borrow().membership_config.clone();
        let peers: Vec<(u64, String)> = membership
            .membership()
            .nodes()
            .filter(|(id, _)| **id != g.node_id)
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        links.retain(|id, _| peers.iter().any(|(p, _)| p == id));
        for (id, raft) in peers {
            match g.ask_room(links.entry(id).or_default(), &raft).await {
                Some(room) => g.peer_room.set(id, !room),
                None => g.peer_room.set(id, false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_with_room_is_needed() {
        let three: BTreeSet<u64> = [1, 2, 3].into();
        assert!(majority_has_room(&three, &BTreeSet::new()));
        assert!(majority_has_room(&three, &[3].into()), "one low of three");
        assert!(!majority_has_room(&three, &[2, 3].into()), "two low of three");
        assert!(!majority_has_room(&[1].into(), &[1].into()));
    }
}
