//! Segment file header: which life of a slot file this is and where its entries start.
//! Pure code, no I/O.
//!
//! A log is a chain of fixed-size, preallocated segment files (`seg-NNNNN.log`, called
//! slots). Each time a slot is (re)used it gets a new header with a fresh, increasing
//! sequence number; records carry that number, so records left over from an earlier life of
//! the slot never validate. Recovery orders segments by sequence, never by file name.
//!
//! ```text
//!  0..8    magic "RLSEG001"
//!  8..12   crc32c of bytes 12..64
//! 12..16   format version (1)
//! 16..24   sequence number (> 0)
//! 24..32   index of the first record in this segment
//! 32..64   reserved, zero
//! ```
//!
//! A slot that holds no segment starts with [`CLEAN_MAGIC`] when every byte after it is
//! zero (made fresh, or scrubbed after its segment was freed); any other non-header block
//! means the slot may still hold bytes of an earlier life and must be scrubbed before
//! reuse, so purged entries (message bodies) never stay on disk in a free slot.

/// Bytes reserved for the header; records start at this offset.
pub const SEGMENT_HEADER_LEN: usize = 4096;
const MAGIC: &[u8; 8] = b"RLSEG001";
const VERSION: u32 = 1;
/// First bytes of a free slot known to be all zeros after them.
pub const CLEAN_MAGIC: &[u8; 8] = b"RLCLEAN1";

/// The header block of a clean free slot.
pub fn clean_block() -> Vec<u8> {
    let mut block = vec![0u8; SEGMENT_HEADER_LEN];
    block[..8].copy_from_slice(CLEAN_MAGIC);
    block
}

/// Whether `block` (a slot's first bytes) marks a clean free slot.
pub fn is_clean(block: &[u8]) -> bool {
    block.len() >= SEGMENT_HEADER_LEN
        && &block[..8] == CLEAN_MAGIC
        && block[8..SEGMENT_HEADER_LEN].iter().all(|b| *b == 0)
}

/// The header of one live segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub first_index: u64,
}

impl SegmentHeader {
    /// The full header block to write at offset 0.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.seq > 0, "sequence 0 is reserved for 'no header'");
        let mut block = vec![0u8; SEGMENT_HEADER_LEN];
        block[0..8].copy_from_slice(MAGIC);
        block[12..16].copy_from_slice(&VERSION.to_le_bytes());
        block[16..24].copy_from_slice(&self.seq.to_le_bytes());
        block[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32c::crc32c(&block[12..64]);
        block[8..12].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// `None` when the block is not a valid header (free slot, torn header write).
    pub fn decode(block: &[u8]) -> Option<Self> {
        if block.len() < 64 || &block[0..8] != MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(block[8..12].try_into().ok()?);
        if crc != crc32c::crc32c(&block[12..64]) {
            return None;
        }
        if u32::from_le_bytes(block[12..16].try_into().ok()?) != VERSION {
            return None;
        }
        let seq = u64::from_le_bytes(block[16..24].try_into().ok()?);
        let first_index = u64::from_le_bytes(block[24..32].try_into().ok()?);
        (seq > 0).then_some(Self { seq, first_index })
    }
}

/// File name of slot `slot`.
pub fn slot_file_name(slot: u32) -> String {
    format!("seg-{slot:05}.log")
}

/// Slot number of a segment file name, if it is one.
pub fn parse_slot_file_name(name: &str) -> Option<u32> {
    name.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        let h = SegmentHeader { seq: 7, first_index: 1234 };
        let block = h.encode();
        assert_eq!(SegmentHeader::decode(&block), Some(h));
        let mut bad = block.clone();
        bad[30] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), None);
        assert_eq!(SegmentHeader::decode(&[0u8; 4096]), None);
        assert_eq!(parse_slot_file_name(&slot_file_name(42)), Some(42));
        assert_eq!(parse_slot_file_name("meta"), None);
        assert!(is_clean(&clean_block()));
        assert_eq!(SegmentHeader::decode(&clean_block()), None, "a clean slot holds no segment");
        assert!(!is_clean(&block) && !is_clean(&[0u8; 4096]));
    }
}
