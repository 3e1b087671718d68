//! The group's leader as a watch that moves only when the leader changes. Raft's metrics
//! move on every replication step and every applied entry; a session that only needs to
//! hear that this node stopped leading (an idling IMAP client must be told to reconnect)
//! waits on this instead, so thousands of idle sessions sleep until the leader changes
//! rather than waking each second to look.
//!
//! What it must never do: miss a change (the current leader is read after every move of
//! the metrics, and a receiver sees the latest value), or wake receivers when the leader
//! stayed the same.

use tokio::sync::watch;

/// A watch of the leader's node id (`None` while there is none), following `metrics`
/// through `leader_of` for as long as the metrics' sender lives.
pub fn follow<M: Send + Sync + 'static>(
    metrics: watch::Receiver<M>,
    leader_of: fn(&M) -> Option<u64>,
) -> watch::Receiver<Option<u64>> {
    let (tx, rx) = watch::channel(leader_of(&metrics.borrow()));
    tokio::spawn(run(metrics, leader_of, tx));
    rx
}

async fn run<M>(mut metrics: watch::Receiver<M>, leader_of: fn(&M) -> Option<u64>, tx: watch::Sender<Option<u64>>) {
    loop {
        let leader = leader_of(&metrics.borrow_and_update());
        tx.send_if_modified(|known| std::mem::replace(known, leader) != leader);
        // Raft stopped (its metrics' sender is gone): dropping `tx` tells every receiver.
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// (term, leader): the term moves without the leader, as replication metrics do.
    fn leader(m: &(u64, Option<u64>)) -> Option<u64> {
        m.1
    }

    #[tokio::test]
    async fn receivers_wake_for_a_new_leader_only_and_learn_when_raft_stops() {
        let (metrics, source) = watch::channel((1u64, Some(1u64)));
        let mut rx = follow(source, leader);
        assert_eq!(*rx.borrow_and_update(), Some(1));
        for term in 2..50 {
            metrics.send((term, Some(1))).unwrap();
        }
        tokio::task::yield_now().await;
        let quiet = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        assert!(quiet.is_err(), "metrics that kept the leader woke a receiver");
        metrics.send((50, None)).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), None);
        metrics.send((51, Some(2))).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), Some(2));
        drop(metrics);
        assert!(rx.changed().await.is_err(), "a stopped Raft must end the watch");
    }
}
