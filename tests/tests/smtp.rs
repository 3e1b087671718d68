//! SMTP through frontd into a real storaged cluster, with independent clients (swaks,
//! Python's smtplib) and raw sockets: every `250` message is readable over IMAP exactly
//! once; no relaying without a local recipient; an authenticated user cannot forge another
//! sender (envelope or From) and what they send is DKIM-signed, as an independent verifier
//! (dkimpy) finds with the key a loopback DNS server publishes; smuggling variants give one
//! message or a refusal, never two; early talkers are dropped.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

fn swaks(args: &[&str]) -> (bool, String) {
    let out =
        Command::new("swaks").args(args).args(["--timeout", "30"]).output().expect("swaks (scripts/install-test-deps)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The whole text of INBOX message `n` of `user` (via curl, another client).
fn message_text(front: &Front, user: &str, password: &str, uid: u32) -> String {
    let url = format!("imap://{}/INBOX;UID={uid}", front.imap);
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--user", &format!("{user}:{password}"), &url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn smtp_clients_deliver_and_every_accepted_message_is_read_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start_with_certificate(root, &storage, ldif_directory());
    wait_listening(&front.smtp, "frontd SMTP");
    let ca = root.join("cert.pem");
    let ca = ca.to_str().unwrap();

    // swaks to the MX, pipelining, through a domain alias.
    let (ok, log) = swaks(
        &["--server", &front.smtp, "--from", "ann@example.org", "--to", "Alice@mail.example.edu"]
            .into_iter()
            .chain(["--header", "Subject: swaks mx", "--pipeline"])
            .collect::<Vec<_>>(),
    );
    assert!(ok, "{log}");
    // swaks on submission: STARTTLS, AUTH PLAIN, to a user on the other mailhost.
    let (ok, log) = swaks(&[
        "--server",
        &front.submission,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.edu",
        "--auth-password",
        "alice-pw",
        "--from",
        "alice@example.edu",
        "--to",
        "bob@example.edu",
        "--header",
        "Subject: swaks submission",
    ]);
    assert!(ok, "{log}");
    // smtplib to two mailhosts at once: one is accepted, the other told to come back (452).
    let r = smtplib(&[
        "--server",
        &front.smtp,
        "--from",
        "ann@example.org",
        "--to",
        "alice@example.edu",
        "--to",
        "bob@example.edu",
        "--subject",
        "smtplib two hosts",
    ]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["refused"]["bob@example.edu"][0], 452, "{r}");
    let r = smtplib(&[
        "--server",
        &front.smtp,
        "--from",
        "ann@example.org",
        "--to",
        "bob@example.edu",
        "--subject",
        "smtplib two hosts",
    ]);
    assert_eq!(r["ok"], true, "{r}");

    assert_eq!(inbox_subjects(&front, "alice", "alice-pw"), ["smtplib two hosts", "swaks mx"]);
    assert_eq!(inbox_subjects(&front, "bob", "bob-pw"), ["smtplib two hosts", "swaks submission"]);
    let text = message_text(&front, "bob", "bob-pw", 1);
    assert!(
        text.contains("\r\nReceived: from ") && text.contains("with ESMTPSA") && text.contains("using TLSv1_3"),
        "{text}"
    );
    let text = message_text(&front, "alice", "alice-pw", 1);
    assert!(text.contains("\r\nTo: Alice@example.edu\r\n"), "the domain alias is collapsed in the header: {text}");
    let text = message_text(&front, "alice", "alice-pw", 2);
    assert!(text.contains("\r\n.leading dot line\r\n"), "dot-stuffing round trip: {text}");

    // No relaying: not from the Internet, not for an authenticated user (no outbound yet).
    let r = smtplib(&[
        "--server",
        &front.smtp,
        "--from",
        "ann@example.org",
        "--to",
        "someone@example.org",
        "--subject",
        "relay",
    ]);
    assert_eq!(r["refused"]["someone@example.org"][0], 554, "{r}");
    let auth = ["--starttls", "--ca", ca, "--user", "alice@example.edu", "--password", "alice-pw"];
    let r = smtplib(
        &[
            &[
                "--server",
                &front.submission,
                "--from",
                "alice@example.edu",
                "--to",
                "x@example.org",
                "--subject",
                "relay",
            ][..],
            &auth,
        ]
        .concat(),
    );
    assert_eq!(r["refused"]["x@example.org"][0], 554, "{r}");
    // No forged senders, no AUTH without TLS, unknown local users refused.
    let r = smtplib(
        &[
            &[
                "--server",
                &front.submission,
                "--from",
                "bob@example.edu",
                "--to",
                "alice@example.edu",
                "--subject",
                "forged",
            ][..],
            &auth,
        ]
        .concat(),
    );
    assert_eq!(r["code"], 553, "{r}");
    let (ok, log) = swaks(&[
        "--server",
        &front.submission,
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.edu",
        "--auth-password",
        "alice-pw",
        "--from",
        "alice@example.edu",
        "--to",
        "bob@example.edu",
    ]);
    assert!(!ok && !log.contains("235 2.7.0"), "AUTH without TLS: {log}");
    let r = smtplib(&[
        "--server",
        &front.smtp,
        "--from",
        "ann@example.org",
        "--to",
        "nobody@example.edu",
        "--subject",
        "x",
    ]);
    assert_eq!(r["refused"]["nobody@example.edu"][0], 550, "{r}");
    assert_eq!(inbox_subjects(&front, "alice", "alice-pw").len(), 2, "nothing refused arrived");
    assert_eq!(inbox_subjects(&front, "bob", "bob-pw").len(), 2);
}

/// Talk SMTP on a raw socket: send `bytes` after the greeting, wait, return the replies.
fn raw_smtp(addr: &str, bytes: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220"), "{}", String::from_utf8_lossy(&buf[..n]));
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn smuggling_gives_one_message_or_a_refusal_never_two() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start(root, &storage, ldif_directory());
    wait_listening(&front.smtp, "frontd SMTP");

    let separators: [&[u8]; 8] =
        [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n", b"\r.\r", b"\n.\r", b"\r\n\x00.\r\n"];
    for (k, sep) in separators.iter().enumerate() {
        let mut session = format!(
            "EHLO smuggler.example.org\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.edu>\r\nDATA\r\n\
             Subject: outer {k}\r\n\r\nhello"
        )
        .into_bytes();
        session.extend_from_slice(sep);
        session.extend_from_slice(
            format!("MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.edu>\r\nDATA\r\nSubject: smuggled {k}\r\n\r\nx\r\n").as_bytes(),
        );
        session.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        let replies = raw_smtp(&front.smtp, &session);
        let finals: Vec<&str> =
            replies.lines().filter(|l| l.starts_with("250 2.0.0") || l.starts_with("550 5.6.11")).collect();
        assert_eq!(finals.len(), 1, "separator {sep:?}: {replies}");
    }
    // bob got nothing; alice got no message whose own subject is "smuggled".
    assert!(inbox_subjects(&front, "bob", "bob-pw").is_empty());
    assert!(inbox_subjects(&front, "alice", "alice-pw").iter().all(|s| !s.starts_with("smuggled")));

    // A client talking before the greeting is dropped.
    let mut s = std::net::TcpStream::connect(&front.smtp).unwrap();
    s.write_all(b"EHLO early\r\n").unwrap();
    let mut reply = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("554 5.5.0"), "{reply}");
}

#[test]
fn smtp_source_sessions_deliver_each_message_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start(root, &storage, ldif_directory());
    wait_listening(&front.smtp, "frontd SMTP");
    storage.leader_for("alice@example.edu");

    // Postfix's load generator: 16 concurrent sessions, 300 messages of 4 KiB.
    const MESSAGES: usize = 300;
    let out = Command::new("smtp-source")
        .args([
            "-s",
            "16",
            "-m",
            &MESSAGES.to_string(),
            "-l",
            "4096",
            "-f",
            "load@example.org",
            "-t",
            "alice@example.edu",
        ])
        .arg(&front.smtp)
        .output()
        .expect("smtp-source (postfix; scripts/install-test-deps)");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && errors.trim().is_empty(), "smtp-source: {errors}");
    let alice = imap_login(&front.imap, "alice", "alice-pw");
    assert_eq!(alice["exists"], MESSAGES, "every accepted message once: {}", alice["exists"]);
}

/// A real DNS blocklist server (Debian's rbldnsd) on loopback, listing `listed`.
struct Rbldnsd {
    child: std::process::Child,
    addr: String,
}

impl Rbldnsd {
    fn start(root: &Path, zone: &str, listed: &str) -> Self {
        let dir = root.join("rbldnsd");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("list"), format!(":127.0.0.2:Listed in the test blocklist\n{listed}\n")).unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("rbldnsd")
            .args(["-n", "-b", &format!("127.0.0.1/{port}"), "-r"])
            .arg(&dir)
            .arg(format!("{zone}:ip4set:list"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rbldnsd (scripts/install-test-deps)");
        std::thread::sleep(Duration::from_millis(300));
        Self { child, addr: format!("127.0.0.1:{port}") }
    }
}

impl Drop for Rbldnsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn blocklists_ip_rules_and_deny_patterns_guard_the_mx() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let rbl = Rbldnsd::start(root, "bl.test", "127.0.0.1");
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let dns = rbl.addr.clone();
    let tune: Tune = Box::new(move |c| {
        c.smtp.dnsbl_zones = vec!["bl.test".into()];
        c.smtp.dns_servers = vec![dns.clone()];
        c.smtp.helo_deny = vec!["*.dynamic.example.net".into()];
        c.smtp.mail_from_deny = vec!["*@spam.example".into()];
        c.smtp.rules.push(rule("127.0.0.3", "deny", None, false));
        c.smtp.rules.push(rule("127.0.0.4", "allow", Some(0), false));
    });
    let options = FrontOptions { tune: Some(tune), ..FrontOptions::default() };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.smtp, "frontd SMTP");
    storage.leader_for("alice@example.edu");
    let send = |source: &str, from: &str, subject: &str| {
        smtplib(&[
            "--server",
            &front.smtp,
            "--source",
            source,
            "--from",
            from,
            "--to",
            "alice@example.edu",
            "--subject",
            subject,
        ])
    };

    // 127.0.0.1 is listed: refused with the list's reason; 127.0.0.2 is not.
    let listed = send("127.0.0.1", "ann@example.org", "from a listed host");
    assert_eq!(listed["code"], 554, "{listed}");
    assert!(
        listed["error"].as_str().unwrap().contains("bl.test")
            && listed["error"].as_str().unwrap().contains("Listed in the test blocklist"),
        "{listed}"
    );
    assert_eq!(send("127.0.0.2", "ann@example.org", "from a clean host")["ok"], true);
    // An IP rule denies 127.0.0.3; another lets 127.0.0.4 in without the greet delay.
    let denied = send("127.0.0.3", "ann@example.org", "from a denied network");
    assert_eq!(denied["code"], 554, "{denied}");
    assert!(denied["error"].as_str().unwrap().contains("denied"), "{denied}");
    assert_eq!(send("127.0.0.4", "ann@example.org", "from an allowed network")["ok"], true);
    // A denied sender pattern.
    assert_eq!(send("127.0.0.2", "bulk@SPAM.example", "spam")["code"], 550);
    assert_eq!(inbox_subjects(&front, "alice", "alice-pw"), ["from a clean host", "from an allowed network"]);
}

/// A DNS server on loopback (`tests/py/dns_txt.py`, dnslib) publishing TXT records.
struct TxtServer {
    child: std::process::Child,
    addr: String,
}

impl TxtServer {
    fn start(records: &[(&str, &str)]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/dns_txt.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).stdout(std::process::Stdio::piped());
        for (name, text) in records {
            cmd.args([name, text]);
        }
        let mut child = cmd.spawn().expect("python3-dnslib (scripts/install-test-deps)");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port = serde_json::from_str::<serde_json::Value>(&line).expect("the DNS server's port")["port"].clone();
        Self { child, addr: format!("127.0.0.1:{port}") }
    }
}

impl Drop for TxtServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Submission hygiene: the From field must be one of the user's addresses (a forged one is
/// refused), `Received` names the authenticated user, and what leaves for a remote domain
/// carries a DKIM signature that dkimpy verifies with the key `mailctl dkim keygen` made
/// and a DNS server on loopback publishes.
#[test]
fn submissions_name_their_user_refuse_forged_authors_and_are_dkim_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let key = tools::mailctl::dkim::keygen("example.edu", "s2026", &root.join("dkim"), 2048).unwrap();
    let dns = TxtServer::start(&[(key.name.as_str(), key.text.as_str())]);
    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let remote = free_addr();
    let sink = Sink::start(root, "remote", &remote, None);
    let key_file = key.key_file.clone();
    let tune: Tune = Box::new(move |c| {
        c.dkim.keys.push(frontd::config::DkimKeySection {
            domain: "example.edu".into(),
            selector: "s2026".into(),
            key_file: key_file.clone(),
        })
    });
    let queue = QueueSection { routes: [("remote.test".to_string(), remote.clone())].into(), ..fast_queue(30) };
    let options = FrontOptions {
        tls: true,
        plaintext_loopback: true,
        tune: Some(tune),
        queue: Some(queue),
        ..Default::default()
    };
    let front = Front::start_opts(root, &storage, ldif_directory(), options);
    wait_listening(&front.submission, "frontd submission");
    let ca = root.join("cert.pem");
    let submit = |header_from: &str, to: &str, subject: &str| {
        smtplib(&[
            "--server",
            &front.submission,
            "--starttls",
            "--ca",
            ca.to_str().unwrap(),
            "--user",
            "alice@example.edu",
            "--password",
            "alice-pw",
            "--from",
            "alice@example.edu",
            "--header-from",
            header_from,
            "--to",
            to,
            "--subject",
            subject,
        ])
    };

    let r = submit("Alice <alice@example.edu>", "friend@remote.test", "signed outbound");
    assert_eq!(r["ok"], true, "{r}");
    wait_for("the message at the remote sink", Duration::from_secs(30), || sink.count("signed outbound") == 1);
    let sent = sink.messages().concat();
    assert!(sent.contains("(authenticated as alice@example.edu)"), "Received names the user: {sent}");
    let file = root.join("outbound.eml");
    std::fs::write(&file, &sent).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/dkim_verify.py");
    let out = Command::new("/usr/bin/python3").arg(script).args(["--dns", &dns.addr]).arg(&file).output().unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("dkimpy: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(verdict["ok"], true, "dkimpy verifies the signature: {verdict} {sent}");
    assert_eq!((verdict["domain"].as_str(), verdict["selector"].as_str()), (Some("example.edu"), Some("s2026")));

    // Another local user's name as the author is refused; nothing is delivered or sent.
    let r = submit("Bob <bob@example.edu>", "bob@example.edu", "forged author");
    assert_eq!(r["code"], 550, "{r}");
    assert!(r["error"].as_str().unwrap().contains("not one of your addresses"), "{r}");
    let r = submit("Bank <bank@example.com>", "friend@remote.test", "phish");
    assert_eq!(r["code"], 550, "{r}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!inbox_subjects(&front, "bob", "bob-pw").contains(&"forged author".to_string()));
    assert_eq!(sink.count("phish"), 0);
}
