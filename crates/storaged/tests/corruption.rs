//! Corrupt message files are never served: every message's CRC32C is in the mailbox index,
//! and a file that no longer matches it (a flipped bit, a truncated write) is refused over
//! IMAP (`NO [SERVERBUG]`) and POP3 (`-ERR`) instead of being sent; intact messages next to
//! it are still served; and where the group has other replicas, the damaged file is
//! repaired from a peer's copy. A read racing an expunge is not damage: it gets the whole
//! message or learns it is gone, and never bytes of the message that reuses the file.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{deliver, password, tree, wait_converged, Cluster};

/// Send `command` and read lines until one starts with `end`; all lines read.
fn exchange(r: &mut BufReader<TcpStream>, w: &mut TcpStream, command: &str, end: &str) -> String {
    w.write_all(format!("{command}\r\n").as_bytes()).unwrap();
    let mut all = String::new();
    for _ in 0..10_000 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        all.push_str(&line);
        if line.starts_with(end) {
            break;
        }
    }
    all
}

fn connect(addr: &str) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    (r, s)
}

#[test]
fn a_message_file_that_fails_its_checksum_is_refused_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start(tmp.path(), 1, 1);
    c.wait_leader(Duration::from_secs(30));
    let user = "user0@example.edu";
    deliver(&c.lmtp[0], user, b"Message-ID: <one@test>\r\nSubject: one\r\n\r\nintact body one\r\n");
    deliver(&c.lmtp[0], user, b"Message-ID: <two@test>\r\nSubject: two\r\n\r\nsecret body two\r\n");

    // Flip one bit of the second message's file, as a failing disk would.
    let files = tree(&c.mail_dir(0));
    let (name, bytes) = files
        .iter()
        .find(|(k, v)| k.contains("/new/") && String::from_utf8_lossy(v).contains("secret body two"))
        .expect("the second message's file");
    let mut bad = bytes.clone();
    let at = bad.len() - 6;
    bad[at] ^= 0x01;
    std::fs::write(c.mail_dir(0).join(name), &bad).unwrap();

    let (mut r, mut w) = connect(&c.imap[0]);
    let login = exchange(&mut r, &mut w, &format!("a1 LOGIN {user} {}", password(0)), "a1 ");
    assert!(login.contains("a1 OK"), "{login}");
    assert!(exchange(&mut r, &mut w, "a2 SELECT INBOX", "a2 ").contains("a2 OK"));
    let good = exchange(&mut r, &mut w, "a3 FETCH 1 BODY.PEEK[]", "a3 ");
    assert!(good.contains("intact body one") && good.contains("a3 OK"), "{good}");
    let refused = exchange(&mut r, &mut w, "a4 FETCH 2 BODY.PEEK[]", "a4 ");
    assert!(refused.contains("a4 NO [SERVERBUG]"), "{refused}");
    assert!(!refused.contains("body two") && !refused.contains("bodx two"), "corrupt bytes sent: {refused}");
    exchange(&mut r, &mut w, "a5 LOGOUT", "a5 ");

    let (mut r, mut w) = connect(&c.pop3[0]);
    exchange(&mut r, &mut w, &format!("USER {user}"), "+OK");
    assert!(exchange(&mut r, &mut w, &format!("PASS {}", password(0)), "").starts_with("+OK"));
    let good = exchange(&mut r, &mut w, "RETR 1", ".\r");
    assert!(good.starts_with("+OK") && good.contains("intact body one"), "{good}");
    let refused = exchange(&mut r, &mut w, "RETR 2", "");
    assert!(refused.starts_with("-ERR"), "{refused}");
    assert!(c.node_log(0).contains("fails its checksum"), "the corruption is logged");
}

/// Reads that fail (`EIO`) or come back with a flipped bit (fail points under the store):
/// the message is refused over IMAP and POP3, its bytes never sent, and once the disk
/// behaves again it is served whole.
#[test]
fn failed_and_bit_flipped_reads_are_refused_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(tmp.path(), 1, 1);
    c.wait_leader(Duration::from_secs(30));
    let user = "user0@example.edu";
    deliver(&c.lmtp[0], user, b"Message-ID: <one@test>\r\nSubject: one\r\n\r\nsecret body one\r\n");
    for (failpoints, logged) in
        [("mailstore::read-eio=return", "Input/output error"), ("mailstore::read-bitflip=return", "fails its checksum")]
    {
        c.stop(0);
        c.start_node_env(0, &[("FAILPOINTS", failpoints)]);
        c.wait_leader(Duration::from_secs(30));
        let (mut r, mut w) = connect(&c.imap[0]);
        let login = exchange(&mut r, &mut w, &format!("a1 LOGIN {user} {}", password(0)), "a1 ");
        assert!(login.contains("a1 OK"), "{login}");
        assert!(exchange(&mut r, &mut w, "a2 SELECT INBOX", "a2 ").contains("a2 OK"));
        let refused = exchange(&mut r, &mut w, "a3 FETCH 1 BODY.PEEK[]", "a3 ");
        assert!(refused.contains("a3 NO [SERVERBUG]"), "{failpoints}: {refused}");
        assert!(!refused.contains("body one"), "{failpoints}: bytes sent: {refused}");
        let (mut r, mut w) = connect(&c.pop3[0]);
        exchange(&mut r, &mut w, &format!("USER {user}"), "+OK");
        assert!(exchange(&mut r, &mut w, &format!("PASS {}", password(0)), "").starts_with("+OK"));
        let refused = exchange(&mut r, &mut w, "RETR 1", "");
        assert!(refused.starts_with("-ERR"), "{failpoints}: {refused}");
        assert!(c.node_log(0).contains(logged), "{failpoints}: the fault is logged");
    }
    c.stop(0);
    c.start_node(0);
    c.wait_leader(Duration::from_secs(30));
    let (mut r, mut w) = connect(&c.imap[0]);
    exchange(&mut r, &mut w, &format!("a1 LOGIN {user} {}", password(0)), "a1 ");
    exchange(&mut r, &mut w, "a2 SELECT INBOX", "a2 ");
    let served = exchange(&mut r, &mut w, "a3 FETCH 1 BODY.PEEK[]", "a3 ");
    assert!(served.contains("secret body one") && served.contains("a3 OK"), "{served}");
}

/// A replica whose copy of a message is damaged fetches a good copy from a peer, checks it
/// against its own index checksum and puts it in place: the first read is refused, later
/// reads are served, and the replicas are byte-identical again.
#[test]
fn a_damaged_copy_is_repaired_from_a_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start(tmp.path(), 3, 1);
    let leader = c.wait_leader(Duration::from_secs(30));
    let user = "user0@example.edu";
    deliver(&c.lmtp[leader], user, b"Message-ID: <one@test>\r\nSubject: one\r\n\r\nprecious body one\r\n");
    let converged = wait_converged(&c, &[0, 1, 2], Duration::from_secs(30));
    let (name, bytes) =
        converged.iter().find(|(k, _)| k.contains("/new/") || k.contains("/cur/")).expect("the message");
    let mut bad = bytes.clone();
    let at = bad.len() - 5;
    bad[at] ^= 0x04;
    std::fs::write(c.mail_dir(leader).join(name), &bad).unwrap();

    let (mut r, mut w) = connect(&c.imap[leader]);
    let login = exchange(&mut r, &mut w, &format!("a1 LOGIN {user} {}", password(0)), "a1 ");
    assert!(login.contains("a1 OK"), "{login}");
    assert!(exchange(&mut r, &mut w, "a2 SELECT INBOX", "a2 ").contains("a2 OK"));
    let refused = exchange(&mut r, &mut w, "a3 FETCH 1 BODY.PEEK[]", "a3 ");
    assert!(refused.contains("a3 NO [SERVERBUG]"), "{refused}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let served = loop {
        let answer = exchange(&mut r, &mut w, "a4 FETCH 1 BODY.PEEK[]", "a4 ");
        if answer.contains("a4 OK") || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(served.contains("precious body one") && served.contains("a4 OK"), "not repaired: {served}");
    assert_eq!(&std::fs::read(c.mail_dir(leader).join(name)).unwrap(), bytes, "the file is whole again");
    assert!(c.node_log(leader).contains("repaired from a peer"), "the repair is logged");
}

/// A FETCH racing an EXPUNGE of the same messages, while another user's deliveries reuse the
/// expunged files' inodes: every body served is the whole message of its UID, no answer is
/// `[SERVERBUG]`, and the node never finds a bad checksum or starts a repair.
#[test]
fn a_fetch_racing_an_expunge_reads_the_message_or_nothing_never_another() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(tmp.path(), 1, 2);
    // Every read pauses between opening the file and reading it, so expunges land there.
    c.stop(0);
    c.start_node_env(0, &[("FAILPOINTS", "mailstore::read-opened=sleep(3)")]);
    c.wait_leader(Duration::from_secs(30));
    let other_password = password(1);
    let mut args = support::login_args(&c.imap[0], 0);
    args.extend(
        ["--other-user", "user1@example.edu", "--other-password", &other_password, "--seconds", "10"]
            .map(str::to_string),
    );
    let r = support::py_json("expunge_race.py", &args.iter().map(String::as_str).collect::<Vec<_>>());
    eprintln!("{r}");
    assert_eq!(r["serverbug"], 0, "a racing FETCH was answered [SERVERBUG]: {r}");
    assert_eq!(r["mismatched"], 0, "a FETCH served bytes that are not the message of its UID: {r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert!(
        r["fetched"].as_u64().unwrap() > 50 && r["expunged"].as_u64().unwrap() > 50,
        "too little traffic to race: {r}"
    );
    let log = c.node_log(0);
    for sign in ["fails its checksum", "repair"] {
        assert!(!log.contains(sign), "the node saw damage where there was a race ({sign}):\n{log}");
    }
}
