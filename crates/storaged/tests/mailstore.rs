//! The Maildir state machine without Raft: determinism, idempotent replay after a crash,
//! flags in file names, copy/move/expunge, mailbox operations and hostile names.

use std::collections::BTreeMap;
use std::path::Path;

use storaged::mailstore::ops::flag;
use storaged::mailstore::{FlagMode, MailOp, MailRequest, MailResponse, MailboxName, OpId, Store, UserName};

/// The proposer's clock in the operations that carry one (a save date).
const SAVED_S: i64 = 1_790_000_000;

fn req(n: u64, op: MailOp) -> MailRequest {
    MailRequest { op_id: OpId::digest(&[&n.to_le_bytes()]), op }
}

fn deliver(n: u64, to: &[&str]) -> MailRequest {
    let message = format!("Message-ID: <m{n}@test>\r\nSubject: {n}\r\n\r\nbody {n}\r\n").into_bytes();
    req(
        n,
        MailOp::Deliver {
            recipients: to.iter().map(|s| s.to_string()).collect(),
            internal_date: 1_700_000_000 + n as i64,
            message,
        },
    )
}

/// Every file under `root` with its contents, but for the store's spare files (a replica's
/// own business: after a crash they differ, the mail does not).
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with(".spare") {
                    stack.push(p);
                }
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn workload() -> Vec<MailRequest> {
    let u = |s: &str| s.to_string();
    let mut ops = Vec::new();
    for n in 0..20 {
        ops.push(deliver(n, &["alice", "bob"]));
    }
    ops.push(req(100, MailOp::CreateMailbox { user: u("alice"), mailbox: u("Archive/2024") }));
    ops.push(req(
        101,
        MailOp::Store {
            user: u("alice"),
            mailbox: u("INBOX"),
            uids: vec![1, 2, 3],
            mode: FlagMode::Add,
            flags: flag::SEEN | flag::FLAGGED,
            keywords: vec![u("$Work")],
            unchanged_since: None,
        },
    ));
    ops.push(req(
        102,
        MailOp::Copy { user: u("alice"), from: u("INBOX"), to: u("Archive/2024"), uids: vec![2, 4], now_s: SAVED_S },
    ));
    ops.push(req(
        103,
        MailOp::Move { user: u("alice"), from: u("INBOX"), to: u("Archive/2024"), uids: vec![5], now_s: SAVED_S },
    ));
    ops.push(req(104, MailOp::Expunge { user: u("bob"), mailbox: u("INBOX"), uids: vec![1, 7] }));
    ops.push(req(105, MailOp::Subscribe { user: u("alice"), mailbox: u("Archive/2024"), subscribed: true }));
    ops.push(deliver(200, &["alice"]));
    // The outbound queue lives in the same state: ids are log indexes (from 10, see apply_all).
    let queued = 10 + ops.len() as u64;
    ops.push(req(
        300,
        MailOp::Enqueue {
            sender: u("alice@example.edu"),
            recipients: vec![u("b@remote.test"), u("c@remote.test")],
            created_s: 1_700_000_000,
            message: b"Subject: queued\r\n\r\nhi\r\n".to_vec(),
        },
    ));
    ops.push(req(301, MailOp::QueueClaim { holder: u("runner"), now_s: 1_700_000_000, lease_s: 60, max: 8 }));
    ops.push(req(
        302,
        MailOp::QueueRecord {
            id: queued,
            holder: u("runner"),
            delivered: vec![u("b@remote.test")],
            failed: vec![],
            retry_at_s: 1_700_000_100,
            error: Some(u("451 4.4.1 try later")),
        },
    ));
    let dropped = 10 + ops.len() as u64;
    ops.push(req(
        303,
        MailOp::Enqueue { sender: u(""), recipients: vec![u("d@remote.test")], created_s: 1, message: b"x".to_vec() },
    ));
    ops.push(req(304, MailOp::QueueDelete { ids: vec![dropped] }));
    // A message too large for one entry travels as parts (three here), interleaved with
    // other operations as concurrent proposals would be.
    let mut big = deliver(400, &["alice", "bob"]);
    if let MailOp::Deliver { message, .. } = &mut big.op {
        message.extend((0..600_000u32).map(|i| b'a' + (i % 26) as u8));
    }
    let parts = big.into_entries(0x5157, 1_700_000_000_000);
    assert_eq!(parts.len(), 3);
    ops.push(parts[0].clone());
    ops.push(deliver(401, &["bob"]));
    ops.extend(parts[1..].iter().cloned());
    ops.push(deliver(402, &["alice"]));
    ops
}

fn apply_all(store: &mut Store, ops: &[MailRequest], from_index: u64) -> Vec<MailResponse> {
    let out = ops.iter().enumerate().map(|(k, r)| store.apply(from_index + k as u64, r).unwrap()).collect();
    store.flush_files().unwrap();
    out
}

#[test]
fn replicas_applying_the_same_log_hold_identical_trees() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut sa = Store::open(a.path(), "hermes").unwrap();
    let mut sb = Store::open(b.path(), "hermes").unwrap();
    let ra = apply_all(&mut sa, &workload(), 10);
    let rb = apply_all(&mut sb, &workload(), 10);
    assert_eq!(ra, rb);
    sa.checkpoint().unwrap();
    sb.checkpoint().unwrap();
    let ta = tree(a.path());
    assert_eq!(ta, tree(b.path()));
    // Flags are in the Maildir info, the copy and move landed, the expunge removed files.
    let alice_inbox: Vec<&String> = ta.keys().filter(|k| k.starts_with("users/alice/Maildir/cur/")).collect();
    assert_eq!(alice_inbox.len(), 3, "{alice_inbox:?}");
    assert!(alice_inbox.iter().all(|k| k.ends_with(":2,FS")));
    let archive: Vec<&String> = ta.keys().filter(|k| k.starts_with("users/alice/Maildir/.Archive.2024/cur/")).collect();
    assert_eq!(archive.len(), 3);
    assert!(ta.contains_key("users/alice/Maildir/.Archive.2024/maildirfolder"));
    assert_eq!(ta.keys().filter(|k| k.starts_with("users/bob/Maildir/new/")).count(), 20);
    // The parted message: its parts answer `Staged`, the last one answers for the whole.
    let n = ra.len();
    assert_eq!(ra[n - 5], MailResponse::Staged);
    assert_eq!(ra[n - 3], MailResponse::Staged);
    assert!(matches!(&ra[n - 2], MailResponse::Delivered(r) if r.len() == 2 && r.iter().all(Result::is_ok)));
    for user in ["alice", "bob"] {
        let big = ta.iter().filter(|(k, v)| k.starts_with(&format!("users/{user}/Maildir/new/")) && v.len() > 600_000);
        assert_eq!(big.count(), 1, "{user} got the parted message once");
    }
    assert!(!ta.keys().any(|k| k.starts_with("staging/")), "the checkpoint removed the finished parts");
    assert_eq!(ta["users/alice/Maildir/subscriptions"], b"Archive/2024\n");
    let mut s = sa;
    let idx = s.mailbox_index(&UserName::parse("alice").unwrap(), &MailboxName::inbox()).unwrap().unwrap();
    assert_eq!(idx.uid_next, 24, "21 deliveries, the parted one and one after it");
    assert!(idx.position(5).is_none(), "moved message left INBOX");
    assert_eq!(idx.messages[0].keywords, vec!["$Work".to_string()]);
    let queue: Vec<_> = s.queue().items().cloned().collect();
    assert_eq!(queue.len(), 1, "the deleted message left");
    assert_eq!(queue[0].pending().collect::<Vec<_>>(), ["c@remote.test"]);
    assert_eq!((queue[0].attempts, queue[0].next_attempt_s, queue[0].lease.clone()), (1, 1_700_000_100, None));
    assert_eq!(ta.keys().filter(|k| k.starts_with("queue/")).count(), 1, "one body on disk");
}

#[test]
fn replay_after_a_crash_is_idempotent() {
    // Reference: apply everything once.
    let reference = tempfile::tempdir().unwrap();
    let mut s = Store::open(reference.path(), "hermes").unwrap();
    let expected = apply_all(&mut s, &workload(), 10);
    s.checkpoint().unwrap();

    // Crash at every point: checkpoint after `cut` entries, apply the rest, "crash"
    // (drop without checkpoint), reopen and replay everything after the checkpoint.
    let ops = workload();
    for cut in [0usize, 5, 20, 22, 24, 27, 29, 30, 31, 32, 33, 34] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path(), "hermes").unwrap();
        apply_all(&mut s, &ops[..cut], 10);
        s.checkpoint().unwrap();
        apply_all(&mut s, &ops[cut..], 10 + cut as u64);
        drop(s);
        let mut s = Store::open(dir.path(), "hermes").unwrap();
        let replayed = apply_all(&mut s, &ops[cut..], 10 + cut as u64);
        assert_eq!(replayed, expected[cut..], "cut {cut}");
        s.checkpoint().unwrap();
        assert_eq!(tree(dir.path()), tree(reference.path()), "cut {cut}");
    }
}

#[test]
fn a_repeated_operation_id_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "hermes").unwrap();
    let d = deliver(1, &["carol"]);
    let first = s.apply(5, &d).unwrap();
    let again = s.apply(9, &d).unwrap();
    assert_eq!(first, again);
    s.checkpoint().unwrap();
    assert_eq!(tree(dir.path()).keys().filter(|k| k.contains("/new/")).count(), 1);
    // The memory of it survives a restart.
    drop(s);
    let mut s = Store::open(dir.path(), "hermes").unwrap();
    assert_eq!(s.apply(12, &d).unwrap(), first);
}

#[test]
fn hostile_names_never_touch_paths_outside_the_users_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let store_root = dir.path().join("store");
    let mut s = Store::open(&store_root, "hermes").unwrap();
    let u = |s: &str| s.to_string();
    let bad_users = ["../outside", "a/b", "..", "x\0y", "x\ny", ".hidden", "/etc"];
    for (k, user) in bad_users.iter().enumerate() {
        let r = s.apply(k as u64, &deliver(k as u64, &[user])).unwrap();
        assert!(matches!(&r, MailResponse::Delivered(v) if v[0].is_err()), "{user:?}: {r:?}");
        let r = s
            .apply(100 + k as u64, &req(100 + k as u64, MailOp::CreateMailbox { user: u(user), mailbox: u("x") }))
            .unwrap();
        assert!(matches!(r, MailResponse::Rejected(_)), "{user:?}");
    }
    let bad_boxes = ["../../outside", "a/../../b", "..", ".", "a.b", "x\0y", "x\ry", "/abs", "a//b"];
    for (k, mailbox) in bad_boxes.iter().enumerate() {
        let n = 200 + k as u64;
        let r = s.apply(n, &req(n, MailOp::CreateMailbox { user: u("dave"), mailbox: u(mailbox) })).unwrap();
        assert!(matches!(r, MailResponse::Rejected(_)), "{mailbox:?}: {r:?}");
        let r = s
            .apply(
                n + 50,
                &req(
                    n + 50,
                    MailOp::Append {
                        user: u("dave"),
                        mailbox: u(mailbox),
                        flags: 0,
                        keywords: vec![],
                        internal_date: 0,
                        message: b"x".to_vec(),
                        now_s: SAVED_S,
                    },
                ),
            )
            .unwrap();
        assert!(matches!(r, MailResponse::Rejected(_)), "{mailbox:?}: {r:?}");
    }
    s.checkpoint().unwrap();
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "something was written outside");
    let all = tree(&store_root);
    assert!(all.keys().all(|k| k == "sm.state" || k.starts_with("users/")), "{all:?}");
}

#[test]
fn operations_applied_while_a_checkpoint_syncs_are_replayed_after_a_crash() {
    let reference = tempfile::tempdir().unwrap();
    let mut s = Store::open(reference.path(), "hermes").unwrap();
    let expected = apply_all(&mut s, &workload(), 10);
    s.checkpoint().unwrap();

    let ops = workload();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "hermes").unwrap();
    apply_all(&mut s, &ops[..12], 10);
    let pending = s.prepare_checkpoint().unwrap();
    // Applying continues while the filesystem sync runs...
    apply_all(&mut s, &ops[12..], 22);
    pending.finish().unwrap();
    // ...and the process dies before the next checkpoint.
    drop(s);
    let mut s = Store::open(dir.path(), "hermes").unwrap();
    assert_eq!(apply_all(&mut s, &ops[12..], 22), expected[12..]);
    s.checkpoint().unwrap();
    assert_eq!(tree(dir.path()), tree(reference.path()));
}

fn imported(uid: u32, flags: u8, text: &str) -> storaged::mailstore::ops::ImportedMessage {
    storaged::mailstore::ops::ImportedMessage {
        uid,
        flags,
        keywords: vec!["$Moved".into()],
        internal_date: 1_600_000_000 + i64::from(uid),
        modseq: 0,
        email_id: 0,
        saved_s: 0,
        data: format!("Message-ID: <{text}@old-host>\r\n\r\n{text}\r\n").into_bytes(),
    }
}

#[test]
fn imports_keep_uidvalidity_uids_and_flags_and_replay_cleanly() {
    let u = |s: &str| s.to_string();
    let import = |n: u64, mailbox: &str, uv: u32, msgs: Vec<storaged::mailstore::ops::ImportedMessage>| {
        req(n, MailOp::ImportMessages { user: u("carol"), mailbox: u(mailbox), uid_validity: uv, messages: msgs })
    };
    let ops = [
        import(1, "INBOX", 777, vec![imported(3, flag::SEEN, "a"), imported(9, 0, "b")]),
        // A retried batch (the same UIDs) adds nothing; the next batch continues.
        import(2, "INBOX", 777, vec![imported(9, 0, "b"), imported(12, flag::FLAGGED, "c")]),
        import(3, "Old/Projects", 55, vec![imported(1, 0, "d")]),
        import(4, "INBOX", 778, vec![imported(20, 0, "e")]),
        import(5, "INBOX", 777, vec![imported(14, 0, "f"), imported(13, 0, "g")]),
    ];
    let apply_all = |root: &Path| {
        let mut s = Store::open(root, "g").unwrap();
        let mut out = Vec::new();
        for (i, r) in ops.iter().enumerate() {
            out.push(s.apply(i as u64 + 10, r).unwrap());
        }
        s.checkpoint().unwrap();
        (s, out)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut store, out) = apply_all(a.path());
    assert_eq!(out[0], MailResponse::Imported { uid_validity: 777, count: 2 });
    assert_eq!(out[1], MailResponse::Imported { uid_validity: 777, count: 1 });
    assert!(matches!(out[3], MailResponse::Rejected(_)), "another UIDVALIDITY into a non-empty mailbox");
    assert!(matches!(out[4], MailResponse::Rejected(_)), "UIDs out of order");
    let carol = UserName::parse("carol").unwrap();
    let inbox = store.mailbox_index(&carol, &MailboxName::inbox()).unwrap().unwrap();
    assert_eq!(inbox.uid_validity, 777);
    assert_eq!(inbox.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![3, 9, 12]);
    assert_eq!(inbox.uid_next, 13);
    assert_eq!(inbox.messages[0].flags, flag::SEEN);
    assert_eq!(inbox.messages[2].keywords, vec!["$Moved".to_string()]);
    let old = store.mailbox_index(&carol, &MailboxName::parse("Old/Projects").unwrap()).unwrap().unwrap();
    assert_eq!((old.uid_validity, old.messages[0].uid), (55, 1));
    // Deterministic: a second replica holds the same bytes.
    let (_s2, _) = apply_all(b.path());
    assert_eq!(tree(a.path()), tree(b.path()));
    // Replaying an applied entry (a crash before the checkpoint, when the dedup table
    // does not remember it) changes nothing: the mailbox's applied index guards it.
    // (The dedup table in sm.state does learn the new op id; the mail must not change.)
    let mail = |root: &Path| {
        let mut t = tree(root);
        t.remove("sm.state");
        t
    };
    let before = mail(a.path());
    let mut replay = ops[0].clone();
    replay.op_id = OpId::digest(&[b"forgotten by the dedup table"]);
    assert_eq!(store.apply(10, &replay).unwrap(), MailResponse::Imported { uid_validity: 777, count: 0 });
    store.checkpoint().unwrap();
    assert_eq!(mail(a.path()), before);
}

#[test]
fn a_moved_mailbox_keeps_its_modseqs_and_a_frozen_user_gets_temporary_refusals() {
    use storaged::mailstore::ops::{ImportedMessage, FROZEN_REPLY};
    use storaged::mailstore::Rejection;
    use storaged::mailstore::{FlagState, UserState};
    let u = |s: &str| s.to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "apollo").unwrap();
    let msg = |uid: u32, modseq: u64| ImportedMessage {
        uid,
        flags: 0,
        keywords: vec![],
        internal_date: 1_600_000_000,
        modseq,
        email_id: 0,
        saved_s: 0,
        data: format!("Subject: {uid}\r\n\r\nx\r\n").into_bytes(),
    };
    let import = MailOp::ImportMessages {
        user: u("dan"),
        mailbox: u("Archive"),
        uid_validity: 4242,
        messages: vec![msg(3, 5), msg(9, 7), msg(11, 8)],
    };
    assert_eq!(s.apply(10, &req(1, import)).unwrap(), MailResponse::Imported { uid_validity: 4242, count: 3 });
    let sync = MailOp::SyncMailbox {
        user: u("dan"),
        mailbox: u("Archive"),
        uid_validity: 4242,
        uid_next: 40,
        highest_modseq: 30,
        states: vec![FlagState { uid: 3, flags: flag::SEEN, keywords: vec![u("$Done")], modseq: 29 }],
        expunged: vec![9],
    };
    assert_eq!(s.apply(11, &req(2, sync)).unwrap(), MailResponse::Done);
    s.flush_files().unwrap();
    let dan = UserName::parse("dan").unwrap();
    let idx = s.mailbox_index(&dan, &MailboxName::parse("Archive").unwrap()).unwrap().unwrap();
    assert_eq!((idx.uid_validity, idx.uid_next, idx.highest_modseq), (4242, 40, 30));
    let kept: Vec<(u32, u8, u64)> = idx.messages.iter().map(|m| (m.uid, m.flags, m.modseq)).collect();
    assert_eq!(kept, vec![(3, flag::SEEN, 29), (11, 0, 8)], "the source's flags and MODSEQs, 9 expunged");
    assert_eq!(idx.vanished, vec![(9, 30)]);

    let append = |n: u64| {
        req(
            n,
            MailOp::Append {
                user: u("dan"),
                mailbox: u("INBOX"),
                flags: 0,
                keywords: vec![],
                internal_date: 1,
                message: b"x".to_vec(),
                now_s: SAVED_S,
            },
        )
    };
    let set = |n: u64, state: UserState| req(n, MailOp::SetUserState { user: u("dan"), state });
    s.apply(12, &set(3, UserState::Frozen)).unwrap();
    assert_eq!(s.apply(13, &append(4)).unwrap(), MailResponse::Rejected(Rejection::Frozen));
    assert_eq!(Rejection::Frozen.to_string(), FROZEN_REPLY);
    let MailResponse::Delivered(d) = s.apply(14, &deliver(5, &["dan", "erin"])).unwrap() else { panic!() };
    assert!(matches!(&d[0], Err(e) if e.is_move()) && d[1].is_ok(), "{d:?}");
    s.apply(15, &set(6, UserState::MovedTo(u("zeus")))).unwrap();
    assert!(matches!(s.apply(16, &append(7)).unwrap(), MailResponse::Rejected(Rejection::MovedTo(to)) if to == "zeus"));
    s.checkpoint().unwrap();
    drop(s);
    let mut s = Store::open(dir.path(), "apollo").unwrap();
    assert_eq!(s.user_state("dan"), UserState::MovedTo(u("zeus")), "the state survives a restart");
    s.apply(17, &set(8, UserState::Active)).unwrap();
    assert!(matches!(s.apply(18, &append(9)).unwrap(), MailResponse::Appended { .. }));
}

#[test]
fn a_batch_applies_each_users_request_as_if_alone_and_refuses_a_second_one_of_a_user() {
    let u = |s: &str| s.to_string();
    let store_op = |n: u64, user: &str| {
        req(
            n,
            MailOp::Store {
                user: u(user),
                mailbox: u("INBOX"),
                uids: vec![1],
                mode: FlagMode::Add,
                flags: flag::SEEN,
                keywords: vec![],
                unchanged_since: None,
            },
        )
    };
    let batch = |_n: u64, requests: Vec<MailRequest>| MailRequest::batch(&requests);
    // The same requests one entry each, and batched: the same answers and the same trees.
    let setup = [deliver(1, &["alice"]), deliver(2, &["bob"])];
    let alone = [deliver(3, &["alice"]), deliver(4, &["bob"]), store_op(5, "alice"), store_op(6, "bob")];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut sa = Store::open(a.path(), "hermes").unwrap();
    let mut sb = Store::open(b.path(), "hermes").unwrap();
    apply_all(&mut sa, &setup, 10);
    apply_all(&mut sb, &setup, 10);
    let ra = apply_all(&mut sa, &alone, 20);
    let rb = apply_all(&mut sb, &[batch(90, alone[..2].to_vec()), batch(91, alone[2..].to_vec())], 20);
    let ok_delivery = |r: &MailResponse| matches!(r, MailResponse::Delivered(v) if v.len() == 1 && v[0].is_ok());
    assert!(ok_delivery(&ra[0]) && ok_delivery(&ra[1]));
    let MailResponse::Batch(first) = &rb[0] else { panic!("a batch answers per request: {:?}", rb[0]) };
    assert!(first.len() == 2 && first.iter().all(ok_delivery), "{first:?}");
    assert_eq!(rb[1], MailResponse::Batch(ra[2..].to_vec()));
    let inbox = |s: &mut Store, user: &str| {
        let idx = s.mailbox_index(&UserName::parse(user).unwrap(), &MailboxName::inbox()).unwrap().unwrap();
        idx.messages.iter().map(|m| (m.uid, m.flags)).collect::<Vec<_>>()
    };
    for user in ["alice", "bob"] {
        assert_eq!(inbox(&mut sa, user), inbox(&mut sb, user), "{user}");
    }

    // Two requests of one user in one entry: the second is refused, nothing of it applied.
    let mut s = sb;
    let r = apply_all(&mut s, &[batch(92, vec![deliver(7, &["carol"]), deliver(8, &["carol"])])], 30);
    let MailResponse::Batch(each) = &r[0] else { panic!("{:?}", r[0]) };
    assert!(ok_delivery(&each[0]));
    assert!(matches!(&each[1], MailResponse::Rejected(_)), "{:?}", each[1]);
    assert_eq!(inbox(&mut s, "carol").len(), 1);
    // Batches do not nest, and operations of several users never join one.
    let nested = batch(93, vec![batch(94, vec![deliver(9, &["dave"])]), deliver(10, &["alice", "bob"])]);
    let r = apply_all(&mut s, &[nested], 40);
    assert!(matches!(&r[0], MailResponse::Batch(v) if v.iter().all(|x| matches!(x, MailResponse::Rejected(_)))));
}

/// Two users' filtered deliveries in one entry, each redirecting its message: both outbound
/// messages are queued, each with its own recipients and bytes (they once shared a queue id,
/// and the second replaced the first).
#[test]
fn outbound_messages_of_two_users_in_one_entry_are_both_queued() {
    use storaged::mailstore::{FiledCopy, Outbound};
    let filtered = |n: u64, user: &str, forward_to: &str| {
        let message = format!("Subject: for {user}\r\n\r\nbody {n}\r\n").into_bytes();
        let copy = FiledCopy { mailbox: "INBOX".into(), flags: 0, keywords: vec![], create: false };
        let out = Outbound {
            sender: format!("{user}@example.edu"),
            recipients: vec![forward_to.into()],
            message: message.clone(),
        };
        req(
            n,
            MailOp::DeliverFiltered {
                user: user.into(),
                internal_date: 1_700_000_000,
                message,
                copies: vec![copy],
                outbound: vec![out],
                remember: vec![],
            },
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "hermes").unwrap();
    let entry = MailRequest::batch(&[filtered(1, "alice", "a@remote.example"), filtered(2, "bob", "b@remote.example")]);
    let r = apply_all(&mut s, std::slice::from_ref(&entry), 10);
    let MailResponse::Batch(each) = &r[0] else { panic!("{:?}", r[0]) };
    assert!(each.iter().all(|r| matches!(r, MailResponse::Delivered(v) if v[0].is_ok())), "{each:?}");
    let mut queued: Vec<(String, Vec<u8>)> = s
        .queue()
        .items()
        .map(|i| (i.recipients[0].address.clone(), std::fs::read(s.queue().body_path(i.id).unwrap()).unwrap()))
        .collect();
    queued.sort();
    assert_eq!(queued.len(), 2, "one outbound message per user: {queued:?}");
    assert_eq!(queued[0].0, "a@remote.example");
    assert!(queued[0].1.ends_with(b"body 1\r\n"));
    assert_eq!(queued[1].0, "b@remote.example");
    assert!(queued[1].1.ends_with(b"body 2\r\n"));
    // A replayed entry (after a crash) queues nothing more.
    apply_all(&mut s, &[entry], 10);
    assert_eq!(s.queue().len(), 2);
}

/// Retention (issue 25): an expunge and a folder's deletion keep the messages out of the
/// mailboxes; a restore files them again once (a replay after a crash files them the same
/// way, a second restore finds them restored); purges stamp sets, then remove them once
/// the stamp is older than the retention — all by the times in the log.
#[test]
fn kept_mail_is_restored_once_replays_cleanly_and_is_purged_by_the_logs_clock() {
    use storaged::mailstore::kept;
    let u = |s: &str| s.to_string();
    let mut ops: Vec<MailRequest> = (1..=5).map(|n| deliver(n, &["alice"])).collect();
    ops.push(req(10, MailOp::CreateMailbox { user: u("alice"), mailbox: u("Archive") }));
    ops.push(req(
        11,
        MailOp::Copy { user: u("alice"), from: u("INBOX"), to: u("Archive"), uids: vec![1, 2], now_s: SAVED_S },
    ));
    let seen = MailOp::Store {
        user: u("alice"),
        mailbox: u("INBOX"),
        uids: vec![3],
        mode: FlagMode::Add,
        flags: flag::SEEN,
        keywords: vec![u("$Label1")],
        unchanged_since: None,
    };
    ops.push(req(12, seen));
    ops.push(req(13, MailOp::Expunge { user: u("alice"), mailbox: u("INBOX"), uids: vec![3, 4] }));
    ops.push(req(14, MailOp::DeleteMailbox { user: u("alice"), mailbox: u("Archive") }));
    let reference = tempfile::tempdir().unwrap();
    let mut s = Store::open(reference.path(), "hermes").unwrap();
    apply_all(&mut s, &ops, 10);
    let alice = UserName::parse("alice").unwrap();
    let inbox = |s: &mut Store| s.mailbox_index(&alice, &MailboxName::inbox()).unwrap().unwrap().messages.len();
    assert_eq!(inbox(&mut s), 3);
    let (items, _) = kept::list(&s.layout().user_dir(&alice), 100).unwrap();
    assert_eq!(items.iter().filter(|i| !i.folder_deleted).count(), 2);
    assert_eq!(items.iter().filter(|i| i.folder_deleted && i.mailbox == "Archive").count(), 2);
    let three = items.iter().find(|i| i.subject == "3").unwrap();
    assert_eq!((three.flags, three.keywords.clone()), (flag::SEEN, vec![u("$Label1")]));

    let restore = MailOp::RestoreKept {
        user: u("alice"),
        items: items.iter().map(|i| (i.set.clone(), i.file.clone())).collect(),
        into: None,
        now_s: SAVED_S,
    };
    let at = 10 + ops.len() as u64;
    s.checkpoint().unwrap();
    assert_eq!(s.apply(at, &req(20, restore.clone())).unwrap(), MailResponse::Restored { count: 4 });
    s.flush_files().unwrap();
    assert_eq!(inbox(&mut s), 5);
    let archive = MailboxName::parse("Archive").unwrap();
    assert_eq!(s.mailbox_index(&alice, &archive).unwrap().unwrap().messages.len(), 2, "the folder is back");
    let restored = s.mailbox_index(&alice, &MailboxName::inbox()).unwrap().unwrap().messages.clone();
    assert!(restored.iter().any(|m| m.flags == flag::SEEN && m.keywords == [u("$Label1")]));
    // The same restore again (a new operation): everything is restored already.
    assert_eq!(s.apply(at + 1, &req(21, restore.clone())).unwrap(), MailResponse::Restored { count: 0 });
    s.checkpoint().unwrap();
    let reference_tree = tree(reference.path());

    // A crash after the restore was applied but before its checkpoint: replayed, same tree.
    let dir = tempfile::tempdir().unwrap();
    let mut crashed = Store::open(dir.path(), "hermes").unwrap();
    apply_all(&mut crashed, &ops, 10);
    crashed.checkpoint().unwrap();
    let restores = [req(20, restore.clone()), req(21, restore)];
    apply_all(&mut crashed, &restores, at);
    drop(crashed);
    let mut replayed = Store::open(dir.path(), "hermes").unwrap();
    let answers = apply_all(&mut replayed, &restores, at);
    assert_eq!(answers, [MailResponse::Restored { count: 4 }, MailResponse::Restored { count: 0 }]);
    replayed.checkpoint().unwrap();
    assert_eq!(tree(dir.path()), reference_tree);

    // Purges: the first stamps, a later one within the retention keeps, then they go.
    let purge = |s: &mut Store, n: u64, now_s: i64| {
        s.apply(at + n, &req(30 + n, MailOp::PurgeKept { now_s, retention_s: 10 })).unwrap();
    };
    let sets = |s: &Store| kept::sets(&s.layout().user_dir(&alice)).unwrap();
    purge(&mut s, 2, 1000);
    assert!(sets(&s).iter().all(|(n, _)| n.stamp_s == Some(1000)) && sets(&s).len() == 2);
    purge(&mut s, 3, 1010);
    assert_eq!(sets(&s).len(), 2, "kept for the whole retention");
    purge(&mut s, 4, 1011);
    assert!(sets(&s).is_empty(), "purged after it");
    assert_eq!(inbox(&mut s), 5, "the purge leaves the mailboxes alone");
}

/// A purge round stamps (renames) kept sets; a restore listed before it still finds them,
/// and a purge that erases mail is reported once (the log and snapshot scrub follows it).
#[test]
fn a_restore_listed_before_a_purge_stamped_the_sets_still_restores_and_erasures_are_reported() {
    use storaged::mailstore::kept;
    let u = |s: &str| s.to_string();
    let mut ops: Vec<MailRequest> = (1..=3).map(|n| deliver(n, &["alice"])).collect();
    ops.push(req(10, MailOp::Expunge { user: u("alice"), mailbox: u("INBOX"), uids: vec![1, 2, 3] }));
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "hermes").unwrap();
    apply_all(&mut s, &ops, 10);
    let alice = UserName::parse("alice").unwrap();
    let (items, _) = kept::list(&s.layout().user_dir(&alice), 100).unwrap();
    assert_eq!(items.len(), 3);
    s.apply(20, &req(20, MailOp::PurgeKept { now_s: 1000, retention_s: 10 })).unwrap();
    assert!(!s.take_erased(), "stamping erases nothing");
    let listed: Vec<(String, String)> = items.iter().map(|i| (i.set.clone(), i.file.clone())).collect();
    let files = kept::read_files(&s.layout().user_dir(&alice), &listed, 1 << 20).unwrap();
    assert!(files.iter().all(|f| f.bytes.is_some()), "read by the names listed before the stamp");
    let restore = MailOp::RestoreKept { user: u("alice"), items: listed[..2].to_vec(), into: None, now_s: SAVED_S };
    assert_eq!(s.apply(21, &req(21, restore)).unwrap(), MailResponse::Restored { count: 2 });
    s.apply(22, &req(22, MailOp::PurgeKept { now_s: 1011, retention_s: 10 })).unwrap();
    assert!(s.take_erased(), "the purge of the third message is an erasure");
    assert!(!s.take_erased(), "reported once");
}

/// A move's kept-mail import: one set per origin (a second batch and a replay add to it,
/// never twice), the old stamp kept, a file name that could leave the set refused, and
/// the imported mail restored like any kept mail.
#[test]
fn kept_mail_a_move_imports_joins_its_origin_set_once_and_restores() {
    use storaged::mailstore::kept::{self, KeptReason};
    use storaged::mailstore::ops::{ImportedKept, ImportedKeptSet};
    let u = |s: &str| s.to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "apollo").unwrap();
    apply_all(&mut s, &[deliver(1, &["alice"])], 1);
    let set = ImportedKeptSet {
        origin: u("hermes/77"),
        mailbox: u("Old"),
        reason: KeptReason::FolderDeleted,
        stamp_s: Some(1000),
    };
    let message = |file: &str, data: &[u8]| ImportedKept {
        file: u(file),
        mailbox: u("Old"),
        flags: flag::SEEN,
        keywords: vec![u("$Label1")],
        internal_date: 1_600_000_000,
        data: data.to_vec(),
    };
    let import = |messages: Vec<ImportedKept>| MailOp::ImportKept { user: u("alice"), set: set.clone(), messages };
    let first =
        import(vec![message("a:2,S", b"Subject: a\r\n\r\na\r\n"), message("b:2,S", b"Subject: b\r\n\r\nb\r\n")]);
    assert_eq!(s.apply(10, &req(10, first.clone())).unwrap(), MailResponse::KeptImported { count: 2 });
    let second =
        import(vec![message("b:2,S", b"Subject: b\r\n\r\nb\r\n"), message("c:2,S", b"Subject: c\r\n\r\nc\r\n")]);
    assert_eq!(s.apply(11, &req(11, second)).unwrap(), MailResponse::KeptImported { count: 1 });
    assert_eq!(s.apply(12, &req(12, first)).unwrap(), MailResponse::KeptImported { count: 0 }, "a replay adds nothing");
    for bad in ["../x", "meta", "origin", ".hidden", ""] {
        let r = s.apply(13, &req(13, import(vec![message(bad, b"x")]))).unwrap();
        assert!(matches!(r, MailResponse::Rejected(_)), "{bad:?} refused: {r:?}");
    }
    let alice = UserName::parse("alice").unwrap();
    let sets = kept::sets(&s.layout().user_dir(&alice)).unwrap();
    assert_eq!(sets.len(), 1, "one set for the origin");
    assert_eq!(sets[0].0.stamp_s, Some(1000), "the retention runs on from the old stamp");
    let (items, _) = kept::list(&s.layout().user_dir(&alice), 100).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i.folder_deleted && i.mailbox == "Old" && i.origin.as_deref() == Some("hermes/77")));
    let restore = MailOp::RestoreKept {
        user: u("alice"),
        items: items.iter().map(|i| (i.set.clone(), i.file.clone())).collect(),
        into: None,
        now_s: SAVED_S,
    };
    assert_eq!(s.apply(14, &req(14, restore)).unwrap(), MailResponse::Restored { count: 3 });
    s.flush_files().unwrap();
    let old = s.mailbox_index(&alice, &MailboxName::parse("Old").unwrap()).unwrap().unwrap().messages.clone();
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|m| m.flags == flag::SEEN && m.keywords == [u("$Label1")]));
}

#[test]
fn an_emptied_mailbox_takes_an_imported_uidvalidity_with_its_low_uids() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "g").unwrap();
    let u = |s: &str| s.to_string();
    for n in 1..=4u64 {
        let message = format!("Subject: {n}\r\n\r\nfirst life\r\n").into_bytes();
        s.apply(n, &req(n, MailOp::Deliver { recipients: vec![u("dan")], internal_date: 1, message })).unwrap();
    }
    s.apply(5, &req(5, MailOp::Expunge { user: u("dan"), mailbox: u("INBOX"), uids: vec![1, 2, 3, 4] })).unwrap();
    let op = MailOp::ImportMessages {
        user: u("dan"),
        mailbox: u("INBOX"),
        uid_validity: 1234,
        messages: vec![imported(1, flag::SEEN, "x"), imported(2, 0, "y")],
    };
    assert_eq!(s.apply(6, &req(6, op)).unwrap(), MailResponse::Imported { uid_validity: 1234, count: 2 });
    let dan = UserName::parse("dan").unwrap();
    let inbox = s.mailbox_index(&dan, &MailboxName::inbox()).unwrap().unwrap();
    assert_eq!((inbox.uid_validity, inbox.uid_next), (1234, 3));
    assert_eq!(inbox.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2]);
    assert!(inbox.vanished.is_empty(), "no tombstone of the old UIDVALIDITY survives");
}

#[test]
fn a_users_own_retention_outlasts_or_undercuts_the_sites() {
    use storaged::mailstore::kept;
    let u = |s: &str| s.to_string();
    let mut ops: Vec<MailRequest> = (1..=2).map(|n| deliver(n, &["alice", "bob"])).collect();
    ops.push(req(10, MailOp::SetRetention { user: u("alice"), keep_s: Some(100) }));
    ops.push(req(11, MailOp::SetRetention { user: u("carol"), keep_s: Some(5) }));
    for (n, user) in [(12, "alice"), (13, "bob")] {
        ops.push(req(n, MailOp::Expunge { user: u(user), mailbox: u("INBOX"), uids: vec![1] }));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path(), "hermes").unwrap();
    apply_all(&mut s, &ops, 10);
    let too_long = MailOp::SetRetention { user: u("bob"), keep_s: Some(kept::RETENTION_MAX_S + 1) };
    assert!(matches!(s.apply(100, &req(16, too_long)).unwrap(), MailResponse::Rejected(_)));
    let sets =
        |s: &Store, user: &str| kept::list(&s.layout().user_dir(&UserName::parse(user).unwrap()), 100).unwrap().0.len();
    let purge = |s: &mut Store, index: u64, now_s: i64| {
        s.apply(index, &req(index, MailOp::PurgeKept { now_s, retention_s: 10 })).unwrap();
    };
    assert_eq!((sets(&s, "alice"), sets(&s, "bob")), (1, 1));
    purge(&mut s, 101, 1_000); // stamps the sets
    purge(&mut s, 102, 1_050);
    assert_eq!((sets(&s, "alice"), sets(&s, "bob")), (1, 0), "bob has the site's 10 s, alice her 100 s");
    purge(&mut s, 103, 1_200);
    assert_eq!(sets(&s, "alice"), 0, "and then hers ran out too");
    // Back to the site's retention.
    s.apply(104, &req(14, MailOp::SetRetention { user: u("alice"), keep_s: None })).unwrap();
    s.apply(105, &req(15, MailOp::Expunge { user: u("alice"), mailbox: u("INBOX"), uids: vec![2] })).unwrap();
    assert_eq!(sets(&s, "alice"), 1);
    purge(&mut s, 106, 2_000);
    purge(&mut s, 107, 2_050);
    assert_eq!(sets(&s, "alice"), 0, "the site's 10 s again");
}

#[test]
fn a_deleted_user_is_kept_whole_restored_folder_by_folder_and_purged_without_a_trace() {
    use storaged::mailstore::kept;
    let u = |s: &str| s.to_string();
    let mut ops: Vec<MailRequest> = (1..=3).map(|n| deliver(n, &["alice", "bob"])).collect();
    ops.push(req(10, MailOp::CreateMailbox { user: u("alice"), mailbox: u("Archive/2026") }));
    ops.push(req(
        11,
        MailOp::Copy { user: u("alice"), from: u("INBOX"), to: u("Archive/2026"), uids: vec![1, 2], now_s: SAVED_S },
    ));
    let seen = MailOp::Store {
        user: u("alice"),
        mailbox: u("Archive/2026"),
        uids: vec![2],
        mode: FlagMode::Add,
        flags: flag::SEEN,
        keywords: vec![u("$Label1")],
        unchanged_since: None,
    };
    ops.push(req(12, seen));
    ops.push(req(14, MailOp::CreateMailbox { user: u("alice"), mailbox: u("Empty") }));
    ops.push(req(13, MailOp::RetireUser { user: u("alice") }));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut s = Store::open(a.path(), "hermes").unwrap();
    apply_all(&mut s, &ops, 10);
    let mut other = Store::open(b.path(), "hermes").unwrap();
    apply_all(&mut other, &ops, 10);
    s.checkpoint().unwrap();
    other.checkpoint().unwrap();
    assert_eq!(tree(a.path()), tree(b.path()), "every replica deletes the same way");
    let alice = UserName::parse("alice").unwrap();
    assert!(s.mailboxes(&alice).is_empty() && !s.holds(&alice), "alice is gone");
    assert!(s.holds(&UserName::parse("bob").unwrap()), "bob is not");
    let (items, _) = kept::list(&s.layout().user_dir(&alice), 100).unwrap();
    let mut folders: Vec<&str> = items.iter().map(|i| i.mailbox.as_str()).collect();
    folders.sort();
    assert_eq!(folders, ["Archive/2026", "Archive/2026", "INBOX", "INBOX", "INBOX"]);

    let restore = MailOp::RestoreKept {
        user: u("alice"),
        items: items.iter().map(|i| (i.set.clone(), i.file.clone())).collect(),
        into: None,
        now_s: SAVED_S,
    };
    assert_eq!(s.apply(30, &req(30, restore)).unwrap(), MailResponse::Restored { count: 5 });
    s.flush_files().unwrap();
    let archive = s.mailbox_index(&alice, &MailboxName::parse("Archive/2026").unwrap()).unwrap().unwrap();
    assert_eq!(archive.messages.len(), 2);
    assert_eq!(archive.messages.iter().filter(|m| m.flags == flag::SEEN).count(), 1, "flags come back");
    assert_eq!(s.mailbox_index(&alice, &MailboxName::inbox()).unwrap().unwrap().messages.len(), 3);
    let empty = s.mailbox_index(&alice, &MailboxName::parse("Empty").unwrap()).unwrap();
    assert!(empty.is_some_and(|e| e.messages.is_empty()), "the empty folder comes back too");

    // Retired for good: after the retention nothing of the user is left.
    let retire = |n| req(n, MailOp::RetireUser { user: u("alice") });
    s.apply(31, &retire(31)).unwrap();
    for (k, now_s) in [(32, 1_000), (33, 2_000)] {
        s.apply(k, &req(k, MailOp::PurgeKept { now_s, retention_s: 10 })).unwrap();
    }
    assert!(!s.layout().user_dir(&alice).exists(), "no trace of alice");
}

/// A first login's standard mailboxes in one entry: made and subscribed, what already exists
/// left as it is (its mail stays), a replay harmless, hostile names and too many refused.
#[test]
fn provision_makes_and_subscribes_the_standard_mailboxes_in_one_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Store::open(tmp.path(), "hermes").unwrap();
    let names = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let standard = names(&["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"]);
    // Mail already in INBOX (a delivery came first) and a Sent folder the user made.
    s.apply(1, &deliver(1, &["erin"])).unwrap();
    s.apply(2, &req(2, MailOp::CreateMailbox { user: "erin".into(), mailbox: "Sent".into() })).unwrap();
    let provision =
        req(3, MailOp::Provision { user: "erin".into(), create: standard.clone(), subscribe: standard.clone() });
    assert_eq!(s.apply(3, &provision).unwrap(), MailResponse::Done);
    let erin = UserName::parse("erin").unwrap();
    let mut have: Vec<String> = s.mailboxes(&erin).iter().map(|m| m.as_str().to_string()).collect();
    have.sort();
    let mut want = standard.clone();
    want.sort();
    assert_eq!(have, want);
    let mut subscribed = s.subscriptions(&erin);
    subscribed.sort();
    assert_eq!(subscribed, want);
    let inbox = s.mailbox_index(&erin, &MailboxName::inbox()).unwrap().unwrap();
    assert_eq!(inbox.messages.len(), 1, "the delivery made before stays");
    let before = tree(tmp.path());
    assert_eq!(s.apply(3, &provision).unwrap(), MailResponse::Done, "a replay is harmless");
    assert_eq!(tree(tmp.path()), before, "a replay changes nothing");

    let hostile = req(4, MailOp::Provision { user: "erin".into(), create: names(&["ok", "../x"]), subscribe: vec![] });
    assert!(matches!(s.apply(4, &hostile).unwrap(), MailResponse::Rejected(_)));
    assert!(!s.mailboxes(&erin).iter().any(|m| m.as_str() == "ok"), "names are checked before anything is made");
    let many: Vec<String> = (0..100).map(|k| format!("f{k}")).collect();
    let flood = req(5, MailOp::Provision { user: "erin".into(), create: many, subscribe: vec![] });
    assert!(matches!(s.apply(5, &flood).unwrap(), MailResponse::Rejected(_)));
    assert_eq!(s.mailboxes(&erin).len(), 6);
}
