//! RFC 8514: SAVEDATE (the FETCH item and the SEARCH keys).

use super::*;
use crate::mailstore::ops::ImportedMessage;

/// The date-time of the first `SAVEDATE "..."` in `out` as seconds; `None` for NIL.
fn save_date_in(out: &str) -> Option<i64> {
    let at = out.find("SAVEDATE ").unwrap_or_else(|| panic!("no SAVEDATE in {out}")) + "SAVEDATE ".len();
    if out[at..].starts_with("NIL") {
        return None;
    }
    let quoted = &out[at + 1..at + 1 + out[at + 1..].find('"').unwrap()];
    Some(chrono::DateTime::parse_from_str(quoted, "%d-%b-%Y %H:%M:%S %z").unwrap().timestamp())
}

fn imap_day(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap().format("%-d-%b-%Y").to_string()
}

#[tokio::test]
async fn rfc8514_3_the_save_date_is_when_the_message_entered_this_mailbox() {
    let h = harness();
    h.deliver("Subject: delivered\r\n\r\n1\r\n").await;
    let mut s = h.session().await;
    assert!(run(&mut s, "d0 CAPABILITY").await.contains(" SAVEDATE"));
    run(&mut s, "d1 CREATE Keep").await;
    let before = common::clock::now_s();
    run(&mut s, "d2 APPEND INBOX \"01-Jan-2020 00:00:00 +0000\" {14}\r\nSubject: old\r\n").await;
    run(&mut s, "d3 SELECT INBOX").await;
    let out = run(&mut s, "d4 FETCH 1 (SAVEDATE INTERNALDATE)").await;
    assert_eq!(save_date_in(&out), Some(1_700_000_000), "a delivery is saved when it arrives: {out}");
    let out = run(&mut s, "d5 FETCH 2 (INTERNALDATE SAVEDATE)").await;
    assert!(out.contains("INTERNALDATE \"01-Jan-2020 00:00:00 +0000\""), "{out}");
    let appended = save_date_in(&out).expect("an APPEND has a save date");
    assert!((before..=common::clock::now_s()).contains(&appended), "APPEND saves now, whatever its date: {out}");
    run(&mut s, "d6 COPY 1 Keep").await;
    run(&mut s, "d7 SELECT Keep").await;
    let out = run(&mut s, "d8 UID FETCH 1 SAVEDATE").await;
    let copied = save_date_in(&out).expect("a copy has a save date");
    assert!(copied >= before, "a copy is saved into its new mailbox when copied: {out}");
    assert!(out.contains("UID 1"), "{out}");
}

#[tokio::test]
async fn rfc8514_4_3_saved_keys_compare_days_and_savedatesupported_matches_all() {
    let h = harness();
    h.deliver("Subject: delivered\r\n\r\n1\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "k1 APPEND INBOX \"01-Jan-2020 00:00:00 +0000\" {14}\r\nSubject: new\r\n").await;
    run(&mut s, "k2 SELECT INBOX").await;
    let today = imap_day(save_date_in(&run(&mut s, "k3 FETCH 2 SAVEDATE").await).unwrap());
    let delivered = imap_day(1_700_000_000);
    assert!(run(&mut s, &format!("k4 SEARCH SAVEDON {today}")).await.contains("* SEARCH 2\r\n"));
    assert!(run(&mut s, &format!("k5 SEARCH SAVEDBEFORE {today}")).await.contains("* SEARCH 1\r\n"));
    assert!(run(&mut s, &format!("k6 SEARCH SAVEDSINCE \"{delivered}\"")).await.contains("* SEARCH 1 2\r\n"));
    assert!(run(&mut s, &format!("k7 UID SEARCH NOT SAVEDON {delivered}")).await.contains("* SEARCH 2\r\n"));
    assert!(run(&mut s, "k8 SEARCH SAVEDATESUPPORTED").await.contains("* SEARCH 1 2\r\n"));
    assert!(run(&mut s, "k9 SEARCH SAVEDON 1-Jan-1990").await.contains("* SEARCH\r\n"));
    let out = run(&mut s, "k10 SEARCH SAVEDON 31-Feb-2026").await;
    assert_eq!(status_of(&out, "k10").0, StatusKind::Bad, "not a date: {out}");
}

#[tokio::test]
async fn rfc8514_3_unknown_save_dates_are_nil_and_searched_by_internal_date() {
    let h = harness();
    let imported = ImportedMessage {
        uid: 1,
        flags: 0,
        keywords: vec![],
        internal_date: 1_600_000_000,
        modseq: 0,
        email_id: 0,
        saved_s: 0,
        data: b"Subject: from elsewhere\r\n\r\nx\r\n".to_vec(),
    };
    let op =
        MailOp::ImportMessages { user: USER.into(), mailbox: "Old".into(), uid_validity: 5, messages: vec![imported] };
    h.backend.propose(OpId::digest(&[b"import"]), op).await.unwrap();
    let mut s = h.session().await;
    run(&mut s, "n1 SELECT Old").await;
    assert_eq!(save_date_in(&run(&mut s, "n2 FETCH 1 SAVEDATE").await), None);
    let day = imap_day(1_600_000_000);
    assert!(run(&mut s, &format!("n3 SEARCH SAVEDON {day}")).await.contains("* SEARCH 1\r\n"));
    assert!(run(&mut s, "n4 SEARCH SAVEDATESUPPORTED").await.contains("* SEARCH 1\r\n"));
}
