//! Group commit above Raft: small requests of different users that arrive together are
//! committed as one log entry ([`MailOp::Batch`]).
//!
//! openraft 0.9 appends, replicates and applies every client write as an entry of its own,
//! and its core waits for each append to reach the log file before it takes the next write;
//! under load (many IMAP sessions storing flags, many LMTP deliveries) the core's time went
//! to those waits and commits queued behind them. Here at most [`IN_FLIGHT_MAX`] entries are
//! uncommitted at once; requests that arrive meanwhile wait and leave together in the next.
//!
//! What this must never do: delay a request when no entry is in flight (a lone request goes
//! at once, as an ordinary entry); put two requests of one user in one entry (the store
//! refuses that, see [`MailRequest::batch_user`]); queue without bound (senders wait once
//! [`QUEUE_MAX`] requests are waiting).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use openraft::error::ClientWriteError;
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::access::{AccessError, Committed};
use super::MailConfig;
use crate::mailstore::{MailRequest, MailResponse, UserName};
use crate::metrics::NodeMetrics;

/// Entries of batched requests uncommitted at once: one replicating while the one before
/// it is applied.
pub const IN_FLIGHT_MAX: usize = 2;
/// Requests in one entry at most.
pub const BATCH_MAX: usize = 64;
/// Encoded bytes of the requests of one entry at most (a lone request may be larger, up to
/// the single-entry limit): an entry must cross to a follower within one heartbeat.
pub const BATCH_BYTES_MAX: u64 = 1 << 20;
/// Requests waiting for an entry at most.
pub const QUEUE_MAX: usize = 1024;

type Reply = oneshot::Sender<Result<Committed, AccessError>>;

struct Waiting {
    req: MailRequest,
    user: UserName,
    reply: Reply,
    since: Instant,
}

/// The encoded size of a request, without encoding it (byte fields count as one length).
fn size_of(req: &MailRequest) -> u64 {
    bincode::serialized_size(req).unwrap_or(u64::MAX)
}

/// The batching front of one group's Raft.
pub struct Batcher {
    tx: mpsc::Sender<Waiting>,
}

impl Batcher {
    /// Start batching for `raft` (group `group`) on the current runtime.
    pub fn start(raft: Raft<MailConfig>, group: String, metrics: Arc<NodeMetrics>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(raft, group, rx, metrics));
        Self { tx }
    }

    /// Commit `req`, which changes only `user`'s mail, in the next entry.
    pub async fn commit(&self, req: MailRequest, user: UserName) -> Result<Committed, AccessError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || AccessError::Raft("the group is shutting down".into());
        self.tx.send(Waiting { req, user, reply, since: Instant::now() }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft<MailConfig>, group: String, mut rx: mpsc::Receiver<Waiting>, metrics: Arc<NodeMetrics>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    // A request of a user already in the batch being gathered starts the next one.
    let mut carried: Option<Waiting> = None;
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        // Its requester gave up while earlier entries did not commit (no quorum): it was
        // told the write may not have happened; do not make it happen now.
        if first.reply.is_closed() {
            continue;
        }
        let mut users = BTreeSet::from([first.user.clone()]);
        let mut bytes = size_of(&first.req);
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            let Ok(w) = rx.try_recv() else { break };
            if w.reply.is_closed() {
                continue;
            }
            let size = size_of(&w.req);
            if users.contains(&w.user) || bytes.saturating_add(size) > BATCH_BYTES_MAX {
                carried = Some(w);
                break;
            }
            users.insert(w.user.clone());
            bytes += size;
            batch.push(w);
        }
        let proposed = Instant::now();
        for w in &batch {
            metrics.write_queued(proposed.duration_since(w.since));
        }
        let (mut requests, replies): (Vec<MailRequest>, Vec<Reply>) =
            batch.into_iter().map(|w| (w.req, w.reply)).unzip();
        let entry =
            if requests.len() == 1 { requests.pop().expect("one request") } else { MailRequest::batch(&requests) };
        // Handed to Raft here, in order; committed in a task of its own so the next batch
        // can gather meanwhile.
        let committed = raft.client_write_ff(entry).await;
        let (group, metrics) = (group.clone(), metrics.clone());
        tokio::spawn(async move {
            let outcome = match committed {
                Ok(rx) => rx.await.map_err(|e| AccessError::Raft(format!("raft stopped: {e}"))),
                Err(fatal) => Err(AccessError::Raft(format!("raft stopped: {fatal}"))),
            };
            metrics.write_committed(proposed.elapsed());
            answer(&group, outcome, replies);
            drop(slot);
        });
    }
}

type WriteResult = Result<openraft::raft::ClientWriteResponse<MailConfig>, ClientWriteError<u64, openraft::BasicNode>>;

/// Tell every request of an entry what became of it.
fn answer(group: &str, outcome: Result<WriteResult, AccessError>, replies: Vec<Reply>) {
    let n = replies.len();
    // One failure for everyone (`AccessError` is not `Clone`: each gets its own).
    let all_fail = |error: &dyn Fn() -> AccessError| (0..n).map(|_| Err(error())).collect();
    let results: Vec<Result<Committed, AccessError>> = match outcome {
        Ok(Ok(resp)) => {
            let index = resp.log_id.index;
            match resp.data {
                MailResponse::Batch(each) if n > 1 && each.len() == n => {
                    each.into_iter().map(|data| Ok(Committed { index, data })).collect()
                }
                data if n == 1 => vec![Ok(Committed { index, data })],
                other => all_fail(&|| AccessError::Raft(format!("a batch of {n} was answered with {other:?}"))),
            }
        }
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
            all_fail(&|| AccessError::NotLeader { group: group.to_string(), leader: f.leader_id })
        }
        Ok(Err(e)) => all_fail(&|| AccessError::Raft(e.to_string())),
        Err(e) => all_fail(&|| AccessError::Raft(e.to_string())),
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // The requester may have given up (its timeout); the outcome stands regardless.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::raft::ClientWriteResponse;
    use openraft::{CommittedLeaderId, LogId};

    fn committed(data: MailResponse) -> Result<WriteResult, AccessError> {
        Ok(Ok(ClientWriteResponse { log_id: LogId::new(CommittedLeaderId::new(1, 1), 7), data, membership: None }))
    }

    fn replies(n: usize) -> (Vec<Reply>, Vec<oneshot::Receiver<Result<Committed, AccessError>>>) {
        (0..n).map(|_| oneshot::channel()).unzip()
    }

    #[test]
    fn each_request_gets_its_own_answer_or_the_entrys_failure() {
        let (tx, mut rx) = replies(2);
        answer("g", committed(MailResponse::Batch(vec![MailResponse::Done, MailResponse::Staged])), tx);
        let got: Vec<_> = rx.iter_mut().map(|r| r.try_recv().unwrap().unwrap()).collect();
        assert_eq!((got[0].index, &got[0].data, &got[1].data), (7, &MailResponse::Done, &MailResponse::Staged));

        let (tx, mut rx) = replies(1);
        answer("g", committed(MailResponse::Done), tx);
        assert_eq!(rx[0].try_recv().unwrap().unwrap().data, MailResponse::Done, "a lone request is not wrapped");

        let (tx, mut rx) = replies(3);
        answer("g", committed(MailResponse::Batch(vec![MailResponse::Done])), tx);
        assert!(rx.iter_mut().all(|r| r.try_recv().unwrap().is_err()), "a short answer fails everyone");

        let (tx, mut rx) = replies(2);
        let forward = openraft::error::ForwardToLeader::new(3, openraft::BasicNode::default());
        answer("g", Ok(Err(ClientWriteError::ForwardToLeader(forward))), tx);
        for r in rx.iter_mut() {
            assert!(matches!(r.try_recv().unwrap(), Err(AccessError::NotLeader { leader: Some(3), .. })));
        }
    }
}
