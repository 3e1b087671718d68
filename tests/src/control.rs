//! The test harness's control protocol for `raft-node` processes: one bincode message per
//! `common::frame` frame, request then reply. Test-only; not a product interface.

use common::frame;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

/// Largest control frame.
pub const MAX_CONTROL_FRAME: u32 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Make this node initialize the cluster with all configured peers as voters.
    Initialize,
    /// Commit `count` writes (keys `first_key..`) with `value_len`-byte values, at most
    /// `concurrency` in flight; only the leader accepts this.
    Write { first_key: u64, count: u64, value_len: usize, concurrency: usize },
    /// Report this node's Raft status.
    Status,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub applied_count: u64,
    pub digest: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControlReply {
    Ok,
    Written { last_index: u64 },
    NotLeader { leader: Option<u64> },
    Status(NodeStatus),
    Error(String),
}

/// Send one request to the node at `addr` and return its reply.
pub async fn call(addr: &str, req: &ControlRequest) -> anyhow::Result<ControlReply> {
    let mut s = TcpStream::connect(addr).await?;
    frame::write(&mut s, &bincode::serialize(req)?).await?;
    let reply = frame::read(&mut s, MAX_CONTROL_FRAME).await?;
    Ok(bincode::deserialize(&reply)?)
}
