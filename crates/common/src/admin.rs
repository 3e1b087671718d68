//! The admin protocol of storage nodes: what front nodes and `mailctl` ask a node (status,
//! the outbound queue of a group), as messages and one authenticated client. Pure data
//! plus a small client; the server side lives in `storaged`. Every message travels in a
//! cluster-key [`Channel`] frame, so only holders of the cluster secret may speak it.
//!
//! Never carries passwords or other secrets; a message body is the only bulk payload.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::frame::FrameError;
use crate::rpc_channel::{Channel, ClusterKey};

/// How a storage node says that a user's mail moved to another mailhost (group), in LMTP
/// replies and login refusals: `... mailbox moved to mailhost apollo`.
pub const MOVED_REPLY: &str = "mailbox moved to mailhost";

/// The refusal naming `target` as the mailhost a user's mail moved to.
pub fn moved_reply(target: &str) -> String {
    format!("{MOVED_REPLY} {target}")
}

/// The mailhost a [`MOVED_REPLY`] names, if `text` carries one.
pub fn moved_target(text: &str) -> Option<&str> {
    let rest = &text[text.find(MOVED_REPLY)? + MOVED_REPLY.len()..];
    let name = rest.strip_prefix(' ')?;
    let end = name.find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))).unwrap_or(name.len());
    (end > 0).then(|| &name[..end])
}

/// Largest admin frame: one queued message (64 MiB at most) plus its envelope.
pub const FRAME_MAX_BYTES: u32 = 65 << 20;

/// Where one recipient of a queued message stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientState {
    Pending,
    Delivered,
    /// Permanently refused (or expired); the text is the reply that says why.
    Failed(String),
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    pub state: RecipientState,
}

/// A queued message's envelope and delivery state (its body is read separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Unique within the group (the log index that queued it).
    pub id: u64,
    /// Envelope sender; empty for bounces (the null sender).
    pub sender: String,
    pub recipients: Vec<QueuedRecipient>,
    /// Unix seconds when the message was queued.
    pub created_s: i64,
    pub attempts: u32,
    /// Unix seconds of the next attempt.
    pub next_attempt_s: i64,
    /// The last temporary failure, for operators.
    pub last_error: Option<String>,
    pub size_bytes: u64,
    /// The runner that holds it now, and until when (unix seconds).
    pub lease: Option<(String, i64)>,
}

impl QueueItem {
    /// Recipients still waiting for delivery.
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.recipients.iter().filter(|r| r.state == RecipientState::Pending).map(|r| r.address.as_str())
    }
}

/// What one delivery attempt of a queued message achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptOutcome {
    pub delivered: Vec<String>,
    /// `(recipient, reply)`: refused for good.
    pub failed: Vec<(String, String)>,
    /// Recipients still pending get another attempt at this time (unix seconds).
    pub retry_at_s: i64,
    /// Why the pending ones were not delivered.
    pub error: Option<String>,
    /// Each recipient tried, where it went and the reply (for message tracking).
    pub tried: Vec<TriedRecipient>,
}

/// One recipient of a queue attempt: the host or mailhost it was handed to (empty if none
/// answered) and the reply that decided its fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TriedRecipient {
    pub address: String,
    pub via: String,
    pub reply: String,
}

/// One Raft group as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub name: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Leader only: per follower, the index it has replicated up to.
    pub replication: Vec<(u64, Option<u64>)>,
    pub disk_bytes: u64,
    pub users: u64,
    pub queued: u64,
    /// Whether the group takes new mail (a majority of its voters' disks above their reserve).
    pub has_room: bool,
}

/// One message of a mailbox as a move copies it (its bytes are fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSummary {
    pub uid: u32,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub modseq: u64,
    pub size_bytes: u64,
    /// Its EMAILID (RFC 8474), which a move keeps.
    pub email_id: u64,
    /// Its save date (RFC 8514), which a move keeps; 0: not known.
    pub saved_s: i64,
}

/// One mailbox of a user, everything a move must preserve but the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSummary {
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub subscribed: bool,
    pub messages: Vec<MessageSummary>,
    /// Its METADATA entries (RFC 5464), name and value.
    pub metadata: Vec<(String, serde_bytes::ByteBuf)>,
}

/// A user's mail on one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMail {
    /// `active`, `frozen` or `moved to GROUP`.
    pub state: String,
    pub mailboxes: Vec<MailboxSummary>,
    /// The user's server METADATA entries (RFC 5464, mailbox `""`).
    pub server_metadata: Vec<(String, serde_bytes::ByteBuf)>,
    /// The user's Sieve scripts (name, text) and which one is active.
    pub scripts: Vec<(String, String)>,
    pub active_script: Option<String>,
    /// The user's own retention of kept mail in seconds, if one was set.
    pub retention_s: Option<u64>,
}

/// One node's answer to [`AdminRequest::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub groups: Vec<GroupStatus>,
    /// The data directory's disk is below its reserve.
    pub disk_low: bool,
    pub disk_free_bytes: u64,
}

/// An answer as an operator reads it: refusals and failures in the node's words, the
/// rest by kind (never Rust's debug text of its data).
impl std::fmt::Display for AdminReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Refused(why) => return write!(f, "refused: {why}"),
            Self::Failed(why) => return write!(f, "failed: {why}"),
            Self::NotLeader { leader: Some(l) } => return write!(f, "not the leader (node {l} is)"),
            Self::NotLeader { leader: None } => return write!(f, "not the leader (none elected yet; try again)"),
            Self::NoSuchGroup => return write!(f, "no such group on that node"),
            Self::Done => "done",
            Self::Status(_) => "a status",
            Self::Queued { .. } => "a queue id",
            Self::Items(_) => "queue items",
            Self::Message(_) => "a message",
            Self::Applied(_) => "an applied operation",
            Self::UserMail(_) => "a user's mail",
            Self::Messages(_) => "messages",
            Self::Fates(_) => "fate counts",
            Self::Logins(_) => "login records",
            Self::Blocks { .. } => "blocks",
            Self::Tickets(_) => "tickets",
            Self::Opened { .. } => "an opened ticket",
            Self::Trace { .. } => "tracking records",
            Self::Kept { .. } => "kept messages",
            Self::KeptFiles(_) => "kept message files",
            Self::KeyedMessage { .. } => "a message",
        };
        write!(f, "an unexpected answer ({kind}): is every node and mailctl the same version?")
    }
}

/// A request to a storage node. Queue requests name the group whose queue they touch and
/// must reach its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    Status,
    /// Queue a message; the reply comes once the queue entry is committed. `key`: the
    /// client's retry key a front's own delivery attempt of it carried (`XMSGKEY`), which
    /// the queue's runner delivers with (see [`AdminReply::KeyedMessage`]).
    Enqueue {
        group: String,
        op_id: [u8; 16],
        sender: String,
        recipients: Vec<String>,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
        key: Option<[u8; 16]>,
    },
    /// Lease up to `max` messages that are due, for `lease_s` seconds, to `holder`.
    Claim {
        group: String,
        holder: String,
        lease_s: u32,
        max: u32,
    },
    /// The body of a queued message.
    Read {
        group: String,
        id: u64,
    },
    /// Record the outcome of an attempt.
    Record {
        group: String,
        id: u64,
        holder: String,
        outcome: AttemptOutcome,
    },
    List {
        group: String,
    },
    /// Drop messages from the queue without delivering them.
    Delete {
        group: String,
        ids: Vec<u64>,
    },
    /// Make messages due now (all of them if `ids` is empty).
    Flush {
        group: String,
        ids: Vec<u64>,
    },
    /// Commit a mail operation (bincode of storaged's `MailOp`) as is: the moves' imports,
    /// freezes and deletions. The answer is `Applied` with the bincode of its result.
    Propose {
        group: String,
        op_id: [u8; 16],
        #[serde(with = "serde_bytes")]
        op: Vec<u8>,
    },
    /// A user's mailboxes with every message's UID, flags and MODSEQ.
    UserMail {
        group: String,
        user: String,
    },
    /// The bytes of messages (fewer than asked when they exceed the frame budget).
    FetchMessages {
        group: String,
        user: String,
        mailbox: String,
        uids: Vec<u32>,
    },
    /// Add node `id` (reached at `raft`) to the group: as a learner until it has caught up,
    /// then as a voter.
    AddNode {
        group: String,
        id: u64,
        raft: String,
    },
    /// Remove node `id` from the group's voters (and learners); refused when it would
    /// leave the group without a spare voter or take its answering leader, unless `force`.
    RemoveNode {
        group: String,
        id: u64,
        force: bool,
    },
    /// Start serving a new group on this node (sent to every member); the lowest-numbered
    /// member initializes it. Remembered across restarts.
    CreateGroup {
        group: String,
        members: Vec<GroupMember>,
    },
    /// Add a front's fate counts to the group's tally: `(day, fate, detail, messages)`
    /// rows; a retried batch carries the same `op_id` and is counted once.
    CountFates {
        group: String,
        op_id: [u8; 16],
        counts: Vec<(i64, String, String, u64)>,
    },
    /// The group's whole fate tally (answered with `Fates`).
    Fates {
        group: String,
    },
    /// Record a successful login of `user` (a user of the group) and answer with the
    /// user's whole history, this login included (`Logins`).
    RecordLogin {
        group: String,
        user: String,
        op_id: [u8; 16],
        record: crate::logins::LoginRecord,
    },
    /// The user's login history (answered with `Logins`).
    Logins {
        group: String,
        user: String,
    },
    /// Change the group's defence records (blocks, tickets, locks); an opened ticket is
    /// answered with `Opened`.
    Security {
        group: String,
        op_id: [u8; 16],
        change: crate::security::SecurityChange,
    },
    /// The networks blocked now and the users locked cluster-wide (answered with `Blocks`).
    Blocks {
        group: String,
    },
    /// Every ticket kept (answered with `Tickets`).
    Tickets {
        group: String,
    },
    /// Queue a message held for review (answered with `Queued`).
    EnqueueHeld {
        group: String,
        op_id: [u8; 16],
        sender: String,
        recipients: Vec<String>,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
        reason: String,
    },
    /// A user's kept mail (expunged messages, deleted folders) that may be restored.
    Kept {
        group: String,
        user: String,
    },
    /// The message-tracking records of every group this node holds that `query` selects
    /// (any replica answers: each keeps its own copy).
    Trace(crate::tracking::TraceQuery),
    /// Add node `id` (reached at `raft`) as a backup: a learner that copies the group's log
    /// and never votes; it may keep expunged mail longer (`[retention] backup_keep_s`).
    /// Removed with `RemoveNode`.
    AddBackup {
        group: String,
        id: u64,
        raft: String,
    },
    /// A read answered from the receiving node's own replica of the group, leader or not
    /// (a backup's copy, when the voters lost theirs).
    FromReplica(ReplicaRead),
    /// The bytes and flags of kept messages `(set, file)` of a user (a restore from a
    /// backup, whose sets the voters no longer have); the answer may stop early (a size
    /// bound): ask again for the rest.
    KeptFiles {
        group: String,
        user: String,
        items: Vec<(String, String)>,
    },
    /// Recipients a front refused before any mailhost took the message, to be tracked; a
    /// retried batch carries the same `op_id` and is recorded once.
    FrontRefusals {
        group: String,
        op_id: [u8; 16],
        refusals: Vec<crate::tracking::FrontRefusal>,
    },
}

/// The reads one node answers from its own replica ([`AdminRequest::FromReplica`]): a
/// type of its own, not a boxed request, so a frame cannot nest requests without bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaRead {
    UserMail { group: String, user: String },
    FetchMessages { group: String, user: String, mailbox: String, uids: Vec<u32> },
    Kept { group: String, user: String },
    KeptFiles { group: String, user: String, items: Vec<(String, String)> },
    Logins { group: String, user: String },
}

impl ReplicaRead {
    /// The replica read `request` is, if it is one of them.
    pub fn of(request: AdminRequest) -> Option<Self> {
        Some(match request {
            AdminRequest::UserMail { group, user } => Self::UserMail { group, user },
            AdminRequest::FetchMessages { group, user, mailbox, uids } => {
                Self::FetchMessages { group, user, mailbox, uids }
            }
            AdminRequest::Kept { group, user } => Self::Kept { group, user },
            AdminRequest::KeptFiles { group, user, items } => Self::KeptFiles { group, user, items },
            AdminRequest::Logins { group, user } => Self::Logins { group, user },
            _ => return None,
        })
    }

    /// The same read as an ordinary request.
    pub fn into_request(self) -> AdminRequest {
        match self {
            Self::UserMail { group, user } => AdminRequest::UserMail { group, user },
            Self::FetchMessages { group, user, mailbox, uids } => {
                AdminRequest::FetchMessages { group, user, mailbox, uids }
            }
            Self::Kept { group, user } => AdminRequest::Kept { group, user },
            Self::KeptFiles { group, user, items } => AdminRequest::KeptFiles { group, user, items },
            Self::Logins { group, user } => AdminRequest::Logins { group, user },
        }
    }

    pub fn group(&self) -> &str {
        match self {
            Self::UserMail { group, .. }
            | Self::FetchMessages { group, .. }
            | Self::Kept { group, .. }
            | Self::KeptFiles { group, .. }
            | Self::Logins { group, .. } => group,
        }
    }
}

/// One kept message with its bytes (see [`AdminRequest::KeptFiles`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFile {
    pub set: String,
    pub file: String,
    pub mailbox: String,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    /// `None`: the set or the file is gone (purged meanwhile).
    pub bytes: Option<serde_bytes::ByteBuf>,
}

/// One kept message, as `mailctl restore` chooses among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptItem {
    /// Its set (the entry that removed it) and file, which a restore names.
    pub set: String,
    /// `GROUP/INDEX` of the set a move brought this set from (none: removed here).
    pub origin: Option<String>,
    pub file: String,
    /// The folder it was in, and whether the folder was deleted (else: expunged).
    pub mailbox: String,
    pub folder_deleted: bool,
    /// The whole user was deleted (every folder of theirs is kept together).
    pub user_deleted: bool,
    /// When the retention clock started for it (`None`: not yet, it was removed since the
    /// last purge).
    pub kept_since_s: Option<i64>,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub size: u64,
    pub message_id: String,
    pub subject: String,
    /// Filed again already by an earlier restore.
    pub restored: bool,
}

/// A member of a group being created: its node id, Raft and LMTP addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub id: u64,
    pub raft: String,
    pub lmtp: String,
}

impl AdminRequest {
    /// The existing group a request is about (`None`: the node itself).
    pub fn group(&self) -> Option<&str> {
        match self {
            AdminRequest::Status | AdminRequest::CreateGroup { .. } | AdminRequest::Trace(_) => None,
            AdminRequest::Enqueue { group, .. }
            | AdminRequest::Claim { group, .. }
            | AdminRequest::Read { group, .. }
            | AdminRequest::Record { group, .. }
            | AdminRequest::List { group }
            | AdminRequest::Delete { group, .. }
            | AdminRequest::Flush { group, .. }
            | AdminRequest::Propose { group, .. }
            | AdminRequest::UserMail { group, .. }
            | AdminRequest::FetchMessages { group, .. }
            | AdminRequest::AddNode { group, .. }
            | AdminRequest::RemoveNode { group, .. }
            | AdminRequest::CountFates { group, .. }
            | AdminRequest::Fates { group }
            | AdminRequest::RecordLogin { group, .. }
            | AdminRequest::Logins { group, .. }
            | AdminRequest::Security { group, .. }
            | AdminRequest::Blocks { group }
            | AdminRequest::Tickets { group }
            | AdminRequest::EnqueueHeld { group, .. }
            | AdminRequest::Kept { group, .. }
            | AdminRequest::AddBackup { group, .. }
            | AdminRequest::KeptFiles { group, .. }
            | AdminRequest::FrontRefusals { group, .. } => Some(group),
            AdminRequest::FromReplica(read) => Some(read.group()),
        }
    }
}

/// A node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Status(NodeStatus),
    Queued {
        id: u64,
    },
    Items(Vec<QueueItem>),
    Message(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The bincode of the operation's result.
    Applied(Vec<u8>),
    UserMail(UserMail),
    /// `(uid, bytes)`; `None` for a message expunged meanwhile.
    Messages(Vec<(u32, Option<serde_bytes::ByteBuf>)>),
    Done,
    /// Ask the leader instead (its node id, if known).
    NotLeader {
        leader: Option<u64>,
    },
    NoSuchGroup,
    /// The request was understood and refused (queue full, bad address, ...).
    Refused(String),
    /// The node could not do it now (commit timed out, I/O error); try again.
    Failed(String),
    /// `(day, fate, detail, messages)` rows of the fate tally.
    Fates(Vec<(i64, String, String, u64)>),
    /// A user's login history, oldest first.
    Logins(Vec<crate::logins::LoginRecord>),
    Blocks {
        blocks: Vec<crate::security::BlockEntry>,
        /// Users snagged and not released: every front refuses their logins and mail.
        locked: Vec<String>,
    },
    Tickets(Vec<crate::security::Ticket>),
    /// A ticket opened with this id.
    Opened {
        id: u64,
    },
    /// A user's kept messages, oldest set first, and whether more were left out.
    Kept {
        items: Vec<KeptItem>,
        truncated: bool,
    },
    /// Kept messages with their bytes, in the order asked (perhaps fewer).
    KeptFiles(Vec<KeptFile>),
    /// Tracking records, and whether more matched than one answer holds.
    Trace {
        records: Vec<crate::tracking::TrackRecord>,
        truncated: bool,
    },
    /// The body of a queued message that was queued with a retry key (see
    /// [`AdminRequest::Enqueue`]); [`AdminReply::Message`] for the others.
    KeyedMessage {
        body: serde_bytes::ByteBuf,
        key: [u8; 16],
    },
}

/// Admin client errors.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{addr}: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("{addr}: bad message: {reason}")]
    Codec { addr: String, reason: String },
    #[error("{addr}: no answer within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
}

/// What a storage node tells a locked account's login (fronts show it as it is).
pub const LOCKED_TEXT: &str = "account locked; contact your administrator";

/// Encode a message for a frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    bincode::serialize(msg).expect("admin messages serialize")
}

/// Decode a message from a frame, bounded by the frame's size.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(u64::from(FRAME_MAX_BYTES))
        .deserialize(bytes)
}

/// One authenticated connection to a node's admin listener.
pub struct AdminClient {
    addr: String,
    conn: BufReader<TcpStream>,
    channel: Channel,
}

impl AdminClient {
    /// Connect and authenticate within `timeout`.
    pub async fn connect(addr: &str, key: &ClusterKey, timeout: std::time::Duration) -> Result<Self, AdminError> {
        let timed_out = || AdminError::Timeout { addr: addr.to_string(), timeout_ms: timeout.as_millis() as u64 };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| AdminError::Connect { addr: addr.to_string(), source })?;
        stream.set_nodelay(true).map_err(|source| AdminError::Connect { addr: addr.to_string(), source })?;
        let mut conn = BufReader::new(stream);
        let channel = tokio::time::timeout(timeout, Channel::connect(&mut conn, key))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| AdminError::Frame { addr: addr.to_string(), source })?;
        Ok(Self { addr: addr.to_string(), conn, channel })
    }

    /// Send `request` and wait at most `timeout` for the answer.
    pub async fn call(
        &mut self,
        request: &AdminRequest,
        timeout: std::time::Duration,
    ) -> Result<AdminReply, AdminError> {
        let addr = self.addr.clone();
        let exchange = async {
            self.channel.write(&mut self.conn, &encode(request)).await?;
            self.channel.read(&mut self.conn, FRAME_MAX_BYTES).await
        };
        let body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AdminError::Timeout { addr: addr.clone(), timeout_ms: timeout.as_millis() as u64 })?
            .map_err(|source| AdminError::Frame { addr: addr.clone(), source })?;
        decode(&body).map_err(|e| AdminError::Codec { addr, reason: e.to_string() })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_moved_reply_names_its_target() {
        assert_eq!(moved_target("451 4.2.1 <a@b> mailbox moved to mailhost apollo"), Some("apollo"));
        assert_eq!(moved_target("NO [UNAVAILABLE] mailbox moved to mailhost h-2.x; reconnect"), Some("h-2.x"));
        assert_eq!(moved_target("mailbox moved to mailhost "), None);
        assert_eq!(moved_target("451 4.3.0 temporary failure"), None);
    }
    use super::*;

    #[test]
    fn replica_reads_are_the_reads_and_nothing_else() {
        let read = AdminRequest::Kept { group: "hermes".into(), user: "a@b".into() };
        let r = ReplicaRead::of(read.clone()).unwrap();
        assert_eq!((r.group(), r.clone().into_request()), ("hermes", read));
        let wrapped = AdminRequest::FromReplica(r);
        assert_eq!(decode::<AdminRequest>(&encode(&wrapped)).unwrap(), wrapped);
        assert_eq!(wrapped.group(), Some("hermes"));
        let write = AdminRequest::RemoveNode { group: "hermes".into(), id: 2, force: true };
        assert_eq!(ReplicaRead::of(write), None, "a write is never a replica read");
    }

    #[test]
    fn requests_roundtrip_and_garbage_is_an_error() {
        let r = AdminRequest::Enqueue {
            group: "hermes".into(),
            op_id: [7; 16],
            sender: "a@b".into(),
            recipients: vec!["c@d".into()],
            message: b"x".to_vec(),
            key: Some([9; 16]),
        };
        assert_eq!(decode::<AdminRequest>(&encode(&r)).unwrap(), r);
        assert!(decode::<AdminRequest>(&[0xff; 3]).is_err());
        // A length prefix claiming 2^60 bytes is refused, not allocated.
        let mut huge = encode(&AdminRequest::Read { group: "g".into(), id: 1 });
        huge[0] = 1;
        huge[4..12].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<AdminRequest>(&huge).is_err());
    }
}
