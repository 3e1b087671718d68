//! A log reopened with another segment size: the segments it holds keep the size they were
//! made with (records are never placed past a file's end), every entry reads back, new
//! segments have the new size, and the old ones are removed as they are freed, so the log's
//! files come to the new size.

mod support;

use std::path::Path;

use raftlog::{EntryIn, EntryKind, Log, Options, RecordId};

fn opts(segment_bytes: u64) -> Options {
    Options { segment_bytes, max_payload_bytes: 32 << 10, ..Options::default() }
}

fn payload(index: u64) -> Vec<u8> {
    format!("entry {index:06} ").repeat(300).into_bytes()
}

fn entry(index: u64) -> EntryIn {
    EntryIn { id: RecordId { term: 1, node: 1, index }, kind: EntryKind::Normal, payload: payload(index) }
}

/// The lengths of the log's segment files, sorted.
fn slot_sizes(dir: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().is_some_and(|n| raftlog::segment::parse_slot_file_name(n).is_some()))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    sizes.sort_unstable();
    sizes
}

/// The log in `dir` opened again with `opts`: it holds `range` and reads it back.
fn reopened(dir: &Path, opts: Options, range: std::ops::Range<u64>) -> Log {
    let log = Log::open(dir, opts).unwrap();
    assert_eq!(log.bounds(), (range.start, Some(entry(range.end - 1).id)));
    assert_reads(&log, range);
    log
}

fn assert_reads(log: &Log, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(log.read(i).unwrap().unwrap().payload(), payload(i).as_slice(), "entry {i}");
    }
}

#[test]
fn a_log_reopened_smaller_keeps_its_segments_until_freed_then_turns_over_to_the_new_size() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (big, small) = (512 << 10, 128 << 10);
    let log = Log::open(dir.path(), opts(big)).unwrap();
    support::append_durable_with(&log, 0..300, entry);
    drop(log);
    assert!(slot_sizes(dir.path()).iter().all(|s| *s == big));

    let log = Log::open(dir.path(), opts(small)).unwrap();
    assert_reads(&log, 0..300);
    support::append_durable_with(&log, 300..600, entry);
    assert_reads(&log, 0..600);
    assert!(slot_sizes(dir.path()).contains(&small), "new segments have the new size");
    drop(log);

    // Reopened again (both sizes live), then everything old purged.
    let log = Log::open(dir.path(), opts(small)).unwrap();
    assert_reads(&log, 0..600);
    let last = rt.block_on(log.roll()).unwrap().unwrap();
    rt.block_on(log.purge(RecordId { term: 1, node: 1, index: last })).unwrap();
    support::append_durable_with(&log, 600..700, entry);
    assert!(
        slot_sizes(dir.path()).iter().all(|s| *s == small),
        "old segments removed when freed: {:?}",
        slot_sizes(dir.path())
    );
    assert_reads(&log, 600..700);
    drop(log);
    reopened(dir.path(), opts(small), 600..700);
}

#[test]
fn a_log_reopened_larger_never_writes_past_an_old_segments_end() {
    let dir = tempfile::tempdir().unwrap();
    let (small, big) = (128 << 10, 512 << 10);
    let log = Log::open(dir.path(), opts(small)).unwrap();
    // Ends inside a segment, which the reopened log appends to.
    support::append_durable_with(&log, 0..37, entry);
    drop(log);
    let log = Log::open(dir.path(), opts(big)).unwrap();
    support::append_durable_with(&log, 37..400, entry);
    assert_reads(&log, 0..400);
    drop(log);
    assert!(
        slot_sizes(dir.path()).iter().all(|s| *s == small || *s == big),
        "no file grew: {:?}",
        slot_sizes(dir.path())
    );
    reopened(dir.path(), opts(big), 0..400);
}

#[test]
fn records_above_a_lowered_payload_limit_still_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), opts(512 << 10)).unwrap();
    support::append_durable_with(&log, 0..20, entry);
    drop(log);
    let lowered = Options { segment_bytes: 512 << 10, max_payload_bytes: 1 << 10, ..Options::default() };
    // Nothing cut at open.
    let log = reopened(dir.path(), lowered, 0..20);
    let (tx, rx) = std::sync::mpsc::channel();
    let refused = log.append_blocking(vec![entry(20)], Box::new(move |r| drop(tx.send(r))));
    assert!(refused.is_err() || rx.recv().unwrap().is_err(), "a new one above the limit is refused");
}

#[test]
fn freed_segments_beyond_a_few_spares_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let log = Log::open(dir.path(), opts(128 << 10)).unwrap();
    // About twenty segments' worth, all live (nothing purged yet).
    support::append_durable_with(&log, 0..500, entry);
    let held = slot_sizes(dir.path()).len();
    assert!(held >= 15, "{held} segment files");
    let last = rt.block_on(log.roll()).unwrap().unwrap();
    rt.block_on(log.purge(RecordId { term: 1, node: 1, index: last })).unwrap();
    support::append_durable_with(&log, 500..510, entry);
    // One live segment, two spares kept, one the preparer may be making.
    let left = slot_sizes(dir.path()).len();
    assert!(left <= 4, "{left} segment files after the purge (were {held})");
    drop(log);
    reopened(dir.path(), opts(128 << 10), 500..510);
}
