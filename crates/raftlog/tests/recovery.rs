//! Recovery from damage: corruption before the tail is reported with file and offset and
//! the log refuses to open; a torn tail is cut off and the log stays usable.

mod support;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use raftlog::{EntryIn, EntryKind, Error, Log, Options, RecordId};

fn opts() -> Options {
    Options { segment_bytes: 128 << 10, max_payload_bytes: 32 << 10, ..Options::default() }
}

fn payload(index: u64) -> Vec<u8> {
    let len = 200 + (index * 37 % 3000) as usize;
    (0..len).map(|k| (index as usize * 31 + k) as u8).collect()
}

fn entry(index: u64) -> EntryIn {
    EntryIn { id: RecordId { term: 1 + index / 50, node: 1, index }, kind: EntryKind::Normal, payload: payload(index) }
}

fn append_durable(log: &Log, range: std::ops::Range<u64>) {
    support::append_durable_with(log, range, entry);
}

fn assert_entries(log: &Log, range: std::ops::Range<u64>) {
    for i in range {
        let rec = log.read(i).unwrap().unwrap_or_else(|| panic!("entry {i} missing"));
        assert_eq!(rec.header.id, entry(i).id);
        assert_eq!(rec.payload(), payload(i).as_slice(), "payload of {i}");
    }
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
    f.sync_all().unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let f = OpenOptions::new().read(true).open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// Model records that were written but never synced: frame `range` right after entry
/// `after`, with a durable hint claiming only entries up to `after` durable. Returns the
/// segment file and the offset of the first of them.
fn write_unsynced(log: Log, after: u64, range: std::ops::Range<u64>) -> (std::path::PathBuf, u64) {
    let (path, offset, len) = log.locate(after).unwrap();
    drop(log);
    let header = read_at(&path, 0, raftlog::segment::SEGMENT_HEADER_LEN);
    let seq = raftlog::segment::SegmentHeader::decode(&header).unwrap().seq;
    let mut batch = Vec::new();
    for i in range {
        let e = entry(i);
        raftlog::record::encode(&mut batch, seq, e.id, after + 1, e.kind, &e.payload);
    }
    let tail = offset + len as u64;
    write_at(&path, tail, &batch);
    (path, tail)
}

/// A log of 200 entries over several segments; returns where entry `victim` lives.
fn build(dir: &Path, victim: u64) -> (std::path::PathBuf, u64, usize) {
    let log = Log::open(dir, opts()).unwrap();
    append_durable(&log, 0..200);
    log.locate(victim).unwrap()
}

#[test]
fn flipped_byte_in_committed_record_is_reported_with_file_and_offset() {
    for (victim, at) in [(40u64, 3usize), (40, 70), (99, 150), (0, 20)] {
        let dir = tempfile::tempdir().unwrap();
        let (path, offset, _) = build(dir.path(), victim);
        let mut b = read_at(&path, offset + at as u64, 1);
        b[0] ^= 0x10;
        write_at(&path, offset + at as u64, &b);
        match Log::open(dir.path(), opts()) {
            Err(Error::Corrupt { path: p, offset: o, .. }) => {
                assert_eq!((p, o), (path.clone(), offset), "victim {victim} flip at +{at}");
            }
            Err(e) => panic!("expected corruption, got {e}"),
            Ok(_) => panic!("opened a log with a flipped byte in entry {victim}"),
        }
    }
}

#[test]
fn record_cut_short_in_the_middle_is_corruption() {
    // Zero the second half of a record in the middle of the log (a lost write of a sector).
    let dir = tempfile::tempdir().unwrap();
    let (path, offset, len) = build(dir.path(), 77);
    write_at(&path, offset + len as u64 / 2, &vec![0u8; len / 2]);
    let err = Log::open(dir.path(), opts()).err().expect("must not open");
    assert!(matches!(err, Error::Corrupt { offset: o, .. } if o == offset), "{err}");

    // Cut the segment file itself in the middle of a record while later segments exist.
    let dir = tempfile::tempdir().unwrap();
    let (path, offset, len) = build(dir.path(), 30);
    let log_last_path = {
        let log = Log::open(dir.path(), opts()).unwrap();
        log.locate(199).unwrap().0
    };
    assert_ne!(path, log_last_path, "victim must not be in the last segment");
    OpenOptions::new().write(true).open(&path).unwrap().set_len(offset + len as u64 / 2).unwrap();
    let err = Log::open(dir.path(), opts()).err().expect("must not open");
    assert!(matches!(&err, Error::Corrupt { path: p, offset: o, .. } if *o == offset && *p == path), "{err}");
}

#[test]
fn torn_final_record_is_truncated_and_the_log_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_durable(&log, 0..199);
    // The final write (entry 199, never acknowledged) reached the disk only partly.
    let (path, offset) = write_unsynced(log, 198, 199..200);
    let len = raftlog::record::frame_len(payload(199).len());
    let mut tail = read_at(&path, offset, len);
    for b in &mut tail[len / 3..] {
        *b = 0xEE;
    }
    write_at(&path, offset, &tail);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.open_report().torn_tail, Some((path.clone(), offset)));
    assert_eq!(log.bounds().1.unwrap().index, 198);
    assert!(log.read(199).unwrap().is_none());
    assert_entries(&log, 0..199);
    // Usable: the same index is written again, survives reopen, nothing else reappears.
    append_durable(&log, 199..260);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.open_report().torn_tail, None);
    assert_eq!(log.bounds().1.unwrap().index, 259);
    assert_entries(&log, 0..260);
}

#[test]
fn damage_in_the_last_acknowledged_batch_is_corruption() {
    // Nothing is appended after the last batch, so only the idle marker vouches for it.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_durable(&log, 0..25);
    let (path, offset, _) = log.locate(22).unwrap();
    drop(log);
    write_at(&path, offset + 80, &[0xAB; 8]);
    let err = Log::open(dir.path(), opts()).err().expect("must not open");
    assert!(matches!(&err, Error::Corrupt { path: p, offset: o, .. } if *o == offset && *p == path), "{err}");
}

#[test]
fn unacknowledged_batch_after_a_torn_record_is_discarded_not_reported() {
    // Model a batch that was written but never synced: records 20..25 framed with a durable
    // hint of 20 (only 0..20 known durable), the first of them torn.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_durable(&log, 0..20);
    let (path, tail) = write_unsynced(log, 19, 20..25);
    write_at(&path, tail + 80, &[0xAB; 8]);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.open_report().torn_tail, Some((path.clone(), tail)));
    assert_eq!(log.bounds().1.unwrap().index, 19);
    assert_entries(&log, 0..20);
    for i in 20..25 {
        assert!(log.read(i).unwrap().is_none(), "entry {i} must be gone");
    }
    // The discarded records were zeroed: appending shorter entries and reopening does not
    // resurrect any of them.
    append_durable(&log, 20..22);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.bounds().1.unwrap().index, 21);
    assert_entries(&log, 0..22);
}

#[test]
fn truncate_and_purge_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_durable(&log, 0..200);
    rt.block_on(log.truncate(150)).unwrap();
    rt.block_on(log.purge(RecordId { term: 2, node: 1, index: 120 })).unwrap();
    append_durable(&log, 150..170);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.bounds(), (121, Some(entry(169).id)));
    assert!(log.read(120).unwrap().is_none());
    assert_entries(&log, 121..170);
    // Purge beyond the end, then continue after the purge point.
    rt.block_on(log.purge(RecordId { term: 9, node: 2, index: 500 })).unwrap();
    append_durable(&log, 501..505);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.bounds().0, 501);
    assert_entries(&log, 501..505);
}

#[test]
fn vote_is_durable_and_torn_meta_slot_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    let v1 = raftlog::StoredVote { term: 3, node: 2, committed: false };
    let v2 = raftlog::StoredVote { term: 4, node: 1, committed: true };
    rt.block_on(log.update_meta(move |m| m.vote = Some(v1))).unwrap();
    rt.block_on(log.update_meta(move |m| m.vote = Some(v2))).unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.meta().vote, Some(v2));
    drop(log);
    // Every open writes a fresh slot: write two votes so the newest slot holds v2 again.
    let log = Log::open(dir.path(), opts()).unwrap();
    rt.block_on(log.update_meta(move |m| m.vote = Some(v1))).unwrap();
    rt.block_on(log.update_meta(move |m| m.vote = Some(v2))).unwrap();
    drop(log);
    let meta = dir.path().join("meta");
    let bytes = std::fs::read(&meta).unwrap();
    let seq = |k: usize| u64::from_le_bytes(bytes[k * 4096 + 16..k * 4096 + 24].try_into().unwrap());
    let newest = if seq(0) > seq(1) { 0 } else { 1 };
    write_at(&meta, newest as u64 * 4096 + 40, &[0xFF; 4]);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.meta().vote, Some(v1), "torn newest slot falls back to the previous vote");
}
