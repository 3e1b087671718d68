//! The per-mailbox index: UID → Maildir file, flags, keywords, size, internal date, modseq.
//!
//! Stored as `mailstore.index` in the mailbox's Maildir++ directory: an rkyv archive behind
//! an 8-byte magic and a crc32c, opened with memmap2 and validated, so a restart reads the
//! index without touching a single message. Written only at checkpoints (see `store`), by
//! write-to-temporary and rename, so a reader sees the old or the new index, never a mix.

use std::fs::File;
use std::path::Path;

use rkyv::rancor;

/// File name of the index inside a mailbox directory.
pub const INDEX_FILE: &str = "mailstore.index";
const MAGIC: &[u8; 8] = b"MSIDX001";
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
}

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
        }
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

    /// Open and validate the index at `path` through a memory map.
    pub fn load(path: &Path) -> Result<Self, IndexError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| IndexError::Io { path: name.clone(), source })?;
        // SAFETY: the store is the only writer of index files and replaces them by rename,
        // never in place, so the mapped file does not change while mapped.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|source| IndexError::Io { path: name.clone(), source })?;
        let corrupt = |reason: &str| IndexError::Corrupt { path: name.clone(), reason: reason.into() };
        if map.len() < PREFIX_LEN || &map[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let archive = &map[PREFIX_LEN..];
        let crc = u32::from_le_bytes(map[8..12].try_into().expect("4 bytes"));
        if crc32c::crc32c(archive) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        // The map is page-aligned and the prefix is 16 bytes, so the archive is aligned.
        rkyv::from_bytes::<Self, rancor::Error>(archive).map_err(|e| corrupt(&e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
