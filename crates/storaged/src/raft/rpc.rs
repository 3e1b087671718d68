//! The Raft RPC messages exchanged between storage nodes, and their encoding into frames.
//! Pure data: no sockets here.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::RaftTypeConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest RPC frame a node accepts: bounds memory per connection.
pub const MAX_FRAME_BYTES: u32 = 64 << 20;

/// A request from one Raft node to another.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RaftRequest<C: RaftTypeConfig> {
    AppendEntries(AppendEntriesRequest<C>),
    Vote(VoteRequest<C::NodeId>),
    InstallSnapshot(InstallSnapshotRequest<C>),
    /// Not Raft: the bytes of a message from this node's replica, to repair the sender's
    /// damaged copy (answered only with bytes that pass this replica's checksum).
    ReadMessage {
        user: String,
        mailbox: String,
        uid: u32,
    },
    /// Not Raft: whether this node's disk has room (see `group::room`).
    DiskRoom,
    /// Not Raft: the index of the last entry this node holds, asked by a follower that would
    /// stand for election (see `group::prompt_election`). Older nodes decode the variants
    /// above as before.
    LastLogIndex,
    /// Not Raft: how long ago this node last heard from its leader (as the leader: now),
    /// asked by a follower that would stand (see `group::prompt_election`). Last among the
    /// variants.
    LeaderContact,
}

/// A request addressed to one Raft group of the receiving node.
///
/// `from`, `session` and `seq` order the requests of one sender: a sender sends one request
/// at a time per target, and a request that times out is abandoned, not retried on the same
/// connection. The receiver processes requests of one (group, sender, session) strictly in
/// `seq` order and drops any that arrive after a later one was processed, so an abandoned
/// request still queued in a dead connection can never be applied out of order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct GroupRequest<C: RaftTypeConfig> {
    pub group: String,
    pub from: u64,
    pub session: u64,
    pub seq: u64,
    pub request: RaftRequest<C>,
}

/// The answer to a [`RaftRequest`], carrying the remote Raft's own error if it failed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RaftReply<C: RaftTypeConfig> {
    AppendEntries(Result<AppendEntriesResponse<C::NodeId>, RaftError<C::NodeId>>),
    Vote(Result<VoteResponse<C::NodeId>, RaftError<C::NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<C::NodeId>, RaftError<C::NodeId, InstallSnapshotError>>),
    /// The receiving node does not serve that group.
    NoSuchGroup(String),
    /// The answer to [`RaftRequest::ReadMessage`]: `None` if this replica does not hold it.
    Message(Result<Option<serde_bytes::ByteBuf>, String>),
    /// The answer to [`RaftRequest::DiskRoom`].
    DiskRoom(bool),
    /// The answer to [`RaftRequest::LastLogIndex`].
    LastLogIndex(Option<u64>),
    /// The answer to [`RaftRequest::LeaderContact`], in milliseconds; `None` if this node
    /// knows of no leader or its Raft did not answer at once.
    LeaderContact(Option<u64>),
}

/// The answer to the [`GroupRequest`] with the same `seq`. The sender checks `seq`, so a
/// reply can never be taken for the answer to a different request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct GroupReply<C: RaftTypeConfig> {
    pub seq: u64,
    pub reply: RaftReply<C>,
}

/// A message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("rpc codec: {0}")]
pub struct CodecError(#[from] bincode::Error);

/// Encode a message body (framing is added by `common::frame`).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serialize(msg)?)
}

/// Decode a message body, bounded by the frame it came in.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    use bincode::Options;
    Ok(bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(u64::from(MAX_FRAME_BYTES))
        .deserialize(bytes)?)
}
