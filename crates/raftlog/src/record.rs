//! On-disk record framing: encode and validate one log record. Pure code, no I/O.
//!
//! A record is a fixed 64-byte header followed by the payload, padded to a multiple of
//! [`RECORD_ALIGN`] bytes so the payload of every record starts 16-byte aligned inside a
//! segment and can be accessed in place as an rkyv archive.
//!
//! ```text
//!  0..4    payload length (u32 LE)
//!  4..8    crc32c of bytes 8..64 and of the payload (u32 LE)
//!  8..16   segment sequence number: ties the record to one life of its segment file
//! 16..24   log id: term
//! 24..32   log id: leader node id
//! 32..40   log id: index
//! 40..48   durable hint: the highest index known durable when this record was framed
//! 48       entry kind (see [`EntryKind`])
//! 49..64   reserved, zero
//! ```
//!
//! The durable hint lets recovery tell a torn tail from corruption: a record that fails
//! validation while a later valid record's hint covers its index was once durable, so the
//! damage is corruption, not an interrupted write. This module must never guess: every
//! decode either proves a record valid or says why it is not.

/// Bytes of the record header.
pub const HEADER_LEN: usize = 64;
/// Records start on this alignment inside a segment.
pub const RECORD_ALIGN: usize = 16;

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A blank entry (leader's first entry in a term).
    Blank = 0,
    /// Application data, an rkyv archive.
    Normal = 1,
    /// A membership change, bincode-encoded.
    Membership = 2,
    /// Not an entry: written when the log goes idle, at the position where the next record
    /// will go, to carry the durable hint of the last batch (nothing else would prove that
    /// batch was durable). The next append overwrites it; the index never lists it.
    Marker = 3,
}

impl EntryKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Blank),
            1 => Some(Self::Normal),
            2 => Some(Self::Membership),
            3 => Some(Self::Marker),
            _ => None,
        }
    }
}

/// A log position: (term, leader node, index), the storage form of openraft's `LogId<u64>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordId {
    pub term: u64,
    pub node: u64,
    pub index: u64,
}

/// The validated header of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub payload_len: u32,
    pub segment_seq: u64,
    pub id: RecordId,
    pub durable_hint: u64,
    pub kind: EntryKind,
}

impl RecordHeader {
    /// Total bytes the record occupies on disk, padding included.
    pub fn frame_len(&self) -> usize {
        frame_len(self.payload_len as usize)
    }
}

/// Total on-disk size of a record carrying `payload_len` bytes.
pub fn frame_len(payload_len: usize) -> usize {
    (HEADER_LEN + payload_len).next_multiple_of(RECORD_ALIGN)
}

/// Why bytes at a position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer bytes than a header remain.
    Short,
    /// The header is all zero: never written (or zeroed by a truncation).
    Zero,
    /// The length field points past the end of the segment or above the limit.
    BadLength,
    /// Checksum mismatch.
    Checksum,
    /// Valid record of another life of this segment file.
    StaleSegment,
    /// Unknown entry kind or nonzero reserved bytes.
    BadField,
}

fn crc_of(header_tail: &[u8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(header_tail);
    crc32c::crc32c_append(crc, payload)
}

/// Append one framed record to `out` (which must be at a [`RECORD_ALIGN`] boundary
/// relative to the segment start).
pub fn encode(out: &mut Vec<u8>, segment_seq: u64, id: RecordId, durable_hint: u64, kind: EntryKind, payload: &[u8]) {
    debug_assert!(out.len().is_multiple_of(RECORD_ALIGN), "record must start aligned");
    let payload_len = u32::try_from(payload.len()).expect("payload length fits u32");
    let start = out.len();
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&payload_len.to_le_bytes());
    header[8..16].copy_from_slice(&segment_seq.to_le_bytes());
    header[16..24].copy_from_slice(&id.term.to_le_bytes());
    header[24..32].copy_from_slice(&id.node.to_le_bytes());
    header[32..40].copy_from_slice(&id.index.to_le_bytes());
    header[40..48].copy_from_slice(&durable_hint.to_le_bytes());
    header[48] = kind as u8;
    let crc = crc_of(&header[8..], payload);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out.resize(start + frame_len(payload.len()), 0);
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The length bound for reading records back: whatever was written under an earlier,
/// larger `max_payload_bytes` still reads (the segment's bytes bound the length, and the
/// checksum the rest); the option limits what is appended now.
pub const ANY_PAYLOAD: u32 = u32::MAX;

/// Validate the record at the start of `buf`, which holds the rest of the segment.
///
/// `segment_seq` is the owner segment's sequence number; `max_payload` bounds the length
/// field so a corrupt length can never cause a large read.
pub fn decode(buf: &[u8], segment_seq: u64, max_payload: u32) -> Result<RecordHeader, Invalid> {
    if buf.len() < HEADER_LEN {
        return Err(Invalid::Short);
    }
    let header = &buf[..HEADER_LEN];
    if header.iter().all(|b| *b == 0) {
        return Err(Invalid::Zero);
    }
    let payload_len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    if payload_len > max_payload || frame_len(payload_len as usize) > buf.len() {
        return Err(Invalid::BadLength);
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + payload_len as usize];
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if crc != crc_of(&header[8..], payload) {
        return Err(Invalid::Checksum);
    }
    let kind = EntryKind::from_u8(header[48]).ok_or(Invalid::BadField)?;
    if header[49..].iter().any(|b| *b != 0) {
        return Err(Invalid::BadField);
    }
    let seq = u64_at(header, 8);
    if seq != segment_seq {
        return Err(Invalid::StaleSegment);
    }
    Ok(RecordHeader {
        payload_len,
        segment_seq: seq,
        id: RecordId { term: u64_at(header, 16), node: u64_at(header, 24), index: u64_at(header, 32) },
        durable_hint: u64_at(header, 40),
        kind,
    })
}

/// Cheap pre-check used when searching damaged regions: does `buf` start with a header
/// of segment `segment_seq`? Avoids computing a checksum at every aligned offset.
pub fn looks_like_record(buf: &[u8], segment_seq: u64) -> bool {
    buf.len() >= HEADER_LEN && u64_at(buf, 8) == segment_seq
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let id = RecordId { term: 3, node: 2, index: 77 };
        encode(&mut out, 9, id, 70, EntryKind::Normal, payload);
        out
    }

    #[test]
    fn roundtrip_and_padding() {
        for len in [0usize, 1, 15, 16, 17, 1000] {
            let payload = vec![0xA5; len];
            let buf = one(&payload);
            assert_eq!(buf.len() % RECORD_ALIGN, 0);
            let h = decode(&buf, 9, 1 << 20).unwrap();
            assert_eq!(h.payload_len as usize, len);
            assert_eq!(h.id.index, 77);
            assert_eq!(h.durable_hint, 70);
            assert_eq!(h.frame_len(), buf.len());
        }
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let buf = one(b"hello world, this is a record");
        let used = HEADER_LEN + 29;
        for at in 0..used {
            let mut bad = buf.clone();
            bad[at] ^= 0x01;
            assert!(decode(&bad, 9, 1 << 20).is_err(), "flip at {at} undetected");
        }
    }

    #[test]
    fn zero_short_stale_and_oversized() {
        assert_eq!(decode(&[0u8; 10], 9, 100), Err(Invalid::Short));
        assert_eq!(decode(&[0u8; 128], 9, 100), Err(Invalid::Zero));
        let buf = one(b"x");
        assert_eq!(decode(&buf, 8, 100), Err(Invalid::StaleSegment));
        let big = one(&[1u8; 200]);
        assert_eq!(decode(&big, 9, 100), Err(Invalid::BadLength));
        assert_eq!(decode(&big[..100], 9, 1000), Err(Invalid::BadLength));
    }
}
