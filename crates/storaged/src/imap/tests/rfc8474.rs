//! RFC 8474: OBJECTID (MAILBOXID, EMAILID, THREADID).

use super::*;

/// The id in `[MAILBOXID (id)]` or `MAILBOXID (id)` in `out`.
fn mailbox_id_in(out: &str) -> String {
    let at = out.find("MAILBOXID (").unwrap_or_else(|| panic!("no MAILBOXID in {out}")) + "MAILBOXID (".len();
    out[at..at + out[at..].find(')').unwrap()].to_string()
}

/// The objectids of `item` (`EMAILID`, `THREADID`) in FETCH responses of `out`, in order.
fn object_ids_in(out: &str, item: &str) -> Vec<String> {
    let open = format!("{item} (");
    out.match_indices(&open)
        .map(|(at, _)| {
            let from = at + open.len();
            out[from..from + out[from..].find(')').unwrap()].to_string()
        })
        .collect()
}

fn email_ids_in(out: &str) -> Vec<String> {
    object_ids_in(out, "EMAILID")
}

fn thread_ids_in(out: &str) -> Vec<String> {
    object_ids_in(out, "THREADID")
}

#[tokio::test]
async fn rfc8474_4_mailboxid_is_stable_across_rename_and_new_for_a_new_mailbox() {
    let h = harness();
    let mut s = h.session().await;
    assert!(run(&mut s, "o0 CAPABILITY").await.contains(" OBJECTID"));
    let created = mailbox_id_in(&run(&mut s, "o1 CREATE Work").await);
    assert!(
        created.starts_with('F') && created.len() > 1 && created.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{created}"
    );
    assert_eq!(mailbox_id_in(&run(&mut s, "o2 STATUS Work (MAILBOXID)").await), created);
    let out = run(&mut s, "o3 STATUS Work (MESSAGES MAILBOXID)").await;
    assert!(out.contains("MESSAGES 0") && mailbox_id_in(&out) == created && !out.contains("UIDNEXT"), "{out}");
    run(&mut s, "o4 RENAME Work Jobs").await;
    assert_eq!(mailbox_id_in(&run(&mut s, "o5 SELECT Jobs").await), created, "RENAME keeps the MAILBOXID");
    run(&mut s, "o6 UNSELECT").await;
    run(&mut s, "o7 DELETE Jobs").await;
    let again = mailbox_id_in(&run(&mut s, "o8 CREATE Jobs").await);
    assert_ne!(again, created, "a new mailbox of the same name is another mailbox");
    let out = run(&mut s, "o9 LIST \"\" Jobs RETURN (STATUS (MAILBOXID))").await;
    assert_eq!(mailbox_id_in(&out), again, "{out}");
}

#[tokio::test]
async fn rfc8474_5_emailid_survives_copy_and_move_and_finds_the_message() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    h.deliver("Subject: two\r\n\r\n2\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "e0 CREATE Keep").await;
    run(&mut s, "e1 SELECT INBOX").await;
    let out = run(&mut s, "e2 FETCH 1:2 (EMAILID THREADID)").await;
    let ids = email_ids_in(&out);
    assert!(ids.len() == 2 && ids[0] != ids[1], "{out}");
    let threads = thread_ids_in(&out);
    assert!(threads.len() == 2 && threads[0] != threads[1], "two threads: {out}");
    run(&mut s, "e3 COPY 1 Keep").await;
    run(&mut s, "e4 MOVE 2 Keep").await;
    let out = run(&mut s, &format!("e5 SEARCH EMAILID {}", ids[0])).await;
    assert!(out.contains("* SEARCH 1\r\n"), "{out}");
    assert!(run(&mut s, "e6 SEARCH THREADID T1").await.contains("* SEARCH\r\n"), "no such thread");
    run(&mut s, "e7 SELECT Keep").await;
    let out = run(&mut s, "e8 UID FETCH 1:* (EMAILID)").await;
    assert_eq!(email_ids_in(&out), ids, "COPY and MOVE keep EMAILIDs: {out}");
    let out = run(&mut s, &format!("e9 UID SEARCH EMAILID {} SUBJECT two", ids[1])).await;
    assert!(out.contains("* SEARCH 2\r\n"), "{out}");
}

#[tokio::test]
async fn rfc8474_5_2_threadid_names_a_thread_in_every_mailbox() {
    let h = harness();
    h.deliver("Message-ID: <root@x>\r\nSubject: plan\r\n\r\n1\r\n").await;
    h.deliver("Message-ID: <r1@x>\r\nIn-Reply-To: <root@x>\r\nReferences: <root@x>\r\nSubject: Re: plan\r\n\r\n2\r\n")
        .await;
    h.deliver("Message-ID: <other@x>\r\nSubject: lunch\r\n\r\n3\r\n").await;
    h.deliver("Message-ID: <r2@x>\r\nReferences: <root@x> <r1@x>\r\nSubject: Re: plan\r\n\r\n4\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "t0 CREATE Keep").await;
    run(&mut s, "t1 SELECT INBOX").await;
    let threads = thread_ids_in(&run(&mut s, "t2 FETCH 1:4 THREADID").await);
    assert_eq!(threads.len(), 4);
    assert!(threads[0] == threads[1] && threads[1] == threads[3] && threads[2] != threads[0], "{threads:?}");
    let out = run(&mut s, &format!("t3 UID SEARCH THREADID {}", threads[0])).await;
    assert!(out.contains("* SEARCH 1 2 4\r\n"), "{out}");
    run(&mut s, "t4 UID COPY 4 Keep").await;
    run(&mut s, "t5 SELECT Keep").await;
    let copied = thread_ids_in(&run(&mut s, "t6 FETCH 1 THREADID").await);
    assert_eq!(copied, vec![threads[0].clone()], "the same thread in another mailbox");
}

#[tokio::test]
async fn rfc8474_5_2_an_unreadable_message_has_no_threadid_and_the_others_keep_theirs() {
    let h = harness();
    h.deliver("Message-ID: <root@x>\r\nSubject: plan\r\n\r\n1\r\n").await;
    h.deliver("Message-ID: <r1@x>\r\nReferences: <root@x>\r\nSubject: Re: plan\r\n\r\n2\r\n").await;
    let inbox = h._dir.path().join(format!("mail/users/{USER}/Maildir"));
    let files: Vec<_> = ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(inbox.join(d)).into_iter().flatten().flatten().map(|e| e.path()))
        .collect();
    let root = files.iter().find(|p| std::fs::read(p).unwrap().starts_with(b"Message-ID: <root@x>")).unwrap();
    let mut bytes = std::fs::read(root).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    std::fs::write(root, bytes).unwrap();
    let mut s = h.session().await;
    run(&mut s, "u1 SELECT INBOX").await;
    let out = run(&mut s, "u2 FETCH 1:2 THREADID").await;
    assert!(out.contains("* 1 FETCH (UID 1 THREADID NIL)"), "{out}");
    assert_eq!(thread_ids_in(&out).len(), 1, "the readable one keeps its id: {out}");
    assert!(out.contains("u2 OK"), "{out}");
}
