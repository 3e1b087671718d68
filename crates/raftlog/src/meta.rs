//! The metadata file: vote, last purged log id and (optionally) committed log id.
//! Pure encoding; the writer thread does the I/O.
//!
//! Two 4 KiB slots are written alternately, each with a sequence number and a crc32c, so a
//! torn write of one slot always leaves the previous state readable in the other. A file
//! where neither slot validates but bytes were written is corruption, never "no vote".

use crate::record::RecordId;

/// Bytes of one slot; the file holds two.
pub const META_SLOT_LEN: usize = 4096;
const MAGIC: &[u8; 8] = b"RLMETA01";

/// A Raft vote in storage form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredVote {
    pub term: u64,
    pub node: u64,
    pub committed: bool,
}

/// Everything the log keeps outside its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub vote: Option<StoredVote>,
    pub committed: Option<RecordId>,
    pub purged: Option<RecordId>,
    /// Segment sequence numbers below this may have been used; new ones start here.
    pub seq_floor: u64,
}

fn put_id(block: &mut [u8], at: usize, id: Option<RecordId>) {
    if let Some(id) = id {
        block[at] = 1;
        block[at + 8..at + 16].copy_from_slice(&id.term.to_le_bytes());
        block[at + 16..at + 24].copy_from_slice(&id.node.to_le_bytes());
        block[at + 24..at + 32].copy_from_slice(&id.index.to_le_bytes());
    }
}

fn u64_at(block: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"))
}

fn get_id(block: &[u8], at: usize) -> Option<Option<RecordId>> {
    match block[at] {
        0 => Some(None),
        1 => Some(Some(RecordId {
            term: u64_at(block, at + 8),
            node: u64_at(block, at + 16),
            index: u64_at(block, at + 24),
        })),
        _ => None,
    }
}

/// Encode `meta` as slot contents with write sequence `seq`.
pub fn encode_slot(meta: &Meta, seq: u64) -> Vec<u8> {
    let mut block = vec![0u8; META_SLOT_LEN];
    block[0..8].copy_from_slice(MAGIC);
    block[16..24].copy_from_slice(&seq.to_le_bytes());
    if let Some(v) = meta.vote {
        block[24] = 1;
        block[25] = u8::from(v.committed);
        block[32..40].copy_from_slice(&v.term.to_le_bytes());
        block[40..48].copy_from_slice(&v.node.to_le_bytes());
    }
    put_id(&mut block, 48, meta.committed);
    put_id(&mut block, 80, meta.purged);
    block[112..120].copy_from_slice(&meta.seq_floor.to_le_bytes());
    let crc = crc32c::crc32c(&block[16..128]);
    block[8..12].copy_from_slice(&crc.to_le_bytes());
    block
}

/// Decode one slot: `Some((seq, meta))` if valid.
pub fn decode_slot(block: &[u8]) -> Option<(u64, Meta)> {
    if block.len() < 128 || &block[0..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(block[8..12].try_into().ok()?);
    if crc != crc32c::crc32c(&block[16..128]) {
        return None;
    }
    let vote = match block[24] {
        0 => None,
        1 => Some(StoredVote { term: u64_at(block, 32), node: u64_at(block, 40), committed: block[25] == 1 }),
        _ => return None,
    };
    let meta = Meta { vote, committed: get_id(block, 48)?, purged: get_id(block, 80)?, seq_floor: u64_at(block, 112) };
    Some((u64_at(block, 16), meta))
}

/// What the two slots of a meta file say.
#[derive(Debug, PartialEq, Eq)]
pub enum MetaState {
    /// Never written.
    Empty,
    /// The newest valid slot: its sequence number and contents.
    Valid { seq: u64, meta: Meta },
    /// Bytes were written but no slot validates.
    Corrupt,
}

/// Pick the newest valid slot of a whole meta file's contents.
pub fn decode_file(bytes: &[u8]) -> MetaState {
    let slots = [
        bytes.get(..META_SLOT_LEN).and_then(decode_slot),
        bytes.get(META_SLOT_LEN..2 * META_SLOT_LEN).and_then(decode_slot),
    ];
    match slots.into_iter().flatten().max_by_key(|(seq, _)| *seq) {
        Some((seq, meta)) => MetaState::Valid { seq, meta },
        None if bytes.iter().all(|b| *b == 0) => MetaState::Empty,
        None => MetaState::Corrupt,
    }
}

/// Byte offset of the slot used by write sequence `seq`.
pub fn slot_offset(seq: u64) -> u64 {
    (seq % 2) * META_SLOT_LEN as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_valid_slot_wins_and_torn_slot_falls_back() {
        let a = Meta { vote: Some(StoredVote { term: 1, node: 2, committed: false }), ..Meta::default() };
        let b = Meta {
            vote: Some(StoredVote { term: 2, node: 3, committed: true }),
            purged: Some(RecordId { term: 1, node: 2, index: 50 }),
            committed: None,
            seq_floor: 9,
        };
        let mut file = vec![0u8; 2 * META_SLOT_LEN];
        assert_eq!(decode_file(&file), MetaState::Empty);
        file[..META_SLOT_LEN].copy_from_slice(&encode_slot(&a, 2));
        file[META_SLOT_LEN..].copy_from_slice(&encode_slot(&b, 3));
        assert_eq!(decode_file(&file), MetaState::Valid { seq: 3, meta: b });
        file[META_SLOT_LEN + 40] ^= 0xff;
        assert_eq!(decode_file(&file), MetaState::Valid { seq: 2, meta: a });
        file[30] ^= 0xff;
        assert_eq!(decode_file(&file), MetaState::Corrupt);
    }
}
