//! APPEND of several messages (MULTIAPPEND, RFC 3502) and of joined pieces (CATENATE, RFC 4469).

use super::*;

#[tokio::test]
async fn rfc3502_multiappend_is_all_or_nothing_and_rfc4469_catenate_joins_parts() {
    let h = harness();
    let mut s = h.session().await;
    let two = b"m1 APPEND INBOX (\\Seen) {14}\r\nSubject: one\r\n {14}\r\nSubject: two\r\n\r\n";
    let (out, _) = s.input(two).await;
    assert!(text(&out).starts_with("m1 OK [APPENDUID ") && text(&out).contains(" 1:2] "), "{}", text(&out));
    // A URL that names nothing of the user's refuses the whole command: nothing is added.
    let bad = b"m2 APPEND INBOX {6}\r\nfirst\n CATENATE (URL \"/INBOX/;UID=99\")\r\n";
    let (out, _) = s.input(bad).await;
    assert!(text(&out).starts_with("m2 NO [BADURL /INBOX/;UID=99]"), "{}", text(&out));
    let cat = b"m3 APPEND INBOX CATENATE (URL \"/INBOX/;UID=1/;SECTION=HEADER\" TEXT {5}\r\nbody\n)\r\n";
    let (out, _) = s.input(cat).await;
    assert!(text(&out).starts_with("m3 OK [APPENDUID "), "{}", text(&out));
    let out = run(&mut s, "m4 SELECT INBOX").await;
    assert!(out.contains("* 3 EXISTS"), "two, none, one: {out}");
    let out = run(&mut s, "m5 FETCH 1:3 (FLAGS BODY.PEEK[])").await;
    assert!(out.contains("* 1 FETCH (FLAGS (\\Seen) BODY[] {14}\r\nSubject: one\r\n)"), "{out}");
    assert!(out.contains("* 2 FETCH (FLAGS (\\Recent) BODY[] {14}\r\nSubject: two\r\n)"), "its own flags: {out}");
    assert!(
        out.contains("* 3 FETCH (FLAGS (\\Recent) BODY[] {19}\r\nSubject: one\r\nbody\n)"),
        "header of 1 + text: {out}"
    );
    assert!(run(&mut s, "m6 CAPABILITY").await.contains("MULTIAPPEND CATENATE"));
}

#[tokio::test]
async fn the_quarantine_releases_and_expunges_but_takes_nothing_in() {
    let h = harness();
    h.deliver("Subject: ham\r\n\r\nhello\r\n").await;
    let held = "Subject: held\r\n\r\nspam\r\n";
    let op = MailOp::DeliverInto {
        recipients: vec![USER.into()],
        mailbox: "Quarantine".into(),
        internal_date: 1_700_000_000,
        message: held.into(),
    };
    h.backend.propose(OpId::digest(&[held.as_bytes()]), op).await.unwrap();
    let mut s = h.session().await;
    let lsub = run(&mut s, "q0 LSUB \"\" \"*\"").await;
    assert!(lsub.contains("\"Quarantine\""), "made subscribed by the delivery: {lsub}");
    let (out, _) = s.input(b"q1 APPEND Quarantine {14}\r\nSubject: x\r\n\r\n\r\n").await;
    assert!(text(&out).starts_with("q1 NO [CANNOT]"), "{}", text(&out));
    run(&mut s, "q2 SELECT INBOX").await;
    for cmd in ["q3 COPY 1 Quarantine", "q4 MOVE 1 Quarantine"] {
        let out = run(&mut s, cmd).await;
        assert!(tagged_status(&out, &cmd[..2]).starts_with(&format!("{} NO [CANNOT]", &cmd[..2])), "{out}");
    }
    // Out of it is a release; EXPUNGE there deletes.
    run(&mut s, "q5 SELECT Quarantine").await;
    let out = run(&mut s, "q6 MOVE 1 INBOX").await;
    assert!(tagged_status(&out, "q6").starts_with("q6 OK"), "{out}");
    let out = run(&mut s, "q7 STATUS INBOX (MESSAGES)").await;
    assert!(out.contains("(MESSAGES 2)"), "{out}");
}
