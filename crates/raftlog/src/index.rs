//! The in-memory position index: for every live entry, which segment file and byte offset
//! holds it. Memory per entry is one `u32`; entry payloads are never held here.
//!
//! Only the writer thread mutates the index (under the write lock, briefly); readers take
//! the read lock to find a record and then read the file without holding it.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use crate::record::RecordId;

/// One live segment and the records it holds.
#[derive(Debug)]
pub(crate) struct Seg {
    pub slot: u32,
    pub file: Arc<File>,
    pub seq: u64,
    /// Index of the record at `offsets[0]`.
    pub first_index: u64,
    /// Byte offset of each record, in index order.
    pub offsets: Vec<u32>,
    /// Byte offset just past the last record.
    pub end: u64,
}

impl Seg {
    /// Index one past the last record.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.offsets.len() as u64
    }

    /// `(offset, len)` of the record at `index`, if this segment holds it.
    pub fn locate(&self, index: u64) -> Option<(u64, usize)> {
        let k = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        let off = u64::from(*self.offsets.get(k)?);
        let next = self.offsets.get(k + 1).map_or(self.end, |o| u64::from(*o));
        Some((off, (next - off) as usize))
    }
}

/// Where every live entry is.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub segments: VecDeque<Seg>,
    pub purged: Option<RecordId>,
    /// Id of the last entry, or the purged id when no entry is left.
    pub last: Option<RecordId>,
}

impl Index {
    /// Index of the first entry that may be read.
    pub fn first_readable(&self) -> u64 {
        self.purged.map_or(0, |p| p.index + 1)
    }

    /// Segment position holding `index`.
    pub fn find(&self, index: u64) -> Option<usize> {
        if index < self.first_readable() {
            return None;
        }
        let k = self.segments.partition_point(|s| s.first_index <= index).checked_sub(1)?;
        (index < self.segments[k].next_index()).then_some(k)
    }

    /// `(file, offset, len, seq)` of the record at `index`.
    pub fn locate(&self, index: u64) -> Option<(Arc<File>, u64, usize, u64, u32)> {
        let seg = &self.segments[self.find(index)?];
        let (off, len) = seg.locate(index)?;
        Some((seg.file.clone(), off, len, seg.seq, seg.slot))
    }
}
