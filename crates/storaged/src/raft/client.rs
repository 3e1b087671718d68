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

use super::rpc::{self, GroupRequest, RaftReply, RaftRequest, MAX_FRAME_BYTES};

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
        let msg =
            GroupRequest { group: self.group.clone(), from: self.from, session: self.session, seq: self.seq, request };
        let body = rpc::encode(&msg).map_err(|e| ExchangeError::Network(e.to_string()))?;
        let result = tokio::time::timeout(ttl, async {
            if self.stream.is_none() {
                let s = TcpStream::connect(&self.addr).await.map_err(ExchangeError::Unreachable)?;
                s.set_nodelay(true).map_err(ExchangeError::Unreachable)?;
                let mut s = BufReader::new(s);
                let ch =
                    Channel::connect(&mut s, &self.key).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
                self.stream = Some((s, ch));
            }
            let (stream, ch) = self.stream.as_mut().expect("connected");
            ch.write(stream, &body).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
            let reply = ch.read(stream, MAX_FRAME_BYTES).await.map_err(|e| ExchangeError::Network(e.to_string()))?;
            rpc::decode::<RaftReply<C>>(&reply).map_err(|e| ExchangeError::Network(e.to_string()))
        })
        .await
        .unwrap_or_else(|_| {
            Err(ExchangeError::Network(format!("rpc to node {} timed out after {ttl:?}", self.target)))
        });
        if result.is_err() {
            self.stream = None;
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
