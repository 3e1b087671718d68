//! LMTP over the wire on a one-node group: limits hold, hostile input gets the right
//! reply without touching the store, and a re-sent delivery is stored once.

mod support;

use std::time::Duration;

use support::{tree, Cluster, Lmtp};

fn start() -> (tempfile::TempDir, Cluster) {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start_tuned(tmp.path(), 1, 3, |c| {
        c.limits.message_max_bytes = 65536;
        c.limits.recipients_max = 2;
    });
    c.wait_leader(Duration::from_secs(30));
    (tmp, c)
}

#[test]
fn limits_and_bad_input_get_protocol_errors() {
    let (_tmp, c) = start();
    let mut s = Lmtp::connect_unauthenticated(&c.lmtp[0]);
    assert!(s.cmd("MAIL FROM:<a@b>").starts_with("530"), "nothing before AUTH");
    assert!(s.cmd(&format!("LHLO {}", "x".repeat(12_000))).starts_with("500 5.5.2"), "over-long line");
    assert!(s.cmd("LHLO test").starts_with("250 SIZE 65536"));
    assert!(s.authenticate(support::CLUSTER_SECRET).starts_with("235"));
    assert!(s.cmd("MAIL FROM:<a@b> SIZE=100000").starts_with("552"));
    assert!(s.cmd("MAIL FROM:<a@b>").starts_with("250"));
    for hostile in ["../../etc/passwd", "a/b@example.edu", "..@example.edu", "user0@example.edu\0x"] {
        let r = s.cmd(&format!("RCPT TO:<{hostile}>"));
        assert!(r.starts_with("550") || r.starts_with("501"), "{hostile:?}: {r}");
    }
    assert!(s.cmd("RCPT TO:<user0@example.edu>").starts_with("250"));
    assert!(s.cmd("RCPT TO:<user1@example.edu>").starts_with("250"));
    assert!(s.cmd("RCPT TO:<user2@example.edu>").starts_with("452"), "recipient limit");
    assert!(s.cmd("DATA").starts_with("354"));
    let line = format!("{}\r\n", "y".repeat(998));
    for _ in 0..80 {
        s.send(line.as_bytes());
    }
    s.send(b".\r\n");
    assert!(s.reply().starts_with("552 5.3.4"), "oversize message, first recipient");
    assert!(s.reply().starts_with("552 5.3.4"), "oversize message, second recipient");
    assert!(s.cmd("NOOP").starts_with("250"), "session still usable");
    assert!(s.cmd("QUIT").starts_with("221"));
    std::thread::sleep(Duration::from_millis(1500));
    let t = tree(&c.mail_dir(0));
    assert!(t.keys().all(|k| k == "sm.state" || k.starts_with("users/")), "{:?}", t.keys().collect::<Vec<_>>());
    assert!(!t.keys().any(|k| k.contains("/new/")), "nothing was delivered");
}

/// Finding (hardening): anything that reached a storage node's LMTP delivered to any user
/// with any sender, and made mailboxes for names no directory knew. Now only a client that
/// proves it holds the cluster key may deliver, and a bare RCPT for an unlisted name is
/// refused.
#[test]
fn only_cluster_members_deliver_and_only_to_known_users() {
    let (_tmp, c) = start();
    let mut stranger = Lmtp::connect_unauthenticated(&c.lmtp[0]);
    assert!(stranger.cmd("LHLO evil").starts_with("250"));
    for line in ["MAIL FROM:<x@evil.invalid>", "RCPT TO:<user0@example.edu> XMAILHOST=hermes", "DATA"] {
        let r = stranger.cmd(line);
        assert!(r.starts_with("530 5.7.0"), "{line}: {r}");
    }
    assert!(stranger.authenticate("a guessed secret").starts_with("535 5.7.8"), "a wrong key");
    assert!(stranger.authenticate("another guess").starts_with("535 5.7.8"));
    assert!(stranger.authenticate("a third guess").starts_with("421"), "three failures close");

    let mut front = Lmtp::connect(&c.lmtp[0]);
    assert!(front.cmd("MAIL FROM:<sender@example.org>").starts_with("250"));
    let ghost = front.cmd("RCPT TO:<ghost-user@evil.invalid>");
    assert!(ghost.starts_with("550 5.1.1"), "a name nobody listed: {ghost}");
    assert!(front.cmd("RCPT TO:<user0@example.edu>").starts_with("250"));
    assert!(front.cmd("DATA").starts_with("354"));
    front.send(b"Subject: from a member\r\n\r\nhi\r\n.\r\n");
    let r = front.reply();
    assert!(r.starts_with("250"), "{r}");
    std::thread::sleep(Duration::from_millis(500));
    let t = tree(&c.mail_dir(0));
    assert!(
        !t.keys().any(|k| k.contains("ghost-user")),
        "no mailbox for the ghost: {:?}",
        t.keys().collect::<Vec<_>>()
    );
    assert_eq!(t.keys().filter(|k| k.contains("user0@example.edu/Maildir/new/")).count(), 1);
}

#[test]
fn a_resent_delivery_is_stored_once() {
    let (_tmp, c) = start();
    let deliver = |body: &str| {
        let mut s = Lmtp::connect(&c.lmtp[0]);
        s.cmd("LHLO test");
        s.cmd("MAIL FROM:<sender@example.org>");
        assert!(s.cmd("RCPT TO:<user0@example.edu>").starts_with("250"));
        assert!(s.cmd("DATA").starts_with("354"));
        s.send(body.as_bytes());
        s.send(b".\r\n");
        let r = s.reply();
        assert!(r.starts_with("250 2.0.0"), "{r}");
        r
    };
    let msg = "Message-ID: <once@test>\r\nSubject: once\r\n\r\n..dot-stuffed line\r\n";
    let first = deliver(msg);
    let again = deliver(msg);
    assert_eq!(first, again, "the retry reports the same uid");
    let other = deliver("Message-ID: <twice@test>\r\n\r\nother\r\n");
    assert_ne!(first, other);
    std::thread::sleep(Duration::from_millis(1500));
    let t = tree(&c.mail_dir(0));
    let files: Vec<_> = t.iter().filter(|(k, _)| k.starts_with("users/user0@example.edu/Maildir/new/")).collect();
    assert_eq!(files.len(), 2, "{:?}", files.iter().map(|f| f.0).collect::<Vec<_>>());
    let once = files.iter().find(|(_, v)| String::from_utf8_lossy(v).contains("<once@test>")).unwrap();
    let text = String::from_utf8_lossy(once.1);
    assert!(text.starts_with("Return-Path: <sender@example.org>\r\n"), "{text}");
    assert!(text.contains("\r\n.dot-stuffed line\r\n"), "dot-unstuffed: {text}");
}

#[test]
fn the_users_file_is_reloaded_on_sighup_and_a_bad_one_is_ignored() {
    let (tmp, c) = start();
    let rcpt = |to: &str| {
        let mut s = Lmtp::connect(&c.lmtp[0]);
        s.cmd("LHLO test");
        s.cmd("MAIL FROM:<a@b>");
        s.cmd(&format!("RCPT TO:<{to}>"))
    };
    assert!(rcpt("newcomer@example.edu").starts_with("550"));
    let users = tmp.path().join("users.txt");
    let mut text = std::fs::read_to_string(&users).unwrap();
    text.push_str("newcomer@example.edu\n");
    std::fs::write(&users, &text).unwrap();
    c.signal(0, libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !rcpt("newcomer@example.edu").starts_with("250") {
        assert!(std::time::Instant::now() < deadline, "users file not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken file is refused; the node keeps the users it had.
    std::fs::write(&users, "bad/../user@example.edu\n").unwrap();
    c.signal(0, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.node_log(0).contains("users file not reloaded"));
    assert!(rcpt("newcomer@example.edu").starts_with("250"));
    assert!(rcpt("user0@example.edu").starts_with("250"));
}
