//! Messages near the size limit on a three-replica group: a message of almost
//! `message_max_bytes` is committed (LMTP `250` only after it is on a quorum), reaches every
//! replica byte for byte, and survives a SIGKILL of the leader right after the `250`. A
//! replica brought back by a snapshot that takes longer to send than the leader's lease
//! takes it without standing for election (which would depose the leader sending it and
//! start the transfer over, forever).

mod support;

use std::time::{Duration, Instant};

use support::{tree, Cluster, Lmtp};

/// A message of about `len` bytes: headers, then base64-like lines of 76 characters whose
/// content depends on `seed`, so two messages never share a body.
fn big_message(seed: u64, len: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <big-{seed}@test>\r\nSubject: big {seed}\r\n\r\n").into_bytes();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while m.len() + 78 <= len {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(alphabet[(x % 64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// Deliver over LMTP and return the reply to the end of data.
fn deliver(addr: &str, to: &str, message: &[u8]) -> String {
    let mut s = Lmtp::connect(addr);
    assert!(s.cmd("LHLO test").starts_with("250"));
    assert!(s.cmd(&format!("MAIL FROM:<sender@example.org> SIZE={}", message.len())).starts_with("250"));
    assert!(s.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
    assert!(s.cmd("DATA").starts_with("354"));
    s.send(message);
    s.send(b".\r\n");
    s.reply_after(message.len())
}

/// The message files of `user`'s INBOX on replica `i`, by content.
fn inbox(c: &Cluster, i: usize, user: &str) -> Vec<Vec<u8>> {
    let prefix = format!("users/{user}/Maildir/");
    let mut v: Vec<Vec<u8>> = tree(&c.mail_dir(i))
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(&prefix).is_some_and(|rest| rest.starts_with("new/") || rest.starts_with("cur/"))
        })
        .map(|(_, v)| v)
        .collect();
    v.sort();
    v
}

fn wait_inbox(c: &Cluster, nodes: &[usize], user: &str, want: &[Vec<u8>], within: Duration) {
    let deadline = Instant::now() + within;
    let mut want: Vec<Vec<u8>> =
        want.iter().map(|m| [b"Return-Path: <sender@example.org>\r\n".as_slice(), m].concat()).collect();
    want.sort();
    for i in nodes {
        loop {
            let got = inbox(c, *i, user);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} holds {} messages of sizes {:?}, want sizes {:?}\n{}",
                i + 1,
                got.len(),
                got.iter().map(Vec::len).collect::<Vec<_>>(),
                want.iter().map(Vec::len).collect::<Vec<_>>(),
                logs_tail(c, 60)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// The last `lines` lines of every node's log, after any panic it holds (message included).
fn logs_tail(c: &Cluster, lines: usize) -> String {
    (0..3)
        .map(|n| {
            let log = c.node_log(n);
            let all: Vec<&str> = log.lines().collect();
            let panics = all.windows(2).filter(|w| w[0].contains("panicked at")).map(|w| w.join("\n"));
            let tail = &all[all.len().saturating_sub(lines)..];
            format!("=== node {} ===\n{}\n{}", n + 1, panics.collect::<Vec<_>>().join("\n"), tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_message_near_the_size_limit_reaches_every_replica_and_survives_a_leader_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let limit = 32 << 20;
    let mut c = Cluster::start_tuned(tmp.path(), 3, 2, |c| c.limits.message_max_bytes = limit);
    let leader = c.wait_leader(Duration::from_secs(30));

    let near_limit = big_message(1, limit - 4096);
    let r = deliver(&c.lmtp[leader], "user0@example.edu", &near_limit);
    assert!(r.starts_with("250 2.0.0"), "near-limit message: {r}\n{}", c.node_log(leader));
    let medium = big_message(2, 3 << 20);
    let r = deliver(&c.lmtp[leader], "user0@example.edu", &medium);
    assert!(r.starts_with("250 2.0.0"), "3 MiB message: {r}");

    // Acknowledged means committed: kill the leader at once; the others hold both.
    c.kill(leader);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let sent = [near_limit, medium];
    wait_inbox(&c, &others, "user0@example.edu", &sent, Duration::from_secs(120));

    // The new leader takes a large message too, and the old one catches up after restart.
    let next = c.wait_leader(Duration::from_secs(30));
    let third = big_message(3, 12 << 20);
    let r = deliver(&c.lmtp[next], "user1@example.edu", &third);
    assert!(r.starts_with("250 2.0.0"), "12 MiB message after failover: {r}");
    c.start_node(leader);
    wait_inbox(&c, &[0, 1, 2], "user0@example.edu", &sent, Duration::from_secs(120));
    wait_inbox(&c, &[0, 1, 2], "user1@example.edu", std::slice::from_ref(&third), Duration::from_secs(120));
}

#[test]
fn a_replica_taking_a_snapshot_slower_than_the_lease_catches_up_without_an_election() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(tmp.path(), 3, 2);
    let first = c.wait_leader(Duration::from_secs(30));
    let (ahead, behind) = ((first + 1) % 3, (first + 2) % 3);
    c.stop(behind);

    // 24 MiB while it is down: past `snapshot_log_bytes` and `keep_log_bytes`, so the
    // follower left snapshots and drops the log the stopped replica would need (a leader
    // keeps it for its followers; a follower cannot know who needs it).
    let sent: Vec<Vec<u8>> = (10..13).map(|seed| big_message(seed, 8 << 20)).collect();
    for m in &sent {
        let r = deliver(&c.lmtp[first], "user0@example.edu", m);
        assert!(r.starts_with("250 2.0.0"), "8 MiB message: {r}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.node_log(ahead).contains("snapshot built") {
        assert!(Instant::now() < deadline, "the follower never snapshotted:\n{}", logs_tail(&c, 40));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Its schedule purges on its next tick.
    std::thread::sleep(Duration::from_secs(2));

    // The leader goes; the one it leaves must send the stopped replica a snapshot, each
    // 1 MiB chunk held 400 ms: the transfer takes several times the 2 s lease.
    c.stop(first);
    c.start_node_env(behind, &[("FAILPOINTS", "raft::slow-snapshot-chunk=return(400)")]);
    wait_inbox(&c, &[behind], "user0@example.edu", &sent, Duration::from_secs(120));
    let log = c.node_log(behind);
    let Some(receiving) = log.find("election timer held while a snapshot streams in") else {
        panic!("the replica took no snapshot (the test would prove nothing):\n{}", logs_tail(&c, 40));
    };
    assert!(
        !log[receiving..].contains("standing"),
        "the replica stood for election mid-transfer:\n{}",
        logs_tail(&c, 40)
    );
    assert_eq!(c.find_leader(), Some(ahead), "the leader changed:\n{}", logs_tail(&c, 40));
}
