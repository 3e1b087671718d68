//! Membership changes of a group, asked by `mailctl group add-node|remove-node`: a new
//! node joins as a learner, catches up (by snapshot if the log was purged), and only then
//! becomes a voter, so the quorum never counts a node that has nothing; a removed node
//! leaves the voters in one joint-consensus change. Runs on the leader only.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::admin::AdminReply;
use openraft::BasicNode;

use crate::group::Group;

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
            return AdminReply::Failed(format!(
                "node {id} did not catch up within {CATCH_UP_TIMEOUT:?} (it has {matched:?} of {head}); it stays a learner"
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

/// Remove node `id` from the voters (a dead node being replaced, or a node retired).
pub async fn remove_node(group: &Group, id: u64) -> AdminReply {
    let mut wanted = voters(group);
    if !wanted.remove(&id) {
        return AdminReply::Done;
    }
    if wanted.is_empty() {
        return AdminReply::Refused("a group keeps at least one voter".into());
    }
    tracing::info!(group = %group.name, node = id, "removing a voter");
    match group.raft.change_membership(wanted, false).await {
        Ok(_) => AdminReply::Done,
        Err(e) => failed("change membership", e),
    }
}
