//! RFC 3501 (IMAP4rev1) as the session answers it: states, login, mailbox management, APPEND and SELECT, FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE, \\Recent, FLAGS announcements, and bad input.

use super::*;

#[tokio::test]
async fn rfc3501_6_1_any_state_and_not_authenticated() {
    let mut s: Session<StoreBackend> = Session::new(offer());
    let out = run(&mut s, "c1 CAPABILITY").await;
    assert!(out.contains("IMAP4rev1") && out.contains("AUTH=PLAIN") && out.contains("IDLE"), "{out}");
    assert!(run(&mut s, "c2 NOOP").await.starts_with("c2 OK"));
    for cmd in ["c3 SELECT INBOX", "c4 LIST \"\" *", "c5 FETCH 1 FLAGS", "c6 APPEND INBOX {1+}\r\nx"] {
        assert!(tagged_status(&run(&mut s, cmd).await, cmd.split(' ').next().unwrap()).contains("BAD"), "{cmd}");
    }
    let mut closed: Session<StoreBackend> = Session::new(Offer { plaintext_auth: false, ..offer() });
    assert!(run(&mut closed, "c7 CAPABILITY").await.contains("LOGINDISABLED"));
    assert!(run(&mut closed, "c8 LOGIN a b").await.starts_with("c8 NO [PRIVACYREQUIRED]"));
    let out = run(&mut s, "c9 LOGOUT").await;
    assert!(out.starts_with("* BYE") && out.contains("c9 OK"));
}

#[tokio::test]
async fn authenticate_plain_with_and_without_initial_response() {
    let mut s: Session<StoreBackend> = Session::new(offer());
    // "\0alice@example.edu\0pw" in base64.
    let (_, outcome) = s.input(b"x1 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuZWR1AHB3\r\n").await;
    assert!(matches!(outcome, Outcome::Login { ref tag, ref creds } if tag == "x1" && creds.authcid == USER));
    let (_, outcome) = s.input(b"x2 AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(outcome, Outcome::SaslContinue { tag: "x2".into() });
    let (out, _) = s.sasl_response("x2", b"*");
    assert!(text(&out).starts_with("x2 BAD"));
    let (out, _) = s.sasl_response("x2", b"not base64!");
    assert!(text(&out).starts_with("x2 NO [AUTHENTICATIONFAILED]"));
    let (out, _) = s.input(b"x3 AUTHENTICATE CRAM-MD5\r\n").await;
    assert!(text(&out).starts_with("x3 NO"));
}

#[tokio::test]
async fn first_login_creates_inbox_and_special_use_mailboxes() {
    let h = harness();
    let mut s = h.session().await;
    let out = run(&mut s, "l1 LIST \"\" *").await;
    for (name, attr) in [
        ("INBOX", ""),
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ] {
        assert!(out.lines().any(|l| l.ends_with(&format!("\"{name}\"")) && l.contains(attr)), "{name}: {out}");
    }
    assert!(run(&mut s, "l2 LIST \"\" \"\"").await.starts_with("* LIST (\\Noselect) \"/\" \"\""));
    // ... subscribed, so that clients listing subscribed folders show them.
    let lsub = run(&mut s, "l4 LSUB \"\" *").await;
    assert_eq!(lsub.lines().filter(|l| l.starts_with("* LSUB")).count(), 6, "{lsub}");
    // An unsubscribed one stays unsubscribed at the next login.
    assert!(run(&mut s, "l5 UNSUBSCRIBE Junk").await.starts_with("l5 OK"));
    // A second session does not create them again.
    let mut again = h.session().await;
    assert!(run(&mut again, "l3 LIST \"\" %").await.lines().filter(|l| l.starts_with("* LIST")).count() == 6);
    let lsub = run(&mut again, "l6 LSUB \"\" *").await;
    assert!(!lsub.contains("Junk") && lsub.contains("Trash"), "{lsub}");
    // An account without a single subscription (made before first logins subscribed) gets
    // the standard folders subscribed at its next login.
    for name in ["INBOX", "Sent", "Drafts", "Trash", "Archive"] {
        run(&mut again, &format!("l7 UNSUBSCRIBE {name}")).await;
    }
    assert!(!run(&mut again, "l8 LSUB \"\" *").await.contains("* LSUB"));
    let mut third = h.session().await;
    let lsub = run(&mut third, "l9 LSUB \"\" *").await;
    assert_eq!(lsub.lines().filter(|l| l.starts_with("* LSUB")).count(), 6, "{lsub}");
}

#[tokio::test]
async fn rfc3501_6_3_mailbox_management() {
    let h = harness();
    let mut s = h.session().await;
    assert!(run(&mut s, "m1 CREATE Work").await.starts_with("m1 OK"));
    assert!(run(&mut s, "m2 CREATE Work/2026").await.starts_with("m2 OK"));
    assert!(run(&mut s, "m3 CREATE Work").await.starts_with("m3 NO"));
    assert!(run(&mut s, "m4 CREATE INBOX").await.starts_with("m4 NO"));
    let out = run(&mut s, "m5 LIST \"\" Work%").await;
    assert!(out.contains("(\\HasChildren) \"/\" \"Work\"") && !out.contains("2026"), "{out}");
    assert!(run(&mut s, "m6 LIST Work/ %").await.contains("\"Work/2026\""));
    assert!(run(&mut s, "m7 RENAME Work/2026 Work/2027").await.starts_with("m7 OK"));
    assert!(run(&mut s, "m8 DELETE Work/2027").await.starts_with("m8 OK"));
    assert!(run(&mut s, "m9 DELETE INBOX").await.starts_with("m9 NO"));
    assert!(run(&mut s, "n1 SUBSCRIBE Work").await.starts_with("n1 OK"));
    assert!(run(&mut s, "n2 LSUB \"\" *").await.contains("\"Work\""));
    assert!(run(&mut s, "n3 UNSUBSCRIBE Work").await.starts_with("n3 OK"));
    assert!(!run(&mut s, "n4 LSUB \"\" *").await.contains("\"Work\""));
    for evil in ["../x", "a/../../b", ".hidden", "a//b"] {
        assert!(run(&mut s, &format!("e1 CREATE \"{evil}\"")).await.starts_with("e1 NO"), "{evil}");
    }
    let out = run(&mut s, "s1 STATUS Work (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)").await;
    assert!(out.starts_with("* STATUS \"Work\" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY "), "{out}");
    assert!(run(&mut s, "s2 STATUS Nope (MESSAGES)").await.starts_with("s2 NO"));
}

#[tokio::test]
async fn rfc3501_6_3_11_append_and_select() {
    let h = harness();
    let mut s = h.session().await;
    let out = run(
        &mut s,
        "p1 APPEND INBOX (\\Seen $Work) \"14-Mar-2025 15:09:26 +0100\" {21+}\r\nSubject: hi\r\n\r\nbody\r\n",
    )
    .await;
    let (kind, code) = status_of(&out, "p1");
    assert!(kind == StatusKind::Ok && matches!(code, Some(Code::AppendUid { uid, .. }) if uid.get() == 1), "{out}");
    assert_eq!(
        status_of(&run(&mut s, "p2 APPEND Nope {1+}\r\nx").await, "p2"),
        (StatusKind::No, Some(Code::TryCreate))
    );
    let mut small = Session::<StoreBackend>::new(Offer { append_limit: 4, ..offer() });
    let (_, o) = small.input(b"q LOGIN alice@example.edu x\r\n").await;
    let Outcome::Login { tag, .. } = o else { panic!() };
    small.logged_in(&tag, UserName::parse(USER).unwrap(), h.backend.clone()).await;
    assert!(run(&mut small, "p3 APPEND INBOX {10+}\r\n0123456789").await.starts_with("p3 NO [TOOBIG]"));
    let out = run(&mut s, "p4 SELECT INBOX").await;
    assert!(data(&out).contains(&Data::Exists(1)), "{out}");
    assert!(
        responses(&out).iter().any(
            |r| matches!(r, Response::Status(Status::Untagged(u)) if matches!(u.code, Some(Code::UidValidity(_))))
        ),
        "{out}"
    );
    assert_eq!(status_of(&out, "p4"), (StatusKind::Ok, Some(Code::ReadWrite)));
    let out = run(&mut s, "p5 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)").await;
    assert!(
        out.contains("FLAGS (\\Seen $Work)")
            && out.contains("\"14-Mar-2025 14:09:26 +0000\"")
            && out.contains("RFC822.SIZE 21"),
        "{out}"
    );
    let out = run(&mut s, "p6 EXAMINE INBOX").await;
    assert!(out.starts_with("* OK [CLOSED]"), "{out}");
    assert_eq!(status_of(&out, "p6"), (StatusKind::Ok, Some(Code::ReadOnly)));
    assert_eq!(
        status_of(&run(&mut s, "p7 STORE 1 +FLAGS (\\Flagged)").await, "p7"),
        (StatusKind::No, Some(Code::ReadOnly))
    );
    // A failed SELECT leaves nothing selected.
    let out = run(&mut s, "p8 SELECT Nope").await;
    assert!(out.starts_with("* OK [CLOSED]") && tagged_status(&out, "p8").starts_with("p8 NO"), "{out}");
    assert!(run(&mut s, "p9 FETCH 1 FLAGS").await.starts_with("p9 BAD"));
}

#[tokio::test]
async fn rfc3501_7_4_1_updates_from_other_sessions() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    h.deliver("Subject: two\r\n\r\n2\r\n").await;
    let mut a = h.session().await;
    let mut b = h.session().await;
    run(&mut a, "a1 SELECT INBOX").await;
    run(&mut b, "b1 SELECT INBOX").await;
    assert!(run(&mut b, "b2 STORE 1 +FLAGS.SILENT (\\Deleted)").await.starts_with("b2 OK"));
    assert!(run(&mut b, "b3 EXPUNGE").await.contains("* 1 EXPUNGE"));
    h.deliver("Subject: three\r\n\r\n3\r\n").await;
    // During FETCH: the new message, but no EXPUNGE: message 1 keeps its number.
    let out = run(&mut a, "a2 FETCH 2 (UID)").await;
    assert!(out.contains("* 3 EXISTS") && !out.contains("EXPUNGE"), "{out}");
    assert!(out.contains("* 2 FETCH (UID 2)"), "{out}");
    // FETCH of the expunged message, not yet announced: no data, still OK.
    let out = run(&mut a, "a3 FETCH 1 (BODY.PEEK[])").await;
    assert!(!out.contains("* 1 FETCH") && tagged_status(&out, "a3").starts_with("a3 OK"), "{out}");
    // NOOP announces it; numbers shift afterwards.
    let out = run(&mut a, "a4 NOOP").await;
    assert!(out.contains("* 1 EXPUNGE"), "{out}");
    assert!(run(&mut a, "a5 FETCH 1 (UID)").await.contains("* 1 FETCH (UID 2)"));
    // Flag changes by others arrive as FETCH FLAGS.
    run(&mut b, "b4 STORE 1 +FLAGS (\\Flagged)").await;
    // Session a selected first: the messages are \Recent there (RFC 3501 §2.3.2), not in b.
    assert!(run(&mut a, "a6 NOOP").await.contains("* 1 FETCH (UID 2 FLAGS (\\Recent \\Flagged))"));
    assert!(run(&mut b, "b5 FETCH 1 (FLAGS)").await.contains("* 1 FETCH (FLAGS (\\Flagged))"));
}

#[tokio::test]
async fn rfc3501_6_4_fetch_store_search_copy_move_expunge() {
    let h = harness();
    h.deliver("From: Ann <ann@example.org>\r\nSubject: Budget\r\n\r\nnumbers inside\r\n").await;
    h.deliver("From: bob@example.org\r\nSubject: Lunch\r\n\r\nnoon?\r\n").await;
    // Another session saw the messages first, so they are not \Recent here (see
    // rfc3501_2_3_2_recent).
    run(&mut h.session().await, "f SELECT INBOX").await;
    let mut s = h.session().await;
    run(&mut s, "f0 SELECT INBOX").await;
    let out = run(&mut s, "f1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await;
    assert!(out.contains("BODY[HEADER.FIELDS (SUBJECT)] {19}\r\nSubject: Budget\r\n\r\n"), "{out}");
    let out = run(&mut s, "f2 FETCH 1:* (FLAGS)").await;
    assert!(out.contains("* 1 FETCH (FLAGS ())") && out.contains("* 2 FETCH (FLAGS ())"), "{out}");
    let out = run(&mut s, "f3 FETCH 1 (BODY[TEXT])").await;
    assert!(out.contains("BODY[TEXT] {16}\r\nnumbers inside\r\n") && out.contains("FLAGS (\\Seen)"), "{out}");
    let out = run(&mut s, "f4 UID FETCH 2 (FLAGS)").await;
    assert!(out.contains("* 2 FETCH (UID 2 FLAGS ())"), "{out}");
    let out = run(&mut s, "f5 FETCH 1 (ENVELOPE)").await;
    assert!(out.contains("ENVELOPE (NIL \"Budget\" ((\"Ann\" NIL \"ann\" \"example.org\"))"), "{out}");
    assert!(run(&mut s, "f6 FETCH 1 (BODY.PEEK[3])").await.contains("BODY[3] NIL"));
    assert!(run(&mut s, "f7 FETCH 1 (BODY.PEEK[]<0.4>)").await.contains("BODY[]<0> {4}\r\nFrom"));

    assert_eq!(tagged_status(&run(&mut s, "g1 SEARCH UNSEEN").await, "g1"), "g1 OK SEARCH completed");
    assert!(run(&mut s, "g2 SEARCH UNSEEN").await.contains("* SEARCH 2\r\n"));
    assert!(run(&mut s, "g3 SEARCH FROM ann SUBJECT budget").await.contains("* SEARCH 1\r\n"));
    assert!(run(&mut s, "g4 UID SEARCH OR SEEN BODY noon").await.contains("* SEARCH 1 2\r\n"));
    assert!(run(&mut s, "g5 SEARCH CHARSET UTF-8 TEXT NOON").await.contains("* SEARCH 2\r\n"));
    assert!(run(&mut s, "g6 SEARCH CHARSET KOI8-R ALL").await.contains("g6 NO [BADCHARSET"));
    assert!(run(&mut s, "g7 SEARCH 2:* NOT SEEN").await.contains("* SEARCH 2\r\n"));

    let out = run(&mut s, "h1 STORE 2 +FLAGS (\\Answered $Later)").await;
    assert!(out.contains("* 2 FETCH (FLAGS (\\Answered $Later))"), "{out}");
    let out = run(&mut s, "h2 STORE 2 -FLAGS.SILENT ($Later)").await;
    assert!(!out.contains("FETCH") && out.contains("h2 OK"), "{out}");
    assert!(run(&mut s, "h3 UID STORE 2 FLAGS (\\Draft)").await.contains("* 2 FETCH (UID 2 FLAGS (\\Draft))"));

    let out = run(&mut s, "i1 COPY 1:2 Archive").await;
    assert!(out.contains("i1 OK [COPYUID ") && out.contains(" 1,2 1,2]"), "{out}");
    assert!(run(&mut s, "i2 COPY 1 Nope").await.starts_with("i2 NO [TRYCREATE]"));
    let out = run(&mut s, "i3 UID MOVE 2 Trash").await;
    assert!(out.contains("* OK [COPYUID ") && out.contains("* 2 EXPUNGE") && out.contains("i3 OK"), "{out}");
    run(&mut s, "j1 STORE 1 +FLAGS (\\Deleted)").await;
    let out = run(&mut s, "j2 UID EXPUNGE 5").await;
    assert!(!out.contains("EXPUNGE\r\n* ") && !out.contains("* 1 EXPUNGE"), "UID EXPUNGE outside the set: {out}");
    assert!(run(&mut s, "j3 EXPUNGE").await.contains("* 1 EXPUNGE"));
    assert!(run(&mut s, "j4 CLOSE").await.starts_with("j4 OK"));
    assert!(run(&mut s, "j5 FETCH 1 FLAGS").await.starts_with("j5 BAD"));
    let idx =
        h.backend.index(&UserName::parse(USER).unwrap(), &MailboxName::parse("Archive").unwrap()).unwrap().unwrap();
    assert_eq!(idx.messages.len(), 2);
}

#[tokio::test]
async fn malformed_commands_get_bad_and_never_panic() {
    let h = harness();
    let mut s = h.session().await;
    run(&mut s, "z0 SELECT INBOX").await;
    for (cmd, want) in [
        ("z1 FROBNICATE", "z1 BAD"),
        ("z2 FETCH", "z2 BAD"),
        ("z3 FETCH 1 (NOSUCHITEM)", "z3 BAD"),
        ("z4 FETCH 0 FLAGS", "z4 BAD"),
        ("z5 FETCH 99 FLAGS", "z5 BAD"),
        ("z6 STORE 1 +FLAGS", "z6 BAD"),
        ("z7 SEARCH", "z7 BAD"),
        ("z8 SELECT", "z8 BAD"),
        ("z9 LOGIN again", "z9 BAD"),
        ("* NOOP", "* BAD"),
        ("", "* BAD"),
        ("y1 FETCH 1:4294967295 FLAGS", "y1 "),
        ("y2 SEARCH UID 1:*,*:1,999999999", "y2 OK"),
        ("y3 SEARCH NOT NOT NOT NOT ALL", "y3 OK"),
    ] {
        let out = run(&mut s, cmd).await;
        assert!(out.lines().any(|l| l.starts_with(want)), "{cmd:?}: {out}");
    }
    let (out, _) = s.input(b"\xff\xfe garbage\r\n").await;
    assert!(text(&out).starts_with("* BAD"));
}

#[tokio::test]
async fn rfc3501_6_3_5_rename_inbox_moves_its_messages() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    h.deliver("Subject: two\r\n\r\n2\r\n").await;
    let mut s = h.session().await;
    assert!(run(&mut s, "r1 RENAME INBOX Old").await.starts_with("r1 OK"));
    assert!(run(&mut s, "r2 SELECT INBOX").await.contains("* 0 EXISTS"));
    let out = run(&mut s, "r3 SELECT Old").await;
    assert!(out.contains("* 2 EXISTS"), "{out}");
    assert!(run(&mut s, "r4 FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await.contains("Subject: two"));
    assert!(run(&mut s, "r5 RENAME INBOX Old").await.starts_with("r5 NO"), "target exists");
    h.deliver("Subject: three\r\n\r\n3\r\n").await;
    assert!(run(&mut s, "r6 STATUS INBOX (MESSAGES)").await.contains("MESSAGES 1"));
}

#[tokio::test]
async fn rfc3501_2_3_2_recent() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    h.deliver("Subject: two\r\n\r\n2\r\n").await;
    let (mut a, mut b, mut c) = (h.session().await, h.session().await, h.session().await);
    // STATUS and EXAMINE look without claiming.
    assert!(run(&mut a, "a0 STATUS INBOX (RECENT)").await.contains("(RECENT 2)"));
    assert!(run(&mut c, "c0 EXAMINE INBOX").await.contains("* 2 RECENT\r\n"));
    // The first SELECT claims them: recent there only.
    assert!(run(&mut a, "a1 SELECT INBOX").await.contains("* 2 RECENT\r\n"));
    assert!(run(&mut b, "b1 SELECT INBOX").await.contains("* 0 RECENT\r\n"));
    assert!(run(&mut a, "a2 FETCH 1 (FLAGS)").await.contains("* 1 FETCH (FLAGS (\\Recent))"));
    assert!(run(&mut b, "b2 FETCH 1 (FLAGS)").await.contains("* 1 FETCH (FLAGS ())"));
    assert!(run(&mut a, "a3 SEARCH RECENT").await.contains("* SEARCH 1 2\r\n"));
    assert!(run(&mut b, "b3 SEARCH OLD").await.contains("* SEARCH 1 2\r\n"));
    assert!(run(&mut b, "b4 STATUS INBOX (RECENT)").await.contains("(RECENT 0)"));
    // New mail goes to the first session told about it, with RECENT after EXISTS.
    h.deliver("Subject: three\r\n\r\n3\r\n").await;
    assert!(run(&mut b, "b5 NOOP").await.contains("* 3 EXISTS\r\n* 1 RECENT\r\n"));
    assert!(run(&mut a, "a4 NOOP").await.contains("* 3 EXISTS\r\n* 2 RECENT\r\n"));
    run(&mut b, "b6 STORE 3 +FLAGS.SILENT (\\Seen)").await;
    assert!(run(&mut b, "b7 SEARCH NEW").await.contains("* SEARCH\r\n"));
    assert!(run(&mut b, "b8 SEARCH RECENT").await.contains("* SEARCH 3\r\n"));
    assert!(run(&mut a, "a5 SEARCH NEW").await.contains("* SEARCH 1 2\r\n"));
    // IMAP4rev2 has no \Recent.
    run(&mut a, "a6 ENABLE IMAP4rev2").await;
    assert!(run(&mut a, "a7 FETCH 1 (FLAGS)").await.contains("* 1 FETCH (FLAGS ())"));
}

#[tokio::test]
async fn rfc3501_7_2_6_a_new_keyword_is_in_flags_before_any_message_shows_it() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\nbody\r\n").await;
    let mut s = h.session().await;
    let mut other = h.session().await;
    run(&mut s, "s1 SELECT INBOX").await;
    run(&mut other, "o1 SELECT INBOX").await;
    let out = run(&mut s, "s2 STORE 1 +FLAGS ($hello)").await;
    let flags = out.find("* FLAGS (").unwrap_or_else(|| panic!("no FLAGS: {out}"));
    assert!(out[flags..].starts_with("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $hello)"), "{out}");
    assert!(flags < out.find("* 1 FETCH").expect("the new flags"), "FLAGS first: {out}");
    // Another session hears of it before the flag change that shows it.
    let out = run(&mut other, "o2 NOOP").await;
    assert!(out.find("$hello)\r\n").unwrap() < out.find("* 1 FETCH").unwrap(), "{out}");
    // And a new SELECT lists it.
    assert!(run(&mut other, "o3 SELECT INBOX").await.contains("\\Draft $hello)"));
    assert!(!run(&mut s, "s3 FETCH 1 FLAGS").await.contains("* FLAGS"), "announced once");
}

#[tokio::test]
async fn id_fields_of_a_front_node_are_kept_before_login_only() {
    let h = harness();
    let mut s: Session<StoreBackend> = Session::new(offer());
    let out = run(&mut s, r#"i1 ID ("x-originating-ip" "192.0.2.9" "x-mailhost" "apollo" "name" "frontd")"#).await;
    assert!(out.contains("i1 OK"), "{out}");
    assert_eq!(s.proxy_hints().mailhost.as_deref(), Some("apollo"));
    assert_eq!(s.proxy_hints().client_ip, Some("192.0.2.9".parse().unwrap()));
    let mut s = h.session().await;
    run(&mut s, r#"i2 ID ("x-mailhost" "zeus")"#).await;
    assert_eq!(s.proxy_hints().mailhost, None, "ID after login changes nothing");
}
