//! RFC 9051 (IMAP4rev2) where it differs from IMAP4rev1.

use super::*;

#[tokio::test]
async fn rfc9051_6_4_message_numbers_beyond_exists_are_bad() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "q0 SELECT INBOX").await;
    for cmd in ["q1 FETCH 2 FLAGS", "q2 STORE 1:3 +FLAGS (\\Seen)", "q3 COPY 5 Archive", "q4 MOVE 2:* Trash"] {
        assert!(tagged_status(&run(&mut s, cmd).await, &cmd[..2]).starts_with(&format!("{} BAD", &cmd[..2])), "{cmd}");
    }
    // UID sets name what exists and ignore the rest.
    assert!(run(&mut s, "q5 UID FETCH 1:99 (FLAGS)").await.contains("q5 OK"));
    assert!(run(&mut s, "q6 UID COPY 50 Archive").await.contains("q6 OK"));
    assert!(run(&mut s, "q7 FETCH 1:* (FLAGS)").await.contains("q7 OK"));
    run(&mut s, "q8 SELECT Archive").await;
    assert!(run(&mut s, "q9 FETCH * FLAGS").await.contains("q9 BAD"), "* in an empty mailbox");
}

#[tokio::test]
async fn rfc9051_imap4rev2_enabled() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    h.deliver("Subject: two\r\n\r\n2\r\n").await;
    let mut old = h.session().await;
    let mut s = h.session().await;
    let caps = run(&mut s, "v0 CAPABILITY").await;
    assert!(caps.contains(" IMAP4rev2") && caps.contains("IMAP4rev1") && caps.contains("STATUS=SIZE"), "{caps}");
    assert!(run(&mut s, "v1 ENABLE IMAP4rev2").await.contains("* ENABLED IMAP4rev2\r\n"));
    // SELECT: no RECENT, no [UNSEEN], and the mailbox's LIST line.
    let out = run(&mut s, "v2 SELECT INBOX").await;
    assert!(!out.contains("RECENT") && !out.contains("[UNSEEN"), "{out}");
    assert!(out.contains("* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n") && out.contains("* 2 EXISTS"), "{out}");
    // Every SEARCH answers with ESEARCH.
    let out = run(&mut s, "v3 SEARCH SUBJECT two").await;
    assert!(out.contains("* ESEARCH (TAG \"v3\") ALL 2\r\n") && !out.contains("* SEARCH"), "{out}");
    let out = run(&mut s, "v4 UID SEARCH ALL").await;
    assert!(out.contains("* ESEARCH (TAG \"v4\") UID ALL 1:2\r\n"), "{out}");
    let out = run(&mut s, "v5 SEARCH DELETED").await;
    assert!(out.contains("* ESEARCH (TAG \"v5\")\r\n"), "{out}");
    // Mailbox names are UTF-8 on the wire, modified UTF-7 in the store (and to rev1 clients).
    assert!(run(&mut s, "v6 CREATE \"Entwürfe/Tom & Jerry\"").await.contains("v6 OK"));
    let out = run(&mut s, "v7 LIST \"\" \"Entw*\"").await;
    // The superior was created too (RFC 3501 §6.3.3).
    assert!(out.contains("* LIST (\\HasChildren) \"/\" {9}\r\nEntwürfe\r\n"), "{out}");
    assert!(out.contains("\"/\" {21}\r\nEntwürfe/Tom & Jerry\r\n"), "{out}");
    let listed = run(&mut old, "v8 LIST \"\" \"Entw*\"").await;
    assert!(listed.contains("\"/\" \"Entw&APw-rfe/Tom &- Jerry\"\r\n"), "{listed}");
    assert!(listed.contains("\"/\" \"Entw&APw-rfe\"\r\n"), "{listed}");
    let names = h.backend.mailboxes(&UserName::parse(USER).unwrap());
    assert!(names.iter().any(|n| n.as_str() == "Entw&APw-rfe/Tom &- Jerry"), "{names:?}");
    let out = run(&mut s, "v9 STATUS \"Entwürfe/Tom & Jerry\" (MESSAGES SIZE)").await;
    assert!(out.contains("* STATUS {21}\r\nEntwürfe/Tom & Jerry (MESSAGES 0 SIZE 0)\r\n"), "{out}");
    let out = run(&mut s, "v10 STATUS INBOX (SIZE DELETED)").await;
    assert!(out.contains("* STATUS \"INBOX\" (SIZE 38 DELETED 0)\r\n"), "{out}");
    assert!(run(&mut s, "v11 COPY 1 \"Entwürfe/Tom & Jerry\"").await.contains("v11 OK [COPYUID"));
    assert!(run(&mut old, "v12 SELECT \"Entw&APw-rfe/Tom &- Jerry\"").await.contains("* 1 EXISTS"));
    // A rev1 session keeps rev1 behaviour.
    let out = run(&mut old, "v13 SEARCH ALL").await;
    assert!(out.contains("* SEARCH 1\r\n"), "{out}");
}
