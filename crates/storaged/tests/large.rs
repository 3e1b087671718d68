//! Messages near the size limit on a three-replica group: a message of almost
//! `message_max_bytes` is committed (LMTP `250` only after it is on a quorum), reaches every
//! replica byte for byte, and survives a SIGKILL of the leader right after the `250`.

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
                c.node_log(*i).lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
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
