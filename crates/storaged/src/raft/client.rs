//! The sending side of Raft RPC: one lazily (re)connected, authenticated TCP stream per
//! target node and group. A failed exchange drops the connection; the next RPC reconnects.
//! Every exchange is bounded by openraft's per-RPC time limit.

use std::sync::Arc;
use std::time::Duration;

use common::rpc_channel::{Channel, ClusterKey};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, LogId, RaftLogId, RaftTypeConfig};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::rpc::{self, GroupReply, GroupRequest, RaftReply, RaftRequest, MAX_FRAME_BYTES};
use super::timing::{RpcTiming, Untimed};

/// Makes one [`TcpNetwork`] per target, addressed by the node's `BasicNode::addr`, for
/// the Raft group `group`.
#[derive(Clone)]
pub struct TcpNetworkFactory {
    group: String,
    from: u64,
    key: ClusterKey,
    timing: Arc<dyn RpcTiming>,
}

impl TcpNetworkFactory {
    /// Client side for group `group` on node `from`.
    pub fn new(group: impl Into<String>, from: u64, key: ClusterKey) -> Self {
        Self { group: group.into(), from, key, timing: Arc::new(Untimed) }
    }

    /// Report each AppendEntries round that carried entries to `timing`.
    pub fn with_timing(mut self, timing: Arc<dyn RpcTiming>) -> Self {
        self.timing = timing;
        self
    }
}

impl<C> RaftNetworkFactory<C> for TcpNetworkFactory
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    type Network = TcpNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        TcpNetwork {
            target,
            addr: node.addr.clone(),
            group: self.group.clone(),
            from: self.from,
            // Each client is one ordered stream of requests to its target.
            session: rand::random(),
            seq: 0,
            key: self.key.clone(),
            stream: None,
            append_budget_bytes: APPEND_BYTES_BUDGET,
            append_unfinished: false,
            timing: self.timing.clone(),
        }
    }
}

/// The connection to one target node.
pub struct TcpNetwork {
    target: u64,
    addr: String,
    group: String,
    from: u64,
    session: u64,
    seq: u64,
    key: ClusterKey,
    stream: Option<(BufReader<TcpStream>, Channel)>,
    /// Where AppendEntries rounds are reported.
    timing: Arc<dyn RpcTiming>,
    /// Bytes of entries the next AppendEntries may carry: halved after one that did not
    /// finish in time (a slow or overloaded follower would otherwise be sent the same
    /// too-large batch forever), doubled back after each that did.
    append_budget_bytes: u64,
    /// An AppendEntries is under way; still set at the next call if openraft dropped it
    /// at its deadline.
    append_unfinished: bool,
}

/// Bytes of entries one AppendEntries carries at most (at least one entry goes). openraft
/// gives every AppendEntries one heartbeat interval; a batch of big messages (a move's
/// imports) must not exceed what crosses the network and the follower's fsync in that time,
/// or it would be retried forever.
pub const APPEND_BYTES_BUDGET: u64 = 1 << 20;
/// The smallest the budget shrinks to after AppendEntries that did not finish in time.
const APPEND_BYTES_BUDGET_MIN: u64 = 32 << 10;

/// `req` cut to `budget` bytes, and the log id of the last entry kept if it was cut.
fn bounded<C: RaftTypeConfig>(
    mut req: AppendEntriesRequest<C>,
    budget: u64,
) -> (AppendEntriesRequest<C>, Option<LogId<C::NodeId>>) {
    let mut total = 0u64;
    let mut keep = req.entries.len();
    for (i, e) in req.entries.iter().enumerate() {
        let size = bincode::serialized_size(e).unwrap_or(u64::MAX);
        if i > 0 && total.saturating_add(size) > budget {
            keep = i;
            break;
        }
        total = total.saturating_add(size);
    }
    if keep == req.entries.len() {
        return (req, None);
    }
    req.entries.truncate(keep);
    let last = req.entries.last().map(|e| e.get_log_id().clone());
    (req, last)
}

/// Why an exchange failed, before mapping into openraft's error types.
enum ExchangeError {
    Unreachable(std::io::Error),
    Network(String),
}

impl TcpNetwork {
    async fn exchange<C>(&mut self, request: RaftRequest<C>, ttl: Duration) -> Result<RaftReply<C>, ExchangeError>
    where
        C: RaftTypeConfig<NodeId = u64>,
    {
        self.seq += 1;
        let seq = self.seq;
        let msg = GroupRequest { group: self.group.clone(), from: self.from, session: self.session, seq, request };
        let body = rpc::encode(&msg).map_err(|e| ExchangeError::Network(e.to_string()))?;
        // The connection is taken out for the exchange and put back only after a complete,
        // matching reply. openraft may drop this future at its own deadline; the connection
        // then goes with it, so an unread reply can never answer the next request.
        let mut conn = self.stream.take();
        let result = tokio::time::timeout(ttl, async {
            if conn.is_none() {
                let s = TcpStream::connect(&self.addr).await.map_err(ExchangeError::Unreachable)?;
                s.set_nodelay(true).map_err(ExchangeError::Unreachable)?;
                let mut s = BufReader::new(s);
                let ch =
                    Channel::connect(&mut s, &self.key).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
                conn = Some((s, ch));
            }
            let (stream, ch) = conn.as_mut().expect("connected");
            ch.write(stream, &body).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
            let reply = ch.read(stream, MAX_FRAME_BYTES).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
            let reply = rpc::decode::<GroupReply<C>>(&reply).map_err(|e| ExchangeError::Network(e.to_string()))?;
            if reply.seq != seq {
                return Err(ExchangeError::Network(format!(
                    "reply to request {} received for request {seq}",
                    reply.seq
                )));
            }
            Ok(reply.reply)
        })
        .await
        .unwrap_or_else(|_| {
            Err(ExchangeError::Network(format!("rpc to node {} timed out after {ttl:?}", self.target)))
        });
        if result.is_ok() {
            self.stream = conn;
        }
        result
    }

    fn map_err<E: std::error::Error>(&self, e: ExchangeError) -> RPCError<u64, BasicNode, E> {
        match e {
            ExchangeError::Unreachable(io) => RPCError::Unreachable(Unreachable::new(&io)),
            ExchangeError::Network(msg) => RPCError::Network(NetworkError::new(&std::io::Error::other(msg))),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<u64, BasicNode, E> {
        RPCError::Network(NetworkError::new(&std::io::Error::other("reply does not match request")))
    }
}

impl<C> RaftNetwork<C> for TcpNetwork
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        if std::mem::replace(&mut self.append_unfinished, true) {
            self.append_budget_bytes = (self.append_budget_bytes / 2).max(APPEND_BYTES_BUDGET_MIN);
        }
        let (req, truncated_at) = bounded(req, self.append_budget_bytes);
        let carries_entries = !req.entries.is_empty();
        let started = std::time::Instant::now();
        let result = self.exchange::<C>(RaftRequest::AppendEntries(req), option.hard_ttl()).await;
        if carries_entries && result.is_ok() {
            self.timing.replicated(started.elapsed());
        }
        self.append_unfinished = false;
        self.append_budget_bytes = match &result {
            Err(ExchangeError::Network(_)) => (self.append_budget_bytes / 2).max(APPEND_BYTES_BUDGET_MIN),
            _ => (self.append_budget_bytes * 2).min(APPEND_BYTES_BUDGET),
        };
        match result {
            // Only the first entries went: tell openraft how far the follower really is.
            Ok(RaftReply::AppendEntries(Ok(AppendEntriesResponse::Success))) if truncated_at.is_some() => {
                Ok(AppendEntriesResponse::PartialSuccess(truncated_at))
            }
            Ok(RaftReply::AppendEntries(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.map_err(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        match self.exchange::<C>(RaftRequest::InstallSnapshot(req), option.hard_ttl()).await {
            Ok(RaftReply::InstallSnapshot(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.map_err(e)),
        }
    }

    async fn vote(
        &mut self,
        req: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.exchange::<C>(RaftRequest::Vote(req), option.hard_ttl()).await {
            Ok(RaftReply::Vote(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.map_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::MailConfig;
    use openraft::Vote;
    use tokio::net::TcpListener;

    /// A peer that answers each vote request with the request's `seq` as the term, the
    /// first one only after `first_delay`.
    async fn slow_first_peer(listener: TcpListener, key: ClusterKey, first_delay: Duration) {
        let mut first = true;
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = BufReader::new(s);
            let mut ch = Channel::accept(&mut s, &key).await.unwrap();
            while let Ok(body) = ch.read(&mut s, MAX_FRAME_BYTES).await {
                let req: GroupRequest<MailConfig> = rpc::decode(&body).unwrap();
                if std::mem::take(&mut first) {
                    tokio::time::sleep(first_delay).await;
                }
                let reply = RaftReply::<MailConfig>::Vote(Ok(VoteResponse {
                    vote: Vote::new(req.seq, 9),
                    vote_granted: true,
                    last_log_id: None,
                }));
                if ch.write(&mut s, &rpc::encode(&GroupReply { seq: req.seq, reply }).unwrap()).await.is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn append_entries_are_cut_to_the_byte_budget_but_never_to_nothing() {
        use crate::mailstore::{MailOp, MailRequest, OpId};
        use openraft::{CommittedLeaderId, Entry, EntryPayload};
        let entry = |index: u64, bytes: usize| Entry::<MailConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(MailRequest {
                op_id: OpId([index as u8; 16]),
                op: MailOp::Deliver { recipients: vec!["a".into()], internal_date: 0, message: vec![b'x'; bytes] },
            }),
        };
        let req = |entries| AppendEntriesRequest::<MailConfig> {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries,
        };
        let (r, cut) = bounded(req(vec![entry(1, 600_000), entry(2, 600_000), entry(3, 10)]), APPEND_BYTES_BUDGET);
        assert_eq!((r.entries.len(), cut.map(|l| l.index)), (1, Some(1)));
        let (r, cut) = bounded(req(vec![entry(1, 3_000_000), entry(2, 10)]), APPEND_BYTES_BUDGET);
        assert_eq!((r.entries.len(), cut.map(|l| l.index)), (1, Some(1)), "one big entry still goes");
        let (r, cut) = bounded(req((1..=100).map(|i| entry(i, 1000)).collect()), APPEND_BYTES_BUDGET);
        assert_eq!((r.entries.len(), cut), (100, None), "small batches go whole");
        let (r, cut) = bounded(req((1..=100).map(|i| entry(i, 1000)).collect()), APPEND_BYTES_BUDGET_MIN);
        assert!(r.entries.len() < 40 && cut.is_some(), "a shrunk budget sends fewer: {}", r.entries.len());
    }

    #[tokio::test]
    async fn a_cancelled_exchange_never_lends_its_reply_to_the_next_request() {
        let key = ClusterKey::from_secret("test secret");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(slow_first_peer(listener, key.clone(), Duration::from_millis(300)));
        let mut factory = TcpNetworkFactory::new("g", 1, key);
        let mut net =
            <TcpNetworkFactory as RaftNetworkFactory<MailConfig>>::new_client(&mut factory, 9, &BasicNode { addr })
                .await;
        let req = VoteRequest { vote: Vote::new(1, 1), last_log_id: None };
        let option = RPCOption::new(Duration::from_secs(5));
        // The caller gives up first (as openraft's own deadline does), dropping the future.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(50),
            RaftNetwork::<MailConfig>::vote(&mut net, req.clone(), option.clone()),
        )
        .await;
        assert!(cancelled.is_err(), "the first exchange should still be waiting");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = RaftNetwork::<MailConfig>::vote(&mut net, req, option).await.expect("second exchange");
        assert_eq!(second.vote.leader_id().term, 2, "the second request got the first one's reply");
    }
}
