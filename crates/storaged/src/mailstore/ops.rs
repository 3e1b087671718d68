//! Mail operations: the payload of every Raft log entry of a mailhost group, and what
//! applying one returns. Everything a replica needs to apply an operation identically is
//! in the operation itself (including the internal date, chosen by the proposer), so the
//! result depends only on the log.

use serde::{Deserialize, Serialize};

use super::names::UserName;
use super::rejection::Rejection;

/// Client-chosen id of an operation: a retried operation carries the same id and is
/// applied at most once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct OpId(pub [u8; 16]);

impl MailOp {
    /// The user whose mail a write changes (deliveries name several and are checked per
    /// recipient; the move's own imports and queue operations are exempt).
    pub fn written_user(&self) -> Option<&str> {
        match self {
            MailOp::Append { user, .. }
            | MailOp::AppendMany { user, .. }
            | MailOp::Store { user, .. }
            | MailOp::Expunge { user, .. }
            | MailOp::Copy { user, .. }
            | MailOp::Move { user, .. }
            | MailOp::CreateMailbox { user, .. }
            | MailOp::Provision { user, .. }
            | MailOp::DeleteMailbox { user, .. }
            | MailOp::RenameMailbox { user, .. }
            | MailOp::Subscribe { user, .. }
            | MailOp::SetMetadata { user, .. }
            | MailOp::PutScript { user, .. }
            | MailOp::DeleteScript { user, .. }
            | MailOp::RenameScript { user, .. }
            | MailOp::SetActiveScript { user, .. }
            | MailOp::DeliverFiltered { user, .. }
            | MailOp::RestoreKept { user, .. }
            | MailOp::SetRetention { user, .. }
            | MailOp::RetireUser { user } => Some(user),
            _ => None,
        }
    }

    /// Whether the operation adds data to the store (new messages, copies, queued mail,
    /// imports, scripts): refused while the group's disks are below their reserve. Flag
    /// changes, expunges, deletions and the rest are small or free space, and go on.
    pub fn grows_store(&self) -> bool {
        matches!(
            self,
            MailOp::Deliver { .. }
                | MailOp::DeliverInto { .. }
                | MailOp::DeliverFiltered { .. }
                | MailOp::Append { .. }
                | MailOp::AppendMany { .. }
                | MailOp::Copy { .. }
                | MailOp::Enqueue { .. }
                | MailOp::EnqueueKeyed { .. }
                | MailOp::EnqueueHeld { .. }
                | MailOp::ImportMessages { .. }
                | MailOp::PutScript { .. }
                | MailOp::RestoreKept { .. }
                | MailOp::ImportKept { .. }
        )
    }
}

impl OpId {
    /// Id derived from content: sha256 of the parts, truncated to 128 bits.
    pub fn digest(parts: &[&[u8]]) -> Self {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        Self(id)
    }
}

/// IMAP system flags as bits; keywords travel separately.
pub mod flag {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DELETED: u8 = 8;
    pub const DRAFT: u8 = 16;
    /// All flags with their Maildir info letters, in the order Maildir requires (ASCII).
    pub const LETTERS: [(u8, char); 5] = [(DRAFT, 'D'), (FLAGGED, 'F'), (ANSWERED, 'R'), (SEEN, 'S'), (DELETED, 'T')];

    /// The bit of a system flag named as IMAP writes it (`\Seen`, any case); `None` for
    /// anything else (keywords, `\Recent`, unknown backslash names).
    pub fn system(name: &str) -> Option<u8> {
        match name.to_ascii_lowercase().as_str() {
            "\\seen" => Some(SEEN),
            "\\answered" => Some(ANSWERED),
            "\\flagged" => Some(FLAGGED),
            "\\deleted" => Some(DELETED),
            "\\draft" => Some(DRAFT),
            _ => None,
        }
    }
}

/// How a STORE changes flags.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum FlagMode {
    Set,
    Add,
    Remove,
}

/// One mail operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum MailOp {
    /// Deliver one message to the INBOX of each recipient (LMTP/SMTP).
    Deliver {
        recipients: Vec<String>,
        internal_date: i64,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Add a message to a mailbox (IMAP APPEND). `now_s` (the proposer's clock) is its
    /// save date; `internal_date` is the client's to choose.
    Append {
        user: String,
        mailbox: String,
        flags: u8,
        keywords: Vec<String>,
        internal_date: i64,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
        now_s: i64,
    },
    /// Change flags of messages; with `unchanged_since`, messages modified later are left
    /// alone (CONDSTORE).
    Store {
        user: String,
        mailbox: String,
        uids: Vec<u32>,
        mode: FlagMode,
        flags: u8,
        keywords: Vec<String>,
        unchanged_since: Option<u64>,
    },
    /// Remove messages.
    Expunge {
        user: String,
        mailbox: String,
        uids: Vec<u32>,
    },
    /// Copy messages to another mailbox of the same user; `now_s` (the proposer's clock) is
    /// the copies' save date.
    Copy {
        user: String,
        from: String,
        to: String,
        uids: Vec<u32>,
        now_s: i64,
    },
    /// Move messages to another mailbox of the same user (saved there at `now_s`).
    Move {
        user: String,
        from: String,
        to: String,
        uids: Vec<u32>,
        now_s: i64,
    },
    CreateMailbox {
        user: String,
        mailbox: String,
    },
    DeleteMailbox {
        user: String,
        mailbox: String,
    },
    RenameMailbox {
        user: String,
        from: String,
        to: String,
    },
    Subscribe {
        user: String,
        mailbox: String,
        subscribed: bool,
    },
    /// Remove a user and all their mail.
    DeleteUser {
        user: String,
    },
    /// Import messages exactly as another mailhost held them (moving a user between
    /// groups): the mailbox keeps its UIDVALIDITY and every message its UID, flags,
    /// keywords and internal date, so clients need not resynchronize. Sent in batches in
    /// UID order; UIDs not above the mailbox's last are skipped (a retried batch).
    ImportMessages {
        user: String,
        mailbox: String,
        uid_validity: u32,
        messages: Vec<ImportedMessage>,
    },
    /// Make the imported copy of a mailbox match its source exactly: flags, keywords and
    /// MODSEQs of the listed messages, expunge the listed UIDs, and raise UIDNEXT and
    /// HIGHESTMODSEQ to the source's (the catch-up steps of a move).
    SyncMailbox {
        user: String,
        mailbox: String,
        uid_validity: u32,
        uid_next: u32,
        highest_modseq: u64,
        states: Vec<FlagState>,
        expunged: Vec<u32>,
    },
    /// Freeze a user's mail during a move, mark it moved, or make it active again.
    SetUserState {
        user: String,
        state: UserState,
    },
    /// Put a message on the group's outbound queue (its id is this entry's log index).
    Enqueue {
        sender: String,
        recipients: Vec<String>,
        created_s: i64,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Lease due queued messages to a runner.
    QueueClaim {
        holder: String,
        now_s: i64,
        lease_s: u32,
        max: u32,
    },
    /// Record a delivery attempt of a queued message.
    QueueRecord {
        id: u64,
        holder: String,
        delivered: Vec<String>,
        failed: Vec<(String, String)>,
        retry_at_s: i64,
        error: Option<String>,
    },
    /// Drop queued messages undelivered.
    QueueDelete {
        ids: Vec<u64>,
    },
    /// Make queued messages (all if `ids` is empty) due now.
    QueueFlush {
        ids: Vec<u64>,
        now_s: i64,
    },
    /// One part of an operation too large for one entry (see `mailstore::staging`): the
    /// bincode encoding of a whole [`MailRequest`], cut at `offset`. The entry holding the
    /// last part applies the whole request.
    Part {
        stream: u64,
        offset: u64,
        total: u64,
        crc32c: u32,
        sent_ms: i64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Requests of different users committed as one entry (see `group::batch`); each is
    /// applied as if it were the entry alone, and answered in [`MailResponse::Batch`]. Each
    /// is the bincode encoding of a [`MailRequest`], decoded only when applied: decoding an
    /// entry (or an RPC frame) never recurses into batches, and a batch inside a batch is
    /// refused, not expanded.
    Batch {
        #[serde(with = "byte_strings")]
        requests: Vec<Vec<u8>>,
    },
    /// Add several messages to one mailbox at once (IMAP MULTIAPPEND, RFC 3502): all of them
    /// are added, or none (the first refusal undoes the ones before it).
    AppendMany {
        user: String,
        mailbox: String,
        messages: Vec<NewMessage>,
        /// The proposer's clock: the messages' save date.
        now_s: i64,
    },
    /// Set or remove METADATA entries (RFC 5464) of a mailbox, or of the user's server when
    /// `mailbox` is empty: all of them, or none if a name is invalid or a bound is reached.
    SetMetadata {
        user: String,
        mailbox: String,
        entries: Vec<MetadataChange>,
    },
    /// Deliver one message into `mailbox` (made and subscribed if missing) of each
    /// recipient: where the scanning stage files spam (`Junk`) or holds it (`Quarantine`).
    /// Last among the variants: entries already in logs keep their encoding.
    DeliverInto {
        recipients: Vec<String>,
        mailbox: String,
        internal_date: i64,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Expunge every quarantined message (mailbox `Quarantine`) delivered before
    /// `now_s - retention_s`. `now_s` is the proposing leader's clock, written in the log:
    /// every replica expires the same messages, whatever its own clock says.
    ExpireQuarantine {
        now_s: i64,
        retention_s: u64,
    },
    /// Fates a front's scanning stage counted: `(day, fate, detail, messages)` rows added
    /// to the group's tally (see `fates`).
    CountFates {
        counts: Vec<super::fates::FateRow>,
    },
    /// Spam-training intents carried out (or whose message is gone): retired.
    TrainingDone {
        ids: Vec<u64>,
    },
    /// Send each user a digest of what was held for them since the last one (the proposing
    /// leader's `now_s`, written in the log: every replica writes the same digests).
    QuarantineDigest {
        now_s: i64,
        retention_s: u64,
    },
    /// Store or replace a Sieve script of the user (ManageSieve PUTSCRIPT; the proposer
    /// compiled it). Files in Pigeonhole's layout: see `scripts`.
    PutScript {
        user: String,
        name: String,
        script: String,
    },
    DeleteScript {
        user: String,
        name: String,
    },
    RenameScript {
        user: String,
        from: String,
        to: String,
    },
    /// Make a script the active one, or none (`name: None`).
    SetActiveScript {
        user: String,
        name: Option<String>,
    },
    /// Deliver one message to one user as the user's Sieve script decided: the leader ran
    /// the script before proposing, so every replica files the same copies. Each copy goes
    /// into its mailbox with its flags (the mailbox made if missing; INBOX when the name is
    /// not a valid mailbox name); `outbound` (redirects and
    /// vacation replies) goes onto the group's queue; `remember` is the vacation and
    /// duplicate memory to keep (see `sieve_memory`). All of it, or none.
    DeliverFiltered {
        user: String,
        internal_date: i64,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
        copies: Vec<FiledCopy>,
        outbound: Vec<Outbound>,
        remember: Vec<(String, i64)>,
    },
    /// A successful login of the user, as a front saw it (see `logins`): the front's time,
    /// protocol, client address and its country, continent and location (1e-4 degrees).
    RecordLogin {
        user: String,
        at_s: i64,
        protocol: String,
        ip: String,
        country: Option<String>,
        continent: Option<String>,
        location: Option<(i32, i32)>,
        front: String,
    },
    /// A change to the group's defence records (`common::security`) at the proposer's
    /// `now_s`.
    Security {
        change: common::security::SecurityChange,
        now_s: i64,
    },
    /// Queue a message held for review (a snagged account's): never attempted until a
    /// flush releases it.
    EnqueueHeld {
        sender: String,
        recipients: Vec<String>,
        created_s: i64,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
        reason: String,
    },
    /// Record a delivery attempt of a queued message, as [`MailOp::QueueRecord`] (which
    /// entries already in logs keep), with the runner's clock and each recipient tried:
    /// where it went and the reply, for message tracking.
    QueueAttempt {
        id: u64,
        holder: String,
        at_s: i64,
        delivered: Vec<String>,
        failed: Vec<(String, String)>,
        retry_at_s: i64,
        error: Option<String>,
        tried: Vec<common::admin::TriedRecipient>,
    },
    /// Stamp the kept sets (expunged messages, deleted folders) made since the last purge
    /// with `now_s`, the proposer's clock, and remove those stamped more than `retention_s`
    /// before it (see `kept`).
    PurgeKept {
        now_s: i64,
        retention_s: u64,
    },
    /// File kept messages of `user` again (`(set, file)` each, as the kept listing names
    /// them): into the folder each came from (made if deleted), or into `into`.
    RestoreKept {
        user: String,
        items: Vec<(String, String)>,
        into: Option<String>,
        /// The proposer's clock: the restored messages' save date.
        now_s: i64,
    },
    /// Keep what `user` expunges and deletes `keep_s` seconds instead of the site's
    /// `[retention] keep_s` (`None`: the site's again).
    SetRetention {
        user: String,
        keep_s: Option<u64>,
    },
    /// Delete a user (the account is gone): every folder, INBOX too, goes into one kept set
    /// and the rest of the user's state is removed; `RestoreKept` brings the mail back
    /// until the retention purges it.
    RetireUser {
        user: String,
    },
    /// Kept mail a move brings from the user's old mailhost (`mailctl move`): the messages
    /// go into the user's set that came from `set.origin` (made if missing, with the old
    /// set's stamp, so the retention runs on from when the mail was removed); files the
    /// set holds already are skipped, so a move's rounds and a replay add nothing twice.
    ImportKept {
        user: String,
        set: ImportedKeptSet,
        messages: Vec<ImportedKept>,
    },
    /// Drop queued messages undelivered, as [`MailOp::QueueDelete`] (which entries already
    /// in logs keep), with the proposer's clock, for message tracking.
    QueueDrop {
        ids: Vec<u64>,
        at_s: i64,
    },
    /// Recipients fronts refused before any mailhost took the message, reported in
    /// batches for message tracking (`tracked`); changes nothing else.
    FrontRefusals {
        refusals: Vec<common::tracking::FrontRefusal>,
    },
    /// [`MailOp::Enqueue`] of a message a front first tried to deliver itself, with the
    /// client's retry key that attempt carried (`XMSGKEY`): the queue's runner delivers
    /// with the same key, so an attempt that was committed after all (its answer lost to
    /// a failing leader) is recognised rather than delivered twice.
    EnqueueKeyed {
        sender: String,
        recipients: Vec<String>,
        created_s: i64,
        key: [u8; 16],
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// A user's standard mailboxes at first login, in one entry (it was one Raft round per
    /// mailbox and per subscription: twelve for INBOX and the five special-use folders):
    /// `create` those missing (one that exists by then is left as it is), then subscribe
    /// `subscribe`.
    Provision {
        user: String,
        create: Vec<String>,
        subscribe: Vec<String>,
    },
}

/// Which kept set an [`MailOp::ImportKept`] fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ImportedKeptSet {
    /// `GROUP/INDEX` of the set on the old mailhost.
    pub origin: String,
    /// The set's folder, and why it was kept.
    pub mailbox: String,
    pub reason: super::kept::KeptReason,
    /// When its retention started there (`None`: not yet; the next purge here stamps it).
    pub stamp_s: Option<i64>,
}

/// One message of an [`MailOp::ImportKept`]: a kept message and its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ImportedKept {
    /// Its file name in the set (the Maildir base name it had).
    pub file: String,
    /// The folder it was in.
    pub mailbox: String,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// One copy a Sieve script filed (see [`MailOp::DeliverFiltered`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FiledCopy {
    pub mailbox: String,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub create: bool,
}

/// A message a Sieve script sends (a redirect or a vacation reply), for the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Outbound {
    pub sender: String,
    pub recipients: Vec<String>,
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}

/// One entry of a [`MailOp::SetMetadata`]: its name and new value (`None` removes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MetadataChange {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// Serde for a list of byte strings, each as one byte string (bincode: a length and a copy,
/// not one call per byte).
mod byte_strings {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(serde_bytes::Bytes::new(b))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let bufs = Vec::<serde_bytes::ByteBuf>::deserialize(d)?;
        Ok(bufs.into_iter().map(serde_bytes::ByteBuf::into_vec).collect())
    }
}

/// One message of an [`MailOp::ImportMessages`] batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ImportedMessage {
    pub uid: u32,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    /// The MODSEQ it had at the source (0: give it a new one).
    pub modseq: u64,
    /// Its EMAILID at the source, kept (a move; RFC 8474 §5.1); 0: give it a new one.
    pub email_id: u64,
    /// Its save date at the source (a move); 0: not known.
    pub saved_s: i64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// One message of an [`MailOp::AppendMany`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NewMessage {
    pub flags: u8,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A message's flags as [`MailOp::SyncMailbox`] sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FlagState {
    pub uid: u32,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub modseq: u64,
}

/// Whether a user's mail may change on this group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum UserState {
    Active,
    /// A move is in its final catch-up: changes wait (temporary failures).
    Frozen,
    /// The user lives on this mailhost now; the copy here awaits deletion.
    MovedTo(String),
}

/// What a frozen user's writes are told (a temporary failure: clients and MTAs retry).
pub const FROZEN_REPLY: &str = "mailbox is being moved to another mailhost; try again shortly";
/// The start of what a moved user's writes are told (followed by the target mailhost).
pub use common::admin::MOVED_REPLY;

/// A log entry payload: an operation and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MailRequest {
    pub op_id: OpId,
    pub op: MailOp,
}

impl MailRequest {
    /// The one user whose mail this request changes, if it may share an entry with other
    /// users' requests: a single-mailbox change (STORE, APPEND, EXPUNGE) or a delivery to one
    /// recipient. Two requests of one entry never touch the same user, so each still owns
    /// its mailboxes' per-entry bookkeeping (UIDs, applied index, file names); what the
    /// group shares (outbound queue ids) also carries the request's position in the entry.
    pub fn batch_user(&self) -> Option<UserName> {
        let user = match &self.op {
            MailOp::Deliver { recipients, .. } | MailOp::DeliverInto { recipients, .. } if recipients.len() == 1 => {
                &recipients[0]
            }
            MailOp::Append { user, .. }
            | MailOp::Store { user, .. }
            | MailOp::Expunge { user, .. }
            | MailOp::DeliverFiltered { user, .. } => user,
            _ => return None,
        };
        UserName::parse(user).ok()
    }

    /// The request as one entry, or (if its encoding is above
    /// [`staging::PART_BYTES`](super::staging::PART_BYTES)) as parts of stream `stream`
    /// stamped with the proposer's clock `sent_ms`, to be proposed in order.
    pub fn into_entries(self, stream: u64, sent_ms: i64) -> Vec<MailRequest> {
        use super::staging::PART_BYTES;
        // Sizing is cheap (byte fields count as one length); most requests stop here
        // without being encoded.
        if bincode::serialized_size(&self).map_or(true, |n| n <= PART_BYTES as u64) {
            return vec![self];
        }
        let Ok(whole) = bincode::serialize(&self) else { return vec![self] };
        let crc32c = crc32c::crc32c(&whole);
        let total = whole.len() as u64;
        whole
            .chunks(PART_BYTES)
            .enumerate()
            .map(|(k, bytes)| {
                let offset = (k * PART_BYTES) as u64;
                MailRequest {
                    op_id: OpId::digest(&[b"part", &stream.to_le_bytes(), &offset.to_le_bytes()]),
                    op: MailOp::Part { stream, offset, total, crc32c, sent_ms, bytes: bytes.to_vec() },
                }
            })
            .collect()
    }

    /// One entry carrying `requests` (see [`MailOp::Batch`]).
    pub fn batch(requests: &[MailRequest]) -> MailRequest {
        let encoded: Vec<Vec<u8>> =
            requests.iter().map(|r| bincode::serialize(r).expect("a request always encodes")).collect();
        let ids: Vec<&[u8]> = requests.iter().map(|r| &r.op_id.0[..]).collect();
        MailRequest { op_id: OpId::digest(&ids), op: MailOp::Batch { requests: encoded } }
    }

    /// One request of a batch; `None` if it does not decode (whether it may be batched is
    /// the caller's [`MailRequest::batch_user`]).
    pub fn decode_batched(bytes: &[u8]) -> Option<MailRequest> {
        use bincode::Options;
        bincode::options()
            .with_fixint_encoding()
            .with_limit(super::staging::PART_BYTES as u64 + 4096)
            .deserialize(bytes)
            .ok()
    }

    /// The request whose parts were staged; `None` if they do not decode to one (or
    /// decode to another part: parts do not nest).
    pub fn decode_staged(whole: &[u8]) -> Option<MailRequest> {
        use bincode::Options;
        let req: MailRequest = bincode::options()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(super::staging::STAGED_MAX_BYTES)
            .deserialize(whole)
            .ok()?;
        (!matches!(req.op, MailOp::Part { .. })).then_some(req)
    }
}

/// What applying an operation produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailResponse {
    /// Per recipient, in order: `Ok((uidvalidity, uid))` or why it was not delivered.
    Delivered(Vec<Result<(u32, u32), Rejection>>),
    /// The new message's UIDVALIDITY and UID.
    Appended { uid_validity: u32, uid: u32 },
    /// UIDs copied/moved and the UIDs they got in the target (COPYUID).
    Copied { uid_validity: u32, pairs: Vec<(u32, u32)> },
    /// STORE: UIDs that were changed and those skipped by `unchanged_since`.
    Stored { changed: Vec<u32>, skipped: Vec<u32> },
    /// Done, nothing to report.
    Done,
    /// ImportMessages: how many messages of the batch were added (retried ones are not).
    Imported { uid_validity: u32, count: u32 },
    /// Enqueue: the queued message's id.
    Queued { id: u64 },
    /// QueueClaim: the messages now leased to the runner.
    Claimed(Vec<common::admin::QueueItem>),
    /// The operation could not be applied (bad name, no such mailbox, ...); nothing changed.
    Rejected(Rejection),
    /// AppendMany: the mailbox's UIDVALIDITY and the new messages' UIDs, in order.
    AppendedMany { uid_validity: u32, uids: Vec<u32> },
    /// Blank or membership entry.
    None,
    /// A part of a large operation was staged; the last part answers for the whole.
    Staged,
    /// Per request of a [`MailOp::Batch`], in order.
    Batch(Vec<MailResponse>),
    /// A ticket was opened with this id (the log index).
    Opened { id: u64 },
    /// RestoreKept: how many kept messages were filed again.
    Restored { count: u32 },
    /// ImportKept: how many kept messages the set did not hold yet.
    KeptImported { count: u32 },
}

/// Render system flags as Maildir info letters (`DFRST` order).
pub fn info_letters(flags: u8) -> String {
    flag::LETTERS.iter().filter(|(bit, _)| flags & bit != 0).map(|(_, c)| *c).collect()
}

/// Parse Maildir info letters back into system flags; unknown letters are ignored.
pub fn parse_info_letters(info: &str) -> u8 {
    info.chars().fold(0, |acc, c| acc | flag::LETTERS.iter().find(|(_, l)| *l == c).map_or(0, |(b, _)| *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_roundtrip_in_maildir_order() {
        assert_eq!(info_letters(flag::SEEN | flag::DRAFT | flag::DELETED), "DST");
        for f in 0..32u8 {
            assert_eq!(parse_info_letters(&info_letters(f)), f);
        }
    }
}
