//! openraft's own storage conformance suite against `raftlog`, plus entry round trips the
//! suite does not cover (normal entries with rkyv payloads, reopen after writes).

use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, StorageError};
use raftlog::{Log, Options, RaftLogStore};
use tests::kv::{KvConfig, KvStateMachine, KvWrite};

struct Builder;

impl StoreBuilder<KvConfig, RaftLogStore<KvConfig>, KvStateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, RaftLogStore<KvConfig>, KvStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options { segment_bytes: 256 << 10, max_payload_bytes: 64 << 10, ..Options::default() };
        let log = Log::open(dir.path(), opts).expect("open log");
        Ok((dir, RaftLogStore::new(log), KvStateMachine::default()))
    }
}

#[test]
fn openraft_storage_suite() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}

fn entry(term: u64, index: u64, value: &[u8]) -> Entry<KvConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(KvWrite { key: index, value: value.to_vec() }),
    }
}

/// Append `entries` (normal ones) to `log` and wait until they are durable.
async fn write(log: &Log, entries: &[Entry<KvConfig>]) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let batch = entries
        .iter()
        .map(|e| {
            let EntryPayload::Normal(w) = &e.payload else { unreachable!() };
            let mut payload = Vec::new();
            raftlog::LogPayload::encode(w, &mut payload).unwrap();
            raftlog::EntryIn {
                id: raftlog::RecordId { term: e.log_id.leader_id.term, node: 1, index: e.log_id.index },
                kind: raftlog::EntryKind::Normal,
                payload,
            }
        })
        .collect();
    log.append(batch, Box::new(move |r| tx.send(r).unwrap())).await.unwrap();
    rx.await.unwrap().unwrap();
}

#[tokio::test]
async fn normal_entries_roundtrip_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: 300 entries of ~1 KiB span many segment files.
    let opts = Options { segment_bytes: 64 << 10, max_payload_bytes: 16 << 10, ..Options::default() };
    let entries: Vec<_> = (0..300u64).map(|i| entry(1 + i / 100, i, &vec![i as u8; 1000 + i as usize])).collect();
    {
        let log = Log::open(dir.path(), opts.clone()).unwrap();
        for chunk in entries.chunks(7) {
            write(&log, chunk).await;
        }
    }
    let log = Log::open(dir.path(), opts).unwrap();
    assert_eq!(log.open_report().torn_tail, None);
    assert!(log.open_report().live_segments > 3, "entries should span several segments");
    let mut store = RaftLogStore::<KvConfig>::new(log);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.unwrap().index, 299);
    let got = store.try_get_log_entries(0..300).await.unwrap();
    assert_eq!(got, entries);
    let mut reader = store.get_log_reader().await;
    let got = reader.try_get_log_entries(150..=160).await.unwrap();
    assert_eq!(got, entries[150..=160]);
}

/// What replication reads must follow the entry before it: a range that starts at a purged
/// index yields nothing (openraft then sends a heartbeat), never the entries after the purge
/// point as if they came next. A leader that has just stepped down can still be reading while
/// its log is purged (seen as a follower's assertion `x.index == prev.next_index()` failing).
#[tokio::test]
async fn replication_reads_nothing_from_a_purged_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let entries: Vec<_> = (1..=10u64).map(|i| entry(1, i, b"v")).collect();
    write(&log, &entries).await;
    let mut store = RaftLogStore::<KvConfig>::new(log);
    store.purge(LogId::new(CommittedLeaderId::new(1, 1), 5)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let mut reader = store.get_log_reader().await;
    assert_eq!(reader.limited_get_log_entries(3, 10).await.unwrap(), Vec::new());
    assert_eq!(reader.limited_get_log_entries(6, 10).await.unwrap(), entries[5..9]);
    // The general read still hands out what is there, as openraft's suite expects.
    assert_eq!(reader.try_get_log_entries(3..10).await.unwrap(), entries[5..9]);
}
