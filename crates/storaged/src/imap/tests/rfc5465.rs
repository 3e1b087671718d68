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
    let out = run(&mut s, "n4 NOTIFY SET (PERSONAL (MailboxMetadataChange))").await;
    assert!(
        out.contains("n4 NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"),
        "{out}"
    );
    assert!(run(&mut s, "n5 NOTIFY NONE").await.contains("n5 OK"));
    other.input(b"o2 APPEND watched {14}\r\nSubject: two\r\n\r\n").await;
    assert!(!run(&mut s, "n6 NOOP").await.contains("STATUS"), "NOTIFY NONE stops it");
}

#[tokio::test]
async fn rfc5465_5_4_mailbox_names_and_5_5_subscriptions_as_list() {
    let h = harness();
    let mut s = h.session().await;
    let mut other = h.session().await;
    run(&mut other, "o0 CREATE old").await;
    assert!(run(&mut s, "n1 NOTIFY SET (SUBTREE (old new) (MailboxName SubscriptionChange))").await.contains("n1 OK"));
    run(&mut other, "o1 CREATE new").await;
    let out = run(&mut s, "n2 NOOP").await;
    assert!(out.contains("* LIST (\\HasNoChildren) \"/\" \"new\"\r\n"), "a mailbox made: {out}");
    run(&mut other, "o2 SUBSCRIBE new").await;
    run(&mut other, "o3 DELETE old").await;
    run(&mut other, "o4 CREATE unwatched").await;
    let out = run(&mut s, "n3 NOOP").await;
    assert!(out.contains("* LIST (\\NonExistent) \"/\" \"old\"\r\n"), "a mailbox gone: {out}");
    assert!(out.contains("* LIST (\\Subscribed) \"/\" \"new\"\r\n"), "a subscription: {out}");
    assert!(!out.contains("unwatched"), "outside the watched subtrees: {out}");
    run(&mut other, "o5 UNSUBSCRIBE new").await;
    assert!(run(&mut s, "n4 NOOP").await.contains("* LIST () \"/\" \"new\"\r\n"));
    assert!(!run(&mut s, "n5 NOOP").await.contains("* LIST"), "told once");
}
