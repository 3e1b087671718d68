//! Search results in their extended forms: ESEARCH (RFC 4731), SEARCHRES (RFC 5182), CONTEXT=SEARCH/SORT and ESORT (RFC 5267).

use super::*;

#[tokio::test]
async fn rfc4731_esearch() {
    let h = harness();
    for k in 0..5 {
        h.deliver(&format!("Subject: m{k}\r\n\r\n{k}\r\n")).await;
    }
    let mut s = h.session().await;
    assert!(run(&mut s, "e0 CAPABILITY").await.contains("ESEARCH"));
    run(&mut s, "e1 SELECT INBOX").await;
    run(&mut s, "e2 STORE 2 +FLAGS (\\Seen)").await;
    let out = run(&mut s, "e3 SEARCH RETURN (MIN MAX COUNT) UNSEEN").await;
    assert!(out.contains("* ESEARCH (TAG \"e3\") MIN 1 MAX 5 COUNT 4\r\n"), "{out}");
    let out = run(&mut s, "e4 UID SEARCH RETURN () UNSEEN").await;
    assert!(out.contains("* ESEARCH (TAG \"e4\") UID ALL 1,3:5\r\n"), "{out}");
    let out = run(&mut s, "e5 SEARCH RETURN (COUNT) DELETED").await;
    assert!(out.contains("* ESEARCH (TAG \"e5\") COUNT 0\r\n"), "{out}");
    let out = run(&mut s, "e6 SEARCH RETURN (PARTIAL 2:3) UNSEEN").await;
    assert!(out.contains("* ESEARCH (TAG \"e6\") PARTIAL (2:3 3:4)\r\n"), "RFC 9394: positions 2-3 of 1,3,4,5: {out}");
    assert!(run(&mut s, "e6b SEARCH RETURN (PARTIAL 0:5) ALL").await.starts_with("e6b BAD"), "positions start at 1");
    assert!(run(&mut s, "e6c SEARCH RETURN (FROB) ALL").await.starts_with("e6c BAD"));
    assert!(run(&mut s, "e7 SEARCH UNSEEN").await.contains("* SEARCH 1 3 4 5\r\n"), "plain SEARCH unchanged");
}

#[tokio::test]
async fn rfc5182_searchres() {
    let h = harness();
    for k in 0..6 {
        h.deliver(&format!("Subject: m{k}\r\n\r\n{k}\r\n")).await;
    }
    let mut s = h.session().await;
    assert!(run(&mut s, "r0 CAPABILITY").await.contains(" SEARCHRES"));
    run(&mut s, "r1 SELECT INBOX").await;
    // `$` before any SAVE names nothing: the command succeeds and affects nothing.
    let out = run(&mut s, "r2 FETCH $ (FLAGS)").await;
    assert!(!out.contains("FETCH (") && tagged_status(&out, "r2").starts_with("r2 OK"), "{out}");
    // SAVE alone sends no ESEARCH; `$` is then the result, by number or by UID.
    let out = run(&mut s, "r3 SEARCH RETURN (SAVE) OR SUBJECT m1 SUBJECT m4").await;
    assert!(!out.contains("ESEARCH") && !out.contains("* SEARCH"), "{out}");
    let out = run(&mut s, "r4 FETCH $ (UID)").await;
    assert!(out.contains("* 2 FETCH (UID 2)\r\n* 5 FETCH (UID 5)\r\n"), "{out}");
    run(&mut s, "r5 STORE $ +FLAGS.SILENT (\\Flagged)").await;
    let out = run(&mut s, "r6 UID SEARCH FLAGGED").await;
    assert!(out.contains("* SEARCH 2 5\r\n"), "{out}");
    let out = run(&mut s, "r7 SEARCH $ SUBJECT m4").await;
    assert!(out.contains("* SEARCH 5\r\n"), "{out}");
    // With other options, those are answered too; MIN alone saves only the lowest.
    let out = run(&mut s, "r8 SEARCH RETURN (SAVE MIN) FLAGGED").await;
    assert!(out.contains("* ESEARCH (TAG \"r8\") MIN 2\r\n"), "{out}");
    let out = run(&mut s, "r9 UID FETCH $ (FLAGS)").await;
    assert!(out.contains("* 2 FETCH (UID 2 FLAGS (\\Recent \\Flagged))") && !out.contains("* 5 FETCH"), "{out}");
    // Expunged messages leave the saved result.
    run(&mut s, "r10 SEARCH RETURN (SAVE) FLAGGED").await;
    run(&mut s, "r11 STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    run(&mut s, "r12 EXPUNGE").await;
    let out = run(&mut s, "r13 FETCH $ (UID)").await;
    assert!(out.contains("* 4 FETCH (UID 5)\r\n") && !out.contains("UID 2"), "{out}");
    // A new SELECT forgets it.
    run(&mut s, "r14 SELECT INBOX").await;
    let out = run(&mut s, "r15 UID FETCH $ (UID)").await;
    assert!(!out.contains("FETCH (") && tagged_status(&out, "r15").starts_with("r15 OK"), "{out}");
}

#[tokio::test]
async fn rfc5267_4_context_search_updates_and_esort() {
    let h = harness();
    for k in 0..4 {
        h.deliver(&format!("Subject: m{k}\r\n\r\n{k}\r\n")).await;
    }
    let mut s = h.session().await;
    let mut other = h.session().await;
    run(&mut s, "c1 SELECT INBOX").await;
    run(&mut other, "o1 SELECT INBOX").await;
    let out = run(&mut s, "c2 SEARCH RETURN (UPDATE) SEEN").await;
    assert!(out.contains("* ESEARCH (TAG \"c2\")\r\n"), "{out}");
    let out = run(&mut s, "c3 STORE 1,3 +FLAGS.SILENT (\\Seen)").await;
    assert!(out.contains("* ESEARCH (TAG \"c2\") ADDTO (0 1,3)\r\n"), "own changes: {out}");
    run(&mut other, "o2 STORE 3 +FLAGS.SILENT (\\Deleted)").await;
    run(&mut other, "o3 EXPUNGE").await;
    let out = run(&mut s, "c4 NOOP").await;
    let removed = out.find("REMOVEFROM (0 3)").unwrap_or_else(|| panic!("another session's expunge: {out}"));
    assert!(removed < out.find("* 3 EXPUNGE").unwrap(), "REMOVEFROM before the expunge renumbers: {out}");
    assert!(run(&mut s, "c5 CANCELUPDATE \"c2\"").await.starts_with("c5 OK"));
    assert!(!run(&mut s, "c6 STORE 2 +FLAGS (\\Seen)").await.contains("ADDTO"), "cancelled");
    let out = run(&mut s, "c7 SORT RETURN (MIN MAX COUNT ALL) (REVERSE SUBJECT) UTF-8 ALL").await;
    assert!(out.contains("* ESEARCH (TAG \"c7\") MIN 3 MAX 1 COUNT 3 ALL 3,2,1\r\n"), "ESORT in sort order: {out}");
    // CONTEXT=SORT: a kept sort learns where new messages go and which left, by position.
    let out = run(&mut s, "c8 UID SORT RETURN (ALL UPDATE) (REVERSE SUBJECT) UTF-8 ALL").await;
    assert!(out.contains("* ESEARCH (TAG \"c8\") UID ALL 4,2,1\r\n"), "{out}");
    h.deliver("Subject: m9\r\n\r\nnew\r\n").await;
    h.deliver("Subject: m15\r\n\r\nnew\r\n").await;
    let out = run(&mut s, "c9 NOOP").await;
    assert!(out.contains("* ESEARCH (TAG \"c8\") UID ADDTO (1 5 3 6)\r\n"), "m9 first, m15 after m2: {out}");
    run(&mut other, "o4 UID STORE 2 +FLAGS.SILENT (\\Deleted)").await;
    run(&mut other, "o5 UID EXPUNGE 2").await;
    let out = run(&mut s, "c10 NOOP").await;
    assert!(out.contains("* ESEARCH (TAG \"c8\") UID REMOVEFROM (4 2)\r\n"), "{out}");
}
