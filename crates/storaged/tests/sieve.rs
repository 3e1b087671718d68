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
