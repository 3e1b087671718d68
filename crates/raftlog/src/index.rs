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

    /// Bytes of the records after `index` (of every readable record, if `index` is below
    /// them).
    pub fn bytes_after(&self, index: u64) -> u64 {
        let from = index.saturating_add(1).max(self.first_readable());
        let tail = |s: &Seg| {
            let k = usize::try_from(from.saturating_sub(s.first_index)).unwrap_or(usize::MAX);
            s.offsets.get(k).map_or(0, |o| s.end - u64::from(*o))
        };
        self.segments.iter().map(tail).sum()
    }

    /// The highest index a purge may reach so the records after it hold at most `bytes`:
    /// `None` if the readable records already do.
    pub fn purge_point_keeping(&self, bytes: u64) -> Option<u64> {
        let mut later = 0u64;
        for s in self.segments.iter().rev() {
            // Records k.. of this segment, through the end of the log, hold this much.
            let k = s.offsets.partition_point(|o| s.end - u64::from(*o) + later > bytes);
            if k > 0 {
                let first_kept = s.first_index + k as u64;
                return (first_kept > self.first_readable()).then(|| first_kept - 1);
            }
            later += s.offsets.first().map_or(0, |o| s.end - u64::from(*o));
        }
        None
    }

    /// `(file, offset, len, seq)` of the record at `index`.
    pub fn locate(&self, index: u64) -> Option<(Arc<File>, u64, usize, u64, u32)> {
        let seg = &self.segments[self.find(index)?];
        let (off, len) = seg.locate(index)?;
        Some((seg.file.clone(), off, len, seg.seq, seg.slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two segments: indexes 10..13 at offsets 100, 200, 300 (end 400) and 13..15 at 100,
    /// 150 (end 250): records of 100 bytes, then of 50 and 100.
    fn index(purged: Option<u64>) -> Index {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let seg = |first_index, offsets: Vec<u32>, end| Seg {
            slot: 0,
            file: file.clone(),
            seq: 1,
            first_index,
            offsets,
            end,
        };
        Index {
            segments: [seg(10, vec![100, 200, 300], 400), seg(13, vec![100, 150], 250)].into(),
            purged: purged.map(|index| RecordId { term: 1, node: 1, index }),
            last: Some(RecordId { term: 1, node: 1, index: 14 }),
        }
    }

    #[test]
    fn bytes_after_an_index_and_the_purge_point_that_keeps_a_budget() {
        let idx = index(Some(9));
        assert_eq!(idx.bytes_after(9), 450);
        assert_eq!(idx.bytes_after(0), 450, "below the log: every readable record");
        assert_eq!(
            (idx.bytes_after(11), idx.bytes_after(12), idx.bytes_after(13), idx.bytes_after(14)),
            (250, 150, 100, 0)
        );
        assert_eq!(index(Some(11)).bytes_after(0), 250, "purged records are not counted");

        assert_eq!(idx.purge_point_keeping(450), None, "the log is within the budget");
        assert_eq!(idx.purge_point_keeping(449), Some(10));
        assert_eq!(idx.purge_point_keeping(250), Some(11));
        assert_eq!(idx.purge_point_keeping(249), Some(12));
        assert_eq!(idx.purge_point_keeping(150), Some(12));
        assert_eq!(idx.purge_point_keeping(100), Some(13));
        assert_eq!(idx.purge_point_keeping(0), Some(14));
        assert_eq!(index(Some(12)).purge_point_keeping(249), None, "already purged that far");
        for budget in 0..500 {
            if let Some(p) = idx.purge_point_keeping(budget) {
                assert!(idx.bytes_after(p) <= budget && (p == 9 || idx.bytes_after(p - 1) > budget), "{budget}");
            }
        }
    }
}
