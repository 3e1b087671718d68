//! A backup site (issue 25): a fourth storaged node is made a backup of hermes with
//! `mailctl backup add-node` — a Raft learner that copies the log, never votes, and keeps
//! expunged mail longer than the voters (`[retention] backup_keep_s`). The voters purge an
//! expunge after their short retention while the backup still lists it; then the three
//! voters' data directories are destroyed and the nodes start empty, and
//! `mailctl restore --from-backup 4` brings the user back from the backup: every mailbox
//! with its UIDVALIDITY, UIDs, flags, keywords and every message byte for byte; and the
//! expunged mail only the backup still keeps, with `--kept`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::admin::{AdminReply, AdminRequest, UserMail};
use storaged::mailstore::MailOp;
use support::*;

const ALICE: &str = "alice@example.edu";
const VOTER_KEEP_S: u64 = 3;

/// `mailbox → (UIDVALIDITY, uid → (flags, keywords, bytes))` of alice on hermes's leader.
type Mail = BTreeMap<String, (u32, BTreeMap<u32, (u8, Vec<String>, Vec<u8>)>)>;

fn alice_mail(storage: &Storage) -> Mail {
    let AdminReply::UserMail(UserMail { mailboxes, .. }) =
        storage.admin_call("hermes", AdminRequest::UserMail { group: "hermes".into(), user: ALICE.into() })
    else {
        panic!("no user mail")
    };
    let mut out = Mail::new();
    for mb in mailboxes {
        let uids: Vec<u32> = mb.messages.iter().map(|m| m.uid).collect();
        let request =
            AdminRequest::FetchMessages { group: "hermes".into(), user: ALICE.into(), mailbox: mb.name.clone(), uids };
        let AdminReply::Messages(bodies) = storage.admin_call("hermes", request) else { panic!("no bodies") };
        let bodies: BTreeMap<u32, Vec<u8>> =
            bodies.into_iter().map(|(uid, b)| (uid, b.expect("not expunged").into_vec())).collect();
        assert_eq!(bodies.len(), mb.messages.len(), "{}: one fetch holds them all here", mb.name);
        let messages = mb.messages.iter().map(|m| (m.uid, (m.flags, m.keywords.clone(), bodies[&m.uid].clone())));
        out.insert(mb.name.clone(), (mb.uid_validity, messages.collect()));
    }
    out
}

#[test]
fn a_user_is_restored_from_the_backup_after_the_voters_lost_their_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut storage = Storage::start_tuned(root, |c| {
        c.retention.keep_s = VOTER_KEEP_S;
        c.retention.purge_every_s = 1;
        if c.node_id == 4 {
            c.retention.backup_keep_s = Some(3600);
        }
    });
    let backup = storage.add_node(&["hermes", "apollo"]);
    storage.start_node(backup);
    std::fs::copy(fixture("users.ldif"), root.join("users.ldif")).unwrap();
    let _front = Front::start(root, &storage, ldif_directory());

    let subjects: Vec<String> = (0..60).map(|k| format!("backed up {k}")).collect();
    storage.deliver_many(ALICE, &subjects);
    let store = |uids: Vec<u32>, flags: u8, keywords: &[&str]| add_flags(ALICE, uids, flags, keywords);
    use storaged::mailstore::ops::flag::{FLAGGED, SEEN};
    storage.commit("hermes", store((1..=60).step_by(3).collect(), SEEN, &[]));
    storage.commit("hermes", store((5..=9).collect(), FLAGGED, &["$Label2"]));
    storage.commit("hermes", MailOp::CreateMailbox { user: ALICE.into(), mailbox: "Projects/2026".into() });
    let copy = MailOp::Copy {
        user: ALICE.into(),
        from: "INBOX".into(),
        to: "Projects/2026".into(),
        uids: (20..=29).collect(),
        now_s: common::clock::now_s(),
    };
    storage.commit("hermes", copy);

    let raft = storage.raft[backup].clone();
    let (ok, out) = mailctl(root, &["backup", "add-node", "hermes", "4", "--raft", &raft]);
    assert!(ok, "{out}");
    // Expunge five: the voters purge them after their retention, the backup keeps them.
    storage.commit(
        "hermes",
        MailOp::Expunge { user: ALICE.into(), mailbox: "INBOX".into(), uids: vec![56, 57, 58, 59, 60] },
    );
    wait_for("the backup to catch up", Duration::from_secs(60), || {
        let (_, status) = mailctl(root, &["backup", "status"]);
        status.contains("group hermes: backup node 4") && status.contains("lag 0")
    });
    let (ok, status) = mailctl(root, &["status"]);
    assert!(ok && status.contains("(backup)"), "mailctl status marks the backup:\n{status}");
    let kept = |node: usize| root.join(format!("data{node}/hermes/mail/users/{ALICE}/kept"));
    for node in 1..=3 {
        wait_for("the voters' purge", Duration::from_secs(30), || {
            std::fs::read_dir(kept(node)).map_or(true, |mut d| d.next().is_none())
        });
    }
    let (ok, listing) = mailctl(root, &["restore", ALICE, "--list", "--from-backup", "4"]);
    assert!(ok, "{listing}");
    assert_eq!(listing.lines().filter(|l| l.contains("expunged")).count(), 5, "the backup keeps them:\n{listing}");
    let before = alice_mail(&storage);
    assert_eq!(before["INBOX"].1.len(), 55);
    assert_eq!(before["Projects/2026"].1.len(), 10);

    // The voters lose everything and start empty.
    for i in 0..3 {
        storage.kill(i);
        std::fs::remove_dir_all(root.join(format!("data{}", i + 1))).unwrap();
    }
    for i in 0..3 {
        storage.start_node(i);
    }
    storage.leader_for(ALICE);
    assert!(!alice_mail(&storage).contains_key("Projects/2026"), "the voters start empty");

    let (ok, out) = mailctl(root, &["restore", ALICE, "--from-backup", "4"]);
    assert!(ok && out.contains("restored 65 messages"), "{out}");
    let after = alice_mail(&storage);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    for (name, (validity, messages)) in &before {
        let (v, m) = &after[name];
        assert_eq!(v, validity, "{name}: UIDVALIDITY");
        assert_eq!(m.keys().collect::<Vec<_>>(), messages.keys().collect::<Vec<_>>(), "{name}: UIDs");
        assert!(m == messages, "{name}: flags, keywords and bytes");
    }
    // Run again: nothing added twice.
    let (ok, again) = mailctl(root, &["restore", ALICE, "--from-backup", "4"]);
    assert!(ok && again.contains("restored 0 messages"), "{again}");

    // And what the voters had purged comes back from the backup's kept sets too.
    let (ok, out) = mailctl(root, &["restore", ALICE, "--from-backup", "4", "--kept"]);
    assert!(ok && out.contains("restored 5 kept messages"), "{out}");
    let inbox = &alice_mail(&storage)["INBOX"].1;
    assert_eq!(inbox.len(), 60);
    for k in 55..60 {
        let subject = format!("Subject: backed up {k}\r\n");
        let found = inbox.values().any(|(_, _, bytes)| bytes.windows(subject.len()).any(|w| w == subject.as_bytes()));
        assert!(found, "{subject:?} restored");
    }
}
