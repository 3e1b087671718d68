//! Migration in and out (issue 25): a real Dovecot filled over IMAP with 5,000 messages,
//! flags, keywords, nested and non-ASCII folders, an empty folder and subscriptions; its
//! Maildir imported with `mailctl import`; Python's imaplib, which recorded UIDVALIDITY,
//! UIDNEXT, UIDs, flags, internal dates and bytes against Dovecot, records the same against
//! us; mbsync, synced against Dovecot before, syncs against us after and changes nothing
//! (its state files and local Maildir stay as they were). Then `mailctl export`: a second
//! Dovecot serves the export with the same record, and importing the export for another
//! user gives it again. And a damaged Maildir: every bad file named, the rest imported.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::admin::{AdminReply, AdminRequest};
use support::*;
use tests::dovecot::{self, Dovecot};

const MESSAGES: usize = 5_000;

fn record(server: &str, user: &str, password: &str) -> serde_json::Value {
    python_json("migration_client.py", &["record", "--server", server, "--user", user, "--password", password])
}

/// Every file of the tree at `root` (relative path → bytes), mbsync's lock files aside.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().ends_with(".lock") {
                out.insert(path.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn mbsync(rc: &Path, local: &Path, (host, port): (&str, &str), (user, password): (&str, &str)) -> String {
    let text = format!(
        "IMAPAccount acct\nHost {host}\nPort {port}\nUser {user}\nPass {password}\nSSLType None\nAuthMechs PLAIN LOGIN\n\n\
         IMAPStore far\nAccount acct\n\n\
         MaildirStore near\nPath {l}/\nInbox {l}/INBOX\nSubFolders Verbatim\n\n\
         Channel sync\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync All\nExpunge None\nSyncState *\n",
        l = local.display()
    );
    std::fs::write(rc, text).unwrap();
    let out = Command::new("mbsync").arg("-c").arg(rc).arg("-a").output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "mbsync failed:\n{said}");
    said
}

/// How record `got` differs from `want`, at most a few lines (empty when equal).
fn differences(want: &serde_json::Value, got: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if want["subscribed"] != got["subscribed"] {
        out.push(format!("subscribed {} != {}", got["subscribed"], want["subscribed"]));
    }
    if names(want) != names(got) {
        out.push(format!("mailboxes {:?} != {:?}", names(got), names(want)));
    }
    for name in names(want) {
        let (w, g) = (&want["mailboxes"][&name], &got["mailboxes"][&name]);
        for key in ["uidvalidity", "uidnext"] {
            if w[key] != g[key] {
                out.push(format!("{name} {key} {} != {}", g[key], w[key]));
            }
        }
        let (wm, gm) = (w["messages"].as_array().unwrap(), g["messages"].as_array().cloned().unwrap_or_default());
        if wm.len() != gm.len() {
            out.push(format!("{name}: {} messages != {}", gm.len(), wm.len()));
        }
        for (a, b) in wm.iter().zip(&gm).filter(|(a, b)| a != b).take(3) {
            out.push(format!("{name}: {b} != {a}"));
        }
    }
    out
}

/// The mailbox names of a record, sorted.
fn names(r: &serde_json::Value) -> Vec<String> {
    r["mailboxes"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn a_dovecot_maildir_moves_in_with_its_uids_and_out_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let old = Dovecot::start(&root.join("dovecot-old"), &root.join("old-mail"));
    let filled = python_json(
        "migration_client.py",
        &[
            "fill",
            "--server",
            &old.imap,
            "--user",
            "alice",
            "--password",
            dovecot::PASSWORD,
            "--messages",
            &MESSAGES.to_string(),
        ],
    );
    assert_eq!(filled["appended"], MESSAGES);
    let before = record(&old.imap, "alice", dovecot::PASSWORD);
    assert_eq!(
        names(&before),
        ["&ANw-n&AO8-", "Archive", "Archive/2024", "Drafts", "Empty", "INBOX", "Junk", "Lists/rust", "Sent", "Trash"]
    );
    let held: usize =
        before["mailboxes"].as_object().unwrap().values().map(|m| m["messages"].as_array().unwrap().len()).sum();
    assert!(held > 4_000, "expunges left {held}");

    // A user's mbsync, synced against the old server.
    let local = root.join("mbsync-local");
    std::fs::create_dir_all(&local).unwrap();
    let (host, port) = old.imap.rsplit_once(':').unwrap();
    mbsync(&root.join("mbsyncrc"), &local, (host, port), ("alice", dovecot::PASSWORD));
    let local_before = tree(&local);
    assert!(local_before.len() > held, "mbsync pulled every message and wrote its state");
    let source = old.maildir("alice");
    drop(old);

    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start(root, &storage, ldif_directory());
    let (ok, out) = mailctl(root, &["import", "alice@example.edu", source.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("imported {held} messages")) && out.contains("0 problems"), "{out}");
    let after = record(&front.imap, "alice", "alice-pw");
    let diff = differences(&before, &after);
    assert!(
        diff.is_empty(),
        "against us, not the same UIDVALIDITY, UIDNEXT, UIDs, flags, dates, bytes:\n{}",
        diff.join("\n")
    );

    // Resumable: a second run finds everything there.
    let (ok, again) = mailctl(root, &["import", "alice@example.edu", source.to_str().unwrap()]);
    assert!(ok && again.contains("imported 0 messages") && again.contains(&format!("{held} already there")), "{again}");

    // The user's mbsync, pointed at us, has nothing to do.
    let (host, port) = front.imap.rsplit_once(':').unwrap();
    let said = mbsync(&root.join("mbsyncrc"), &local, (host, port), ("alice", "alice-pw"));
    let local_after = tree(&local);
    let changed: Vec<&String> =
        local_after.keys().chain(local_before.keys()).filter(|k| local_after.get(*k) != local_before.get(*k)).collect();
    assert!(changed.is_empty(), "mbsync changed {changed:?} after the migration:\n{said}");

    // Out again: a Dovecot serves the export with the same record.
    let export_root = root.join("exported");
    let (ok, out) =
        mailctl(root, &["export", "alice@example.edu", export_root.join("alice/Maildir").to_str().unwrap()]);
    assert!(ok && out.contains(&format!("exported {held} messages")) && out.contains("0 problems"), "{out}");
    let mode = std::fs::metadata(export_root.join("alice/Maildir/dovecot-uidlist")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    let new = Dovecot::start(&root.join("dovecot-new"), &export_root);
    let served = record(&new.imap, "alice", dovecot::PASSWORD);
    assert!(!new.log_text().contains("Error"), "dovecot complained:\n{}", new.log_text());
    let diff = differences(&before, &served);
    assert!(diff.is_empty(), "Dovecot serves our export differently:\n{}", diff.join("\n"));
    drop(new);

    // And in again, for another user on the other mailhost: the round trip is exact.
    let (ok, out) = mailctl(root, &["import", "bob@example.edu", export_root.join("alice/Maildir").to_str().unwrap()]);
    assert!(ok && out.contains(&format!("imported {held} messages")), "{out}");
    let diff = differences(&before, &record(&front.imap, "bob", "bob-pw"));
    assert!(diff.is_empty(), "export then import does not round-trip:\n{}", diff.join("\n"));
    let AdminReply::UserMail(bob) =
        storage.admin_call("apollo", AdminRequest::UserMail { group: "apollo".into(), user: "bob@example.edu".into() })
    else {
        panic!("no user mail")
    };
    assert!(bob.mailboxes.iter().any(|m| m.name == "Empty" && m.messages.is_empty()), "empty folders travel too");
}

/// Write `data` at `path` with mtime `mtime_s`.
fn put(path: &Path, data: &[u8], mtime_s: u64) {
    std::fs::write(path, data).unwrap();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime_s);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(at).unwrap();
}

fn message(k: usize) -> Vec<u8> {
    format!("Subject: damaged {k}\r\nMessage-ID: <dmg{k}@example.org>\r\n\r\nbody {k}\r\n").into_bytes()
}

#[test]
fn a_damaged_maildir_is_imported_with_every_problem_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let src = root.join("damaged");
    for dir in ["cur", "new", "tmp", ".Courier/cur", ".Courier/new", ".bad..name/cur", "cur/adir"] {
        std::fs::create_dir_all(src.join(dir)).unwrap();
    }
    // A duplicate UID and a list cut off in its last line.
    std::fs::write(src.join("dovecot-uidlist"), "3 V555 N20 G00\n1 :good1\n2 :good2\n2 :dupe\n5 :big\n6 :goo").unwrap();
    std::fs::write(src.join("dovecot-keywords"), "0 Work\n").unwrap();
    put(&src.join("cur/good1:2,Sa"), &message(1), 1_600_000_001);
    put(&src.join("cur/good2:2,F"), &message(2), 1_600_000_002);
    put(&src.join("cur/dupe:2,"), &message(3), 1_600_000_003);
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789012345\r\n";
    let mut big = message(4);
    while big.len() < 40 << 20 {
        big.extend_from_slice(line);
    }
    put(&src.join("cur/big:2,S"), &big, 1_600_000_004);
    put(&src.join("new/good3"), &message(5), 1_600_000_005);
    put(&src.join("cur/odd:1,xyz"), &message(6), 1_600_000_006);
    put(&src.join("cur/bad\u{1}name"), &message(7), 1_600_000_007);
    std::os::unix::fs::symlink("/nonexistent/message", src.join("cur/gone:2,S")).unwrap();
    put(&src.join("cur/empty"), b"", 1_600_000_008);
    // Courier's list in a folder; a folder whose name the store does not take.
    std::fs::write(src.join(".Courier/courierimapuiddb"), "1 777 9\n1 c1\n3 c3\n").unwrap();
    put(&src.join(".Courier/cur/c1:2,S"), &message(8), 1_600_000_009);
    put(&src.join(".Courier/cur/c3:2,RS"), &message(9), 1_600_000_010);
    put(&src.join(".bad..name/cur/x"), &message(10), 1_600_000_011);

    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let _front = Front::start(root, &storage, ldif_directory());
    let (ok, out) = mailctl(root, &["import", "bob@example.edu", src.to_str().unwrap()]);
    assert!(!ok, "problems make the exit status say so:\n{out}");
    for named in [
        "dovecot-uidlist:4",
        "dovecot-uidlist: last line has no newline",
        "cur/odd:1,xyz",
        "cur/bad\\u{1}name",
        "cur/gone:2,S: cannot be read",
        "cur/adir: not a regular file",
        "cur/empty: empty file",
        ".bad..name: not a mailbox name",
    ] {
        assert!(out.contains(named), "{named:?} not named in:\n{out}");
    }
    assert!(out.contains("imported 9 messages") && out.contains("8 problems"), "{out}");

    let AdminReply::UserMail(mail) =
        storage.admin_call("apollo", AdminRequest::UserMail { group: "apollo".into(), user: "bob@example.edu".into() })
    else {
        panic!("no user mail")
    };
    let inbox = mail.mailboxes.iter().find(|m| m.name == "INBOX").unwrap();
    let uids: Vec<u32> = inbox.messages.iter().map(|m| m.uid).collect();
    // Listed UIDs kept; the repeated one, the new one and the odd names after N20, by date.
    assert_eq!((inbox.uid_validity, uids), (555, vec![1, 2, 5, 20, 21, 22, 23]));
    assert_eq!(inbox.messages[0].keywords, vec!["Work".to_string()]);
    assert_eq!(inbox.messages[2].size_bytes, big.len() as u64, "the 40 MiB message whole");
    let courier = mail.mailboxes.iter().find(|m| m.name == "Courier").unwrap();
    let uids: Vec<u32> = courier.messages.iter().map(|m| m.uid).collect();
    assert_eq!((courier.uid_validity, courier.uid_next, uids), (777, 9, vec![1, 3]));
    let fetched = storage.admin_call(
        "apollo",
        AdminRequest::FetchMessages {
            group: "apollo".into(),
            user: "bob@example.edu".into(),
            mailbox: "INBOX".into(),
            uids: vec![5],
        },
    );
    let AdminReply::Messages(got) = fetched else { panic!("{fetched:?}") };
    assert!(got[0].1.as_ref().map(|b| b.as_slice()) == Some(&big[..]), "the big message byte for byte");

    // Run again: nothing twice, the same problems named.
    let (ok, again) = mailctl(root, &["import", "bob@example.edu", src.to_str().unwrap()]);
    assert!(!ok && again.contains("imported 0 messages") && again.contains("9 already there"), "{again}");
}

#[test]
fn a_live_imap_server_is_imported_over_tls_read_only_with_its_uids() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let certs = root.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    clusterkit::certs::self_signed(&certs, &["127.0.0.1"]).unwrap();
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let old = Dovecot::start_with(&root.join("dovecot-old"), &root.join("old-mail"), Some((&cert, &key)));
    let fill = ["fill", "--server", &old.imap, "--user", "alice", "--password", dovecot::PASSWORD, "--messages", "600"];
    python_json("migration_client.py", &fill);
    let before = record(&old.imap, "alice", dovecot::PASSWORD);

    let storage = Storage::start(root);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let front = Front::start(root, &storage, ldif_directory());
    let password = root.join("old.pw");
    std::fs::write(&password, format!("{}\n", dovecot::PASSWORD)).unwrap();
    let pw = password.to_str().unwrap();
    // Over TLS: refused with the system's roots (a self-signed certificate), taken with its CA.
    let url = format!("imaps://alice@{}", old.imaps.as_deref().unwrap());
    let (ok, out) = mailctl(root, &["import", "alice@example.edu", "--from-imap", &url, "--password-file", pw]);
    assert!(!ok && out.contains("connecting to"), "an unknown certificate is refused:\n{out}");
    let tls = ["--from-imap", &url, "--password-file", pw, "--ca-file", cert.to_str().unwrap()];
    let (ok, out) = mailctl(root, &[&["import", "alice@example.edu"][..], &tls].concat());
    assert!(ok && out.contains("0 problems"), "{out}");
    // imap:// with STARTTLS (Dovecot offers it): the certificate is checked as well.
    let url = format!("imap://alice@{}", old.imap);
    let (ok, out) = mailctl(root, &["import", "alice@example.edu", "--from-imap", &url, "--password-file", pw]);
    assert!(!ok && out.contains("STARTTLS with"), "STARTTLS, and an unknown certificate refused:\n{out}");
    let ca = cert.to_str().unwrap();
    let args = ["import", "alice@example.edu", "--from-imap", &url, "--password-file", pw, "--ca-file", ca];
    let diff = differences(&before, &record(&front.imap, "alice", "alice-pw"));
    assert!(diff.is_empty(), "imported from IMAP, not the same:\n{}", diff.join("\n"));
    let diff = differences(&before, &record(&old.imap, "alice", dovecot::PASSWORD));
    assert!(diff.is_empty(), "the old server was changed (\\Seen set?):\n{}", diff.join("\n"));
    let (ok, again) = mailctl(root, &args);
    assert!(ok && again.contains("imported 0 messages"), "resumable:\n{again}");
    let (ok, wrong) = mailctl(root, &["import", "bob@example.edu", "--from-imap", &url]);
    assert!(!ok && wrong.contains("--password-file"), "no password on the command line:\n{wrong}");
}
