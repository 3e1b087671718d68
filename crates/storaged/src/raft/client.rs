//! The sending side of Raft RPC: one lazily (re)connected, authenticated TCP stream per
//! target node and group. A failed exchange drops the connection; the next RPC reconnects.
//! Every exchange is bounded by openraft's per-RPC time limit.

use std::time::Duration;

use common::auth::{Channel, ClusterKey};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftTypeConfig};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::rpc::{self, GroupReply, GroupRequest, RaftReply, RaftRequest, MAX_FRAME_BYTES};

/// Makes one [`TcpNetwork`] per target, addressed by the node's `BasicNode::addr`, for
/// the Raft group `group`.
#[derive(Debug, Clone)]
pub struct TcpNetworkFactory {
    group: String,
    from: u64,
    key: ClusterKey,
}

impl TcpNetworkFactory {
    /// Client side for group `group` on node `from`.
    pub fn new(group: impl Into<String>, from: u64, key: ClusterKey) -> Self {
        Self { group: group.into(), from, key }
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
        match self.exchange::<C>(RaftRequest::AppendEntries(req), option.hard_ttl()).await {
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
