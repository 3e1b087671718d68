//! Making purged mail leave this replica's disk, not only its mailboxes.
//!
//! A message's bytes live in three places on a replica: its Maildir file, the Raft log entry
//! that delivered (or restored, or imported) it, and the snapshot archive. The purge of kept
//! mail past its retention removes the first; this task removes the other two, on each
//! replica for itself, once per `[retention] scrub_every_s` at most: it rolls the log to a
//! new segment, waits for the store to apply past the roll, builds a snapshot there (which
//! replaces the archive that still held the purged files), purges the log up to it, and has
//! the log zero every freed segment (`raftlog`'s `slots`: freed slots are otherwise reused
//! as they are, so normal running writes nothing extra).
//!
//! It must never purge the log past what a snapshot covers (openraft refuses, and the purge
//! gate holds anything not yet durable in the store), and never hold up the group: each wait
//! is bounded, and a scrub that times out is tried again at the next erasure.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Group;

/// How long each step may take before this round is given up.
const STEP_MAX: Duration = Duration::from_secs(600);

/// Scrub after each erasure the state machine reports, at most once per `every`.
pub(super) async fn scrub_loop(group: Arc<Group>, log: raftlog::Log, every: Duration) {
    let mut erasures = group.sm.erasures();
    let mut last_round: Option<Instant> = None;
    loop {
        if erasures.changed().await.is_err() {
            return;
        }
        if let Some(at) = last_round {
            tokio::time::sleep_until(at + every).await;
        }
        last_round = Some(Instant::now());
        let erased_at = *erasures.borrow_and_update();
        match scrub_once(&group, &log).await {
            Ok(Some(upto)) => {
                tracing::info!(group = %group.name, erased_at, upto, "purged mail scrubbed from the log and snapshot")
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(group = %group.name, erased_at, %why, "scrub not finished; the next erasure retries")
            }
        }
    }
}

/// One round: roll, snapshot past the roll, purge to it. `Ok(None)`: the log held nothing.
async fn scrub_once(group: &Group, log: &raftlog::Log) -> Result<Option<u64>, String> {
    let upto = match log.roll().await.map_err(|e| format!("roll: {e}"))? {
        Some(last) => last,
        None => match log.bounds().1 {
            Some(last) => last.index,
            None => return Ok(None),
        },
    };
    let purged = snapshot_and_purge(group, upto).await;
    // The sort fields this node kept of its mailboxes hold subjects and senders of purged
    // mail too; they are a cache, so all of them go (the next SORT cuts them again).
    let users = group.sm.store().lock().expect("store lock").layout().root().join("users");
    let fields = tokio::task::spawn_blocking(move || super::fields_file::remove_all(&users)).await;
    // Whatever happened, zero what is free now (and let the log reuse freed slots again).
    log.scrub().await.map_err(|e| format!("scrub: {e}"))?;
    match fields {
        Ok(Ok(n)) => tracing::debug!(group = %group.name, files = n, "sort fields files removed"),
        Ok(Err(e)) => return Err(format!("sort fields files: {e}")),
        Err(e) => return Err(format!("sort fields files: {e}")),
    }
    purged.map(|()| Some(upto))
}

/// Snapshot at or past `upto` and purge the log to it.
async fn snapshot_and_purge(group: &Group, upto: u64) -> Result<(), String> {
    let mut applied = group.sm.subscribe();
    wait(&mut applied, "apply", |a| *a >= upto).await?;
    group.raft.trigger().snapshot().await.map_err(|e| format!("snapshot: {e}"))?;
    let mut metrics = group.raft.metrics();
    let covered = |m: &openraft::RaftMetrics<u64, openraft::BasicNode>| m.snapshot.is_some_and(|s| s.index >= upto);
    wait(&mut metrics, "snapshot", covered).await?;
    group.raft.trigger().purge_log(upto).await.map_err(|e| format!("purge: {e}"))?;
    wait(&mut metrics, "purge", |m| m.purged.is_some_and(|p| p.index >= upto)).await
}

/// Wait (at most [`STEP_MAX`]) until `ok` holds for the watched value.
async fn wait<T>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    step: &str,
    ok: impl FnMut(&T) -> bool,
) -> Result<(), String> {
    match tokio::time::timeout(STEP_MAX, rx.wait_for(ok)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(format!("{step}: the group stopped")),
        Err(_) => Err(format!("{step}: not done in {} s", STEP_MAX.as_secs())),
    }
}
