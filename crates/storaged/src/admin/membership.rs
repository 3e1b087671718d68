//! Membership changes of a group, asked by `mailctl group add-node|remove-node`: a new
//! node joins as a learner, catches up (by snapshot if the log was purged), and only then
//! becomes a voter, so the quorum never counts a node that has nothing; one that does not
//! catch up in time is taken out again. A removed node leaves the voters in one
//! joint-consensus change, unless that would leave the group unable to survive one more
//! failure (or remove its answering leader) and the operator did not force it: which
//! voters answer is learnt from a no-op entry each must acknowledge. Runs on the leader only.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::admin::AdminReply;
use openraft::{BasicNode, ChangeMembers};

use crate::group::Group;
use crate::mailstore::{MailOp, MailRequest, OpId};

/// How long a new node may take to catch up before the change is abandoned (it stays a
/// learner, which never counts toward the quorum). Below the admin client's wait.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(540);
/// Entries a learner may still lack when it is promoted (the rest arrive as to any voter).
const CATCH_UP_LAG_MAX: u64 = 16;
const CATCH_UP_POLL: Duration = Duration::from_millis(200);

fn voters(group: &Group) -> BTreeSet<u64> {
    group.raft.metrics().borrow().membership_config.voter_ids().collect()
}

fn failed(what: &str, e: impl std::fmt::Display) -> AdminReply {
    AdminReply::Failed(format!("{what}: {e}"))
}

/// Add node `id` at `raft` as a learner, wait for it to catch up, then make it a voter.
pub async fn add_node(group: &Group, id: u64, raft: String) -> AdminReply {
    let mut wanted = voters(group);
    if wanted.contains(&id) {
        return AdminReply::Done;
    }
    tracing::info!(group = %group.name, node = id, %raft, "adding a learner");
    if let Err(e) = group.raft.add_learner(id, BasicNode { addr: raft }, false).await {
        return failed("add learner", e);
    }
    // Promote only a learner that holds (nearly) everything: a voter that has nothing
    // would count toward the quorum without being able to serve.
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let (head, matched) = {
            let m = group.raft.metrics().borrow().clone();
            let matched = m.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).map(|l| l.index);
            (m.last_log_index.unwrap_or(0), matched)
        };
        if matched.is_some_and(|i| i + CATCH_UP_LAG_MAX >= head) {
            break;
        }
        if Instant::now() >= deadline {
            let removed = group.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await;
            let undone = if removed.is_ok() { "it was taken out again" } else { "it stays a learner" };
            return AdminReply::Failed(format!(
                "node {id} did not catch up within {CATCH_UP_TIMEOUT:?} (it has {matched:?} of {head}); {undone}"
            ));
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
    wanted.insert(id);
    match group.raft.change_membership(wanted, false).await {
        Ok(_) => {
            tracing::info!(group = %group.name, node = id, "node is a voter now");
            AdminReply::Done
        }
        Err(e) => failed("change membership", e),
    }
}

/// Add node `id` as a backup: a learner that copies the log and never votes (nor is
/// promoted), catching up by snapshot if it must. A voter is not made a backup.
pub async fn add_backup(group: &Group, id: u64, raft: String) -> AdminReply {
    if voters(group).contains(&id) {
        return AdminReply::Refused(format!("node {id} is a voter of {}: remove it first", group.name));
    }
    tracing::info!(group = %group.name, node = id, %raft, "adding a backup learner");
    match group.raft.add_learner(id, BasicNode { addr: raft }, false).await {
        Ok(_) => AdminReply::Done,
        Err(e) => failed("add learner", e),
    }
}

/// How long voters have to acknowledge the no-op entry that shows they answer.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// The voters that acknowledge a new entry within [`PROBE_WAIT`] (this leader among them).
async fn answering_voters(group: &Group, leader: u64) -> BTreeSet<u64> {
    let probe = MailRequest { op_id: OpId(rand::random()), op: MailOp::Batch { requests: Vec::new() } };
    let Ok(committed) = group.write(probe).await else { return BTreeSet::new() };
    let deadline = Instant::now() + PROBE_WAIT;
    loop {
        let m = group.raft.metrics().borrow().clone();
        let matched = |v: &u64| {
            *v == leader
                || m.replication
                    .as_ref()
                    .and_then(|r| r.get(v).copied().flatten())
                    .is_some_and(|l| l.index >= committed.index)
        };
        let voters: BTreeSet<u64> = m.membership_config.voter_ids().collect();
        let answering: BTreeSet<u64> = voters.iter().copied().filter(matched).collect();
        if answering.len() == voters.len() || Instant::now() >= deadline {
            return answering;
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
}

/// How many more voters may fail before `voters` lose their quorum, with `answering` up.
fn failures_tolerated(voters: &BTreeSet<u64>, answering: &BTreeSet<u64>) -> i64 {
    let up = voters.intersection(answering).count() as i64;
    up - (voters.len() as i64 / 2 + 1)
}

/// Why removing `id` must not happen unforced, if it must not.
fn removal_refusal(
    group: &str,
    id: u64,
    leader: u64,
    voters: &BTreeSet<u64>,
    answering: &BTreeSet<u64>,
) -> Option<String> {
    let mut after = voters.clone();
    after.remove(&id);
    let (before_ok, after_ok) = (failures_tolerated(voters, answering), failures_tolerated(&after, answering));
    if id == leader && answering.contains(&id) {
        return Some(format!(
            "node {id} leads {group} and answers: removing it would stop the group for an election;              stop it first (then it no longer leads) or use --force"
        ));
    }
    if after_ok < 1 && after_ok < before_ok {
        return Some(format!(
            "removing node {id} would leave {group} with voters {after:?}, {} of them answering: one more failure              would stop the group. Add a node first (mailctl group add-node), or use --force",
            after.intersection(answering).count()
        ));
    }
    None
}

/// Remove node `id` from the voters (a dead node being replaced, or a node retired); see
/// [`removal_refusal`] for what needs `force`.
pub async fn remove_node(group: &Group, id: u64, force: bool) -> AdminReply {
    let mut wanted = voters(group);
    if !wanted.contains(&id) {
        return remove_learner(group, id).await;
    }
    if wanted.len() == 1 {
        return AdminReply::Refused("a group keeps at least one voter".into());
    }
    let leader = group.raft.metrics().borrow().id;
    let answering = answering_voters(group, leader).await;
    let after_up = answering.iter().filter(|v| **v != id && wanted.contains(v)).count();
    if after_up < (wanted.len() - 1) / 2 + 1 {
        return AdminReply::Refused(format!(
            "only {after_up} of the {} voters left after removing node {id} answer: the change could not commit",
            wanted.len() - 1
        ));
    }
    if let Some(why) = removal_refusal(&group.name, id, leader, &wanted, &answering) {
        if !force {
            return AdminReply::Refused(why);
        }
        tracing::warn!(group = %group.name, node = id, why, "removal forced");
    }
    wanted.remove(&id);
    tracing::info!(group = %group.name, node = id, "removing a voter");
    match group.raft.change_membership(wanted, false).await {
        Ok(_) => AdminReply::Done,
        Err(e) => failed("change membership", e),
    }
}

/// Take learner `id` (a backup, or a node that never caught up) out of the group.
async fn remove_learner(group: &Group, id: u64) -> AdminReply {
    let learners: BTreeSet<u64> = group.raft.metrics().borrow().membership_config.membership().learner_ids().collect();
    if !learners.contains(&id) {
        return AdminReply::Done;
    }
    tracing::info!(group = %group.name, node = id, "removing a learner");
    match group.raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await {
        Ok(_) => AdminReply::Done,
        Err(e) => failed("change membership", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_removal_that_costs_the_last_spare_voter_or_the_answering_leader_needs_force() {
        let three = set(&[1, 2, 3]);
        // A dead node goes: the group tolerated no further failure before and after.
        assert_eq!(removal_refusal("g", 3, 1, &three, &set(&[1, 2])), None);
        // A healthy follower: from one spare failure to none.
        assert!(removal_refusal("g", 2, 1, &three, &three).unwrap().contains("one more failure"));
        // The leader that answers.
        assert!(removal_refusal("g", 1, 1, &three, &three).unwrap().contains("leads g"));
        // Five voters, all up: retiring one still leaves a spare.
        assert_eq!(removal_refusal("g", 5, 1, &set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3, 4, 5])), None);
        // Five voters, two dead: removing a healthy one leaves none to spare.
        assert!(removal_refusal("g", 3, 1, &set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3])).is_some());
        assert_eq!(failures_tolerated(&three, &three), 1);
        assert_eq!(failures_tolerated(&three, &set(&[1])), -1);
    }
}
