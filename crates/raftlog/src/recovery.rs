//! Opening a log directory: read the meta file, scan every segment, and decide for the
//! first damaged spot whether it is a torn tail (truncate it) or corruption (refuse to open).
//!
//! The rule: a record that fails validation at index `i` is corruption if any valid record
//! written later (later in its segment, or in a later segment) carries a durable hint above
//! `i`, because then `i` was once known durable. Otherwise nothing after `i` was ever
//! acknowledged, so everything from `i` on is an interrupted write and is zeroed.
//! Recovery never skips a bad record and serves what follows.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_uring::IoUring;

use crate::error::Error;
use crate::index::Seg;
use crate::meta::{self, Meta, MetaState, META_SLOT_LEN};
use crate::record::{self, EntryKind, Invalid, RecordId, RECORD_ALIGN};
use crate::segment::{self, parse_slot_file_name, slot_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::uring;

/// Sequence numbers reserved per open: a log never rolls over this many segments between
/// two opens (2^32 segments of even 64 KiB is 256 TiB).
const SEQ_RESERVE: u64 = 1 << 32;

/// What recovery found and did, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The last entry in the log after recovery.
    pub last: Option<RecordId>,
    /// The last purged entry.
    pub purged: Option<RecordId>,
    /// Where an interrupted write was cut off, if one was.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Segments that held live entries.
    pub live_segments: usize,
}

pub(crate) struct Recovered {
    pub files: HashMap<u32, Arc<File>>,
    /// Free slots marked clean.
    pub free: Vec<u32>,
    /// Free slots that may hold bytes of an earlier life: scrubbed before reuse.
    pub dirty: Vec<u32>,
    pub segments: Vec<Seg>,
    pub next_seq: u64,
    pub meta: Meta,
    pub meta_seq: u64,
    pub meta_file: File,
    pub report: OpenReport,
}

struct Scan {
    slot: u32,
    header: SegmentHeader,
    offsets: Vec<u32>,
    last: Option<RecordId>,
    /// Where scanning stopped and why.
    stop: u64,
    stop_reason: String,
    /// Highest durable hint of any valid record.
    max_hint: u64,
    /// Scanning stopped at a valid marker for the next index.
    clean_marker: bool,
}

impl Scan {
    fn next_index(&self) -> u64 {
        self.header.first_index + self.offsets.len() as u64
    }
}

fn read_all(path: &Path) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut buf)).map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

fn scan(slot: u32, header: SegmentHeader, buf: &[u8]) -> Scan {
    let mut s = Scan {
        slot,
        header,
        offsets: Vec::new(),
        last: None,
        stop: 0,
        stop_reason: String::new(),
        max_hint: 0,
        clean_marker: false,
    };
    let mut pos = SEGMENT_HEADER_LEN;
    // Bounded: every iteration advances `pos` by at least one header.
    loop {
        let expected = s.next_index();
        match record::decode(&buf[pos.min(buf.len())..], header.seq, record::ANY_PAYLOAD) {
            Ok(h) if h.kind == EntryKind::Marker && h.id.index == expected => {
                s.max_hint = s.max_hint.max(h.durable_hint);
                s.stop_reason = "end of data (marker)".into();
                s.clean_marker = true;
                break;
            }
            Ok(h) if h.id.index == expected && h.kind != EntryKind::Marker => {
                s.offsets.push(pos as u32);
                s.last = Some(h.id);
                s.max_hint = s.max_hint.max(h.durable_hint);
                pos += h.frame_len();
            }
            Ok(h) => {
                s.stop_reason = format!("record holds index {} where {expected} belongs", h.id.index);
                break;
            }
            Err(why) => {
                s.stop_reason = match why {
                    Invalid::Zero | Invalid::Short => "end of data".into(),
                    other => format!("{other:?}"),
                };
                break;
            }
        }
    }
    s.stop = pos as u64;
    s
}

/// A valid record after `from` in this segment whose hint proves index `index` was durable.
fn later_proof_in(buf: &[u8], from: usize, seq: u64, index: u64) -> Option<usize> {
    let mut q = from + RECORD_ALIGN;
    while q + record::HEADER_LEN <= buf.len() {
        if record::looks_like_record(&buf[q..], seq) {
            if let Ok(h) = record::decode(&buf[q..], seq, record::ANY_PAYLOAD) {
                if h.durable_hint > index {
                    return Some(q);
                }
            }
        }
        q += RECORD_ALIGN;
    }
    None
}

/// End of the bytes after `stop` that belong to this life of the segment (a torn record or
/// records of an unacknowledged batch). Records of earlier lives never validate and stay.
fn same_life_garbage_end(buf: &[u8], stop: usize, seq: u64, clean_marker: bool) -> usize {
    let mut end = 0;
    if clean_marker {
        // A valid marker at the stop is the tail's own evidence, not garbage.
    } else if let Some(head) = buf.get(stop..stop + record::HEADER_LEN) {
        let dirty = head.iter().any(|b| *b != 0);
        let stale = matches!(record::decode(&buf[stop..], seq, record::ANY_PAYLOAD), Err(Invalid::StaleSegment));
        if dirty && !stale {
            end = stop + record::HEADER_LEN;
        }
    }
    let mut q = stop + RECORD_ALIGN;
    while q + record::HEADER_LEN <= buf.len() {
        if record::looks_like_record(&buf[q..], seq) {
            end = q + record::HEADER_LEN;
        }
        q += RECORD_ALIGN;
    }
    end
}

pub(crate) fn recover(dir: &Path) -> Result<Recovered, Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut ring = IoUring::new(8).map_err(|e| Error::io(dir, e))?;
    let meta_path = dir.join("meta");
    let fresh = !meta_path.exists();
    let meta_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&meta_path)
        .map_err(|e| Error::io(&meta_path, e))?;
    if fresh {
        meta_file.set_len(2 * META_SLOT_LEN as u64).map_err(|e| Error::io(&meta_path, e))?;
        uring::sync(&mut ring, &meta_file).map_err(|e| Error::io(&meta_path, e))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    }
    let (mut meta, mut meta_seq) = match meta::decode_file(&read_all(&meta_path)?) {
        MetaState::Empty => (Meta::default(), 0),
        MetaState::Valid { seq, meta } => (meta, seq),
        MetaState::Corrupt => {
            return Err(Error::Corrupt { path: meta_path, offset: 0, reason: "no valid meta slot".into() });
        }
    };

    let mut files = HashMap::new();
    let mut free = Vec::new();
    let mut dirty = Vec::new();
    let mut live: Vec<(u32, SegmentHeader)> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let Some(slot) = entry.file_name().to_str().and_then(parse_slot_file_name) else {
            continue;
        };
        let path = entry.path();
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut block = vec![0u8; SEGMENT_HEADER_LEN];
        let n = file.read_at(&mut block, 0).map_err(|e| Error::io(&path, e))?;
        match SegmentHeader::decode(&block[..n]) {
            Some(h) => live.push((slot, h)),
            None if segment::is_clean(&block[..n]) => free.push(slot),
            None => dirty.push(slot),
        }
        files.insert(slot, Arc::new(file));
    }
    live.sort_by_key(|(_, h)| h.seq);
    let max_seq = live.last().map_or(0, |(_, h)| h.seq);

    let path_of = |slot: u32| dir.join(slot_file_name(slot));
    let mut scans: Vec<Scan> = Vec::with_capacity(live.len());
    for (slot, header) in &live {
        let buf = read_all(&path_of(*slot))?;
        scans.push(scan(*slot, *header, &buf));
    }

    // Segments entirely below the purge point are free.
    let purged_next = meta.purged.map_or(0, |p| p.index + 1);
    let mut to_free: Vec<u32> = Vec::new();
    while scans.len() > 1 && scans[1].header.first_index <= purged_next {
        to_free.push(scans.remove(0).slot);
    }
    if let (Some(first), Some(p)) = (scans.first(), meta.purged) {
        if first.header.first_index > p.index + 1 && !first.offsets.is_empty() {
            return Err(Error::Corrupt {
                path: path_of(first.slot),
                offset: 0,
                reason: format!("log resumes at {} after purge point {}", first.header.first_index, p.index),
            });
        }
    }

    // Walk the chain; the first break is either a rollover, a torn tail, or corruption.
    let mut keep = scans.len();
    let mut torn_tail = None;
    let mut zero_tail: Option<(u32, u64, u64)> = None;
    for k in 0..scans.len() {
        let expected = scans[k].next_index();
        if scans.get(k + 1).is_some_and(|n| n.header.first_index == expected) {
            continue;
        }
        let path = path_of(scans[k].slot);
        let buf = read_all(&path)?;
        let stop = scans[k].stop as usize;
        let proof = later_proof_in(&buf, stop, scans[k].header.seq, expected)
            .map(|q| (path.clone(), q as u64))
            .or_else(|| scans[k + 1..].iter().find(|s| s.max_hint > expected).map(|s| (path_of(s.slot), 0)));
        if let Some((proof_path, proof_at)) = proof {
            return Err(Error::Corrupt {
                path,
                offset: stop as u64,
                reason: format!(
                    "entry {expected} is damaged ({}), but {} at offset {proof_at} shows it was durable",
                    scans[k].stop_reason,
                    proof_path.display()
                ),
            });
        }
        // Torn tail: zero whatever garbage follows, free later segments.
        let garbage_end = same_life_garbage_end(&buf, stop, scans[k].header.seq, scans[k].clean_marker);
        if garbage_end > stop {
            torn_tail = Some((path.clone(), stop as u64));
            zero_tail = Some((scans[k].slot, stop as u64, garbage_end as u64));
        }
        if k + 1 < scans.len() && torn_tail.is_none() {
            torn_tail = Some((path, stop as u64));
        }
        keep = k + 1;
        break;
    }
    for s in scans.drain(keep..) {
        to_free.push(s.slot);
    }
    // Empty segments hold nothing; free them so the writer starts a fresh one.
    while scans.last().is_some_and(|s| s.offsets.is_empty()) {
        to_free.push(scans.pop().expect("last").slot);
    }

    if let Some((slot, from, to)) = zero_tail {
        if scans.iter().any(|s| s.slot == slot) {
            let zeros = vec![0u8; (to - from) as usize];
            uring::write_and_sync(&mut ring, &files[&slot], &[(from, &zeros)])
                .map_err(|e| Error::io(path_of(slot), e))?;
        }
    }
    let zeros = vec![0u8; SEGMENT_HEADER_LEN];
    for slot in &to_free {
        uring::write_and_sync(&mut ring, &files[slot], &[(0, &zeros)]).map_err(|e| Error::io(path_of(*slot), e))?;
        dirty.push(*slot);
    }
    // What we recovered may sit only in the page cache after a process crash: make it
    // durable before new records claim it is.
    for s in &scans {
        uring::sync(&mut ring, &files[&s.slot]).map_err(|e| Error::io(path_of(s.slot), e))?;
    }

    let next_seq = meta.seq_floor.max(max_seq + 1).max(1);
    meta.seq_floor = next_seq + SEQ_RESERVE;
    meta_seq += 1;
    let block = meta::encode_slot(&meta, meta_seq);
    uring::write_and_sync(&mut ring, &meta_file, &[(meta::slot_offset(meta_seq), &block)])
        .map_err(|e| Error::io(&meta_path, e))?;

    let mut last = scans.iter().rev().find_map(|s| s.last);
    if let Some(p) = meta.purged {
        if last.is_none_or(|l| l.index < p.index) {
            last = Some(p);
        }
    }
    let segments: Vec<Seg> = scans
        .iter()
        .map(|s| Seg {
            slot: s.slot,
            file: files[&s.slot].clone(),
            seq: s.header.seq,
            first_index: s.header.first_index,
            offsets: s.offsets.clone(),
            end: s.stop,
        })
        .collect();
    let report = OpenReport { last, purged: meta.purged, torn_tail, live_segments: segments.len() };
    Ok(Recovered { files, free, dirty, segments, next_seq, meta, meta_seq, meta_file, report })
}
