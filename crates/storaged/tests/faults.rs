//! Storage faults injected under a live replica (fail points, `FAILPOINTS`, compiled into
//! the storaged that these tests run): an `EIO` from a log fsync or write, a log write
//! torn in half by a power loss, and an `EIO` writing a message file. Each time the node
//! stops loudly instead of going on with a state it cannot trust (exit status 74, or the
//! abort of the power loss), the other replicas keep taking mail, and once it is started
//! again without the fault it recovers from disk and catches up: every acknowledged
//! delivery is on every replica exactly once, and the replicas are byte-identical.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use support::{check_exactly_once, run_load, wait_converged, Cluster, LOAD_USERS};

/// The exit status of a node whose group stopped on a storage error (`EX_IOERR`).
const EXIT_GROUP_FAILED: i32 = 74;
const MESSAGES: u64 = 400;

/// How the faulty node must end.
enum Ending {
    Exit(i32),
    Signal(i32),
}

/// Start three nodes; restart the leader with `failpoints`; deliver while the fault fires;
/// check how the node ended and that nothing acknowledged was lost. The nodes' logs.
fn survive(failpoints: &str, ending: Ending) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(tmp.path(), 3, LOAD_USERS);
    let faulty = c.wait_leader(Duration::from_secs(30));
    c.stop(faulty);
    c.start_node_env(faulty, &[("FAILPOINTS", failpoints)]);
    c.wait_leader(Duration::from_secs(30));
    // A `cargo build` of storaged replaces the binary these tests run with one whose fail
    // points compile to nothing; the fault would never fire.
    let log = c.node_log(faulty);
    assert!(
        log.contains("fail points configured"),
        "the storaged binary has no fail points (rebuild it with `cargo test -p storaged --no-run`):\n{log}"
    );
    let acked = run_load(&c.lmtp, 0, MESSAGES, 4, |_| {});
    let status = c.wait_exit(faulty, Duration::from_secs(60)).unwrap_or_else(|| {
        panic!("node {} still runs after its fault ({failpoints}):\n{}", faulty + 1, c.node_log(faulty))
    });
    match ending {
        Ending::Exit(code) => assert_eq!(status.code(), Some(code), "{status}"),
        Ending::Signal(sig) => assert_eq!(status.signal(), Some(sig), "{status}"),
    }
    c.start_node(faulty);
    let t = wait_converged(&c, &[0, 1, 2], Duration::from_secs(90));
    check_exactly_once(&t, &acked, 0..MESSAGES);
    (0..3).map(|i| c.node_log(i)).collect()
}

#[test]
fn an_eio_from_a_log_fsync_stops_the_node_and_loses_nothing() {
    let log = survive("raftlog::sync-eio=30*off->return", Ending::Exit(EXIT_GROUP_FAILED));
    assert!(log.contains("raft stopped on a fatal error") && log.contains("Input/output error"), "{log}");
}

#[test]
fn an_eio_from_a_log_write_stops_the_node_and_loses_nothing() {
    let log = survive("raftlog::write-eio=30*off->return", Ending::Exit(EXIT_GROUP_FAILED));
    assert!(log.contains("raft stopped on a fatal error"), "{log}");
}

#[test]
fn a_log_write_torn_by_power_loss_is_cut_off_at_restart() {
    let log = survive("raftlog::torn-write=30*off->return", Ending::Signal(libc::SIGABRT));
    assert!(log.contains("fail point: torn write"), "the fault fired");
    assert!(log.contains("torn_tail: Some("), "recovery found and cut the torn record:\n{log}");
}

#[test]
fn an_eio_writing_a_message_file_stops_the_node_and_loses_nothing() {
    let log = survive("mailstore::write-eio=30*off->return", Ending::Exit(EXIT_GROUP_FAILED));
    assert!(log.contains("apply failed; this replica stops"), "{log}");
}
