//! Purged entries leave the disk when asked: after `roll`, a purge up to the index it
//! returned and `scrub`, no file of the log directory holds a purged payload, even when the
//! log rolled over meanwhile; free slots found dirty at open are scrubbed by the next scrub.
//! Without a scrub, freed slots are reused as they are (no extra writes).

mod support;

use std::path::Path;

use raftlog::{EntryIn, EntryKind, Log, Options, RecordId};

fn opts() -> Options {
    Options { segment_bytes: 128 << 10, max_payload_bytes: 32 << 10, ..Options::default() }
}

/// A payload that names its index, so it can be looked for in the files.
fn payload(index: u64) -> Vec<u8> {
    format!("secret body of entry {index:06} ").repeat(40).into_bytes()
}

fn entry(index: u64) -> EntryIn {
    EntryIn { id: RecordId { term: 1, node: 1, index }, kind: EntryKind::Normal, payload: payload(index) }
}

fn append_durable(log: &Log, range: std::ops::Range<u64>) {
    support::append_durable_with(log, range, entry);
}

/// Which of `indexes` still have their payload's words in some file of `dir`.
fn found_on_disk(dir: &Path, indexes: std::ops::Range<u64>) -> Vec<u64> {
    let files: Vec<Vec<u8>> =
        std::fs::read_dir(dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    indexes
        .filter(|i| {
            let needle = format!("secret body of entry {i:06}").into_bytes();
            files.iter().any(|f| f.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .collect()
}

#[test]
fn a_roll_then_a_purge_leaves_no_purged_payload_in_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_durable(&log, 0..120);
    assert_eq!(found_on_disk(dir.path(), 0..120).len(), 120, "the check sees what is there");

    let last = rt.block_on(log.roll()).unwrap();
    assert_eq!(last, Some(119));
    assert_eq!(rt.block_on(log.roll()).unwrap(), None, "an empty newest segment is not rolled again");
    rt.block_on(log.purge(RecordId { term: 1, node: 1, index: 119 })).unwrap();
    assert!(!found_on_disk(dir.path(), 0..120).is_empty(), "freed, not yet scrubbed");
    // Rollovers between the purge and the scrub (several segments' worth) take no freed
    // slot: one would keep purged bytes past where its new records end.
    append_durable(&log, 120..470);
    rt.block_on(log.scrub()).unwrap();
    assert!(found_on_disk(dir.path(), 0..120).is_empty(), "every freed slot zeroed");

    // The log goes on over the scrubbed slots, and reopens.
    append_durable(&log, 470..600);
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.bounds(), (120, Some(entry(599).id)));
    for i in 120..600 {
        assert_eq!(log.read(i).unwrap().unwrap().payload(), payload(i).as_slice());
    }
    assert!(found_on_disk(dir.path(), 0..120).is_empty());
}

#[test]
fn a_roll_with_nothing_after_it_reopens_at_the_purge_point() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(rt.block_on(log.roll()).unwrap(), None, "an empty log has nothing to roll");
    append_durable(&log, 0..10);
    assert_eq!(rt.block_on(log.roll()).unwrap(), Some(9));
    drop(log);
    // Reopened before the purge: the empty newest segment is dropped, the entries stay.
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.bounds(), (0, Some(entry(9).id)));
    assert_eq!(rt.block_on(log.roll()).unwrap(), Some(9));
    rt.block_on(log.purge(RecordId { term: 1, node: 1, index: 9 })).unwrap();
    drop(log);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(log.bounds(), (10, Some(entry(9).id)));
    append_durable(&log, 10..20);
    rt.block_on(log.scrub()).unwrap();
    assert!(found_on_disk(dir.path(), 0..10).is_empty(), "every purged payload gone");
}

#[test]
fn a_free_slot_found_dirty_at_open_is_zeroed_by_the_next_scrub() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let log = Log::open(dir.path(), opts()).unwrap();
    append_durable(&log, 0..120);
    rt.block_on(log.roll()).unwrap();
    rt.block_on(log.purge(RecordId { term: 1, node: 1, index: 119 })).unwrap();
    rt.block_on(log.scrub()).unwrap();
    assert!(found_on_disk(dir.path(), 0..120).is_empty());
    drop(log);
    // A scrub cut short: a free slot with old bytes and no clean mark.
    let free = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap().starts_with(raftlog::segment::CLEAN_MAGIC))
        .expect("a clean free slot");
    let mut bytes = vec![0u8; 8192];
    bytes[4096..4096 + payload(7).len()].copy_from_slice(&payload(7));
    std::fs::write(&free, [bytes, vec![0u8; (128 << 10) - 8192]].concat()).unwrap();
    assert_eq!(found_on_disk(dir.path(), 7..8), vec![7]);
    let log = Log::open(dir.path(), opts()).unwrap();
    assert_eq!(found_on_disk(dir.path(), 7..8), vec![7], "kept dirty until a scrub");
    rt.block_on(log.scrub()).unwrap();
    assert!(found_on_disk(dir.path(), 7..8).is_empty(), "the dirty slot scrubbed");
    assert!(std::fs::read(&free).unwrap().starts_with(raftlog::segment::CLEAN_MAGIC), "and marked clean");
}
