//! LIST: hierarchy levels (RFC 3501 §6.3.8), LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819).

use super::*;

#[tokio::test]
async fn rfc3501_6_3_8_levels_without_a_mailbox_are_listed_noselect() {
    let h = harness();
    let mut s = h.session().await;
    assert!(run(&mut s, "n1 CREATE Work/2026/Q1/").await.contains("n1 OK"), "a trailing separator is dropped");
    let out = run(&mut s, "n2 LIST \"\" Work/%").await;
    assert!(out.contains("* LIST (\\HasChildren) \"/\" \"Work/2026\"\r\n"), "superiors were created: {out}");
    // A deleted parent keeps its children (Maildir++ folders are siblings); `%` still shows
    // the level, as not selectable.
    assert!(run(&mut s, "n3 DELETE Work/2026").await.contains("n3 OK"));
    let out = run(&mut s, "n4 LIST \"\" Work/%").await;
    assert!(out.contains("* LIST (\\Noselect \\HasChildren) \"/\" \"Work/2026\"\r\n"), "{out}");
    assert!(run(&mut s, "n4a CREATE /").await.contains("n4a NO"));
    let out = run(&mut s, "n5 LIST \"\" Work/*").await;
    assert!(!out.contains("\"Work/2026\"\r\n") && out.contains("\"Work/2026/Q1\"\r\n"), "{out}");
    run(&mut s, "n6 ENABLE IMAP4rev2").await;
    let out = run(&mut s, "n7 LIST \"\" Work/%").await;
    assert!(out.contains("* LIST (\\NonExistent \\HasChildren) \"/\" \"Work/2026\"\r\n"), "{out}");
    assert!(run(&mut s, "n8 SELECT Work/2026").await.contains("n8 NO"));
}

#[tokio::test]
async fn rfc5258_rfc5819_list_extended_and_status() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    let mut s = h.session().await;
    let caps = run(&mut s, "x0 CAPABILITY").await;
    assert!(caps.contains("LIST-EXTENDED") && caps.contains("LIST-STATUS"), "{caps}");
    run(&mut s, "x1 CREATE Work").await;
    run(&mut s, "x2 SUBSCRIBE Work").await;
    let out = run(&mut s, "x3 LIST (SUBSCRIBED) \"\" \"*\"").await;
    let lists: Vec<&str> = out.lines().filter(|l| l.starts_with("* LIST")).collect();
    // Work, and INBOX (made by the delivery before the first login) and the five
    // special-use mailboxes, which the first login subscribed.
    assert_eq!(lists.len(), 7, "{out}");
    assert!(lists.iter().all(|l| l.contains("\\Subscribed")) && out.contains("\"INBOX\""), "{out}");
    assert!(lists.iter().any(|l| l.ends_with("\"Work\"")), "{out}");
    let out = run(&mut s, "x4 LIST (SPECIAL-USE) \"\" \"*\" RETURN (SPECIAL-USE)").await;
    assert_eq!(out.lines().filter(|l| l.starts_with("* LIST")).count(), 5, "{out}");
    assert!(!out.contains("\"Work\"") && !out.contains("\"INBOX\""), "{out}");
    let out = run(&mut s, "x5 LIST \"\" \"INBOX\" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))").await;
    assert!(
        out.contains(
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1 UIDNEXT 2)\r\n"
        ),
        "{out}"
    );
    assert!(run(&mut s, "x6 LIST \"\" * RETURN (STATUS (BOGUS))").await.contains("x6 BAD"));
    assert!(run(&mut s, "x7 LIST (SUBSCRIBED \"\" *").await.starts_with("x7 BAD"));
    // Plain LIST is unchanged and says nothing about subscriptions.
    let out = run(&mut s, "x8 LIST \"\" *").await;
    assert_eq!(out.lines().filter(|l| l.starts_with("* LIST")).count(), 7);
    assert!(!out.contains("\\Subscribed"), "{out}");
    assert!(run(&mut s, "x9 LIST \"\" Work RETURN (SUBSCRIBED)")
        .await
        .contains("(\\HasNoChildren \\Subscribed) \"/\" \"Work\""));
}
