//! The Maildir store: applies mail operations deterministically to per-user Maildir++
//! trees and their indexes.
//!
//! Determinism: UIDVALIDITY, UIDs, MODSEQs and file names come only from the operation and
//! its log index (`R<index>_<n>` in every file name, the group name as host part), never
//! from this replica's clock or randomness, so replicas hold identical trees.
//!
//! Durability: message files are written without fsync and indexes are kept in memory
//! between checkpoints. A checkpoint flushes indexes, syncs the filesystem, and only then
//! records the last applied log id. After a crash the store reopens at its last checkpoint
//! and openraft re-applies the log from there; re-applying is idempotent (per-mailbox
//! `applied_index`, deterministic file names, tolerant renames and unlinks). The log must
//! not be purged past the last checkpoint: snapshots checkpoint first.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use super::fileio::FileWriter;
use super::index::{new_email_id, MailboxIndex, MessageMeta, INDEX_FILE};
use super::metadata;
use super::names::{Layout, MailboxName, UserName};
use super::ops::{
    info_letters, FlagMode, FlagState, MailOp, MailRequest, MailResponse, MetadataChange, OpId, UserState,
};
use super::queue::Queue;
use super::readers::{ReadLease, Readers};
use super::rejection::Rejection;
use super::spare::Spares;
use super::staging::{self, PartOutcome, PartRef, StagedStream, Staging};

mod filtered;
mod kept;
use filtered::ScriptChange;

/// Operations remembered for idempotency.
pub const DEDUP_MAX: usize = 100_000;
/// Largest message the store accepts.
pub const MESSAGE_MAX: usize = 64 << 20;
/// Mailbox indexes kept in memory when clean; dirty ones stay until the next checkpoint.
const CLEAN_CACHE_MAX: usize = 4096;
const STATE_FILE: &str = "sm.state";
/// Names one [`MailOp::Provision`] may carry, created and subscribed together (a first
/// login sends twelve).
const PROVISION_NAMES_MAX: usize = 64;

/// What the store persists besides the trees, written at each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreState {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    pub dedup: Vec<(OpId, u64, MailResponse)>,
    /// The outbound queue's envelopes (bodies are files under `queue/`).
    pub queue: Vec<common::admin::QueueItem>,
    /// Users frozen or moved away by a move (absent: active).
    pub user_states: Vec<(String, UserState)>,
    /// Large operations whose parts are partly applied.
    pub staging: Vec<StagedStream>,
    /// The scanning stages' fates per day (see `fates`).
    pub fates: Vec<super::fates::FateRow>,
    /// Spam-training intents waiting, and what was learned (see `training`).
    pub training: super::training::TrainingState,
    /// The time of the last quarantine digest (`0`: none yet).
    pub digest_through_s: i64,
    /// Blocked networks, tickets of snagged accounts, locked users (`common::security`).
    pub security: common::security::SecurityState,
    /// Retry keys of queued messages, by queue id (see `Queue::key`).
    pub queue_keys: Vec<(u64, [u8; 16])>,
}

/// The state file of an earlier format: the current layout's first fields up to the one
/// that format lacked. bincode writes fields back to back without names, so an older file
/// decodes as a prefix of the current one (a tuple of the same fields encodes the same);
/// the fields it lacks take their defaults. Longest first: bincode ignores trailing bytes.
fn decode_state(body: &[u8]) -> bincode::Result<StoreState> {
    use bincode::deserialize as de;
    type Base = (Option<LogId<u64>>, StoredMembership<u64, BasicNode>, Vec<(OpId, u64, MailResponse)>);
    type Queue = Vec<common::admin::QueueItem>;
    type Users = Vec<(String, UserState)>;
    type Staged = Vec<StagedStream>;
    type Fates = Vec<super::fates::FateRow>;
    type Training = super::training::TrainingState;
    let base = |(last_applied, membership, dedup): Base| StoreState {
        last_applied,
        membership,
        dedup,
        ..StoreState::default()
    };
    type Digest = i64;
    type Security = common::security::SecurityState;
    de::<StoreState>(body)
        .or_else(|_| {
            de::<(Base, Queue, Users, Staged, Fates, Training, Digest, Security)>(body).map(
                |(b, queue, user_states, staging, fates, training, digest_through_s, security)| StoreState {
                    queue,
                    user_states,
                    staging,
                    fates,
                    training,
                    digest_through_s,
                    security,
                    ..base(b)
                },
            )
        })
        .or_else(|_| {
            de::<(Base, Queue, Users, Staged, Fates, Training, Digest)>(body).map(
                |(b, queue, user_states, staging, fates, training, digest_through_s)| StoreState {
                    queue,
                    user_states,
                    staging,
                    fates,
                    training,
                    digest_through_s,
                    ..base(b)
                },
            )
        })
        .or_else(|_| {
            de::<(Base, Queue, Users, Staged, Fates, Training)>(body).map(
                |(b, queue, user_states, staging, fates, training)| StoreState {
                    queue,
                    user_states,
                    staging,
                    fates,
                    training,
                    ..base(b)
                },
            )
        })
        .or_else(|_| {
            de::<(Base, Queue, Users, Staged, Fates)>(body).map(|(b, queue, user_states, staging, fates)| StoreState {
                queue,
                user_states,
                staging,
                fates,
                ..base(b)
            })
        })
        .or_else(|_| {
            de::<(Base, Queue, Users, Staged)>(body).map(|(b, queue, user_states, staging)| StoreState {
                queue,
                user_states,
                staging,
                ..base(b)
            })
        })
        .or_else(|_| {
            de::<(Base, Queue, Users)>(body).map(|(b, queue, user_states)| StoreState { queue, user_states, ..base(b) })
        })
        .or_else(|_| de::<(Base, Queue)>(body).map(|(b, queue)| StoreState { queue, ..base(b) }))
        .or_else(|_| de::<Base>(body).map(base))
}

type BoxKey = (UserName, MailboxName);

/// A checkpoint whose state is captured but not yet durable.
pub struct PendingCheckpoint {
    root: PathBuf,
    body: Vec<u8>,
    /// Staged parts no longer needed once this checkpoint is durable.
    finished_parts: Vec<PathBuf>,
}

impl PendingCheckpoint {
    /// What [`PendingCheckpoint::finish`] replaces or removes under the store root, as
    /// paths relative to it: the state file and the finished streams' staged parts.
    pub fn changes(&self) -> Vec<PathBuf> {
        let parts = self.finished_parts.iter().filter_map(|p| p.strip_prefix(&self.root).ok());
        std::iter::once(Path::new(STATE_FILE)).chain(parts).map(Path::to_path_buf).collect()
    }

    /// Sync the filesystem, then durably record the captured state as the restart point.
    /// Checkpoints must finish in the order they were prepared (callers serialize them).
    pub fn finish(self) -> Result<(), StoreError> {
        let root = fs::File::open(&self.root).map_err(io_ctx("open store root"))?;
        // SAFETY: plain syscall on a valid descriptor.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&root)) } != 0 {
            return Err(io_ctx("syncfs")(io::Error::last_os_error()));
        }
        let mut bytes = crc32c::crc32c(&self.body).to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.body);
        let tmp = self.root.join("sm.state.tmp");
        fs::write(&tmp, &bytes).map_err(io_ctx("write state"))?;
        fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_ctx("sync state"))?;
        fs::rename(&tmp, self.root.join(STATE_FILE)).map_err(io_ctx("install state"))?;
        root.sync_all().map_err(io_ctx("sync store root"))?;
        staging::remove_finished(&self.finished_parts).map_err(io_ctx("remove staged parts"))
    }
}

/// Where a message's file is and what its bytes must checksum to, with the lease that keeps
/// the file's inode from being reused for another message while it is read.
#[derive(Debug)]
pub struct StoredMessage {
    pub path: PathBuf,
    /// 0: indexed before checksums existed, not checked.
    pub crc32c: u32,
    _lease: ReadLease,
}

/// Whether the fail point `mailstore::read-bitflip` fires (storage-fault tests only).
fn bit_flip_injected() -> bool {
    fail::fail_point!("mailstore::read-bitflip", |_| true);
    false
}

impl StoredMessage {
    /// The file's bytes, checked against the index: a file that does not match (a flipped
    /// bit, a torn or truncated write) is an `InvalidData` error and its bytes are never
    /// returned.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        // Storage-fault tests: a read that fails, or returns a flipped bit.
        fail::fail_point!("mailstore::read-eio", |_| Err(io::Error::from_raw_os_error(libc::EIO)));
        let mut file = fs::File::open(&self.path)?;
        // Race tests: a reader that has opened the file and is slow to read it.
        fail::fail_point!("mailstore::read-opened");
        let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len()).min(1 << 26) as usize);
        io::Read::read_to_end(&mut file, &mut bytes)?;
        if let Some(b) = bytes.last_mut().filter(|_| bit_flip_injected()) {
            *b ^= 0x10;
        }
        self.check(bytes)
    }

    fn check(&self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        if self.crc32c != 0 && crc32c::crc32c(&bytes) != self.crc32c {
            tracing::error!(path = %self.path.display(), "message file fails its checksum; not serving it");
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message file {} is corrupt (checksum mismatch)", self.path.display()),
            ));
        }
        Ok(bytes)
    }
}

/// The state machine's data.
pub struct Store {
    layout: Layout,
    group: String,
    /// Copy-on-write: readers get an `Arc` snapshot; applying clones only a shared index.
    boxes: HashMap<BoxKey, Arc<MailboxIndex>>,
    dirty: BTreeSet<BoxKey>,
    dedup: HashMap<OpId, (u64, MailResponse)>,
    dedup_order: VecDeque<OpId>,
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    files: FileWriter,
    queue: Queue,
    staging: Staging,
    /// Users a move froze or moved away; everyone else is active.
    user_states: HashMap<String, UserState>,
    /// Entries applied since the last checkpoint.
    pub unchecked: u64,
    /// Leases of the readers that may hold message files (see `readers`).
    readers: Readers,
    /// The scanning stages' fates per day.
    fates: super::fates::Fates,
    /// Spam-training intents and what was learned.
    training: super::training::Training,
    /// The time of the last quarantine digest.
    digest_through_s: i64,
    /// Blocked networks, tickets, locked users.
    security: common::security::SecurityState,
    /// Message-tracking records of the entries applied since the state machine last took
    /// them (`tracked`); at most [`TRACKED_PENDING_MAX`].
    tracked: Vec<common::tracking::TrackRecord>,
    /// Kept mail stays at least this long on this replica (a backup's own retention, see
    /// [`Store::set_keep_floor`]); 0 elsewhere.
    keep_floor_s: u64,
    /// An applied entry erased mail for good (a purge of kept mail) since the state
    /// machine last asked (`take_erased`): its bytes must leave the log and snapshot too.
    erased: bool,
    /// The position of the request being applied within its entry (0 but in a batch): what
    /// tells apart ids two requests of one entry would otherwise share (outbound queue ids).
    entry_slot: usize,
}

/// Tracking records held for the state machine at most: one that never takes them (a
/// test's bare store) must not grow without bound.
const TRACKED_PENDING_MAX: usize = 100_000;

/// The queue id of outbound message `k` of the filtered delivery at position `slot` of entry
/// `index` (see `filtered`): the flag bit, the slot in bits 52..58, the index in bits 4..52,
/// `k` below. A request alone in its entry (slot 0) has the id it always had.
pub(crate) fn outbound_queue_id(index: u64, slot: usize, k: usize) -> u64 {
    assert!(index < 1 << 48 && slot < 64 && k <= filtered::OUTBOUND_MAX, "outbound id fields in range");
    filtered::OUTBOUND_ID_BIT | ((slot as u64) << 52) | (index << 4) | k as u64
}

/// Store errors (I/O on the trees; the operations themselves report `Rejected`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error(transparent)]
    Index(#[from] super::index::IndexError),
    #[error("state file: {0}")]
    State(String),
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// UIDVALIDITY for a mailbox created by log entry `index`: nonzero, changes with the entry.
fn uid_validity_for(index: u64) -> u32 {
    (index % u64::from(u32::MAX - 1)) as u32 + 1
}

fn create_maildir(dir: &Path, is_folder: bool) -> io::Result<()> {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    if is_folder {
        fs::write(dir.join("maildirfolder"), b"")?;
    }
    Ok(())
}

/// The first `max` bytes of a file (empty if it cannot be read: a digest then shows blanks).
fn read_prefix(path: &Path, max: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = fs::File::open(path) {
        let _ = f.take(max as u64).read_to_end(&mut buf);
    }
    buf
}

/// The Maildir base name of the `n`th message an entry at log `index` adds: the same on
/// every replica, and how a replay finds what the first apply wrote.
/// A new message as an operation describes it, for [`Store::add_message`].
struct Incoming<'a> {
    flags: u8,
    keywords: &'a [String],
    internal_date: i64,
    /// Its save date (RFC 8514): the proposer's clock, from the log entry.
    saved_s: i64,
    message: &'a [u8],
}

impl<'a> Incoming<'a> {
    /// A delivery: no flags, saved when it arrived.
    fn delivered(internal_date: i64, message: &'a [u8]) -> Self {
        Self { flags: 0, keywords: &[], internal_date, saved_s: internal_date, message }
    }
}

fn message_base(internal_date: i64, index: u64, n: usize, group: &str, len: usize) -> String {
    format!("{internal_date}.R{index}_{n}.{group},S={len}")
}
impl Store {
    /// Open the store rooted at `root` for group `group`, at its last checkpoint.
    pub fn open(root: impl Into<PathBuf>, group: &str) -> Result<Self, StoreError> {
        let layout = Layout::new(root);
        fs::create_dir_all(layout.root().join("users")).map_err(io_ctx("create store root"))?;
        let state = Self::read_state(layout.root())?;
        let root = layout.root().to_path_buf();
        let spare_dir = root.join(super::spare::SPARE_DIR);
        let readers = Readers::default();
        let mut store = Self {
            layout,
            group: group.to_string(),
            boxes: HashMap::new(),
            dirty: BTreeSet::new(),
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
            last_applied: state.last_applied,
            membership: state.membership,
            files: FileWriter::new(Spares::open(spare_dir, readers.clone()).map_err(io_ctx("open spare files"))?)
                .map_err(io_ctx("io_uring"))?,
            queue: Queue::open(&root, state.queue, state.queue_keys).map_err(io_ctx("open queue"))?,
            staging: Staging::open(&root, state.staging).map_err(io_ctx("open staging"))?,
            user_states: state.user_states.into_iter().collect(),
            unchecked: 0,
            readers,
            fates: super::fates::Fates::from_rows(state.fates),
            training: super::training::Training::from_state(state.training),
            digest_through_s: state.digest_through_s,
            security: state.security,
            tracked: Vec::new(),
            keep_floor_s: 0,
            erased: false,
            entry_slot: 0,
        };
        for (id, index, resp) in state.dedup {
            store.remember(id, index, resp);
        }
        Ok(store)
    }

    fn read_state(root: &Path) -> Result<StoreState, StoreError> {
        let path = root.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                if bytes.len() < 4 {
                    return Err(StoreError::State("truncated".into()));
                }
                let (crc, body) = bytes.split_at(4);
                if crc32c::crc32c(body).to_le_bytes() != crc {
                    return Err(StoreError::State("checksum mismatch".into()));
                }
                decode_state(body).map_err(|e| StoreError::State(e.to_string()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StoreState::default()),
            Err(e) => Err(io_ctx("read state")(e)),
        }
    }

    /// Make this replica keep kept mail at least `keep_s` seconds whatever a purge entry
    /// says: a backup (a learner) keeps what the voters purge. The only per-replica rule
    /// of the store; it changes which kept sets exist here, never a mailbox.
    pub fn set_keep_floor(&mut self, keep_s: u64) {
        self.keep_floor_s = keep_s;
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn remember(&mut self, id: OpId, index: u64, resp: MailResponse) {
        if self.dedup.insert(id, (index, resp)).is_none() {
            self.dedup_order.push_back(id);
        }
        while self.dedup_order.len() > DEDUP_MAX {
            if let Some(old) = self.dedup_order.pop_front() {
                self.dedup.remove(&old);
            }
        }
    }

    /// Queue `message` as entry `index`, with the retry key of the attempt before, if any.
    fn enqueue(
        &mut self,
        index: u64,
        (sender, recipients): (&str, &[String]),
        created_s: i64,
        message: &[u8],
        key: Option<[u8; 16]>,
    ) -> Result<MailResponse, StoreError> {
        if message.len() > MESSAGE_MAX {
            return Ok(MailResponse::Rejected(Rejection::TooLarge(MESSAGE_MAX as u64)));
        }
        Ok(match self.queue.enqueue(index, sender, recipients, created_s, message).map_err(io_ctx("queue"))? {
            Ok(id) => {
                if let Some(key) = key {
                    self.queue.set_key(id, key);
                }
                MailResponse::Queued { id }
            }
            Err(refusal) => MailResponse::Rejected(Rejection::Limit(refusal.to_string())),
        })
    }

    /// Apply the operation of log entry `index`.
    pub fn apply(&mut self, index: u64, req: &MailRequest) -> Result<MailResponse, StoreError> {
        if let MailOp::Part { stream, offset, total, crc32c, sent_ms, bytes } = &req.op {
            // Parts are not remembered for idempotency (the staging table is): they would
            // crowd whole operations out of the dedup window.
            self.unchecked += 1;
            let part =
                PartRef { stream: *stream, offset: *offset, total: *total, crc32c: *crc32c, sent_ms: *sent_ms, bytes };
            return match self.staging.apply(part).map_err(io_ctx("staging"))? {
                PartOutcome::Staged => Ok(MailResponse::Staged),
                PartOutcome::Refused(why) => Ok(MailResponse::Rejected(Rejection::Limit(why))),
                PartOutcome::Complete(whole) => match MailRequest::decode_staged(&whole) {
                    Some(inner) => self.apply(index, &inner),
                    None => Ok(MailResponse::Rejected(Rejection::Malformed("staged operation does not decode".into()))),
                },
            };
        }
        if let MailOp::Batch { requests } = &req.op {
            return self.apply_batch(index, requests);
        }
        if let Some((_, resp)) = self.dedup.get(&req.op_id) {
            return Ok(resp.clone());
        }
        let queued = super::tracked::QueuedFacts::read(&self.queue, &req.op);
        let resp = self.apply_op(index, &req.op)?;
        if self.tracked.len() < TRACKED_PENDING_MAX {
            let at = (index, self.entry_slot);
            super::tracked::derive(&self.group, at, &req.op, &resp, queued, &mut self.tracked);
        }
        self.remember(req.op_id, index, resp.clone());
        self.unchecked += 1;
        Ok(resp)
    }

    /// Apply the requests of one entry in order. Only requests of distinct users may share
    /// an entry ([`MailRequest::batch_user`]); any other is refused, on every replica alike,
    /// rather than applied under an entry index another request already used. Each is
    /// applied at its position in the entry (`entry_slot`), for the ids the entry's requests
    /// would otherwise share.
    fn apply_batch(&mut self, index: u64, requests: &[Vec<u8>]) -> Result<MailResponse, StoreError> {
        let mut users = BTreeSet::new();
        let mut out = Vec::with_capacity(requests.len());
        for (slot, bytes) in requests.iter().enumerate() {
            let resp = match MailRequest::decode_batched(bytes) {
                Some(req) if req.batch_user().is_some_and(|user| users.insert(user)) => {
                    self.entry_slot = slot;
                    let applied = self.apply(index, &req);
                    self.entry_slot = 0;
                    applied?
                }
                _ => MailResponse::Rejected(Rejection::Malformed(
                    "operation cannot share a log entry with the others".into(),
                )),
            };
            out.push(resp);
        }
        Ok(MailResponse::Batch(out))
    }

    /// The tracking records of the entries applied since the last call.
    /// Whether an entry applied since the last call erased mail for good.
    pub fn take_erased(&mut self) -> bool {
        std::mem::take(&mut self.erased)
    }

    pub fn take_tracked(&mut self) -> Vec<common::tracking::TrackRecord> {
        std::mem::take(&mut self.tracked)
    }

    /// Make every queued message file visible. Call before answering clients.
    pub fn flush_files(&mut self) -> Result<(), StoreError> {
        self.files.flush().map_err(io_ctx("write message files"))
    }

    fn apply_op(&mut self, index: u64, op: &MailOp) -> Result<MailResponse, StoreError> {
        // Operations that rename or unlink need earlier files of this batch on disk.
        let touches_files = !matches!(
            op,
            MailOp::Deliver { .. }
                | MailOp::DeliverInto { .. }
                | MailOp::Append { .. }
                | MailOp::AppendMany { .. }
                | MailOp::Enqueue { .. }
                | MailOp::EnqueueKeyed { .. }
                | MailOp::QueueClaim { .. }
                | MailOp::QueueRecord { .. }
                | MailOp::QueueAttempt { .. }
                | MailOp::QueueFlush { .. }
                | MailOp::QueueDelete { .. }
                | MailOp::QueueDrop { .. }
                | MailOp::FrontRefusals { .. }
                | MailOp::SetUserState { .. }
        );
        if touches_files {
            self.flush_files()?;
        }
        if let Some(refusal) = op.written_user().and_then(|u| self.move_refusal(u)) {
            return Ok(MailResponse::Rejected(refusal));
        }
        macro_rules! names {
            ($user:expr, $mailbox:expr) => {
                match (UserName::parse($user), MailboxName::parse($mailbox)) {
                    (Ok(u), Ok(m)) => (u, m),
                    (Err(e), _) | (_, Err(e)) => return Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
                }
            };
        }
        match op {
            MailOp::Deliver { recipients, internal_date, message } => {
                self.deliver(index, recipients, &MailboxName::inbox(), *internal_date, message)
            }
            MailOp::DeliverInto { recipients, mailbox, internal_date, message } => match MailboxName::parse(mailbox) {
                Ok(m) => self.deliver(index, recipients, &m, *internal_date, message),
                Err(e) => Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
            },
            MailOp::Append { user, mailbox, flags, keywords, internal_date, message, now_s } => {
                let (u, m) = names!(user, mailbox);
                if m.is_inbox() {
                    self.ensure_inbox(&u, index)?;
                }
                let incoming =
                    Incoming { flags: *flags, keywords, internal_date: *internal_date, saved_s: *now_s, message };
                Ok(match self.add_message(&u, &m, index, 0, incoming) {
                    Ok((uid_validity, uid)) => MailResponse::Appended { uid_validity, uid },
                    Err(e) => MailResponse::Rejected(e),
                })
            }
            MailOp::AppendMany { user, mailbox, messages, now_s } => {
                let (u, m) = names!(user, mailbox);
                if m.is_inbox() {
                    self.ensure_inbox(&u, index)?;
                }
                self.append_many(&u, &m, index, messages, *now_s)
            }
            MailOp::Store { user, mailbox, uids, mode, flags, keywords, unchanged_since } => {
                let (u, m) = names!(user, mailbox);
                self.store_flags(&u, &m, index, uids, *mode, *flags, keywords, *unchanged_since)
            }
            MailOp::Expunge { user, mailbox, uids } => {
                let (u, m) = names!(user, mailbox);
                self.expunge_keeping(&u, &m, index, uids, true)
            }
            MailOp::Copy { user, from, to, uids, now_s } | MailOp::Move { user, from, to, uids, now_s } => {
                let (u, src) = names!(user, from);
                let (_, dst) = names!(user, to);
                let resp = self.copy(&u, &src, &dst, index, uids, Some(*now_s))?;
                if let MailResponse::Copied { pairs, .. } = &resp {
                    if matches!(op, MailOp::Move { .. }) {
                        self.training.relocate(u.as_str(), &src, &dst, pairs);
                    }
                    self.record_training(&u, &src, &dst, index, pairs)?;
                }
                if matches!(op, MailOp::Move { .. }) {
                    if let MailResponse::Copied { pairs, .. } = &resp {
                        let moved: Vec<u32> = pairs.iter().map(|(s, _)| *s).collect();
                        self.expunge(&u, &src, index, &moved)?;
                    }
                }
                Ok(resp)
            }
            MailOp::CreateMailbox { user, mailbox } => {
                let (u, m) = names!(user, mailbox);
                self.create_mailbox(&u, &m, index)
            }
            MailOp::DeleteMailbox { user, mailbox } => {
                let (u, m) = names!(user, mailbox);
                self.delete_mailbox(&u, &m, index)
            }
            MailOp::RenameMailbox { user, from, to } => {
                let (u, src) = names!(user, from);
                let (_, dst) = names!(user, to);
                if src.is_inbox() && !dst.is_inbox() {
                    return self.rename_inbox(&u, &dst, index);
                }
                self.rename_mailbox(&u, &src, &dst)
            }
            MailOp::ImportMessages { user, mailbox, uid_validity, messages } => {
                let (u, m) = names!(user, mailbox);
                self.import(&u, &m, index, *uid_validity, messages)
            }
            MailOp::Subscribe { user, mailbox, subscribed } => {
                let (u, m) = names!(user, mailbox);
                self.subscribe(&u, &[m], *subscribed)
            }
            MailOp::Provision { user, create, subscribe } => self.provision(index, user, create, subscribe),
            MailOp::SetMetadata { user, mailbox, entries } => self.set_metadata(user, mailbox, entries),
            MailOp::PutScript { user, name, script } => self.script_change(user, ScriptChange::Put { name, script }),
            MailOp::DeleteScript { user, name } => self.script_change(user, ScriptChange::Delete { name }),
            MailOp::RenameScript { user, from, to } => self.script_change(user, ScriptChange::Rename { from, to }),
            MailOp::SetActiveScript { user, name } => {
                self.script_change(user, ScriptChange::Activate { name: name.as_deref() })
            }
            MailOp::DeliverFiltered { user, internal_date, message, copies, outbound, remember } => {
                self.deliver_filtered(index, user, *internal_date, message, copies, outbound, remember)
            }
            MailOp::ExpireQuarantine { now_s, retention_s } => self.expire_quarantine(index, *now_s, *retention_s),
            MailOp::QuarantineDigest { now_s, retention_s } => self.quarantine_digest(index, *now_s, *retention_s),
            MailOp::TrainingDone { ids } => {
                self.training.done(ids);
                Ok(MailResponse::Done)
            }
            MailOp::CountFates { counts } => {
                self.fates.add(counts);
                Ok(MailResponse::Done)
            }
            MailOp::Security { change, now_s } => {
                let opened = matches!(change, common::security::SecurityChange::OpenTicket { .. });
                self.security.apply(change, index, *now_s);
                Ok(if opened { MailResponse::Opened { id: index } } else { MailResponse::Done })
            }
            MailOp::EnqueueHeld { sender, recipients, created_s, message, reason } => {
                if message.len() > MESSAGE_MAX {
                    return Ok(MailResponse::Rejected(Rejection::TooLarge(MESSAGE_MAX as u64)));
                }
                Ok(
                    match self.queue.enqueue(index, sender, recipients, *created_s, message).map_err(io_ctx("queue"))? {
                        Ok(id) => {
                            self.queue.hold(id, reason);
                            MailResponse::Queued { id }
                        }
                        Err(refusal) => MailResponse::Rejected(Rejection::Limit(refusal.to_string())),
                    },
                )
            }
            MailOp::RecordLogin { user, at_s, protocol, ip, country, continent, location, front } => {
                let (Ok(u), Ok(ip)) = (UserName::parse(user), ip.parse()) else {
                    return Ok(MailResponse::Rejected(Rejection::Cannot("bad login record".into())));
                };
                // A user who moved away has no directory here any more: never make one.
                if let UserState::MovedTo(target) = self.user_state(user) {
                    return Ok(MailResponse::Rejected(Rejection::MovedTo(target)));
                }
                let record = common::logins::LoginRecord {
                    at_s: *at_s,
                    protocol: protocol.clone(),
                    ip,
                    country: country.clone(),
                    continent: continent.clone(),
                    location: *location,
                    front: front.clone(),
                };
                super::logins::record(&self.layout.user_dir(&u), record).map_err(io_ctx("record a login"))?;
                Ok(MailResponse::Done)
            }
            MailOp::DeleteUser { user } => {
                let u = match UserName::parse(user) {
                    Ok(u) => u,
                    Err(e) => return Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
                };
                self.boxes.retain(|(bu, _), _| *bu != u);
                self.dirty.retain(|(bu, _)| *bu != u);
                match fs::remove_dir_all(self.layout.user_dir(&u)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_ctx("delete user")(e)),
                    _ => {}
                }
                Ok(MailResponse::Done)
            }
            MailOp::SyncMailbox { user, mailbox, uid_validity, uid_next, highest_modseq, states, expunged } => {
                let (u, m) = names!(user, mailbox);
                self.sync_mailbox(&u, &m, index, *uid_validity, *uid_next, *highest_modseq, states, expunged)
            }
            MailOp::SetUserState { user, state } => {
                let u = match UserName::parse(user) {
                    Ok(u) => u,
                    Err(e) => return Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
                };
                match state {
                    UserState::Active => self.user_states.remove(u.as_str()),
                    other => self.user_states.insert(u.as_str().to_string(), other.clone()),
                };
                Ok(MailResponse::Done)
            }
            MailOp::Enqueue { sender, recipients, created_s, message } => {
                self.enqueue(index, (sender, recipients), *created_s, message, None)
            }
            MailOp::EnqueueKeyed { sender, recipients, created_s, key, message } => {
                self.enqueue(index, (sender, recipients), *created_s, message, Some(*key))
            }
            MailOp::QueueClaim { holder, now_s, lease_s, max } => {
                Ok(MailResponse::Claimed(self.queue.claim(holder, *now_s, *lease_s, *max)))
            }
            MailOp::QueueRecord { id, holder, delivered, failed, retry_at_s, error }
            | MailOp::QueueAttempt { id, holder, delivered, failed, retry_at_s, error, .. } => {
                self.queue
                    .record(*id, holder, delivered, failed, *retry_at_s, error.as_deref())
                    .map_err(io_ctx("queue"))?;
                Ok(MailResponse::Done)
            }
            MailOp::QueueDelete { ids } | MailOp::QueueDrop { ids, .. } => {
                self.queue.delete(ids).map_err(io_ctx("queue"))?;
                Ok(MailResponse::Done)
            }
            MailOp::FrontRefusals { .. } => Ok(MailResponse::Done),
            MailOp::PurgeKept { now_s, retention_s } => self.purge_kept(*now_s, *retention_s),
            MailOp::RestoreKept { user, items, into, now_s } => {
                self.restore_kept(index, user, items, into.as_deref(), *now_s)
            }
            MailOp::ImportKept { user, set, messages } => self.import_kept(index, user, set, messages),
            MailOp::RetireUser { user } => match UserName::parse(user) {
                Ok(u) => self.retire_user(index, &u),
                Err(e) => Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
            },
            MailOp::SetRetention { user, keep_s } => match UserName::parse(user) {
                Ok(u) => self.set_retention(&u, *keep_s),
                Err(e) => Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
            },
            MailOp::QueueFlush { ids, now_s } => {
                self.queue.flush(ids, *now_s);
                Ok(MailResponse::Done)
            }
            // `apply` stages parts before they get here.
            MailOp::Part { .. } => {
                Ok(MailResponse::Rejected(Rejection::Malformed("a part cannot be applied on its own".into())))
            }
            MailOp::Batch { .. } => Ok(MailResponse::Rejected(Rejection::Malformed("batches do not nest".into()))),
        }
    }

    /// Why writes to `user`'s mail are refused now (a move froze it or moved it away).
    pub fn move_refusal(&self, user: &str) -> Option<Rejection> {
        match self.user_states.get(user)? {
            UserState::Active => None,
            UserState::Frozen => Some(Rejection::Frozen),
            UserState::MovedTo(group) => Some(Rejection::MovedTo(group.clone())),
        }
    }

    /// Why `user` is locked as compromised, if they are.
    pub fn lock_of(&self, user: &str) -> Option<&str> {
        self.security.lock_of(user)
    }

    /// Blocked networks, tickets and locks of this group.
    pub fn security(&self) -> &common::security::SecurityState {
        &self.security
    }

    /// A user's state here.
    pub fn user_state(&self, user: &str) -> UserState {
        self.user_states.get(user).cloned().unwrap_or(UserState::Active)
    }

    /// Whether this group holds `user`'s mail (their Maildir exists and they did not move).
    pub fn holds(&self, user: &UserName) -> bool {
        !matches!(self.user_state(user.as_str()), UserState::MovedTo(_)) && self.layout.maildir(user).is_dir()
    }

    /// The users this group holds mail for (directory names under `users/`).
    pub fn users(&self) -> Vec<UserName> {
        let mut out: Vec<UserName> = fs::read_dir(self.layout.root().join("users"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| UserName::parse(&e.file_name().into_string().ok()?).ok())
            .collect();
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        out
    }

    /// Spam-training intents waiting, the oldest `max`.
    pub fn training_pending(&self, max: usize) -> Vec<(u64, super::training::Intent)> {
        self.training.pending(max)
    }

    /// Record what a COPY/MOVE from `src` to `dst` teaches the spam filter, one intent per
    /// copied message (ids from the log index: the same on every replica).
    fn record_training(
        &mut self,
        user: &UserName,
        src: &MailboxName,
        dst: &MailboxName,
        index: u64,
        pairs: &[(u32, u32)],
    ) -> Result<(), StoreError> {
        let Some(spam) = super::training::direction(src, dst) else { return Ok(()) };
        let Some(idx) = self.mailbox(user, dst)? else { return Ok(()) };
        let uid_validity = idx.uid_validity;
        let found: Vec<(u32, u64)> = pairs
            .iter()
            .filter_map(|(_, new)| idx.position(*new).map(|p| (*new, idx.messages[p].email_id(uid_validity))))
            .collect();
        for (k, (uid, email_id)) in found.into_iter().enumerate() {
            let intent = super::training::Intent {
                user: user.as_str().to_string(),
                mailbox: dst.as_str().to_string(),
                uid,
                email_id,
                spam,
            };
            self.training.record((index << 16) | (k as u64 & 0xffff), intent);
        }
        Ok(())
    }

    /// The fates counted so far, per day.
    pub fn fates(&self) -> Vec<super::fates::FateRow> {
        self.fates.rows()
    }

    /// The outbound queue (envelopes; bodies through [`Queue::body_path`]).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    // ---- mailbox state ------------------------------------------------------------------

    /// The index of a mailbox, loaded from disk if needed; `None` if it does not exist.
    fn mailbox(&mut self, user: &UserName, mailbox: &MailboxName) -> Result<Option<&mut MailboxIndex>, StoreError> {
        let key = (user.clone(), mailbox.clone());
        if !self.boxes.contains_key(&key) {
            let path = self.layout.mailbox_dir(user, mailbox).join(INDEX_FILE);
            if !path.exists() {
                return Ok(None);
            }
            self.evict_clean();
            let idx = MailboxIndex::load(&path)?;
            self.boxes.insert(key.clone(), Arc::new(idx));
        }
        Ok(self.boxes.get_mut(&key).map(Arc::make_mut))
    }

    fn evict_clean(&mut self) {
        if self.boxes.len() < CLEAN_CACHE_MAX {
            return;
        }
        let dirty = &self.dirty;
        let victims: Vec<BoxKey> =
            self.boxes.keys().filter(|k| !dirty.contains(*k)).take(CLEAN_CACHE_MAX / 4).cloned().collect();
        for k in victims {
            self.boxes.remove(&k);
        }
    }

    /// Expunge quarantined messages delivered before `now_s - retention_s`, for every user
    /// this group holds (but those frozen by a move: the move carries their quarantine).
    fn expire_quarantine(&mut self, index: u64, now_s: i64, retention_s: u64) -> Result<MailResponse, StoreError> {
        let cutoff = now_s.saturating_sub(i64::try_from(retention_s).unwrap_or(i64::MAX));
        let quarantine = MailboxName::parse(super::names::QUARANTINE).expect("a valid mailbox name");
        let mut expired = 0;
        for user in self.users() {
            if self.move_refusal(user.as_str()).is_some() {
                continue;
            }
            let Some(idx) = self.mailbox(&user, &quarantine)? else { continue };
            let old: Vec<u32> = idx.messages.iter().filter(|m| m.internal_date < cutoff).map(|m| m.uid).collect();
            if !old.is_empty() {
                expired += old.len();
                self.expunge(&user, &quarantine, index, &old)?;
            }
        }
        if expired > 0 {
            // Quarantined mail is not kept: its expiry erases it for good.
            self.erased = true;
            tracing::info!(index, expired, cutoff, "quarantined messages past their retention expunged");
        }
        Ok(MailResponse::Done)
    }

    /// When the last quarantine digest went out (`0`: never).
    pub fn digest_through_s(&self) -> i64 {
        self.digest_through_s
    }

    /// Mail each user held messages arrived for since the last digest a list of them (into
    /// their INBOX), then move the mark to `now_s`. The first digest covers a day. Times are
    /// the log's (the proposer's clock and the deliveries' internal dates), never this node's.
    fn quarantine_digest(&mut self, index: u64, now_s: i64, retention_s: u64) -> Result<MailResponse, StoreError> {
        use super::digest::{self, Held};
        let since = match self.digest_through_s {
            0 => now_s - 86_400,
            s => s,
        };
        if now_s <= since {
            return Ok(MailResponse::Done);
        }
        self.digest_through_s = now_s;
        let quarantine = MailboxName::parse(super::names::QUARANTINE).expect("a valid mailbox name");
        let (inbox, mut sent) = (MailboxName::inbox(), 0);
        for user in self.users() {
            if self.move_refusal(user.as_str()).is_some() {
                continue;
            }
            let Some(idx) = self.mailbox(&user, &quarantine)? else { continue };
            // [since, now_s): a message of the digest's own second waits for the next one, so
            // none is listed twice or never (times are whole seconds).
            let new: Vec<MessageMeta> =
                idx.messages.iter().filter(|m| m.internal_date >= since && m.internal_date < now_s).cloned().collect();
            if new.is_empty() {
                continue;
            }
            let held: Vec<Held> = new
                .iter()
                .map(|m| {
                    let head = read_prefix(&self.message_path(&user, &quarantine, m), digest::HEADER_MAX_BYTES);
                    Held {
                        uid: m.uid,
                        internal_date: m.internal_date,
                        score: digest::header(&head, "X-Spam-Score"),
                        from: digest::header(&head, "From"),
                        subject: digest::header(&head, "Subject"),
                    }
                })
                .collect();
            let text = digest::message(user.as_str(), &held, now_s, retention_s, index);
            self.deliver(index, &[user.as_str().to_string()], &inbox, now_s, &text)?;
            sent += 1;
        }
        if sent > 0 {
            tracing::info!(index, users = sent, "quarantine digests delivered");
        }
        Ok(MailResponse::Done)
    }

    /// One message into `mailbox` of each recipient (made and subscribed if missing); one
    /// result per recipient, in order.
    fn deliver(
        &mut self,
        index: u64,
        recipients: &[String],
        mailbox: &MailboxName,
        internal_date: i64,
        message: &[u8],
    ) -> Result<MailResponse, StoreError> {
        let mut out = Vec::with_capacity(recipients.len());
        // A user named twice gets one copy; both positions report it.
        let mut done: HashMap<UserName, Result<(u32, u32), Rejection>> = HashMap::new();
        for (k, rcpt) in recipients.iter().enumerate() {
            out.push(match UserName::parse(rcpt) {
                Ok(user) => {
                    if let Some(refusal) = self.move_refusal(user.as_str()) {
                        Err(refusal)
                    } else if let Some(r) = done.get(&user) {
                        r.clone()
                    } else {
                        self.ensure_mailbox(&user, mailbox, index)?;
                        let r = self.add_message(&user, mailbox, index, k, Incoming::delivered(internal_date, message));
                        done.insert(user, r.clone());
                        r
                    }
                }
                Err(e) => Err(Rejection::Cannot(e.to_string())),
            });
        }
        Ok(MailResponse::Delivered(out))
    }

    /// Make `mailbox` if the user has none by that name, subscribed (a folder mail arrives
    /// in must show in every client).
    fn ensure_mailbox(&mut self, user: &UserName, mailbox: &MailboxName, index: u64) -> Result<(), StoreError> {
        self.ensure_inbox(user, index)?;
        if mailbox.is_inbox() || self.mailbox(user, mailbox)?.is_some() {
            return Ok(());
        }
        self.create_mailbox(user, mailbox, index)?;
        self.subscribe(user, std::slice::from_ref(mailbox), true)?;
        Ok(())
    }

    fn ensure_inbox(&mut self, user: &UserName, index: u64) -> Result<(), StoreError> {
        let inbox = MailboxName::inbox();
        if self.mailbox(user, &inbox)?.is_some() {
            return Ok(());
        }
        create_maildir(&self.layout.maildir(user), false).map_err(io_ctx("create Maildir"))?;
        self.boxes.insert((user.clone(), inbox.clone()), Arc::new(MailboxIndex::new(uid_validity_for(index), index)));
        self.dirty.insert((user.clone(), inbox));
        Ok(())
    }

    fn message_path(&self, user: &UserName, mailbox: &MailboxName, m: &MessageMeta) -> PathBuf {
        let dir = self.layout.mailbox_dir(user, mailbox);
        if m.in_cur {
            dir.join("cur").join(format!("{}:2,{}", m.base, info_letters(m.flags)))
        } else {
            dir.join("new").join(&m.base)
        }
    }

    /// Find a message file by its base name when the index's idea of its path is stale
    /// (a rename applied before a crash, replayed after).
    fn find_by_base(dir: &Path, base: &str) -> Option<PathBuf> {
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(dir.join(sub)) else { continue };
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name == base || name.strip_prefix(base).is_some_and(|rest| rest.starts_with(":2,")) {
                    return Some(e.path());
                }
            }
        }
        None
    }

    /// Store the `n`th new message of entry `index` in `mailbox`: its UID and the mailbox's
    /// UIDVALIDITY, or why not.
    fn add_message(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        n: usize,
        incoming: Incoming<'_>,
    ) -> Result<(u32, u32), Rejection> {
        let Incoming { flags, keywords, internal_date, saved_s, message } = incoming;
        let email_id = new_email_id(&self.group, index, n);
        if message.len() > MESSAGE_MAX {
            return Err(Rejection::TooLarge(MESSAGE_MAX as u64));
        }
        let base = message_base(internal_date, index, n, &self.group, message.len());
        let dir = self.layout.mailbox_dir(user, mailbox);
        let idx = match self.mailbox(user, mailbox) {
            Ok(Some(idx)) => idx,
            Ok(None) => return Err(Rejection::NoMailbox(mailbox.to_string())),
            Err(e) => return Err(Rejection::Other(e.to_string())),
        };
        if idx.applied_index >= index {
            // Replayed after a crash: the message is already there.
            if let Some(m) = idx.messages.iter().find(|m| m.base == base) {
                return Ok((idx.uid_validity, m.uid));
            }
            // Applied by a later entry: this one's is gone (expunged since). The same entry
            // goes on: the next message of an AppendMany, whose replays `append_many` stops.
            if idx.applied_index > index {
                return Err(Rejection::Malformed("already applied".into()));
            }
        }
        let uid = idx.uid_next;
        idx.uid_next += 1;
        idx.highest_modseq += 1;
        idx.applied_index = index;
        let meta = MessageMeta {
            uid,
            base: base.clone(),
            in_cur: flags != 0,
            flags,
            keywords: keywords.to_vec(),
            size: message.len() as u64,
            internal_date,
            modseq: idx.highest_modseq,
            crc32c: crc32c::crc32c(message),
            email_id,
            saved_s,
        };
        let uid_validity = idx.uid_validity;
        idx.messages.push(meta.clone());
        self.dirty.insert((user.clone(), mailbox.clone()));
        let dest = self.message_path(user, mailbox, &meta);
        self.files.queue(dir.join("tmp").join(&base), dest, message.to_vec());
        Ok((uid_validity, uid))
    }

    #[allow(clippy::too_many_arguments)]
    fn store_flags(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        uids: &[u32],
        mode: FlagMode,
        flags: u8,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<MailResponse, StoreError> {
        let dir = self.layout.mailbox_dir(user, mailbox);
        let Some(idx) = self.mailbox(user, mailbox)? else {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox(mailbox.to_string())));
        };
        if idx.applied_index >= index {
            return Ok(MailResponse::Stored { changed: Vec::new(), skipped: Vec::new() });
        }
        let before = std::mem::replace(&mut idx.applied_index, index);
        let (mut changed, mut skipped, mut renames) = (Vec::new(), Vec::new(), Vec::new());
        let mut modseq = idx.highest_modseq;
        for uid in uids {
            let Some(pos) = idx.position(*uid) else { continue };
            let m = &mut idx.messages[pos];
            if unchanged_since.is_some_and(|since| m.modseq > since) {
                skipped.push(*uid);
                continue;
            }
            let new_flags = match mode {
                FlagMode::Set => flags,
                FlagMode::Add => m.flags | flags,
                FlagMode::Remove => m.flags & !flags,
            };
            let mut new_kw = match mode {
                FlagMode::Set => keywords.to_vec(),
                FlagMode::Add => m.keywords.iter().chain(keywords).cloned().collect(),
                FlagMode::Remove => m.keywords.iter().filter(|k| !keywords.contains(k)).cloned().collect(),
            };
            new_kw.sort();
            new_kw.dedup();
            if new_flags == m.flags && new_kw == m.keywords && m.in_cur {
                continue;
            }
            let old = m.clone();
            modseq += 1;
            m.flags = new_flags;
            m.keywords = new_kw;
            m.in_cur = true;
            m.modseq = modseq;
            renames.push((old, m.clone()));
            changed.push(*uid);
        }
        idx.highest_modseq = modseq;
        idx.changes.record(index, before, changed.iter().copied());
        self.dirty.insert((user.clone(), mailbox.clone()));
        self.rename_files(user, mailbox, &dir, renames)?;
        Ok(MailResponse::Stored { changed, skipped })
    }

    /// Give message files the names their new flags call for.
    fn rename_files(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        dir: &Path,
        renames: Vec<(MessageMeta, MessageMeta)>,
    ) -> Result<(), StoreError> {
        for (old, new) in renames {
            let from = self.message_path(user, mailbox, &old);
            let to = self.message_path(user, mailbox, &new);
            if from == to {
                continue;
            }
            match fs::rename(&from, &to) {
                // Only a replay after a crash finds the file under another name (a rename
                // applied after the last checkpoint); search the directory only then.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some(from) = Self::find_by_base(dir, &old.base) {
                        fs::rename(&from, &to).map_err(io_ctx("rename message"))?;
                    }
                }
                other => other.map_err(io_ctx("rename message"))?,
            }
        }
        Ok(())
    }

    /// Remove the files of expunged messages.
    fn remove_files(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        dir: &Path,
        gone: Vec<MessageMeta>,
    ) -> Result<(), StoreError> {
        for m in gone {
            let path = self.message_path(user, mailbox, &m);
            // Only a replay after a crash can find the file elsewhere (a rename applied
            // after the last checkpoint); search the directory only then.
            if !self.files.retire(&path).map_err(io_ctx("expunge"))? {
                if let Some(other) = Self::find_by_base(dir, &m.base) {
                    self.files.retire(&other).map_err(io_ctx("expunge"))?;
                }
            }
        }
        Ok(())
    }

    /// See [`MailOp::SyncMailbox`].
    #[allow(clippy::too_many_arguments)]
    fn sync_mailbox(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        uid_validity: u32,
        uid_next: u32,
        highest_modseq: u64,
        states: &[FlagState],
        expunged: &[u32],
    ) -> Result<MailResponse, StoreError> {
        let dir = self.layout.mailbox_dir(user, mailbox);
        let Some(idx) = self.mailbox(user, mailbox)? else {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox(mailbox.to_string())));
        };
        if idx.uid_validity != uid_validity {
            return Ok(MailResponse::Rejected(Rejection::UidValidityDiffers(mailbox.to_string())));
        }
        if idx.applied_index >= index {
            return Ok(MailResponse::Done);
        }
        let before = std::mem::replace(&mut idx.applied_index, index);
        let mut renames = Vec::new();
        for s in states {
            let Some(pos) = idx.position(s.uid) else { continue };
            let m = &mut idx.messages[pos];
            let mut keywords = s.keywords.clone();
            keywords.sort();
            keywords.dedup();
            if m.flags == s.flags && m.keywords == keywords && m.modseq == s.modseq {
                continue;
            }
            let old = m.clone();
            m.in_cur = m.in_cur || s.flags != 0 || !keywords.is_empty();
            m.flags = s.flags;
            m.keywords = keywords;
            m.modseq = s.modseq;
            renames.push((old, m.clone()));
        }
        idx.changes.record(index, before, renames.iter().map(|(old, _)| old.uid));
        let wanted: BTreeSet<u32> = expunged.iter().copied().collect();
        let (gone, kept): (Vec<MessageMeta>, Vec<MessageMeta>) =
            idx.messages.drain(..).partition(|m| wanted.contains(&m.uid));
        idx.messages = kept;
        if !gone.is_empty() {
            idx.record_vanished(gone.iter().map(|m| m.uid), highest_modseq);
        }
        idx.uid_next = idx.uid_next.max(uid_next);
        idx.highest_modseq = idx.highest_modseq.max(highest_modseq);
        self.dirty.insert((user.clone(), mailbox.clone()));
        self.rename_files(user, mailbox, &dir, renames)?;
        self.remove_files(user, mailbox, &dir, gone)?;
        Ok(MailResponse::Done)
    }

    /// Remove messages for good (a move's source, expired quarantine, an undone append).
    fn expunge(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        uids: &[u32],
    ) -> Result<MailResponse, StoreError> {
        self.expunge_keeping(user, mailbox, index, uids, false)
    }

    /// Remove messages; with `keep`, a user's expunge, they wait in a kept set (`kept`).
    fn expunge_keeping(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        uids: &[u32],
        keep: bool,
    ) -> Result<MailResponse, StoreError> {
        let dir = self.layout.mailbox_dir(user, mailbox);
        let Some(idx) = self.mailbox(user, mailbox)? else {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox(mailbox.to_string())));
        };
        if idx.applied_index > index {
            return Ok(MailResponse::Done);
        }
        idx.applied_index = index;
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let (gone, kept): (Vec<MessageMeta>, Vec<MessageMeta>) =
            idx.messages.drain(..).partition(|m| wanted.contains(&m.uid));
        idx.messages = kept;
        if !gone.is_empty() {
            idx.highest_modseq += 1;
            let modseq = idx.highest_modseq;
            idx.record_vanished(gone.iter().map(|m| m.uid), modseq);
        }
        self.dirty.insert((user.clone(), mailbox.clone()));
        if keep {
            self.keep_files(user, mailbox, index, gone, super::kept::KeptReason::Expunged)?;
        } else {
            self.remove_files(user, mailbox, &dir, gone)?;
        }
        Ok(MailResponse::Done)
    }

    fn copy(
        &mut self,
        user: &UserName,
        src: &MailboxName,
        dst: &MailboxName,
        index: u64,
        uids: &[u32],
        saved_s: Option<i64>,
    ) -> Result<MailResponse, StoreError> {
        let Some(src_idx) = self.mailbox(user, src)? else {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox(src.to_string())));
        };
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let msgs: Vec<MessageMeta> = src_idx.messages.iter().filter(|m| wanted.contains(&m.uid)).cloned().collect();
        let src_uid_validity = src_idx.uid_validity;
        let src_dir = self.layout.mailbox_dir(user, src);
        let group = self.group.clone();
        let paths: Vec<PathBuf> = msgs.iter().map(|m| self.message_path(user, src, m)).collect();
        let Some(dst_idx) = self.mailbox(user, dst)? else {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox(dst.to_string())));
        };
        let uid_validity = dst_idx.uid_validity;
        if dst_idx.applied_index >= index {
            // Replay: recover the pairs from the deterministic names.
            let pairs = msgs
                .iter()
                .enumerate()
                .filter_map(|(k, m)| {
                    let prefix = format!("{}.R{index}_{k}.{group},", m.internal_date);
                    dst_idx.messages.iter().find(|d| d.base.starts_with(&prefix)).map(|d| (m.uid, d.uid))
                })
                .collect();
            return Ok(MailResponse::Copied { uid_validity, pairs });
        }
        dst_idx.applied_index = index;
        let mut pairs = Vec::new();
        let mut links = Vec::new();
        for (k, (m, from)) in msgs.iter().zip(paths).enumerate() {
            let uid = dst_idx.uid_next;
            dst_idx.uid_next += 1;
            dst_idx.highest_modseq += 1;
            let mut copy = m.clone();
            // A copy is the same message (RFC 8474 §5.1): same EMAILID, also for one indexed
            // before EMAILIDs existed, whose id the source mailbox's UIDVALIDITY made.
            copy.email_id = m.email_id(src_uid_validity);
            copy.uid = uid;
            copy.base = format!("{}.R{index}_{k}.{group},S={}", m.internal_date, m.size);
            copy.in_cur = true;
            copy.modseq = dst_idx.highest_modseq;
            // Saved into `dst` now; a renamed INBOX's messages keep theirs (`None`).
            copy.saved_s = saved_s.unwrap_or(m.saved_s);
            dst_idx.messages.push(copy.clone());
            pairs.push((m.uid, uid));
            links.push((from, m.base.clone(), copy));
        }
        self.dirty.insert((user.clone(), dst.clone()));
        for (from, base, copy) in links {
            let to = self.message_path(user, dst, &copy);
            let from = if from.exists() { Some(from) } else { Self::find_by_base(&src_dir, &base) };
            let Some(from) = from else { continue };
            match fs::hard_link(&from, &to) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                other => other.map_err(io_ctx("copy message"))?,
            }
        }
        Ok(MailResponse::Copied { uid_validity, pairs })
    }

    fn create_mailbox(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
    ) -> Result<MailResponse, StoreError> {
        if mailbox.is_inbox() {
            self.ensure_inbox(user, index)?;
            return Ok(MailResponse::Done);
        }
        self.ensure_inbox(user, index)?;
        if self.mailbox(user, mailbox)?.is_some() {
            return Ok(MailResponse::Rejected(Rejection::MailboxExists(mailbox.to_string())));
        }
        create_maildir(&self.layout.mailbox_dir(user, mailbox), true).map_err(io_ctx("create mailbox"))?;
        self.boxes.insert((user.clone(), mailbox.clone()), Arc::new(MailboxIndex::new(uid_validity_for(index), index)));
        self.dirty.insert((user.clone(), mailbox.clone()));
        Ok(MailResponse::Done)
    }

    fn delete_mailbox(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
    ) -> Result<MailResponse, StoreError> {
        if mailbox.is_inbox() {
            return Ok(MailResponse::Rejected(Rejection::Cannot("INBOX cannot be deleted".into())));
        }
        let Some(idx) = self.mailbox(user, mailbox)? else {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox(mailbox.to_string())));
        };
        // Its messages are kept (see `kept`) before the folder goes.
        let messages = idx.messages.clone();
        self.keep_files(user, mailbox, index, messages, super::kept::KeptReason::FolderDeleted)?;
        let key = (user.clone(), mailbox.clone());
        self.boxes.remove(&key);
        self.dirty.remove(&key);
        fs::remove_dir_all(self.layout.mailbox_dir(user, mailbox)).map_err(io_ctx("delete mailbox"))?;
        Ok(MailResponse::Done)
    }

    fn rename_mailbox(
        &mut self,
        user: &UserName,
        src: &MailboxName,
        dst: &MailboxName,
    ) -> Result<MailResponse, StoreError> {
        if src.is_inbox() || dst.is_inbox() {
            return Ok(MailResponse::Rejected(Rejection::Cannot("renaming INBOX is not supported".into())));
        }
        if self.mailbox(user, src)?.is_none() {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox(src.to_string())));
        }
        if self.mailbox(user, dst)?.is_some() {
            return Ok(MailResponse::Rejected(Rejection::MailboxExists(dst.to_string())));
        }
        // Persist pending index changes first: the directory moves under them.
        self.write_dirty_indexes()?;
        let from = self.layout.mailbox_dir(user, src);
        let to = self.layout.mailbox_dir(user, dst);
        fs::rename(&from, &to).map_err(io_ctx("rename mailbox"))?;
        // Children move with their parent (Maildir++ keeps them as sibling directories).
        let prefix = format!("{}/", src.as_str());
        let children: Vec<BoxKey> =
            self.boxes.keys().filter(|(u, m)| u == user && m.as_str().starts_with(&prefix)).cloned().collect();
        let idx = self.boxes.remove(&(user.clone(), src.clone()));
        if let Some(idx) = idx {
            self.boxes.insert((user.clone(), dst.clone()), idx);
        }
        for (u, child) in children {
            let renamed = format!("{}/{}", dst.as_str(), &child.as_str()[prefix.len()..]);
            if let Ok(new) = MailboxName::parse(&renamed) {
                let (a, b) = (self.layout.mailbox_dir(&u, &child), self.layout.mailbox_dir(&u, &new));
                fs::rename(a, b).map_err(io_ctx("rename child mailbox"))?;
                if let Some(idx) = self.boxes.remove(&(u.clone(), child)) {
                    self.boxes.insert((u.clone(), new), idx);
                }
            }
        }
        Ok(MailResponse::Done)
    }

    /// Add `messages` to `mailbox`, all or none: a refusal of one expunges those added before
    /// it in this operation (every replica does the same, so they stay alike).
    fn append_many(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        messages: &[super::ops::NewMessage],
        now_s: i64,
    ) -> Result<MailResponse, StoreError> {
        // A replay after a crash answers from what the first apply left, and changes nothing
        // (a rolled-back apply left none of its messages).
        let group = self.group.clone();
        if let Some(idx) = self.mailbox(user, mailbox)?.filter(|b| b.applied_index >= index) {
            let found: Option<Vec<u32>> = messages
                .iter()
                .enumerate()
                .map(|(k, m)| {
                    let base = message_base(m.internal_date, index, k, &group, m.data.len());
                    idx.messages.iter().find(|x| x.base == base).map(|x| x.uid)
                })
                .collect();
            return Ok(match found {
                Some(uids) => MailResponse::AppendedMany { uid_validity: idx.uid_validity, uids },
                None => MailResponse::Rejected(Rejection::Malformed("already applied".into())),
            });
        }
        let mut uids = Vec::with_capacity(messages.len());
        let mut validity = 0;
        for (k, m) in messages.iter().enumerate() {
            let incoming = Incoming {
                flags: m.flags,
                keywords: &m.keywords,
                internal_date: m.internal_date,
                saved_s: now_s,
                message: &m.data,
            };
            match self.add_message(user, mailbox, index, k, incoming) {
                Ok((v, uid)) => {
                    validity = v;
                    uids.push(uid);
                }
                Err(why) => {
                    if !uids.is_empty() {
                        self.expunge(user, mailbox, index, &uids)?;
                    }
                    return Ok(MailResponse::Rejected(why));
                }
            }
        }
        Ok(MailResponse::AppendedMany { uid_validity: validity, uids })
    }

    /// Add imported messages with their own UIDs (see [`MailOp::ImportMessages`]).
    fn import(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        index: u64,
        uid_validity: u32,
        messages: &[super::ops::ImportedMessage],
    ) -> Result<MailResponse, StoreError> {
        if uid_validity == 0 {
            return Ok(MailResponse::Rejected(Rejection::Malformed("UIDVALIDITY 0 is not valid".into())));
        }
        if messages.iter().any(|m| m.data.len() > MESSAGE_MAX || m.uid == 0) {
            return Ok(MailResponse::Rejected(Rejection::Malformed("message too large or UID 0".into())));
        }
        if messages.windows(2).any(|w| w[0].uid >= w[1].uid) {
            return Ok(MailResponse::Rejected(Rejection::Malformed(
                "imported messages must be in ascending UID order".into(),
            )));
        }
        // A mailbox this operation creates takes the imported UIDVALIDITY below.
        let created = self.mailbox(user, mailbox)?.is_none();
        if created {
            if mailbox.is_inbox() {
                self.ensure_inbox(user, index)?;
            } else if let MailResponse::Rejected(why) = self.create_mailbox(user, mailbox, index)? {
                return Ok(MailResponse::Rejected(why));
            }
        }
        let group = self.group.clone();
        let dir = self.layout.mailbox_dir(user, mailbox);
        let idx = self.mailbox(user, mailbox)?.expect("mailbox exists now");
        if idx.applied_index >= index && !created {
            return Ok(MailResponse::Imported { uid_validity: idx.uid_validity, count: 0 });
        }
        if idx.uid_validity != uid_validity {
            if !idx.messages.is_empty() {
                return Ok(MailResponse::Rejected(Rejection::UidValidityDiffers(mailbox.to_string())));
            }
            // An empty mailbox (say, an INBOX made by a first login) takes the imported one,
            // and with it a fresh UID space: UIDs and expunges of the old UIDVALIDITY mean
            // nothing under the new one (UIDNEXT left high would skip the imported mail).
            idx.uid_validity = uid_validity;
            idx.uid_next = 1;
            idx.vanished.clear();
            idx.vanished_floor = 0;
        }
        idx.applied_index = index;
        let mut files = Vec::new();
        for (k, m) in messages.iter().enumerate() {
            if m.uid < idx.uid_next {
                continue;
            }
            let base = format!("{}.R{index}_{k}.{group},S={}", m.internal_date, m.data.len());
            let mut keywords = m.keywords.clone();
            keywords.sort();
            keywords.dedup();
            // A move keeps the source's MODSEQ; a plain import gets a new one.
            let modseq = if m.modseq > 0 { m.modseq } else { idx.highest_modseq + 1 };
            idx.highest_modseq = idx.highest_modseq.max(modseq);
            let meta = MessageMeta {
                uid: m.uid,
                base: base.clone(),
                in_cur: m.flags != 0 || !keywords.is_empty(),
                flags: m.flags,
                keywords,
                size: m.data.len() as u64,
                internal_date: m.internal_date,
                modseq,
                crc32c: crc32c::crc32c(&m.data),
                // A move keeps the message's identity; a plain import gives it one.
                email_id: if m.email_id != 0 { m.email_id } else { new_email_id(&group, index, k) },
                saved_s: m.saved_s,
            };
            idx.uid_next = m.uid + 1;
            idx.messages.push(meta.clone());
            files.push((base, meta, &m.data));
        }
        let count = files.len() as u32;
        self.dirty.insert((user.clone(), mailbox.clone()));
        for (base, meta, data) in files {
            let dest = self.message_path(user, mailbox, &meta);
            self.files.queue(dir.join("tmp").join(&base), dest, data.clone());
        }
        Ok(MailResponse::Imported { uid_validity, count })
    }

    /// RFC 3501 §6.3.5: renaming INBOX moves all its messages to a new mailbox and leaves
    /// INBOX empty. Replay-safe: a target created by this very entry (its UIDVALIDITY says
    /// so) is reused, and copy/expunge skip work their mailboxes already applied.
    fn rename_inbox(&mut self, user: &UserName, dst: &MailboxName, index: u64) -> Result<MailResponse, StoreError> {
        let inbox = MailboxName::inbox();
        let Some(uids) = self.mailbox(user, &inbox)?.map(|b| b.messages.iter().map(|m| m.uid).collect::<Vec<_>>())
        else {
            return Ok(MailResponse::Rejected(Rejection::NoMailbox("INBOX".into())));
        };
        match self.mailbox(user, dst)?.map(|b| b.uid_validity) {
            Some(v) if v != uid_validity_for(index) => {
                return Ok(MailResponse::Rejected(Rejection::MailboxExists(dst.to_string())))
            }
            Some(_) => {}
            None => {
                if let MailResponse::Rejected(why) = self.create_mailbox(user, dst, index)? {
                    return Ok(MailResponse::Rejected(why));
                }
            }
        }
        if let MailResponse::Copied { pairs, .. } = self.copy(user, &inbox, dst, index, &uids, None)? {
            let moved: Vec<u32> = pairs.iter().map(|(s, _)| *s).collect();
            self.expunge(user, &inbox, index, &moved)?;
        }
        Ok(MailResponse::Done)
    }

    /// [`MailOp::Provision`]: the first rejection other than "exists" ends it (what was
    /// created before stays, alike on every replica).
    fn provision(
        &mut self,
        index: u64,
        user: &str,
        create: &[String],
        subscribe: &[String],
    ) -> Result<MailResponse, StoreError> {
        let parse = |names: &[String]| names.iter().map(|n| MailboxName::parse(n)).collect::<Result<Vec<_>, _>>();
        let (u, create, subscribe) = match (UserName::parse(user), parse(create), parse(subscribe)) {
            (Ok(u), Ok(c), Ok(s)) => (u, c, s),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                return Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string())))
            }
        };
        if create.len() + subscribe.len() > PROVISION_NAMES_MAX {
            return Ok(MailResponse::Rejected(Rejection::Cannot("too many mailboxes at once".into())));
        }
        for m in &create {
            match self.create_mailbox(&u, m, index)? {
                MailResponse::Done | MailResponse::Rejected(Rejection::MailboxExists(_)) => {}
                refused => return Ok(refused),
            }
        }
        if subscribe.is_empty() {
            return Ok(MailResponse::Done);
        }
        self.subscribe(&u, &subscribe, true)
    }

    fn subscribe(&mut self, user: &UserName, mailboxes: &[MailboxName], on: bool) -> Result<MailResponse, StoreError> {
        let path = self.layout.maildir(user).join("subscriptions");
        let current = fs::read_to_string(&path).unwrap_or_default();
        let mut names: BTreeSet<String> = current.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        for mailbox in mailboxes {
            if on {
                names.insert(mailbox.as_str().to_string());
            } else {
                names.remove(mailbox.as_str());
            }
        }
        fs::create_dir_all(self.layout.maildir(user)).map_err(io_ctx("subscriptions"))?;
        let body: String = names.into_iter().map(|n| n + "\n").collect();
        // Replaced by rename, never rewritten in place (snapshots hard-link the tree).
        let tmp = self.layout.maildir(user).join("tmp").join("subscriptions");
        fs::create_dir_all(self.layout.maildir(user).join("tmp")).map_err(io_ctx("subscriptions"))?;
        fs::write(&tmp, body).map_err(io_ctx("subscriptions"))?;
        fs::rename(&tmp, &path).map_err(io_ctx("subscriptions"))?;
        Ok(MailResponse::Done)
    }

    /// Where the METADATA entries of `mailbox` (the user's server when empty) are kept: the
    /// directory and file name, or `None` if the mailbox does not exist.
    fn metadata_file(&mut self, user: &UserName, mailbox: &str) -> Result<Option<(PathBuf, &'static str)>, StoreError> {
        if mailbox.is_empty() {
            return Ok(Some((self.layout.maildir(user), metadata::SERVER_FILE)));
        }
        let Ok(name) = MailboxName::parse(mailbox) else { return Ok(None) };
        if self.mailbox(user, &name)?.is_none() {
            return Ok(None);
        }
        Ok(Some((self.layout.mailbox_dir(user, &name), metadata::MAILBOX_FILE)))
    }

    fn set_metadata(
        &mut self,
        user: &str,
        mailbox: &str,
        changes: &[MetadataChange],
    ) -> Result<MailResponse, StoreError> {
        let refuse = |r| Ok(MailResponse::Rejected(r));
        let user = match UserName::parse(user) {
            Ok(u) => u,
            Err(e) => return refuse(Rejection::Cannot(e.to_string())),
        };
        let Some((dir, file)) = self.metadata_file(&user, mailbox)? else {
            return refuse(Rejection::NoMailbox(mailbox.to_string()));
        };
        // A damaged file on this replica must not stop the log: its entries are lost here
        // (the other replicas keep theirs) and the change applies to an empty set.
        let mut entries = match metadata::Entries::load(&dir.join(file)) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(user = %user.as_str(), mailbox, error = %e, "METADATA file unreadable; starting empty");
                metadata::Entries::default()
            }
        };
        let changes: Vec<(String, Option<Vec<u8>>)> =
            changes.iter().map(|c| (c.name.clone(), c.value.clone())).collect();
        match entries.apply(&changes) {
            Ok(()) => {}
            Err(e @ metadata::MetadataError::BadName(_)) => return refuse(Rejection::Cannot(e.to_string())),
            Err(e) => return refuse(Rejection::Limit(e.to_string())),
        }
        fs::create_dir_all(&dir).map_err(io_ctx("metadata"))?;
        entries.save(&dir, file)?;
        Ok(MailResponse::Done)
    }

    /// The METADATA entries of `mailbox` (the user's server when empty); `None` if the
    /// mailbox does not exist.
    pub fn metadata(&mut self, user: &UserName, mailbox: &str) -> Result<Option<metadata::Entries>, StoreError> {
        let Some((dir, file)) = self.metadata_file(user, mailbox)? else { return Ok(None) };
        Ok(Some(metadata::Entries::load(&dir.join(file))?))
    }

    // ---- checkpoints ----------------------------------------------------------------------

    fn write_dirty_indexes(&mut self) -> Result<(), StoreError> {
        self.flush_files()?;
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            let Some(idx) = self.boxes.get(&key) else { continue };
            let dir = self.layout.mailbox_dir(&key.0, &key.1);
            if !dir.exists() {
                continue;
            }
            let tmp = dir.join("tmp").join(INDEX_FILE);
            self.files.queue(tmp, dir.join(INDEX_FILE), idx.encode());
        }
        self.flush_files()
    }

    /// Make everything applied so far durable and record it as the restart point.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.prepare_checkpoint()?.finish()
    }

    /// The part of a checkpoint that needs the store: write the dirty indexes and capture
    /// the state to record. The slow part, [`PendingCheckpoint::finish`], runs without the
    /// store, while applying goes on: it records only what was captured here, and anything
    /// applied later is replayed from the log after a crash.
    pub fn prepare_checkpoint(&mut self) -> Result<PendingCheckpoint, StoreError> {
        self.write_dirty_indexes()?;
        let state = StoreState {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            dedup: self.dedup_order.iter().map(|id| (*id, self.dedup[id].0, self.dedup[id].1.clone())).collect(),
            queue: self.queue.items().cloned().collect(),
            user_states: {
                let mut v: Vec<(String, UserState)> =
                    self.user_states.iter().map(|(u, s)| (u.clone(), s.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            },
            staging: self.staging.streams(),
            fates: self.fates.rows(),
            training: self.training.state(),
            digest_through_s: self.digest_through_s,
            security: self.security.clone(),
            queue_keys: self.queue.keys().collect(),
        };
        let body = bincode::serialize(&state).map_err(|e| StoreError::State(e.to_string()))?;
        self.unchecked = 0;
        Ok(PendingCheckpoint {
            root: self.layout.root().to_path_buf(),
            body,
            finished_parts: self.staging.take_finished(),
        })
    }

    /// Where the file of message `uid` is now. Readers open it without holding the store;
    /// a flag change may rename it meanwhile, so they ask again when it has moved. The file's
    /// inode keeps this message's bytes until the returned lease is dropped.
    pub fn message_file(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
        uid: u32,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let Some(b) = self.mailbox(user, mailbox)? else { return Ok(None) };
        let Some(m) = b.position(uid).map(|p| b.messages[p].clone()) else { return Ok(None) };
        let lease = self.readers.lease();
        Ok(Some(StoredMessage { path: self.message_path(user, mailbox, &m), crc32c: m.crc32c, _lease: lease }))
    }

    /// The mailboxes of `user` (INBOX first if it exists), from the tree on disk.
    pub fn mailboxes(&self, user: &UserName) -> Vec<MailboxName> {
        let root = self.layout.maildir(user);
        let mut out = Vec::new();
        // Indexes reach the disk only at checkpoints; the Maildir directories are immediate.
        if root.join("cur").is_dir() {
            out.push(MailboxName::inbox());
        }
        let mut others: Vec<MailboxName> = fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let dotted = name.strip_prefix('.')?;
                e.path().join("maildirfolder").exists().then(|| MailboxName::parse(&dotted.replace('.', "/")).ok())?
            })
            .collect();
        others.sort();
        out.extend(others);
        out
    }

    /// The mailbox names `user` subscribed to.
    pub fn subscriptions(&self, user: &UserName) -> Vec<String> {
        let path = self.layout.maildir(user).join("subscriptions");
        fs::read_to_string(path).unwrap_or_default().lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    /// Index of one mailbox (for tests, IMAP and tools).
    pub fn mailbox_index(
        &mut self,
        user: &UserName,
        mailbox: &MailboxName,
    ) -> Result<Option<Arc<MailboxIndex>>, StoreError> {
        let key = (user.clone(), mailbox.clone());
        if !self.boxes.contains_key(&key) && self.mailbox(user, mailbox)?.is_none() {
            return Ok(None);
        }
        Ok(self.boxes.get(&key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_earlier_state_format_decodes_with_the_later_fields_at_their_defaults() {
        let dedup = vec![(OpId([7; 16]), 42u64, MailResponse::Done)];
        let membership = StoredMembership::<u64, BasicNode>::default();
        let base = (None::<LogId<u64>>, membership, dedup.clone());
        let users = vec![("a@example.edu".to_string(), UserState::Frozen)];
        let fates = vec![(20_000i64, "clean".to_string(), String::new(), 3u64)];
        let v1 = bincode::serialize(&base).unwrap();
        let v3 = bincode::serialize(&(&base, Vec::<common::admin::QueueItem>::new(), &users)).unwrap();
        let v5 = bincode::serialize(&(
            &base,
            Vec::<common::admin::QueueItem>::new(),
            &users,
            Vec::<StagedStream>::new(),
            &fates,
        ))
        .unwrap();
        let s1 = decode_state(&v1).unwrap();
        assert_eq!((s1.dedup.len(), s1.user_states.len(), s1.digest_through_s), (1, 0, 0));
        let s3 = decode_state(&v3).unwrap();
        assert_eq!((s3.user_states.len(), s3.fates.len()), (1, 0));
        let s5 = decode_state(&v5).unwrap();
        assert_eq!((s5.user_states.len(), s5.fates.clone(), s5.training.0.len()), (1, fates.clone(), 0));
        let security = common::security::SecurityState {
            locked: vec![("a@example.edu".into(), "snagged".into())],
            ..Default::default()
        };
        let v8 = bincode::serialize(&(
            &base,
            Vec::<common::admin::QueueItem>::new(),
            &users,
            Vec::<StagedStream>::new(),
            &fates,
            super::super::training::TrainingState::default(),
            9i64,
            &security,
        ))
        .unwrap();
        let s8 = decode_state(&v8).unwrap();
        assert_eq!((s8.digest_through_s, s8.security.locked.len(), s8.queue_keys.len()), (9, 1, 0));
        let now = StoreState { queue_keys: vec![(5, [1; 16])], ..s8 };
        let again = decode_state(&bincode::serialize(&now).unwrap()).unwrap();
        assert_eq!((again.digest_through_s, again.security.locked.len(), again.queue_keys), (9, 1, vec![(5, [1; 16])]));
        assert!(decode_state(b"\x01").is_err());
    }
}
