//! The receiving side of Raft RPC: accept connections, authenticate them with the cluster
//! key, and hand each request to the local `Raft` of the group it names. One task per
//! connection, requests answered in order; a frame that fails authentication or decoding
//! closes the connection and never reaches Raft.

use std::collections::HashMap;
use std::sync::Arc;

use common::frame::FrameError;
use common::rpc_channel::{Channel, ClusterKey};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use super::rpc::{self, GroupReply, GroupRequest, RaftReply, RaftRequest, MAX_FRAME_BYTES};
use super::snapshot_receipt::{leader_silence, SnapshotReceipt};
use super::timing::RpcTiming;

/// The groups this node serves, by name (a group created at runtime is added here).
pub type Groups<C> = Arc<std::sync::RwLock<HashMap<String, Served<C>>>>;

/// One group as the RPC server sees it.
pub struct Served<C: RaftTypeConfig> {
    pub raft: Raft<C>,
    /// Where snapshot chunks from the leader are recorded (see `snapshot_receipt`).
    pub receipt: Arc<SnapshotReceipt>,
}

impl<C: RaftTypeConfig> Served<C> {
    /// `raft`, with no snapshot chunk taken yet.
    pub fn new(raft: Raft<C>) -> Self {
        Self { raft, receipt: Arc::default() }
    }
}

impl<C: RaftTypeConfig> Clone for Served<C> {
    fn clone(&self) -> Self {
        Self { raft: self.raft.clone(), receipt: self.receipt.clone() }
    }
}

/// Where a peer's request for a message's bytes is answered (a repair of its copy).
pub trait MessageFiles: Send + Sync + 'static {
    /// The bytes of message `uid` of this replica, checked against its checksum.
    fn read(&self, group: &str, user: &str, mailbox: &str, uid: u32) -> Result<Option<Vec<u8>>, ReadError>;
    /// Whether this node's disk has room (above its reserve).
    fn disk_room(&self) -> bool;
}

/// Why this replica gave no copy to a peer (sent to it as text: the wire is shared by nodes
/// of different versions).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("this node does not serve {0}")]
    NotServed(String),
    #[error("{0}")]
    BadName(String),
    #[error(transparent)]
    Access(#[from] crate::group::access::AccessError),
    #[error("read task failed: {0}")]
    Task(String),
}

/// Per (group, sender, client session): the last request sequence processed. The async
/// mutex also serializes processing of one client's requests across its connections.
/// Bounded: the oldest sessions are forgotten first.
#[derive(Default)]
struct Order {
    streams: HashMap<(String, u64, u64), Arc<tokio::sync::Mutex<u64>>>,
    age: std::collections::VecDeque<(String, u64, u64)>,
}

/// Client sessions remembered per node, across all groups and senders.
const ORDER_STREAMS_MAX: usize = 4096;

impl Order {
    fn stream(&mut self, key: (String, u64, u64)) -> Arc<tokio::sync::Mutex<u64>> {
        if let Some(s) = self.streams.get(&key) {
            return s.clone();
        }
        if self.age.len() >= ORDER_STREAMS_MAX {
            if let Some(old) = self.age.pop_front() {
                self.streams.remove(&old);
            }
        }
        self.age.push_back(key.clone());
        self.streams.entry(key).or_default().clone()
    }
}

type SharedOrder = Arc<std::sync::Mutex<Order>>;

/// Serve Raft RPCs arriving on `listener` until the listener fails.
pub async fn serve<C>(
    listener: TcpListener,
    groups: Groups<C>,
    key: ClusterKey,
    files: Arc<dyn MessageFiles>,
    timing: Arc<dyn RpcTiming>,
) -> std::io::Result<()>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    let order: SharedOrder = Arc::default();
    loop {
        let (stream, peer) = listener.accept().await?;
        let groups = groups.clone();
        let key = key.clone();
        let order = order.clone();
        let (files, timing) = (files.clone(), timing.clone());
        tokio::spawn(async move {
            match serve_conn(stream, groups, key, order, files, timing).await {
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    tracing::warn!(%peer, error = %e, "refused raft rpc connection");
                }
                Err(e) => tracing::debug!(%peer, error = %e, "raft rpc connection ended"),
                Ok(()) => {}
            }
        });
    }
}

/// How long [`leader_contact_ms`] waits for Raft's answer: a node whose Raft cannot answer
/// that quickly is no evidence that the leader lives.
const CONTACT_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// Milliseconds since this node last heard from its leader (0 on the leader itself; a
/// snapshot chunk counts), if it knows one and its Raft answers within
/// [`CONTACT_ANSWER_WAIT`].
async fn leader_contact_ms<C>(served: &Served<C>) -> Option<u64>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    use openraft::Instant;
    let ask = served.raft.with_raft_state(|st| match st.server_state {
        openraft::ServerState::Leader => Some(Some(std::time::Duration::ZERO)),
        _ => Some(st.vote_last_modified().map(|at| at.elapsed())),
    });
    let vote = tokio::time::timeout(CONTACT_ANSWER_WAIT, ask).await.ok()?.ok()??;
    leader_silence(vote, &served.receipt).map(|d| d.as_millis() as u64)
}

/// A test fault (`FAILPOINTS=raft::slow-snapshot-chunk=return(MS)`): each snapshot chunk is
/// held that long before Raft sees it, as on a busy disk or a slow link. Nothing without the
/// `failpoints` feature.
fn slow_chunk_fault() -> std::time::Duration {
    fail::fail_point!("raft::slow-snapshot-chunk", |ms| {
        std::time::Duration::from_millis(ms.and_then(|ms| ms.parse().ok()).unwrap_or(0))
    });
    std::time::Duration::ZERO
}

/// Hand a snapshot chunk to Raft, recording it as contact with the leader if taken.
async fn install_chunk<C>(served: &Served<C>, req: openraft::raft::InstallSnapshotRequest<C>) -> RaftReply<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    let mut receiving = served.receipt.begin();
    let sender = req.vote;
    let delay = slow_chunk_fault();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let reply = served.raft.install_snapshot(req).await;
    // openraft answers with this replica's vote; a sender at least that has been obeyed.
    if reply.as_ref().is_ok_and(|r| sender >= r.vote) {
        receiving.accepted();
    }
    RaftReply::InstallSnapshot(reply)
}

/// The answer of group `group`'s replica `served` to `request`.
async fn answer<C>(
    served: &Served<C>,
    request: RaftRequest<C>,
    group: &str,
    files: &Arc<dyn MessageFiles>,
    timing: &dyn RpcTiming,
) -> RaftReply<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    match request {
        RaftRequest::AppendEntries(r) => {
            let (carries_entries, started) = (!r.entries.is_empty(), std::time::Instant::now());
            let reply = served.raft.append_entries(r).await;
            if carries_entries {
                timing.follower_appended(started.elapsed());
            }
            RaftReply::AppendEntries(reply)
        }
        RaftRequest::Vote(r) => RaftReply::Vote(served.raft.vote(r).await),
        RaftRequest::InstallSnapshot(r) => install_chunk(served, r).await,
        RaftRequest::ReadMessage { user, mailbox, uid } => {
            let (files, group) = (files.clone(), group.to_string());
            let read = tokio::task::spawn_blocking(move || files.read(&group, &user, &mailbox, uid)).await;
            let read = read.unwrap_or_else(|e| Err(ReadError::Task(e.to_string())));
            RaftReply::Message(read.map(|m| m.map(serde_bytes::ByteBuf::from)).map_err(|e| e.to_string()))
        }
        RaftRequest::DiskRoom => RaftReply::DiskRoom(files.disk_room()),
        RaftRequest::LastLogIndex => RaftReply::LastLogIndex(served.raft.metrics().borrow().last_log_index),
        RaftRequest::LeaderContact => RaftReply::LeaderContact(leader_contact_ms(served).await),
    }
}

async fn serve_conn<C>(
    stream: TcpStream,
    groups: Groups<C>,
    key: ClusterKey,
    order: SharedOrder,
    files: Arc<dyn MessageFiles>,
    timing: Arc<dyn RpcTiming>,
) -> Result<(), FrameError>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let mut ch = Channel::accept(&mut stream, &key).await?;
    loop {
        let body = match ch.read(&mut stream, MAX_FRAME_BYTES).await {
            Ok(b) => b,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let msg: GroupRequest<C> =
            rpc::decode(&body).map_err(|e| FrameError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        // Only Raft's own requests change state and need their order kept; the queries
        // (a message's bytes, the disk's room) are answered as they come and take no slot
        // in the bounded order table (a probe every half second would churn it).
        let raft_request = matches!(
            msg.request,
            RaftRequest::AppendEntries(_) | RaftRequest::Vote(_) | RaftRequest::InstallSnapshot(_)
        );
        let slot =
            raft_request.then(|| order.lock().expect("order lock").stream((msg.group.clone(), msg.from, msg.session)));
        let mut last = match &slot {
            Some(slot) => Some(slot.lock().await),
            None => None,
        };
        if let Some(last) = &mut last {
            if msg.seq <= **last {
                // Abandoned by its sender and overtaken by a later request: never apply it.
                tracing::debug!(group = %msg.group, from = msg.from, seq = msg.seq, "dropping stale raft request");
                return Ok(());
            }
            **last = msg.seq;
        }
        let served = groups.read().expect("groups lock").get(&msg.group).cloned();
        let reply: RaftReply<C> = match served {
            None => RaftReply::NoSuchGroup(msg.group),
            Some(served) => answer(&served, msg.request, &msg.group, &files, &*timing).await,
        };
        drop(last);
        let out =
            rpc::encode(&GroupReply { seq: msg.seq, reply }).map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
        ch.write(&mut stream, &out).await?;
    }
}
