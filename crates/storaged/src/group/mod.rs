//! One mailhost group on this node: its raftlog, Maildir state machine and openraft
//! instance, plus the background checkpoint task.

pub mod access;
mod batch;
pub mod fields_file;
pub mod header_cache;
mod leader_watch;
mod peer_query;
mod prompt_election;
pub mod readiness;
mod repair;
pub mod room;
mod scrub;
pub mod sm;
mod snapshot_data;
mod snapshot_schedule;
mod snapshots;
mod training;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::rpc_channel::ClusterKey;
use openraft::{BasicNode, Config as RaftConfig, Raft, SnapshotPolicy};
use raftlog::{Log, Options, RaftLogStore};

pub use sm::{MailConfig, MailStateMachine};

use crate::config::{Config, GroupConfig, Member};
use crate::mailstore::{MailOp, MailRequest, OpId};
use crate::raft::snapshot_receipt::SnapshotReceipt;
use crate::raft::{Served, TcpNetworkFactory};

/// How long a login waits for a leader still applying its log before it is refused
/// (`[UNAVAILABLE]`, `-ERR [SYS/TEMP]`; the front tries again within its route timeout).
pub const READ_WAIT_MAX: Duration = Duration::from_secs(3);
/// How often dirty state is checkpointed when the group is not busy enough to do it itself.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// Errors opening a group.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("group {group}: log: {source}")]
    Log { group: String, source: raftlog::Error },
    #[error("group {group}: store: {source}")]
    Store { group: String, source: crate::mailstore::StoreError },
    #[error("group {group}: raft: {reason}")]
    Raft { group: String, reason: String },
    #[error("[training] password_file {path}: {source}")]
    TrainingPassword { path: std::path::PathBuf, source: std::io::Error },
}

/// A running group replica.
pub struct Group {
    pub name: String,
    pub raft: Raft<MailConfig>,
    pub sm: MailStateMachine,
    pub members: BTreeMap<u64, Member>,
    /// This node's id, and the key its RPCs to peers are authenticated with (repairs).
    node_id: u64,
    key: ClusterKey,
    repairs: repair::Repairs,
    /// Which IMAP session first saw each message (`\Recent`), for sessions on this node.
    pub recent: crate::imap::recent::RecentClaims,
    /// Headers of messages read on this node, for SEARCH and FETCH of header data.
    headers: header_cache::HeaderCache,
    /// The fields of those headers SORT and THREAD read (`imap::header::SORT_FIELDS`): a
    /// fifth of the bytes, so a large mailbox's fit where its whole headers would not.
    sort_fields: header_cache::HeaderCache,
    /// Serializes reads and writes of the mailboxes' fields files (`fields_file`).
    fields_file: std::sync::Mutex<()>,
    /// Where small single-user writes wait to share a log entry.
    batcher: batch::Batcher,
    /// What this node must have applied before it serves reads as leader.
    barrier: readiness::Barrier,
    /// This node's disk, and what the other voters said of theirs (`room`).
    disk: Arc<crate::disk::DiskWatch>,
    peer_room: room::PeerRoom,
    /// The leader's id, moving only when it changes (`leader_watch`).
    leader: tokio::sync::watch::Receiver<Option<u64>>,
    /// Snapshot chunks taken from the leader (contact with it, for elections).
    snapshot_receipt: Arc<SnapshotReceipt>,
}

impl Group {
    /// Open (or create) this node's replica of `gcfg` under `cfg.data_dir`, and start Raft.
    pub async fn open(
        cfg: &Config,
        gcfg: &GroupConfig,
        key: ClusterKey,
        (metrics, disk): (Arc<crate::metrics::NodeMetrics>, Arc<crate::disk::DiskWatch>),
    ) -> Result<Arc<Self>, GroupError> {
        let name = gcfg.name.clone();
        let dir = cfg.data_dir.join(&name);
        let log = Log::open(dir.join("raft"), log_options())
            .map_err(|source| GroupError::Log { group: name.clone(), source })?;
        tracing::info!(group = %name, report = ?log.open_report(), "raft log opened");
        let fresh = log.bounds().1.is_none() && log.meta().vote.is_none();
        let sm = MailStateMachine::open_tracking(&dir, &name, cfg.tracking.clone())
            .map_err(|source| GroupError::Store { group: name.clone(), source })?
            .with_keep_floor(cfg.retention.backup_keep_s.unwrap_or(0))
            .with_disk(disk.clone())
            .with_metrics(metrics.clone());
        let purged = log.open_report().purged.map(|r| r.index);
        sm.reconcile_snapshot(purged).map_err(|source| GroupError::Store { group: name.clone(), source })?;
        let raft_cfg = RaftConfig {
            cluster_name: name.clone(),
            heartbeat_interval: cfg.raft.heartbeat_ms,
            election_timeout_min: cfg.raft.election_min_ms,
            election_timeout_max: cfg.raft.election_max_ms,
            // `snapshot_schedule` asks for builds, one replica at a time.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: cfg.raft.keep_logs,
            purge_batch_size: 256,
            // Installing a snapshot unpacks the whole tree when the last chunk arrives.
            install_snapshot_timeout: 30_000,
            snapshot_max_chunk_size: 1 << 20,
            ..RaftConfig::default()
        }
        .validate()
        .map_err(|e| GroupError::Raft { group: name.clone(), reason: e.to_string() })?;
        let network = TcpNetworkFactory::new(&name, cfg.node_id, key.clone()).with_timing(metrics.clone());
        let scrub_log = log.clone();
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(raft_cfg),
            network,
            RaftLogStore::<MailConfig>::new(log).with_purge_gate(sm.durable()).with_observer(metrics.clone()),
            sm.clone(),
        )
        .await
        .map_err(|e| GroupError::Raft { group: name.clone(), reason: e.to_string() })?;
        let members: BTreeMap<u64, Member> = gcfg.members.iter().map(|m| (m.id, m.clone())).collect();
        // A brand-new group is initialized by its lowest-numbered member, once.
        if fresh && members.keys().next() == Some(&cfg.node_id) {
            let voters: BTreeMap<u64, BasicNode> =
                members.iter().map(|(id, m)| (*id, BasicNode { addr: m.raft.clone() })).collect();
            if let Err(e) = raft.initialize(voters).await {
                tracing::info!(group = %name, error = %e, "initialize skipped");
            }
        }
        let repairs = repair::Repairs::default();
        let batcher = batch::Batcher::start(raft.clone(), name.clone(), metrics);
        let leader = leader_watch::follow(raft.metrics(), |m| m.current_leader);
        let group = Arc::new(Self {
            name,
            raft,
            sm,
            members,
            node_id: cfg.node_id,
            key,
            repairs,
            recent: Default::default(),
            headers: header_cache::HeaderCache::new(cfg.limits.header_cache_bytes),
            sort_fields: header_cache::HeaderCache::new(cfg.limits.sort_cache_bytes),
            fields_file: std::sync::Mutex::new(()),
            batcher,
            barrier: readiness::Barrier::default(),
            disk,
            peer_room: room::PeerRoom::default(),
            leader,
            snapshot_receipt: Arc::default(),
        });
        tokio::spawn(room::ask_peers(Arc::downgrade(&group)));
        // openraft 0.9's leader lease is election_timeout_max.
        let lease = Duration::from_millis(cfg.raft.election_max_ms);
        tokio::spawn(prompt_election::prompt_elections(Arc::downgrade(&group), lease));
        tokio::spawn(snapshot_schedule::schedule(Arc::downgrade(&group), scrub_log.clone(), cfg.raft.clone()));
        tokio::spawn(checkpoint_loop(group.sm.clone(), group.name.clone()));
        tokio::spawn(expire_quarantine_loop(group.clone(), cfg.quarantine.clone()));
        tokio::spawn(purge_kept_loop(group.clone(), cfg.retention.clone()));
        let scrub_every = Duration::from_secs(cfg.retention.scrub_every_s);
        tokio::spawn(scrub::scrub_loop(group.clone(), scrub_log, scrub_every));
        if let Some(teacher) = teacher(cfg)? {
            tokio::spawn(training::train_loop(group.clone(), teacher));
        }
        tokio::spawn(exit_when_fatal(group.raft.clone(), group.name.clone()));
        Ok(group)
    }

    /// This group as the Raft RPC server serves it.
    pub fn served(&self) -> Served<MailConfig> {
        Served { raft: self.raft.clone(), receipt: self.snapshot_receipt.clone() }
    }

    /// Whether node `id` (this node) is the group's leader right now.
    pub fn is_leader(&self, id: u64) -> bool {
        self.leader() == Some(id)
    }

    /// A watch that moves whenever the group's leader changes (and only then); it ends
    /// when Raft stops.
    pub fn leader_changes(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.leader.clone()
    }

    /// Whether this node may serve reads now (see `readiness`).
    pub fn read_gate(&self) -> readiness::ReadGate {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let view = readiness::RaftView {
            term: m.current_term,
            state: m.state,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
        };
        self.barrier.gate(self.node_id, view)
    }

    /// Wait (at most `wait`) until this node may serve reads: `Ready`, or why not.
    pub async fn readable(&self, wait: Duration) -> readiness::ReadGate {
        let mut metrics = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let gate = self.read_gate();
            if !matches!(gate, readiness::ReadGate::CatchingUp { .. }) {
                return gate;
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.read_gate(),
            }
        }
    }

    /// Why reads are not served here, for a client (`None` when they are).
    pub async fn unreadable_reason(&self, wait: Duration) -> Option<String> {
        match self.readable(wait).await {
            readiness::ReadGate::Ready => None,
            readiness::ReadGate::NotLeader(leader) => Some(format!(
                "this node does not lead mailhost {}; {}",
                self.name,
                leader.map_or("no leader elected yet".to_string(), |id| format!("its leader is node {id}"))
            )),
            readiness::ReadGate::CatchingUp { applied_index, needed_index } => Some(format!(
                "mailhost {} is catching up after a restart or election (applied {applied_index} of {needed_index}); retry shortly",
                self.name
            )),
        }
    }

    /// LMTP address of the current leader, if one is known.
    pub fn leader_lmtp(&self) -> Option<String> {
        let leader = self.leader()?;
        self.member_lmtp(leader)
    }

    /// LMTP address of member `id`.
    pub fn member_lmtp(&self, id: u64) -> Option<String> {
        self.members.get(&id).map(|m| m.lmtp.clone())
    }
}

/// The exit status of a node whose group stopped on a storage error (`EX_IOERR`).
pub const EXIT_GROUP_FAILED: i32 = 74;

/// Size of a group log's segment files. A log holds a few (the one being written, those
/// behind it that a purge has not freed yet, one made ahead), and each is preallocated
/// whole, so they are a fixed cost of every group on every replica: small, but many times
/// the largest entry.
const LOG_SEGMENT_BYTES: u64 = 4 << 20;
/// Largest entry a group appends: a batch holds at most `batch::BATCH_BYTES_MAX` of
/// requests and a request above `staging::PART_BYTES` is cut into parts, so entries stay
/// near 1 MiB; this leaves room for encoding and never refuses one of those.
const LOG_ENTRY_MAX_BYTES: u32 = 2 << 20;

fn log_options() -> Options {
    const _: () =
        assert!(batch::BATCH_BYTES_MAX + crate::mailstore::staging::PART_BYTES as u64 * 2 < LOG_ENTRY_MAX_BYTES as u64);
    Options { segment_bytes: LOG_SEGMENT_BYTES, max_payload_bytes: LOG_ENTRY_MAX_BYTES, ..Options::default() }
}

/// A group whose Raft stopped on a fatal error (a storage error: disk full, EIO, a corrupt
/// record) takes the node down, loudly: a node that goes on serving its other groups while
/// one silently stopped is worse than one that restarts from its durable state (its
/// supervisor restarts it; recovery replays the log onto the last checkpoint). A normal
/// shutdown is not fatal.
async fn exit_when_fatal(raft: Raft<MailConfig>, group: String) {
    let mut metrics = raft.metrics();
    loop {
        let fatal = match &metrics.borrow_and_update().running_state {
            Err(openraft::error::Fatal::Stopped) => return,
            Err(fatal) => Some(fatal.to_string()),
            Ok(()) => None,
        };
        if let Some(fatal) = fatal {
            tracing::error!(%group, error = %fatal, "raft stopped on a fatal error; the node exits to restart from disk");
            std::process::exit(EXIT_GROUP_FAILED);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The rspamd controller and password `[training]` names, if any.
fn teacher(cfg: &Config) -> Result<Option<training::Teacher>, GroupError> {
    let Some(controller) = cfg.training.rspamd_controller.clone() else { return Ok(None) };
    let password = match &cfg.training.password_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| GroupError::TrainingPassword { path: path.clone(), source })?
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        None => String::new(),
    };
    Ok(Some(training::Teacher { controller, password }))
}

/// While this node leads the group, propose the quarantine's expiry every
/// `expire_every_s`, and its digest once `digest_every_s` have passed since the last one,
/// with this node's clock as the time every replica goes by.
async fn expire_quarantine_loop(group: Arc<Group>, settings: crate::config::QuarantineSettings) {
    let every = settings.expire_every_s.clamp(1, 60);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
    let mut last_expiry = 0i64;
    loop {
        tick.tick().await;
        if !group.is_leader(group.node_id) {
            continue;
        }
        let now_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if now_s - last_expiry >= settings.expire_every_s as i64 {
            let op = MailOp::ExpireQuarantine { now_s, retention_s: settings.retention_s };
            if propose(&group, b"expire-quarantine", now_s, op).await {
                last_expiry = now_s;
            }
        }
        let last_digest = group.sm.store().lock().expect("store lock").digest_through_s();
        if settings.digest_every_s > 0 && now_s - last_digest >= settings.digest_every_s as i64 {
            let op = MailOp::QuarantineDigest { now_s, retention_s: settings.retention_s };
            propose(&group, b"quarantine-digest", now_s, op).await;
        }
    }
}

/// While this node leads the group, propose the purge of kept mail every `purge_every_s`
/// with this node's clock as the time every replica goes by.
async fn purge_kept_loop(group: Arc<Group>, settings: crate::config::RetentionSettings) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(settings.purge_every_s.max(1)));
    loop {
        tick.tick().await;
        if group.is_leader(group.node_id) {
            let now_s =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            propose(&group, b"purge-kept", now_s, MailOp::PurgeKept { now_s, retention_s: settings.keep_s }).await;
        }
    }
}

/// Commit a timed housekeeping operation; whether it was committed.
async fn propose(group: &Group, what: &[u8], now_s: i64, op: MailOp) -> bool {
    let op_id = OpId::digest(&[what, &now_s.to_le_bytes()]);
    match group.write(MailRequest { op_id, op }).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(group = %group.name, error = %e, what = %String::from_utf8_lossy(what), "not committed; next round retries");
            false
        }
    }
}

async fn checkpoint_loop(sm: MailStateMachine, group: String) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    loop {
        tick.tick().await;
        let sm2 = sm.clone();
        let result = tokio::task::spawn_blocking(move || sm2.checkpoint_if_dirty()).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(%group, error = %e, "checkpoint failed"),
            Err(e) => tracing::error!(%group, error = %e, "checkpoint task panicked"),
        }
    }
}
