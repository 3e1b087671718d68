//! Three `raft-node` processes on loopback: elect a leader, replicate 10,000 entries, SIGKILL
//! the leader, elect a new one, keep writing, restart the old leader, and check that all
//! three raftlogs hold identical entries.

use std::path::Path;
use std::time::{Duration, Instant};

use raftlog::{Log, Options};
use tests::cluster::{agreed_leader, wait_for, Cluster};
use tests::control::{call, ControlReply, ControlRequest};

async fn write(c: &Cluster, leader: u64, first_key: u64, count: u64) -> u64 {
    let req = ControlRequest::Write { first_key, count, value_len: 200, concurrency: 256 };
    match call(&c.control[leader as usize - 1], &req).await.unwrap() {
        ControlReply::Written { last_index } => last_index,
        other => panic!("write via node {leader}: {other:?}"),
    }
}

fn log_entries(dir: &Path) -> Vec<(raftlog::RecordId, Vec<u8>)> {
    let log = Log::open(dir, Options::default()).unwrap();
    let (first, last) = log.bounds();
    let last = last.expect("log holds entries").index;
    (first..=last)
        .map(|i| {
            let r = log.read(i).unwrap().unwrap_or_else(|| panic!("entry {i} missing in {}", dir.display()));
            (r.header.id, r.payload().to_vec())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_replicate_survive_leader_kill_and_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(tmp.path(), 3, env!("CARGO_BIN_EXE_raft-node"), &[]);
    let all = [0usize, 1, 2];
    // Nodes need a moment to listen; initialization is retried until it is accepted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call(&c.control[0], &ControlRequest::Initialize).await {
            Ok(ControlReply::Ok) => break,
            other => assert!(Instant::now() < deadline, "initialize: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = wait_for(&c, &all, "a leader", |s| agreed_leader(s).is_some()).await;
    let leader = agreed_leader(&st).unwrap();
    eprintln!("leader elected: node {leader}");

    let last = write(&c, leader, 0, 10_000).await;
    let st = wait_for(&c, &all, "10,000 entries applied everywhere", |s| {
        s.iter().all(|n| n.applied_count == 10_000 && n.applied_index >= Some(last))
    })
    .await;
    assert!(st.iter().all(|n| n.digest == st[0].digest), "replicas diverge: {st:?}");

    let old = leader as usize - 1;
    c.kill(old);
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != old).collect();
    let st = wait_for(&c, &rest, "a new leader", |s| agreed_leader(s).is_some_and(|l| l != leader)).await;
    let new_leader = agreed_leader(&st).unwrap();
    eprintln!("node {leader} killed; new leader: node {new_leader}");

    let last = write(&c, new_leader, 10_000, 2_000).await;
    c.start(old);
    let st = wait_for(&c, &all, "12,000 entries applied on all three", |s| {
        s.iter().all(|n| n.applied_count == 12_000 && n.applied_index >= Some(last))
    })
    .await;
    assert!(st.iter().all(|n| n.digest == st[0].digest), "replicas diverge: {st:?}");

    for i in all {
        c.kill(i);
    }
    let logs: Vec<_> = c.dirs.iter().map(|d| log_entries(d)).collect();
    assert!(logs[0].len() > 12_000, "log holds {} entries", logs[0].len());
    for (k, l) in logs.iter().enumerate().skip(1) {
        assert_eq!(l.len(), logs[0].len(), "node {} log length", k + 1);
        for (a, b) in logs[0].iter().zip(l) {
            assert_eq!(a, b, "node {} differs from node 1 at {}", k + 1, a.0.index);
        }
    }
}
