//! The connection-level extensions the session decides: COMPRESS (RFC 4978) and UNAUTHENTICATE (RFC 8437).

use super::*;

#[tokio::test]
async fn rfc4978_3_compress_after_login_once() {
    let h = harness();
    let mut anon: Session<StoreBackend> = Session::new(offer());
    assert!(!run(&mut anon, "c0 CAPABILITY").await.contains("COMPRESS=DEFLATE"), "offered before login");
    assert!(run(&mut anon, "c1 COMPRESS DEFLATE").await.starts_with("c1 BAD"));
    let mut s = h.session().await;
    assert!(run(&mut s, "c2 CAPABILITY").await.contains("COMPRESS=DEFLATE"));
    assert!(run(&mut s, "c3 COMPRESS LZW").await.starts_with("c3 BAD"), "unknown algorithms are BAD");
    // The server answers OK itself (it may refuse for lack of room) and then compresses.
    let (out, outcome) = s.input(b"c4 COMPRESS DEFLATE\r\n").await;
    assert!(out.is_empty() && outcome == Outcome::Compress { tag: "c4".into() }, "{outcome:?}");
    s.compression_started();
    assert!(!run(&mut s, "c5 CAPABILITY").await.contains("COMPRESS=DEFLATE"));
    assert_eq!(
        status_of(&run(&mut s, "c6 COMPRESS DEFLATE").await, "c6"),
        (StatusKind::No, Some(Code::CompressionActive))
    );
}

#[tokio::test]
async fn rfc8437_unauthenticate_forgets_the_user_and_what_the_session_enabled() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    let mut anon: Session<StoreBackend> = Session::new(offer());
    assert!(!run(&mut anon, "u0 CAPABILITY").await.contains("UNAUTHENTICATE"), "offered before login");
    assert!(run(&mut anon, "u1 UNAUTHENTICATE").await.starts_with("u1 BAD"));
    let mut s = h.session().await;
    assert!(run(&mut s, "u2 CAPABILITY").await.contains("UNAUTHENTICATE"));
    run(&mut s, "u3 ENABLE CONDSTORE").await;
    run(&mut s, "u4 SELECT INBOX").await;
    assert!(run(&mut s, "u4b STORE 1 +FLAGS (\\Flagged)").await.contains("MODSEQ"), "CONDSTORE is on");
    assert!(run(&mut s, "u5 UNAUTHENTICATE extra").await.starts_with("u5 BAD"));
    let (out, outcome) = s.input(b"u6 UNAUTHENTICATE\r\n").await;
    assert_eq!((text(&out).as_str(), outcome), ("u6 OK UNAUTHENTICATE completed\r\n", Outcome::Unauthenticated));
    assert!(s.logged_in_user().is_none());
    assert!(tagged_status(&run(&mut s, "u7 FETCH 1 FLAGS").await, "u7").contains("BAD"), "not authenticated");
    // A new login starts clean: nothing selected, CONDSTORE off.
    let (_, outcome) = s.input(b"u8 LOGIN alice@example.edu secret\r\n").await;
    let Outcome::Login { tag, .. } = outcome else { panic!("{outcome:?}") };
    s.logged_in(&tag, UserName::parse(USER).unwrap(), h.backend.clone()).await;
    assert!(run(&mut s, "u9 FETCH 1 FLAGS").await.contains("u9 BAD"), "no mailbox is selected");
    run(&mut s, "u10 SELECT INBOX").await;
    assert!(!run(&mut s, "u11 STORE 1 -FLAGS (\\Flagged)").await.contains("MODSEQ"), "CONDSTORE was reset");
}

#[tokio::test]
async fn unauthenticate_is_not_offered_on_a_session_a_front_node_routed() {
    let h = harness();
    let mut s: Session<StoreBackend> = Session::new(offer());
    run(&mut s, "i1 ID (\"x-mailhost\" \"g\" \"x-originating-ip\" \"192.0.2.1\")").await;
    let (_, outcome) = s.input(b"i2 LOGIN alice@example.edu secret\r\n").await;
    let Outcome::Login { tag, .. } = outcome else { panic!("{outcome:?}") };
    s.logged_in(&tag, UserName::parse(USER).unwrap(), h.backend.clone()).await;
    assert!(!run(&mut s, "i3 CAPABILITY").await.contains("UNAUTHENTICATE"));
    assert!(run(&mut s, "i4 UNAUTHENTICATE").await.starts_with("i4 BAD"));
    assert!(s.logged_in_user().is_some());
}
