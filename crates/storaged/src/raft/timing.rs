//! What the Raft RPC layer reports of its own time: how long an AppendEntries carrying
//! entries took from the leader's send to the follower's answer, and how long a follower
//! spent taking one (its log write and fsync through openraft). Heartbeats are not
//! timed: they would hide the entries' figures. An observer must never block or fail.

use std::time::Duration;

/// Where the RPC layer reports its timings (the node's metrics).
pub trait RpcTiming: Send + Sync + 'static {
    /// On the leader: an AppendEntries with entries came back after `elapsed`.
    fn replicated(&self, elapsed: Duration);
    /// On a follower: an AppendEntries with entries was taken in `elapsed`.
    fn follower_appended(&self, elapsed: Duration);
}

/// Reports nowhere (tools and tests that run Raft without a node's metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct Untimed;

impl RpcTiming for Untimed {
    fn replicated(&self, _: Duration) {}
    fn follower_appended(&self, _: Duration) {}
}
