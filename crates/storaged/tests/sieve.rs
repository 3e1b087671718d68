//! Sieve at delivery on a one-node group: the user's active script (in Pigeonhole's layout
//! beside the Maildir) files, flags, rejects, discards, redirects and answers a vacation,
//! and what it decided is what the store holds; a broken script keeps mail in INBOX.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::{tree, Cluster, Lmtp};

const USER: &str = "user0@example.edu";

const SCRIPT: &str = r#"require ["fileinto", "reject", "vacation", "imap4flags", "mailbox", "copy"];
if header :contains "subject" "[lists]" { fileinto :create :flags "\\Seen" "Lists"; stop; }
if header :contains "subject" "reject me" { reject "not wanted here"; stop; }
if header :contains "subject" "forward" { redirect :copy "archive@example.org"; }
if header :contains "subject" "drop" { discard; stop; }
vacation :days 1 :subject "Away" "I am away until Monday.";
"#;

/// Installs `script` as the user's active script on node 0 (a one-node group: the same
/// files ManageSieve's PUTSCRIPT and SETACTIVE write).
fn install(c: &Cluster, script: &str) {
    let home = c.mail_dir(0).join("users").join(USER);
    std::fs::create_dir_all(home.join("sieve")).unwrap();
    std::fs::write(home.join("sieve/main.sieve"), script).unwrap();
    let _ = std::fs::remove_file(home.join(".dovecot.sieve"));
    std::os::unix::fs::symlink("sieve/main.sieve", home.join(".dovecot.sieve")).unwrap();
}

/// Delivers one message from `from`; the reply line.
fn send(lmtp: &str, from: &str, headers: &str) -> String {
    let mut c = Lmtp::connect(lmtp);
    assert!(c.cmd("LHLO test").starts_with("250"));
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{USER}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let data =
        format!("From: {from}\r\nTo: {USER}\r\nMessage-ID: <{}@x>\r\n{headers}\r\n\r\nbody\r\n.\r\n", headers.len());
    c.send(data.as_bytes());
    c.reply_after(data.len())
}

fn files<'a>(t: &'a BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<(&'a String, &'a Vec<u8>)> {
    t.iter().filter(|(k, _)| k.starts_with(prefix)).collect()
}

fn queued(dir: &Path) -> Vec<String> {
    let t = tree(dir);
    files(&t, "queue/").into_iter().map(|(_, v)| String::from_utf8_lossy(v).into_owned()).collect()
}

#[test]
fn the_active_script_decides_what_is_stored_and_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start(tmp.path(), 1, 2);
    c.wait_leader(Duration::from_secs(30));
    support::deliver(&c.lmtp[0], USER, b"Subject: first\r\n\r\nbefore any script\r\n");
    install(&c, SCRIPT);
    let dir = c.mail_dir(0);
    let maildir = format!("users/{USER}/Maildir/");

    let r = send(&c.lmtp[0], "list@example.org", "Subject: [lists] weekly");
    assert!(r.starts_with("250"), "{r}");
    let t = tree(&dir);
    let lists = files(&t, &format!("{maildir}.Lists/cur/"));
    assert_eq!(lists.len(), 1, "filed into Lists, created: {:?}", t.keys().collect::<Vec<_>>());
    assert!(lists[0].0.ends_with(":2,S"), "with \\Seen: {}", lists[0].0);

    let r = send(&c.lmtp[0], "pest@example.org", "Subject: please reject me");
    assert!(r.starts_with("550 5.7.1") && r.contains("not wanted here"), "{r}");

    let r = send(&c.lmtp[0], "bob@example.org", "Subject: please forward");
    assert!(r.starts_with("250"), "{r}");
    let out = queued(&dir);
    assert_eq!(out.len(), 2, "a redirect and a vacation reply: {out:?}");
    let redirect = out.iter().find(|m| m.contains("Subject: please forward")).expect("redirected copy");
    assert!(redirect.starts_with(&format!("Delivered-To: {USER}\r\n")), "{redirect}");
    let reply = out.iter().find(|m| m.contains("Subject: Away")).expect("vacation reply");
    assert!(reply.contains("To: <bob@example.org>") && reply.contains("Auto-Submitted: auto-replied"), "{reply}");

    let r = send(&c.lmtp[0], "bob@example.org", "Subject: again");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(queued(&dir).len(), 2, "bob is answered once per :days");
    let r = send(&c.lmtp[0], "news@example.org", "Subject: news\r\nList-Id: <n.example.org>");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(queued(&dir).len(), 2, "list mail is never answered");

    let inbox_before = files(&tree(&dir), &format!("{maildir}new/")).len();
    let r = send(&c.lmtp[0], "x@example.org", "Subject: drop this");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(files(&tree(&dir), &format!("{maildir}new/")).len(), inbox_before, "discarded");

    // A script that no longer compiles keeps mail in INBOX.
    install(&c, "if header :bogus \"x\" \"y\" { discard; }");
    let r = send(&c.lmtp[0], "x@example.org", "Subject: drop this too");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(files(&tree(&dir), &format!("{maildir}new/")).len(), inbox_before + 1, "kept in INBOX");
}

/// Delivers one message to `to` with `XUSER=` rules; the reply.
fn send_with_rules(
    lmtp: &str,
    to: &str,
    rules: &common::recipient_rules::RecipientRules,
    headers: &str,
    body: &str,
) -> String {
    let mut c = Lmtp::connect(lmtp);
    assert!(c.cmd("LHLO test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{to}> XUSER={}", rules.to_param()));
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").starts_with("354"));
    let data = format!("From: bob@example.org\r\nTo: {to}\r\n{headers}\r\n\r\n{body}\r\n.\r\n");
    c.send(data.as_bytes());
    c.reply_after(data.len())
}

#[test]
fn directory_rules_forward_reply_and_quota() {
    use common::recipient_rules::RecipientRules;
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::start(tmp.path(), 1, 3);
    c.wait_leader(Duration::from_secs(30));
    let dir = c.mail_dir(0);
    let new = |user: &str| files(&tree(&dir), &format!("users/{user}/Maildir/new/")).len();

    // Forwarding only (qmail-ldap nolocal/forwardonly): queued to the address, no local copy.
    let forward =
        RecipientRules { forward: vec!["away@example.org".into()], no_local: true, ..RecipientRules::default() };
    let r = send_with_rules(&c.lmtp[0], "user1@example.edu", &forward, "Subject: fwd", "x");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(new("user1@example.edu"), 0, "no local copy");
    let out = queued(&dir);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("Delivered-To: user1@example.edu\r\n") && out[0].contains("Subject: fwd"));
    // Round a loop (the message already passed this recipient): kept, not sent again.
    let r = send_with_rules(
        &c.lmtp[0],
        "user1@example.edu",
        &forward,
        "Delivered-To: user1@example.edu\r\nSubject: loop",
        "x",
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!((new("user1@example.edu"), queued(&dir).len()), (1, 1), "kept in INBOX, nothing queued");

    // mailReplyText: one reply per sender, the message kept.
    let reply = RecipientRules { reply: Some("I left the company.".into()), ..RecipientRules::default() };
    for n in 0..2 {
        let r = send_with_rules(&c.lmtp[0], "user2@example.edu", &reply, "Subject: hello", &format!("message {n}"));
        assert!(r.starts_with("250"), "{r}");
    }
    let replies: Vec<String> = queued(&dir).into_iter().filter(|m| m.contains("I left the company.")).collect();
    assert_eq!(replies.len(), 1, "answered once: {replies:?}");
    assert!(replies[0].contains("To: <bob@example.org>"));
    assert_eq!(new("user2@example.edu"), 2);

    // A 1,000-byte, 1-message quota: the first 3 KB message is refused for now, and so
    // is any message once one is stored.
    let quota = RecipientRules { quota_bytes: 10_000, quota_messages: 1, ..RecipientRules::default() };
    let big = "y".repeat(3000);
    let r = send_with_rules(
        &c.lmtp[0],
        "user0@example.edu",
        &RecipientRules { quota_bytes: 1000, ..quota.clone() },
        "Subject: big",
        &big,
    );
    assert!(r.starts_with("452 4.2.2"), "{r}");
    let r = send_with_rules(&c.lmtp[0], "user0@example.edu", &quota, "Subject: first", &big);
    assert!(r.starts_with("250"), "{r}");
    let r = send_with_rules(&c.lmtp[0], "user0@example.edu", &quota, "Subject: second", &big);
    assert!(r.starts_with("452 4.2.2"), "{r}");
    let t = tree(&dir);
    let inbox: Vec<String> = files(&t, &format!("{}new/", "users/user0@example.edu/Maildir/"))
        .into_iter()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(inbox.len(), 2, "the message and the 90% warning: {inbox:?}");
    assert!(inbox.iter().any(|m| m.contains("Subject: Your mailbox is almost full")));
}

/// `include :global` (RFC 6609) finds the site's scripts in `[sieve] global_dir`.
#[test]
fn rfc6609_global_includes_come_from_the_site_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let global = tmp.path().join("global-sieve");
    std::fs::create_dir_all(&global).unwrap();
    std::fs::write(
        global.join("spam.sieve"),
        "require \"fileinto\";\nif header :contains \"subject\" \"[SPAM]\" { fileinto \"Junk\"; stop; }\n",
    )
    .unwrap();
    let dir = global.clone();
    let c = Cluster::start_tuned(tmp.path(), 1, 2, move |cfg| cfg.sieve.global_dir = Some(dir.clone()));
    c.wait_leader(Duration::from_secs(30));
    install(&c, "require [\"include\"];\ninclude :global \"spam\";\ninclude :global :optional \"missing\";\n");
    assert!(send(&c.lmtp[0], "x@example.org", "Subject: [SPAM] cheap").starts_with("250"));
    assert!(send(&c.lmtp[0], "x@example.org", "Subject: hello").starts_with("250"));
    let t = tree(&c.mail_dir(0));
    assert_eq!(files(&t, &format!("users/{USER}/Maildir/.Junk/new/")).len(), 1, "filed by the site's script");
    assert_eq!(files(&t, &format!("users/{USER}/Maildir/new/")).len(), 1, "the rest kept");
}
