//! Three storaged processes, one group, real LMTP clients (Python's smtplib.LMTP):
//! deliveries survive a leader SIGKILL exactly once on every replica, replicas end up
//! byte-identical, and a replica that missed purged entries catches up by snapshot.

mod support;

use std::time::{Duration, Instant};

use support::{check_exactly_once, run_load, wait_converged, Cluster, LOAD_USERS as USERS};

#[test]
fn deliveries_survive_leader_kill_and_a_lagging_replica_catches_up_by_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    // KEEP_TEST_DIR=1 keeps the cluster's files for inspection.
    let tmp_path = if std::env::var_os("KEEP_TEST_DIR").is_some() { tmp.keep() } else { tmp.path().to_path_buf() };
    eprintln!("cluster files under {}", tmp_path.display());
    // Concurrent deliveries to different users share log entries (at most one per sender,
    // so phase 2's 2,000 from 16 senders take at least 125): snapshot and purge often
    // enough that the lagging replica is left behind the purge point; the byte purge keeps
    // nothing past `keep_logs`, so it purges on its next tick after a snapshot.
    let mut c = Cluster::start_tuned(&tmp_path, 3, USERS, |c| {
        c.raft.snapshot_every = 50;
        c.raft.keep_logs = 10;
        c.raft.keep_log_bytes = 0;
    });
    c.wait_leader(Duration::from_secs(30));

    // Phase 1: 5,000 deliveries from 16 concurrent clients; kill the leader midway.
    let mut killed = None;
    let servers = c.lmtp.clone();
    let result = run_load(&servers, 0, 5000, 16, |n| {
        if n >= 2000 && killed.is_none() {
            let leader = c.find_leader().expect("a leader while delivering");
            eprintln!("killing leader node {} after {n} deliveries", leader + 1);
            c.kill(leader);
            killed = Some(leader);
        }
    });
    assert!(result["failed"].as_array().unwrap().is_empty(), "undelivered: {}", result["failed"]);
    let killed = killed.expect("the leader was killed");
    c.start_node(killed);
    let t = wait_converged(&c, &[0, 1, 2], Duration::from_secs(120));
    check_exactly_once(&t, &result, 0..5000);

    // Phase 2: one replica down while 2,000 more arrive and the log is purged past it.
    let lagging = (killed + 1) % 3;
    let held = c.gauge(lagging, "mail_raft_last_log_index").expect("the lagging replica's metrics");
    c.kill(lagging);
    let up: Vec<usize> = (0..3).filter(|i| *i != lagging).collect();
    let servers: Vec<String> = up.iter().map(|i| c.lmtp[*i].clone()).collect();
    let result2 = run_load(&servers, 5000, 2000, 16, |_| {});
    assert!(result2["failed"].as_array().unwrap().is_empty(), "undelivered: {}", result2["failed"]);
    // Both replicas up purge past what the lagging one holds, the leader included: a
    // follower down is not waited for once its matched index has stood still for 10 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in &up {
        while c.gauge(*i, "mail_raft_purged_index").unwrap_or(0.0) <= held {
            assert!(Instant::now() < deadline, "node {} never purged past index {held}", i + 1);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    c.start_node(lagging);
    let t = wait_converged(&c, &[0, 1, 2], Duration::from_secs(120));
    check_exactly_once(&t, &result2, 0..7000);
    check_exactly_once(&t, &result, 0..7000);
    assert!(c.node_log(lagging).contains("snapshot installed"), "node {} caught up without a snapshot", lagging + 1);

    // Snapshots built, sent and installed, logs purged: every data file is still the
    // owner's alone (0600 files in 0700 directories; a symbolic link's own mode is always
    // 0777 and never consulted, so links are left out). The nodes are stopped first: a
    // live node removes old snapshots and log segments, and a file that vanishes under
    // `find` makes it fail.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 1..=3 {
        let data = tmp_path.join(format!("data{i}"));
        let out = std::process::Command::new("find")
            .arg(&data)
            .args(["!", "-type", "l", "-perm", "/077", "-print"])
            .output()
            .unwrap();
        assert!(out.status.success(), "find under {}: {}", data.display(), String::from_utf8_lossy(&out.stderr));
        let open = String::from_utf8_lossy(&out.stdout);
        assert!(open.trim().is_empty(), "open to others under {}:\n{open}", data.display());
    }
}
