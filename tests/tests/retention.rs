//! Retention (issue 25): what a user expunges and the folders they delete are kept, out of
//! IMAP's sight, for `[retention] keep_s`; `mailctl restore` brings them back byte for byte
//! with their flags and keywords (new UIDs, a deleted folder made again); after the
//! retention they are gone from every file of every replica (store, Raft log, snapshot); a user's own retention is set and
//! shown; a deleted user's every folder is kept and restored once the user is back. Three real storaged processes and a front for the directory; the short retention
//! (15 s) is this test's setting.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::admin::{AdminReply, AdminRequest};
use storaged::mailstore::MailOp;
use support::*;

const KEEP_S: u64 = 15;
const ALICE: &str = "alice@example.edu";

/// `(bytes, Maildir info letters)` of every message file of a mailbox on replica `i`.
fn files(root: &Path, i: usize, dir: &str) -> Vec<(Vec<u8>, String)> {
    files_in(root, i, "hermes", dir)
}

/// [`files`] of `group`'s replica.
fn files_in(root: &Path, i: usize, group: &str, dir: &str) -> Vec<(Vec<u8>, String)> {
    let maildir = root.join(format!("data{i}/{group}/mail/users/{ALICE}/Maildir")).join(dir);
    let mut out: Vec<(Vec<u8>, String)> = ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(maildir.join(sub)).into_iter().flatten().flatten())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let info = name.split_once(":2,").map_or(String::new(), |(_, i)| i.to_string());
            (std::fs::read(e.path()).unwrap(), info)
        })
        .collect();
    out.sort();
    out
}

/// Every file under replica `i`'s store of hermes.
fn store_files(root: &Path, i: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(format!("data{i}/hermes/mail"))];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(std::fs::read(e.path()).unwrap_or_default()),
                _ => {}
            }
        }
    }
    out
}

/// The paths of the files under replica `i`'s group directory (store, Raft log, snapshots
/// and all) that hold any of `needles`.
fn files_holding(root: &Path, i: usize, needles: &[Vec<u8>]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(format!("data{i}/hermes"))];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => {
                    let bytes = std::fs::read(e.path()).unwrap_or_default();
                    if needles.iter().any(|n| memchr::memmem::find(&bytes, n).is_some()) {
                        out.push(e.path());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The `Subject:` line of a message, with its line end: unique per message here.
fn subject_line(message: &[u8]) -> Vec<u8> {
    let at = message.windows(9).position(|w| w == b"Subject: ").expect("a Subject field");
    let end = message[at..].windows(2).position(|w| w == b"\r\n").expect("a line end");
    message[at..at + end + 2].to_vec()
}

/// The keywords of each message of `mailbox`, by size and internal date (unique here).
fn keywords(storage: &Storage, mailbox: &str) -> Vec<Vec<String>> {
    let AdminReply::UserMail(mail) =
        storage.admin_call("hermes", AdminRequest::UserMail { group: "hermes".into(), user: ALICE.into() })
    else {
        panic!("no user mail")
    };
    let mb = mail.mailboxes.iter().find(|m| m.name == mailbox).unwrap();
    let mut out: Vec<Vec<String>> = mb.messages.iter().map(|m| m.keywords.clone()).collect();
    out.sort();
    out
}

#[test]
fn expunged_mail_and_a_deleted_folder_are_restored_and_purged_after_the_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start_tuned(root, |c| {
        c.retention.keep_s = KEEP_S;
        c.retention.purge_every_s = 1;
        c.retention.scrub_every_s = 1;
    });
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start(root, &storage, ldif_directory());

    let subjects: Vec<String> = (0..120).map(|k| format!("kept {k}")).collect();
    storage.deliver_many(ALICE, &subjects);
    let store = |uids: Vec<u32>, flags: u8, keywords: &[&str]| add_flags(ALICE, uids, flags, keywords);
    use storaged::mailstore::ops::flag::{FLAGGED, SEEN};
    storage.commit("hermes", store((1..=120).step_by(2).collect(), SEEN, &[]));
    storage.commit("hermes", store((1..=10).collect(), FLAGGED, &["$Label1"]));
    storage.commit("hermes", MailOp::CreateMailbox { user: ALICE.into(), mailbox: "Projects".into() });
    let copy = MailOp::Copy {
        user: ALICE.into(),
        from: "INBOX".into(),
        to: "Projects".into(),
        uids: (101..=110).collect(),
        now_s: common::clock::now_s(),
    };
    storage.commit("hermes", copy);
    let inbox_before = files(root, 1, "");
    let projects_before = files(root, 1, ".Projects");
    let keywords_before = keywords(&storage, "INBOX");
    assert_eq!((inbox_before.len(), projects_before.len()), (120, 10));
    assert_eq!(inbox_before.iter().filter(|(_, info)| info.contains('F')).count(), 10);

    // Expunge 100, delete the folder: gone from the mailboxes on every replica.
    storage
        .commit("hermes", MailOp::Expunge { user: ALICE.into(), mailbox: "INBOX".into(), uids: (1..=100).collect() });
    storage.commit("hermes", MailOp::DeleteMailbox { user: ALICE.into(), mailbox: "Projects".into() });
    for i in 1..=3 {
        wait_for("the expunge and the deletion on every replica", Duration::from_secs(20), || {
            files(root, i, "").len() == 20 && files(root, i, ".Projects").is_empty()
        });
    }
    let (ok, listing) = mailctl(root, &["restore", ALICE, "--list"]);
    assert!(ok, "{listing}");
    assert_eq!(listing.lines().filter(|l| l.contains("expunged")).count(), 100, "{listing}");
    assert_eq!(listing.lines().filter(|l| l.contains("folder deleted")).count(), 10, "{listing}");
    assert!(listing.contains("kept 42"), "subjects are listed: {listing}");

    // Restore both: the same bytes and flags on every replica, the folder made again.
    let (ok, out) = mailctl(root, &["restore", ALICE, "--folder", "INBOX"]);
    assert!(ok && out.contains("restored 100 messages"), "{out}");
    let (ok, out) = mailctl(root, &["restore", ALICE, "--folder", "Projects"]);
    assert!(ok && out.contains("restored 10 messages"), "{out}");
    for i in 1..=3 {
        wait_for("the restore on every replica", Duration::from_secs(20), || files(root, i, "").len() == 120);
        assert_eq!(files(root, i, ""), inbox_before, "replica {i}: INBOX bytes and flags");
        wait_for("the folder on every replica", Duration::from_secs(20), || files(root, i, ".Projects").len() == 10);
        assert_eq!(files(root, i, ".Projects"), projects_before, "replica {i}: Projects");
    }
    assert_eq!(keywords(&storage, "INBOX"), keywords_before, "keywords kept");
    let (ok, out) = mailctl(root, &["restore", ALICE]);
    assert!(!ok && out.contains("nothing of"), "a second restore finds nothing left: {out}");

    // Expunge five for good: after the retention no replica's store holds them.
    let AdminReply::UserMail(mail) =
        storage.admin_call("hermes", AdminRequest::UserMail { group: "hermes".into(), user: ALICE.into() })
    else {
        panic!("no user mail")
    };
    let inbox = mail.mailboxes.iter().find(|m| m.name == "INBOX").unwrap();
    let last: Vec<u32> = inbox.messages.iter().rev().take(5).map(|m| m.uid).collect();
    let before: BTreeMap<Vec<u8>, ()> = files(root, 1, "").into_iter().map(|(b, _)| (b, ())).collect();
    // A SORT on the leader keeps the subjects on its disk too (the sort fields): the scrub
    // must take them away with the rest.
    let lines: [&[u8]; 4] =
        [b"a LOGIN alice alice-pw\r\n", b"b SELECT INBOX\r\n", b"c UID SORT (SUBJECT) UTF-8 ALL\r\n", b"d LOGOUT\r\n"];
    let sorted = raw(&front.imap, &lines);
    assert!(sorted.contains("* SORT ") && sorted.contains("c OK"), "{sorted}");
    let fields_files = || {
        let path = |i| root.join(format!("data{i}/hermes/mail/users/{ALICE}/Maildir/mailstore.fields"));
        (1..=3).filter(|i| path(*i).exists()).count()
    };
    assert_eq!(fields_files(), 1, "the leader kept the fields it sorted on");
    storage.commit("hermes", MailOp::Expunge { user: ALICE.into(), mailbox: "INBOX".into(), uids: last });
    wait_for("the expunge", Duration::from_secs(20), || files(root, 1, "").len() == 115);
    let after: BTreeMap<Vec<u8>, ()> = files(root, 1, "").into_iter().map(|(b, _)| (b, ())).collect();
    let expunged: Vec<&Vec<u8>> = before.keys().filter(|b| !after.contains_key(*b)).collect();
    assert_eq!(expunged.len(), 5);
    let subjects: Vec<Vec<u8>> = expunged.iter().map(|m| subject_line(m)).collect();
    for i in 1..=3 {
        let holding = files_holding(root, i, &subjects);
        assert!(holding.iter().any(|p| p.to_string_lossy().contains("/raft/")), "the log holds them: {holding:?}");
    }
    for i in 1..=3 {
        let kept = root.join(format!("data{i}/hermes/mail/users/{ALICE}/kept"));
        // Each replica applies the expunge and the purges in its own time.
        wait_for("the purge of every kept set and message", Duration::from_secs(KEEP_S * 3), || {
            let left = store_files(root, i);
            std::fs::read_dir(&kept).map_or(true, |mut d| d.next().is_none())
                && expunged.iter().all(|b| !left.contains(b))
        });
    }
    assert_eq!(files(root, 1, "").len(), 115, "the purge touched only kept mail");
    // Nor any other file: the log segments that carried them are scrubbed, the snapshot
    // rebuilt without them.
    for i in 1..=3 {
        wait_for("the expunged bytes gone from every file of the replica", Duration::from_secs(60), || {
            files_holding(root, i, &subjects).is_empty()
        });
    }
    assert_eq!(fields_files(), 0, "the scrub removed the kept sort fields");

    // A user's own retention, set and shown by mailctl (the purge by it: the store's tests).
    let (ok, out) = mailctl(root, &["retention", ALICE, "90d"]);
    assert!(ok, "{out}");
    let (ok, out) = mailctl(root, &["retention", ALICE]);
    assert!(ok && out.contains("90 days"), "{out}");
    let (ok, out) = mailctl(root, &["retention", ALICE, "default"]);
    assert!(ok, "{out}");
    let (ok, out) = mailctl(root, &["retention", ALICE]);
    assert!(ok && out.contains("the site's retention"), "{out}");
    let (ok, out) = mailctl(root, &["retention", ALICE, "forever"]);
    assert!(!ok && out.contains("give a duration"), "{out}");

    // A deleted user: every folder kept (a day, their own retention), restored once the
    // user is added again.
    let ldif = root.join("users.ldif");
    let ldif = ldif.to_str().unwrap();
    assert!(mailctl(root, &["retention", ALICE, "1d"]).0);
    let (ok, out) = mailctl(root, &["user", "delete", ALICE, "--ldif", ldif]);
    assert!(ok && out.contains("kept for the retention"), "{out}");
    for i in 1..=3 {
        wait_for("the deletion on every replica", Duration::from_secs(20), || {
            !root.join(format!("data{i}/hermes/mail/users/{ALICE}/Maildir")).exists()
        });
    }
    let (ok, out) = mailctl(root, &["restore", ALICE, "--list"]);
    assert!(!ok && out.contains("no user"), "a deleted user is not in the directory: {out}");
    let (ok, out) = mailctl(root, &["user", "add", ALICE, "--mailhost", "hermes", "--ldif", ldif]);
    assert!(ok, "{out}");
    wait_for("the front to see alice again", Duration::from_secs(10), || {
        mailctl(root, &["restore", ALICE, "--list"]).0
    });
    let (ok, listing) = mailctl(root, &["restore", ALICE, "--list"]);
    assert!(ok && listing.lines().filter(|l| l.contains("user deleted")).count() == 125, "{listing}");
    let (ok, out) = mailctl(root, &["restore", ALICE]);
    assert!(ok && out.contains("restored 125 messages"), "{out}");
    for i in 1..=3 {
        wait_for("the restored user on every replica", Duration::from_secs(20), || {
            files(root, i, "").len() == 115 && files(root, i, ".Projects").len() == 10
        });
    }
}

/// The bytes of every kept message file of alice on replica `i` of `group`.
fn kept_bytes(root: &Path, i: usize, group: &str) -> Vec<Vec<u8>> {
    let kept = root.join(format!("data{i}/{group}/mail/users/{ALICE}/kept"));
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(kept)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|set| std::fs::read_dir(set.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name() != "meta" && f.file_name() != "origin")
        .map(|f| std::fs::read(f.path()).unwrap())
        .collect();
    out.sort();
    out
}

/// `(file, kept since)` of alice's kept messages on `group`.
fn kept_listing(storage: &Storage, group: &str) -> Vec<(String, Option<i64>)> {
    let request = AdminRequest::Kept { group: group.into(), user: ALICE.into() };
    let AdminReply::Kept { items, .. } = storage.admin_call(group, request) else { panic!("no kept listing") };
    let mut out: Vec<_> = items.into_iter().map(|i| (i.file, i.kept_since_s)).collect();
    out.sort();
    out
}

/// A move takes the user's kept mail along: after `mailctl move` the same messages are
/// restorable on the new mailhost, with the retention running from when they were removed,
/// and restore byte for byte with their flags; nothing of the user stays on the old one.
#[test]
fn kept_mail_moves_with_the_user_and_is_restored_on_the_new_mailhost() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let storage = Storage::start_tuned(root, |c| c.retention.purge_every_s = 1);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let _front = Front::start(root, &storage, ldif_directory());
    let subjects: Vec<String> = (0..20).map(|k| format!("moving {k}")).collect();
    storage.deliver_many(ALICE, &subjects);
    use storaged::mailstore::ops::flag::SEEN;
    storage.commit("hermes", add_flags(ALICE, (1..=5).collect(), SEEN, &["$Label1"]));
    wait_for("the flags", Duration::from_secs(20), || {
        files(root, 1, "").iter().filter(|(_, i)| i.contains('S')).count() == 5
    });
    // UIDs 1–5, the ones just flagged \\Seen.
    let expunged: BTreeMap<Vec<u8>, ()> =
        files(root, 1, "").into_iter().filter(|(_, info)| info.contains('S')).map(|(b, _)| (b, ())).collect();
    storage.commit("hermes", MailOp::Expunge { user: ALICE.into(), mailbox: "INBOX".into(), uids: (1..=5).collect() });
    storage.commit("hermes", MailOp::CreateMailbox { user: ALICE.into(), mailbox: "Old".into() });
    let copy = MailOp::Copy {
        user: ALICE.into(),
        from: "INBOX".into(),
        to: "Old".into(),
        uids: (6..=8).collect(),
        now_s: common::clock::now_s(),
    };
    storage.commit("hermes", copy);
    storage.commit("hermes", MailOp::DeleteMailbox { user: ALICE.into(), mailbox: "Old".into() });
    wait_for("both sets stamped by a purge round", Duration::from_secs(20), || {
        let l = kept_listing(&storage, "hermes");
        l.len() == 8 && l.iter().all(|(_, since)| since.is_some())
    });
    let before_listing = kept_listing(&storage, "hermes");
    let before_bytes = kept_bytes(root, 1, "hermes");
    assert_eq!(before_bytes.len(), 8);

    let (ok, out) = mailctl(root, &["move", ALICE, "apollo", "--grace-s", "0"]);
    assert!(ok && out.contains("8 kept messages"), "{out}");
    assert_eq!(kept_listing(&storage, "apollo"), before_listing, "the same messages, kept since the same time");
    for i in 1..=3 {
        wait_for("the kept mail on every apollo replica", Duration::from_secs(20), || {
            kept_bytes(root, i, "apollo") == before_bytes
        });
        wait_for("nothing left on hermes", Duration::from_secs(20), || {
            !root.join(format!("data{i}/hermes/mail/users/{ALICE}")).exists()
        });
    }
    let (ok, listing) = mailctl(root, &["restore", ALICE, "--list"]);
    assert!(ok && listing.lines().filter(|l| l.contains("expunged")).count() == 5, "{listing}");
    assert_eq!(listing.lines().filter(|l| l.contains("folder deleted")).count(), 3, "{listing}");
    let (ok, out) = mailctl(root, &["restore", ALICE]);
    assert!(ok && out.contains("restored 8 messages"), "{out}");
    for i in 1..=3 {
        wait_for("the restore on every apollo replica", Duration::from_secs(20), || {
            files_in(root, i, "apollo", "").len() == 20 && files_in(root, i, "apollo", ".Old").len() == 3
        });
        let inbox = files_in(root, i, "apollo", "");
        let back: Vec<_> = inbox.iter().filter(|(b, _)| expunged.contains_key(b)).collect();
        assert_eq!(back.len(), 5, "replica {i}: the expunged five, byte for byte");
        assert!(back.iter().all(|(_, info)| info.contains('S')), "replica {i}: with their flags");
    }
}
