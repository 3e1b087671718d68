//! The per-mailbox index: UID → Maildir file, flags, keywords, size, internal date, modseq.
//!
//! Stored as `mailstore.index` in the mailbox's Maildir++ directory: an rkyv archive behind
//! an 8-byte magic and a crc32c, opened with memmap2, validated and deserialized, so a
//! restart reads the index without touching a single message. Serving it zero-copy from the
//! map (`MailboxIndex::access`) would load a 100,000-message index in a fifth of the time
//! and two thirds of the memory (`index-bench`); the sessions and the apply path work on
//! owned, copy-on-write indexes today, so that is a later change. Written only at checkpoints (see `store`), by
//! write-to-temporary and rename, so a reader sees the old or the new index, never a mix.

use std::fs::File;
use std::path::Path;

use rkyv::rancor;

/// File name of the index inside a mailbox directory.
pub const INDEX_FILE: &str = "mailstore.index";
const MAGIC: &[u8; 8] = b"MSIDX005";
/// The format before save dates; still read, written as the current format.
const MAGIC_V4: &[u8; 8] = b"MSIDX004";
/// The format before EMAILIDs; still read, written as the current format.
const MAGIC_V3: &[u8; 8] = b"MSIDX003";
/// The format before message checksums; still read, written as the current format.
const MAGIC_V2: &[u8; 8] = b"MSIDX002";
/// The format before expunge tombstones; still read, written as the current format.
const MAGIC_V1: &[u8; 8] = b"MSIDX001";
/// Tombstones kept per mailbox; older ones are summarized by `vanished_floor`.
pub const VANISHED_MAX: usize = 50_000;
/// Bytes before the archive: magic, crc32c, 4 bytes padding (keeps the archive 16-aligned).
const PREFIX_LEN: usize = 16;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MessageMeta {
    pub uid: u32,
    /// Unique part of the Maildir file name (before `:2,`).
    pub base: String,
    /// In `cur/` (with an info suffix) rather than `new/`.
    pub in_cur: bool,
    pub flags: u8,
    pub keywords: Vec<String>,
    pub size: u64,
    pub internal_date: i64,
    pub modseq: u64,
    /// CRC32C of the message file's bytes, checked on every read so corrupt mail is never
    /// served; 0 for messages indexed before checksums existed (not checked).
    pub crc32c: u32,
    /// The message's identity across COPY and MOVE (IMAP OBJECTID's EMAILID, RFC 8474):
    /// given when it is first stored ([`new_email_id`]), kept by copies; 0 for messages
    /// indexed before (see [`MessageMeta::email_id`]).
    pub email_id: u64,
    /// When the message was saved into this mailbox (RFC 8514's save date), in seconds since
    /// the epoch, by the proposer's clock written in the log entry: every replica agrees. 0:
    /// not known (messages indexed before save dates, and imports without one).
    pub saved_s: i64,
}

/// The EMAILID of the `n`th message stored by log entry `index` of `group`: a digest of the
/// three, top bit clear and never 0, so ids made by different groups do not meet. A move
/// keeps a message's id (RFC 8474 §5.1: an EMAILID never changes), so the ids of mail
/// imported from another group share a mailbox with this group's own; ids of the earlier
/// scheme (`index << 20 | n`, group-local) stay as they were stored.
pub fn new_email_id(group: &str, index: u64, n: usize) -> u64 {
    let parts: [&[u8]; 4] = [b"emailid", group.as_bytes(), &index.to_le_bytes(), &(n as u64).to_le_bytes()];
    let digest = super::ops::OpId::digest(&parts).0;
    let id = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) & !(1 << 63);
    id.max(1)
}

impl MessageMeta {
    /// The message's EMAILID: the stored one, or for a message indexed before EMAILIDs one
    /// made of its mailbox's UIDVALIDITY and its UID (top bit set, so never a stored one).
    pub fn email_id(&self, uid_validity: u32) -> u64 {
        if self.email_id != 0 {
            return self.email_id;
        }
        (1 << 63) | (u64::from(uid_validity) << 32) | u64::from(self.uid)
    }
}

/// [`MessageMeta`] of index version 4 (no save date).
#[derive(Debug, Clone, rkyv::Archive, rkyv::Deserialize)]
#[cfg_attr(test, derive(rkyv::Serialize))]
struct MessageMetaV4 {
    uid: u32,
    base: String,
    in_cur: bool,
    flags: u8,
    keywords: Vec<String>,
    size: u64,
    internal_date: i64,
    modseq: u64,
    crc32c: u32,
    email_id: u64,
}

impl From<MessageMetaV4> for MessageMeta {
    fn from(m: MessageMetaV4) -> Self {
        Self {
            uid: m.uid,
            base: m.base,
            in_cur: m.in_cur,
            flags: m.flags,
            keywords: m.keywords,
            size: m.size,
            internal_date: m.internal_date,
            modseq: m.modseq,
            crc32c: m.crc32c,
            email_id: m.email_id,
            saved_s: 0,
        }
    }
}

/// [`MessageMeta`] of index version 3 (no EMAILID).
#[derive(Debug, Clone, rkyv::Archive, rkyv::Deserialize)]
#[cfg_attr(test, derive(rkyv::Serialize))]
struct MessageMetaV3 {
    uid: u32,
    base: String,
    in_cur: bool,
    flags: u8,
    keywords: Vec<String>,
    size: u64,
    internal_date: i64,
    modseq: u64,
    crc32c: u32,
}

impl From<MessageMetaV3> for MessageMeta {
    fn from(m: MessageMetaV3) -> Self {
        Self {
            uid: m.uid,
            base: m.base,
            in_cur: m.in_cur,
            flags: m.flags,
            keywords: m.keywords,
            size: m.size,
            internal_date: m.internal_date,
            modseq: m.modseq,
            crc32c: m.crc32c,
            email_id: 0,
            saved_s: 0,
        }
    }
}

/// [`MessageMeta`] of index versions 1 and 2 (no checksum).
#[derive(Debug, Clone, rkyv::Archive, rkyv::Deserialize)]
#[cfg_attr(test, derive(rkyv::Serialize))]
struct MessageMetaV2 {
    uid: u32,
    base: String,
    in_cur: bool,
    flags: u8,
    keywords: Vec<String>,
    size: u64,
    internal_date: i64,
    modseq: u64,
}

impl From<MessageMetaV2> for MessageMeta {
    fn from(m: MessageMetaV2) -> Self {
        Self {
            uid: m.uid,
            base: m.base,
            in_cur: m.in_cur,
            flags: m.flags,
            keywords: m.keywords,
            size: m.size,
            internal_date: m.internal_date,
            modseq: m.modseq,
            crc32c: 0,
            email_id: 0,
            saved_s: 0,
        }
    }
}

/// One mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MailboxIndex {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    /// Log index of the last operation applied to this mailbox; re-applying an operation
    /// at or below it is a no-op (crash recovery replays the log from the last checkpoint).
    pub applied_index: u64,
    /// Messages in UID order.
    pub messages: Vec<MessageMeta>,
    /// Expunged messages as `(uid, modseq of the expunge)`, oldest first, at most
    /// [`VANISHED_MAX`] (QRESYNC answers "what vanished since modseq N" from these).
    pub vanished: Vec<(u32, u64)>,
    /// Highest modseq of tombstones dropped for the bound: a client that last synced
    /// before it cannot be told precisely and gets every UID that is not present.
    pub vanished_floor: u64,
    /// Recent flag changes, in memory only (not in the file).
    #[rkyv(with = rkyv::with::Skip)]
    pub changes: ChangeLog,
}

/// Flag changes kept per mailbox at most.
pub const CHANGES_MAX: usize = 4096;

/// The flag changes of messages already in a mailbox, by the log index that made them, so
/// a session's view finds what changed since its last sync without looking at every
/// message (`imap::view`). A cache, not content: kept in memory only, and two logs are
/// always equal (two indexes are the same mailbox whatever each remembers of its past).
#[derive(Debug, Clone, Default)]
pub struct ChangeLog {
    /// `(log index, uid)`, oldest first, at most [`CHANGES_MAX`].
    entries: std::collections::VecDeque<(u64, u32)>,
    /// Every change by an entry above this log index is in `entries`; `None`: not known
    /// (an index just read from its file, until its next change).
    since: Option<u64>,
}

impl PartialEq for ChangeLog {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ChangeLog {}

impl ChangeLog {
    /// A log that knows every change after log index `applied` (a new mailbox).
    pub fn complete_after(applied: u64) -> Self {
        Self { entries: Default::default(), since: Some(applied) }
    }

    /// Entry `index` changed the flags of `uids`; `before` is the mailbox's applied index
    /// before it.
    pub fn record(&mut self, index: u64, before: u64, uids: impl IntoIterator<Item = u32>) {
        let mut uids = uids.into_iter().peekable();
        if uids.peek().is_none() {
            return;
        }
        self.since.get_or_insert(before);
        self.entries.extend(uids.map(|u| (index, u)));
        while self.entries.len() > CHANGES_MAX {
            let (dropped, _) = self.entries.pop_front().expect("over the bound, not empty");
            self.since = Some(dropped);
        }
    }

    /// The UIDs whose flags changed after log index `applied`, in UID order; `None` when
    /// this log does not know all of them.
    pub fn changed_since(&self, applied: u64) -> Option<std::collections::BTreeSet<u32>> {
        let since = self.since?;
        (since <= applied).then(|| self.entries.iter().filter(|(i, _)| *i > applied).map(|(_, u)| *u).collect())
    }
}

/// The version-1 layout (no tombstones), for reading old index files.
#[derive(rkyv::Archive, rkyv::Deserialize)]
struct MailboxIndexV1 {
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    applied_index: u64,
    messages: Vec<MessageMetaV2>,
}

/// The version-2 layout (no message checksums), for reading old index files.
#[derive(rkyv::Archive, rkyv::Deserialize)]
struct MailboxIndexV2 {
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    applied_index: u64,
    messages: Vec<MessageMetaV2>,
    vanished: Vec<(u32, u64)>,
    vanished_floor: u64,
}

/// The version-3 layout (no EMAILIDs), for reading old index files.
#[derive(rkyv::Archive, rkyv::Deserialize)]
#[cfg_attr(test, derive(rkyv::Serialize))]
struct MailboxIndexV3 {
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    applied_index: u64,
    messages: Vec<MessageMetaV3>,
    vanished: Vec<(u32, u64)>,
    vanished_floor: u64,
}

/// The version-4 layout (no save dates), for reading old index files.
#[derive(rkyv::Archive, rkyv::Deserialize)]
#[cfg_attr(test, derive(rkyv::Serialize))]
struct MailboxIndexV4 {
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    applied_index: u64,
    messages: Vec<MessageMetaV4>,
    vanished: Vec<(u32, u64)>,
    vanished_floor: u64,
}

impl From<MailboxIndexV1> for MailboxIndex {
    fn from(v1: MailboxIndexV1) -> Self {
        Self {
            uid_validity: v1.uid_validity,
            uid_next: v1.uid_next,
            highest_modseq: v1.highest_modseq,
            applied_index: v1.applied_index,
            messages: v1.messages.into_iter().map(MessageMeta::from).collect(),
            vanished: Vec::new(),
            // Nothing is known about earlier expunges.
            vanished_floor: v1.highest_modseq,
            changes: ChangeLog::default(),
        }
    }
}

/// Layouts 2 to 4 differ from the current one in their messages alone.
macro_rules! upgrade_index {
    ($($old:ty),*) => {$(
        impl From<$old> for MailboxIndex {
            fn from(old: $old) -> Self {
                Self {
                    uid_validity: old.uid_validity,
                    uid_next: old.uid_next,
                    highest_modseq: old.highest_modseq,
                    applied_index: old.applied_index,
                    messages: old.messages.into_iter().map(MessageMeta::from).collect(),
                    vanished: old.vanished,
                    vanished_floor: old.vanished_floor,
                    changes: ChangeLog::default(),
                }
            }
        }
    )*};
}

upgrade_index!(MailboxIndexV2, MailboxIndexV3, MailboxIndexV4);

/// Index errors.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("index {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
}

impl MailboxIndex {
    /// A new, empty mailbox created by log entry `index` (whose own effects on the mailbox,
    /// such as a first delivery, are still to be applied).
    pub fn new(uid_validity: u32, index: u64) -> Self {
        Self {
            uid_validity,
            uid_next: 1,
            highest_modseq: 1,
            applied_index: index.saturating_sub(1),
            messages: Vec::new(),
            vanished: Vec::new(),
            vanished_floor: 0,
            changes: ChangeLog::complete_after(index.saturating_sub(1)),
        }
    }

    /// Record that `uids` were expunged at `modseq`, keeping the tombstones bounded.
    pub fn record_vanished(&mut self, uids: impl IntoIterator<Item = u32>, modseq: u64) {
        self.vanished.extend(uids.into_iter().map(|u| (u, modseq)));
        if self.vanished.len() > VANISHED_MAX {
            let drop = self.vanished.len() - VANISHED_MAX;
            self.vanished_floor = self.vanished_floor.max(self.vanished[drop - 1].1);
            self.vanished.drain(..drop);
        }
    }

    /// UIDs expunged after `modseq`; `None` when tombstones that old were dropped (the
    /// caller must then assume every absent UID may have vanished).
    pub fn vanished_since(&self, modseq: u64) -> Option<Vec<u32>> {
        if modseq < self.vanished_floor {
            return None;
        }
        let mut uids: Vec<u32> = self.vanished.iter().filter(|(_, m)| *m > modseq).map(|(u, _)| *u).collect();
        uids.sort_unstable();
        uids.dedup();
        Some(uids)
    }

    /// Position of `uid` in `messages`.
    pub fn position(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// The bytes of the index file.
    pub fn encode(&self) -> Vec<u8> {
        let archive = rkyv::to_bytes::<rancor::Error>(self).expect("index serializes");
        let mut out = Vec::with_capacity(PREFIX_LEN + archive.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&crc32c::crc32c(&archive).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&archive);
        out
    }

    /// Open and validate the index at `path` through a memory map, then deserialize it. A
    /// map rather than a plain read: no copy of the file and no zeroed buffer, 0.6 times the
    /// time of a read for the same resident memory (`index-bench`, `benches/README.md`).
    pub fn load(path: &Path) -> Result<Self, IndexError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| IndexError::Io { path: name.clone(), source })?;
        // SAFETY: the store is the only writer of index files and replaces them by rename,
        // never in place, so the mapped file does not change while mapped; the map is
        // dropped before this returns (nothing borrows from it after `decode`).
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|source| IndexError::Io { path: name.clone(), source })?;
        // The map is page-aligned and the prefix is 16 bytes, so the archive is aligned.
        Self::decode(&map, &name)
    }

    /// Validate and deserialize the bytes of an index file (`name` for errors).
    pub fn decode(file: &[u8], name: &str) -> Result<Self, IndexError> {
        let corrupt = |reason: &str| IndexError::Corrupt { path: name.to_string(), reason: reason.into() };
        let (magic, archive) = checked_archive(file).map_err(|e| corrupt(&e))?;
        let decoded = match magic {
            m if m == MAGIC_V1 => rkyv::from_bytes::<MailboxIndexV1, rancor::Error>(archive).map(Self::from),
            m if m == MAGIC_V2 => rkyv::from_bytes::<MailboxIndexV2, rancor::Error>(archive).map(Self::from),
            m if m == MAGIC_V3 => rkyv::from_bytes::<MailboxIndexV3, rancor::Error>(archive).map(Self::from),
            m if m == MAGIC_V4 => rkyv::from_bytes::<MailboxIndexV4, rancor::Error>(archive).map(Self::from),
            _ => rkyv::from_bytes::<Self, rancor::Error>(archive),
        };
        decoded.map_err(|e| corrupt(&e.to_string()))
    }

    /// The current-format index in `file`, validated but not deserialized: what serving a
    /// mailbox zero-copy from the file's bytes would start from (the index benchmark
    /// measures it against [`MailboxIndex::decode`]).
    pub fn access(file: &[u8]) -> Result<&ArchivedMailboxIndex, String> {
        let (magic, archive) = checked_archive(file)?;
        if magic != MAGIC {
            return Err("an older format: only the current one is served in place".into());
        }
        rkyv::access::<ArchivedMailboxIndex, rancor::Error>(archive).map_err(|e| e.to_string())
    }
}

/// The magic and the checksummed archive of an index file (the archive is 16-aligned when
/// the file's bytes are: the prefix is 16 bytes).
fn checked_archive(file: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let magic = file.get(..8).unwrap_or_default();
    if file.len() < PREFIX_LEN || ![MAGIC, MAGIC_V4, MAGIC_V3, MAGIC_V2, MAGIC_V1].iter().any(|m| magic == *m) {
        return Err("bad magic".into());
    }
    let archive = &file[PREFIX_LEN..];
    let crc = u32::from_le_bytes(file[8..12].try_into().expect("4 bytes"));
    if crc32c::crc32c(archive) != crc {
        return Err("checksum mismatch".into());
    }
    Ok((magic, archive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_log_knows_what_it_holds_and_no_more() {
        let mut log = ChangeLog::default();
        assert_eq!(log.changed_since(0), None, "read from a file: unknown");
        log.record(11, 10, [5, 6]);
        assert_eq!(log.changed_since(10), Some([5, 6].into()), "complete from the first change on");
        assert_eq!(log.changed_since(9), None, "not before it");
        assert_eq!(log.changed_since(11), Some(Default::default()));
        for k in 0..CHANGES_MAX as u64 {
            log.record(12 + k, 11 + k, [7]);
        }
        assert_eq!(log.changed_since(10), None, "the oldest were dropped for the bound");
        assert_eq!(log.changed_since(12), Some([7].into()));
        let (mut a, b) = (MailboxIndex::new(1, 1), MailboxIndex::new(1, 1));
        a.changes.record(3, 2, [1]);
        assert_eq!(a, b, "a cache, not content");
        let decoded = MailboxIndex::decode(&a.encode(), "x").unwrap();
        assert_eq!(decoded.changes.changed_since(2), None, "not in the file");
    }

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = MailboxIndex::new(7, 3);
        idx.messages.push(MessageMeta {
            uid: 1,
            base: "1.R3_0.g".into(),
            in_cur: false,
            flags: 0,
            keywords: vec!["$Junk".into()],
            size: 10,
            internal_date: 1,
            modseq: 2,
            crc32c: 7,
            email_id: new_email_id("g", 3, 0),
            saved_s: 1_780_000_000,
        });
        let path = dir.path().join(INDEX_FILE);
        std::fs::write(&path, idx.encode()).unwrap();
        assert_eq!(MailboxIndex::load(&path).unwrap(), idx);
        let mut bytes = idx.encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(MailboxIndex::load(&path), Err(IndexError::Corrupt { .. })));
    }

    #[test]
    fn tombstones_are_bounded_and_answer_since() {
        let mut idx = MailboxIndex::new(7, 3);
        idx.record_vanished([5, 6], 10);
        idx.record_vanished([2], 12);
        assert_eq!(idx.vanished_since(9), Some(vec![2, 5, 6]));
        assert_eq!(idx.vanished_since(10), Some(vec![2]));
        idx.record_vanished(100..(100 + VANISHED_MAX as u32), 20);
        assert_eq!(idx.vanished.len(), VANISHED_MAX);
        assert_eq!(idx.vanished_since(11), None, "tombstones of modseq 12 were dropped");
        assert_eq!(idx.vanished_since(12).map(|v| v.len()), Some(VANISHED_MAX));
    }

    #[test]
    fn version_3_files_load_and_their_messages_get_distinct_email_ids() {
        let old = |uid| MessageMetaV3 {
            uid,
            base: format!("b{uid}"),
            in_cur: true,
            flags: 1,
            keywords: vec![],
            size: 5,
            internal_date: 0,
            modseq: 6,
            crc32c: 9,
        };
        let v3 = MailboxIndexV3 {
            uid_validity: 9,
            uid_next: 3,
            highest_modseq: 8,
            applied_index: 3,
            messages: vec![old(1), old(2)],
            vanished: vec![],
            vanished_floor: 0,
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&v3).unwrap();
        let mut bytes = MAGIC_V3.to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&archive).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        bytes.extend_from_slice(&archive);
        let idx = MailboxIndex::decode(&bytes, "v3").unwrap();
        assert_eq!((idx.messages[1].uid, idx.messages[1].crc32c, idx.messages[1].email_id), (2, 9, 0));
        let ids: Vec<u64> = idx.messages.iter().map(|m| m.email_id(idx.uid_validity)).collect();
        assert!(ids[0] != ids[1] && ids.iter().all(|i| *i >= 1 << 63), "{ids:?}");
        let made: std::collections::BTreeSet<u64> =
            (0..1000).flat_map(|i| ["a", "b"].map(|g| new_email_id(g, i, (i % 3) as usize))).collect();
        assert_eq!(made.len(), 2000, "two groups' ids do not meet");
        assert!(made.iter().all(|i| *i != 0 && *i < 1 << 63), "stored ids never look legacy");
    }

    #[test]
    fn version_4_files_load_with_their_email_ids_and_no_save_date() {
        let v4 = MailboxIndexV4 {
            uid_validity: 9,
            uid_next: 2,
            highest_modseq: 8,
            applied_index: 3,
            messages: vec![MessageMetaV4 {
                uid: 1,
                base: "b1".into(),
                in_cur: true,
                flags: 1,
                keywords: vec!["$Work".into()],
                size: 5,
                internal_date: 77,
                modseq: 6,
                crc32c: 9,
                email_id: 4242,
            }],
            vanished: vec![(5, 7)],
            vanished_floor: 0,
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&v4).unwrap();
        let mut bytes = MAGIC_V4.to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&archive).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        bytes.extend_from_slice(&archive);
        let idx = MailboxIndex::decode(&bytes, "v4").unwrap();
        let m = &idx.messages[0];
        assert_eq!((m.email_id, m.saved_s, m.internal_date, m.keywords.len()), (4242, 0, 77, 1));
        assert_eq!(idx.vanished, vec![(5, 7)]);
        assert_eq!(&idx.encode()[..8], MAGIC, "written as the current format");
    }

    #[test]
    fn version_1_files_still_load() {
        #[derive(rkyv::Archive, rkyv::Serialize)]
        struct V1 {
            uid_validity: u32,
            uid_next: u32,
            highest_modseq: u64,
            applied_index: u64,
            messages: Vec<MessageMetaV2>,
        }
        let old = MessageMetaV2 {
            uid: 3,
            base: "b".into(),
            in_cur: true,
            flags: 1,
            keywords: vec![],
            size: 5,
            internal_date: 0,
            modseq: 6,
        };
        let v1 = V1 { uid_validity: 9, uid_next: 4, highest_modseq: 8, applied_index: 3, messages: vec![old] };
        let archive = rkyv::to_bytes::<rancor::Error>(&v1).unwrap();
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&archive).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 4]);
        bytes.extend_from_slice(&archive);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        std::fs::write(&path, bytes).unwrap();
        let idx = MailboxIndex::load(&path).unwrap();
        assert_eq!((idx.uid_validity, idx.uid_next, idx.vanished_floor), (9, 4, 8));
        assert_eq!((idx.messages[0].uid, idx.messages[0].modseq, idx.messages[0].crc32c), (3, 6, 0));
        assert_eq!(idx.vanished_since(7), None);
    }
}
