//! RFC 5465: NOTIFY.

use super::*;

#[tokio::test]
async fn rfc5465_notify_reports_other_mailboxes_by_status() {
    let h = harness();
    let mut s = h.session().await;
    let mut other = h.session().await;
    run(&mut s, "n0 CREATE watched").await;
    let out = run(&mut s, "n1 NOTIFY SET STATUS (MAILBOXES watched (MessageNew MessageExpunge))").await;
    assert!(out.contains("* STATUS \"watched\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY "), "initial STATUS: {out}");
    let (o, _) = other.input(b"o1 APPEND watched {14}\r\nSubject: new\r\n\r\n").await;
    assert!(text(&o).contains("o1 OK"), "{}", text(&o));
    let out = run(&mut s, "n2 NOOP").await;
    assert!(out.contains("* STATUS \"watched\" (MESSAGES 1 UIDNEXT 2 "), "a new message: {out}");
    assert!(!run(&mut s, "n3 NOOP").await.contains("STATUS"), "told once");
    let out = run(&mut s, "n4 NOTIFY SET (PERSONAL (MailboxName))").await;
    assert!(out.contains("n4 NO [BADEVENT (MessageNew MessageExpunge FlagChange)]"), "{out}");
    assert!(run(&mut s, "n5 NOTIFY NONE").await.contains("n5 OK"));
    other.input(b"o2 APPEND watched {14}\r\nSubject: two\r\n\r\n").await;
    assert!(!run(&mut s, "n6 NOOP").await.contains("STATUS"), "NOTIFY NONE stops it");
}
