//! The IMAP session without sockets: commands as bytes in, responses out, over a real
//! store (no replication). Grouped by what RFC 3501/9051 require.

use std::sync::Arc;

use super::backend::{Backend, StoreBackend};
use super::session::{Offer, Outcome, Session};
use crate::mailstore::{MailOp, MailboxName, OpId, Store, UserName};

struct Harness {
    _dir: tempfile::TempDir,
    backend: StoreBackend,
}

const USER: &str = "alice@example.edu";

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("mail"), "g").unwrap();
    Harness { _dir: dir, backend: StoreBackend::new(store) }
}

fn offer() -> Offer {
    Offer { starttls: false, plaintext_auth: true, append_limit: 1 << 20 }
}

impl Harness {
    async fn session(&self) -> Session<StoreBackend> {
        let mut s = Session::new(offer());
        let (out, outcome) = s.input(b"a0 LOGIN alice@example.edu secret\r\n").await;
        assert!(out.is_empty());
        let Outcome::Login { tag, creds } = outcome else { panic!("{outcome:?}") };
        assert_eq!((creds.authcid.as_str(), creds.password.as_str()), (USER, "secret"));
        let (out, _) = s.logged_in(&tag, UserName::parse(USER).unwrap(), self.backend.clone()).await;
        assert!(text(&out).starts_with("a0 OK [CAPABILITY"), "{}", text(&out));
        s
    }

    async fn deliver(&self, body: &str) {
        let op = MailOp::Deliver { recipients: vec![USER.into()], internal_date: 1_700_000_000, message: body.into() };
        self.backend.propose(OpId::digest(&[body.as_bytes()]), op).await.unwrap();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn run(s: &mut Session<StoreBackend>, cmd: &str) -> String {
    let (out, outcome) = s.input(format!("{cmd}\r\n").as_bytes()).await;
    assert!(matches!(outcome, Outcome::Continue | Outcome::Logout), "{cmd}: {outcome:?}");
    text(&out)
}

fn tagged_status(out: &str, tag: &str) -> String {
    out.lines().find(|l| l.starts_with(&format!("{tag} "))).unwrap_or_else(|| panic!("no {tag} in {out}")).to_string()
}

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
    assert!(out.starts_with("p1 OK [APPENDUID "), "{out}");
    assert!(run(&mut s, "p2 APPEND Nope {1+}\r\nx").await.starts_with("p2 NO [TRYCREATE]"));
    let mut small = Session::<StoreBackend>::new(Offer { append_limit: 4, ..offer() });
    let (_, o) = small.input(b"q LOGIN alice@example.edu x\r\n").await;
    let Outcome::Login { tag, .. } = o else { panic!() };
    small.logged_in(&tag, UserName::parse(USER).unwrap(), h.backend.clone()).await;
    assert!(run(&mut small, "p3 APPEND INBOX {10+}\r\n0123456789").await.starts_with("p3 NO [TOOBIG]"));
    let out = run(&mut s, "p4 SELECT INBOX").await;
    assert!(out.contains("* 1 EXISTS") && out.contains("[UIDVALIDITY ") && out.contains("p4 OK [READ-WRITE]"), "{out}");
    let out = run(&mut s, "p5 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)").await;
    assert!(
        out.contains("FLAGS (\\Seen $Work)")
            && out.contains("\"14-Mar-2025 14:09:26 +0000\"")
            && out.contains("RFC822.SIZE 21"),
        "{out}"
    );
    let out = run(&mut s, "p6 EXAMINE INBOX").await;
    assert!(out.starts_with("* OK [CLOSED]") && out.contains("p6 OK [READ-ONLY]"), "{out}");
    assert!(run(&mut s, "p7 STORE 1 +FLAGS (\\Flagged)").await.starts_with("p7 NO [READ-ONLY]"));
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
async fn rfc7162_condstore() {
    let h = harness();
    h.deliver("Subject: one\r\n\r\n1\r\n").await;
    h.deliver("Subject: two\r\n\r\n2\r\n").await;
    run(&mut h.session().await, "k SELECT INBOX").await; // not \Recent in s
    let mut s = h.session().await;
    assert!(run(&mut s, "k0 CAPABILITY").await.contains("CONDSTORE"));
    assert!(run(&mut s, "k1 ENABLE CONDSTORE").await.contains("* ENABLED CONDSTORE"));
    let out = run(&mut s, "k2 SELECT INBOX").await;
    let highest: u64 = out
        .split("[HIGHESTMODSEQ ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let out = run(&mut s, "k3 FETCH 1:* (MODSEQ)").await;
    assert!(out.contains("* 1 FETCH (MODSEQ (") && out.contains("* 2 FETCH (MODSEQ ("), "{out}");
    // A STORE raises the message's mod-sequence above the mailbox's old highest.
    let out = run(&mut s, "k4 STORE 1 +FLAGS.SILENT (\\Seen)").await;
    assert!(out.contains("* 1 FETCH (MODSEQ ("), "{out}");
    let out = run(&mut s, &format!("k5 FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")).await;
    assert!(out.contains("* 1 FETCH (FLAGS (\\Seen) MODSEQ (") && !out.contains("* 2 FETCH"), "{out}");
    // UNCHANGEDSINCE below the current mod-sequence fails for that message only.
    let out = run(&mut s, &format!("k6 STORE 1,2 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)")).await;
    assert!(out.contains("k6 OK [MODIFIED 1]") && out.contains("* 2 FETCH (FLAGS (\\Flagged) MODSEQ ("), "{out}");
    assert!(run(&mut s, "k7 SEARCH FLAGGED").await.contains("* SEARCH 2\r\n"));
    let out = run(&mut s, &format!("k8 SEARCH MODSEQ {}", highest + 1)).await;
    assert!(out.contains("* SEARCH 1 2 (MODSEQ "), "{out}");
    assert!(run(&mut s, "k9 STATUS INBOX (HIGHESTMODSEQ)").await.contains("HIGHESTMODSEQ "));
    // Another session's flag change arrives with its MODSEQ.
    let mut other = h.session().await;
    run(&mut other, "o1 SELECT INBOX").await;
    run(&mut other, "o2 STORE 2 -FLAGS (\\Flagged)").await;
    assert!(run(&mut s, "k10 NOOP").await.contains("* 2 FETCH (UID 2 FLAGS () MODSEQ ("));
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
async fn rfc7162_qresync() {
    let h = harness();
    for k in 0..5 {
        h.deliver(&format!("Subject: m{k}\r\n\r\n{k}\r\n")).await;
    }
    let mut s = h.session().await;
    assert!(run(&mut s, "v0 CAPABILITY").await.contains("QRESYNC"));
    assert!(run(&mut s, "v1 SELECT INBOX (QRESYNC (1 1))").await.starts_with("v1 BAD"), "needs ENABLE");
    assert!(run(&mut s, "v2 ENABLE QRESYNC").await.contains("* ENABLED QRESYNC"));
    let out = run(&mut s, "v3 SELECT INBOX").await;
    let field = |out: &str, name: &str| -> u64 {
        out.split(&format!("[{name} ")).nth(1).and_then(|r| r.split(']').next()).and_then(|n| n.parse().ok()).unwrap()
    };
    let (uv, modseq) = (field(&out, "UIDVALIDITY"), field(&out, "HIGHESTMODSEQ"));
    // Another session expunges UIDs 2 and 4 and flags UID 5.
    let mut other = h.session().await;
    run(&mut other, "o1 SELECT INBOX").await;
    run(&mut other, "o2 STORE 2,4 +FLAGS.SILENT (\\Deleted)").await;
    run(&mut other, "o3 EXPUNGE").await;
    run(&mut other, "o4 UID STORE 5 +FLAGS (\\Flagged)").await;
    // With QRESYNC enabled, expunges arrive as VANISHED, not EXPUNGE.
    let out = run(&mut s, "v4 NOOP").await;
    assert!(out.contains("* VANISHED 2,4") && !out.contains("EXPUNGE"), "{out}");
    // A reconnecting client learns what vanished and what changed since its modseq.
    let mut again = h.session().await;
    run(&mut again, "w0 ENABLE QRESYNC").await;
    let out = run(&mut again, &format!("w1 SELECT INBOX (QRESYNC ({uv} {modseq}))")).await;
    assert!(out.contains("* VANISHED (EARLIER) 2,4"), "{out}");
    assert!(out.contains("* 3 FETCH (UID 5 FLAGS (\\Flagged) MODSEQ ("), "{out}");
    assert!(!out.contains("UID 1 FLAGS"), "unchanged messages are not resent: {out}");
    // A wrong UIDVALIDITY gets a plain SELECT.
    let out = run(&mut again, &format!("w2 SELECT INBOX (QRESYNC ({} {modseq}))", uv + 1)).await;
    assert!(!out.contains("VANISHED") && out.contains("w2 OK"), "{out}");
    let out = run(&mut again, &format!("w3 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")).await;
    assert!(out.contains("* VANISHED (EARLIER) 2,4") && out.contains("UID 5"), "{out}");
    assert!(run(&mut again, &format!("w4 FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"))
        .await
        .contains("w4 BAD"));
}

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
    // Work and the five special-use mailboxes subscribed at first login (INBOX was made
    // by the delivery before it).
    assert_eq!(lists.len(), 6, "{out}");
    assert!(lists.iter().all(|l| l.contains("\\Subscribed")) && !out.contains("\"INBOX\""), "{out}");
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

#[tokio::test]
async fn rfc3516_binary() {
    let h = harness();
    h.deliver(
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
         --b\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b\r\nContent-Transfer-Encoding: x-weird\r\n\r\nz\r\n--b--\r\n",
    )
    .await;
    let mut s = h.session().await;
    assert!(run(&mut s, "y0 CAPABILITY").await.contains("BINARY"));
    run(&mut s, "y1 SELECT INBOX").await;
    let out = run(&mut s, "y2 FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])").await;
    assert!(out.contains("BINARY[2] ~{4}\r\n\0\x01\x02\x03 BINARY.SIZE[2] 4)"), "{out:?}");
    let out = run(&mut s, "y3 FETCH 1 (BINARY.PEEK[1]<0.3>)").await;
    assert!(out.contains("BINARY[1]<0> {3}\r\nhel)"), "{out:?}");
    assert!(!run(&mut s, "y4 FETCH 1 (FLAGS)").await.contains("\\Seen"), "PEEK leaves \\Seen alone");
    assert!(run(&mut s, "y5 FETCH 1 (BINARY[3])").await.contains("y5 NO [UNKNOWN-CTE]"));
    assert!(run(&mut s, "y6 FETCH 1 (BINARY[1])").await.contains("\\Seen"), "BINARY without PEEK sets \\Seen");
    assert!(run(&mut s, "y7 FETCH 1 (BINARY.PEEK[9])").await.contains("BINARY[9] NIL"));
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

/// A backend whose message reads fail the way the test says.
struct FailingReads {
    inner: StoreBackend,
    fail: fn(u32) -> super::backend::BackendError,
}

impl Backend for FailingReads {
    fn mailboxes(&self, user: &UserName) -> Vec<MailboxName> {
        self.inner.mailboxes(user)
    }
    fn subscriptions(&self, user: &UserName) -> Vec<String> {
        self.inner.subscriptions(user)
    }
    fn metadata(
        &self,
        user: &UserName,
        mailbox: &str,
    ) -> Result<Option<crate::mailstore::metadata::Entries>, super::backend::BackendError> {
        self.inner.metadata(user, mailbox)
    }
    fn index(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
    ) -> Result<Option<Arc<crate::mailstore::index::MailboxIndex>>, super::backend::BackendError> {
        self.inner.index(user, mailbox)
    }
    fn message(
        &self,
        _: &UserName,
        _: &MailboxName,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, super::backend::BackendError> {
        Err((self.fail)(uid))
    }
    async fn propose(
        &self,
        op_id: OpId,
        op: MailOp,
    ) -> Result<crate::mailstore::MailResponse, super::backend::BackendError> {
        self.inner.propose(op_id, op).await
    }
    fn claim_recent(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        index: &crate::mailstore::index::MailboxIndex,
        take: bool,
    ) -> u32 {
        self.inner.claim_recent(user, mailbox, index, take)
    }
}

#[tokio::test]
async fn rfc5530_read_failures_are_answered_by_kind() {
    use super::backend::BackendError as E;
    let h = harness();
    h.deliver("Subject: one\r\n\r\nbody\r\n").await;
    type Case = (fn(u32) -> E, &'static str, bool);
    let cases: [Case; 3] = [
        (|uid| E::Corrupt { uid }, "f NO [SERVERBUG] message UID 1", false),
        (|_| E::Unavailable("store busy".into()), "f NO [UNAVAILABLE] store busy", false),
        (|_| E::NotLeader { leader: Some(2) }, "f NO [UNAVAILABLE]", true),
    ];
    for (fail, want, bye) in cases {
        let mut s = Session::new(offer());
        let (_, outcome) = s.input(b"a0 LOGIN alice@example.edu secret\r\n").await;
        let Outcome::Login { tag, .. } = outcome else { panic!("{outcome:?}") };
        let backend = FailingReads { inner: h.backend.clone(), fail };
        s.logged_in(&tag, UserName::parse(USER).unwrap(), backend).await;
        assert!(text(&s.input(b"s SELECT INBOX\r\n").await.0).contains("s OK"));
        let (out, outcome) = s.input(b"f FETCH 1 BODY[]\r\n").await;
        let out = text(&out);
        assert!(tagged_status(&out, "f").starts_with(want), "{want}: {out}");
        assert!(!out.contains("* 1 FETCH"), "nothing of an unreadable message is sent: {out}");
        assert_eq!(out.contains("* BYE [UNAVAILABLE]"), bye, "{out}");
        assert_eq!(matches!(outcome, Outcome::Logout), bye, "{outcome:?}");
    }
}

#[tokio::test]
async fn rfc5530_store_refusals_carry_their_codes() {
    let h = harness();
    let mut s = h.session().await;
    assert!(run(&mut s, "c1 CREATE Projects").await.contains("c1 OK"));
    assert!(tagged_status(&run(&mut s, "c2 CREATE Projects").await, "c2").starts_with("c2 NO [ALREADYEXISTS]"));
    assert!(tagged_status(&run(&mut s, "c3 DELETE Nowhere").await, "c3").starts_with("c3 NO [NONEXISTENT]"));
    assert!(tagged_status(&run(&mut s, "c4 DELETE INBOX").await, "c4").starts_with("c4 NO [CANNOT]"));
}

#[tokio::test]
async fn a_search_that_cannot_read_a_message_fails_instead_of_missing_it() {
    use super::backend::BackendError as E;
    let h = harness();
    h.deliver("Subject: one\r\n\r\nneedle\r\n").await;
    let mut s = Session::new(offer());
    let (_, outcome) = s.input(b"a0 LOGIN alice@example.edu secret\r\n").await;
    let Outcome::Login { tag, .. } = outcome else { panic!("{outcome:?}") };
    s.logged_in(
        &tag,
        UserName::parse(USER).unwrap(),
        FailingReads { inner: h.backend.clone(), fail: |uid| E::Corrupt { uid } },
    )
    .await;
    assert!(text(&s.input(b"s SELECT INBOX\r\n").await.0).contains("s OK"));
    let out = text(&s.input(b"f SEARCH BODY needle\r\n").await.0);
    assert!(tagged_status(&out, "f").starts_with("f NO [SERVERBUG]"), "{out}");
    assert!(!out.contains("* SEARCH"), "no answer that leaves the message out: {out}");
    // Criteria that need no message text still work.
    let out = text(&s.input(b"g SEARCH ALL\r\n").await.0);
    assert!(out.contains("* SEARCH 1") && tagged_status(&out, "g").starts_with("g OK"), "{out}");
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
async fn rfc3516_4_4_append_of_binary_content_never_puts_nul_in_a_plain_literal() {
    let h = harness();
    let mut s = h.session().await;
    let msg = b"From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\r\n\r\n";
    let mut cmd = format!("a1 APPEND INBOX ~{{{}+}}\r\n", msg.len()).into_bytes();
    cmd.extend_from_slice(msg);
    cmd.extend_from_slice(b"\r\n");
    let (out, _) = s.input(&cmd).await;
    assert!(text(&out).starts_with("a1 OK [APPENDUID"), "{}", text(&out));
    run(&mut s, "a2 SELECT INBOX").await;
    for c in ["a3 FETCH 1 (BODY.PEEK[1])", "a4 FETCH 1 (BODY.PEEK[])"] {
        let (out, _) = s.input(format!("{c}\r\n").as_bytes()).await;
        assert!(!out.contains(&0), "{c}: a NUL in a literal: {}", text(&out));
        assert!(text(&out).contains("OK FETCH completed"), "{c}");
    }
    let (out, _) = s.input(b"a5 FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])\r\n").await;
    let want = [&b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n"[..], b"\x00-\xe4\r\n\r\n)\r\n"].concat();
    assert!(out.starts_with(&want), "BINARY gives back the octets: {}", text(&out));
}

#[tokio::test]
async fn rfc7162_3_1_condstore_enabled_after_select_reports_highestmodseq_and_esearch_modseq_of_returned() {
    let h = harness();
    for k in 1..=4 {
        h.deliver(&format!("Subject: {k}\r\n\r\nbody\r\n")).await;
    }
    let mut s = h.session().await;
    run(&mut s, "s1 SELECT INBOX").await;
    let out = run(&mut s, "s2 FETCH 1 MODSEQ").await;
    assert!(out.starts_with("* OK [HIGHESTMODSEQ "), "the first CONDSTORE-enabling command: {out}");
    assert!(!run(&mut s, "s3 FETCH 1 MODSEQ").await.contains("HIGHESTMODSEQ"), "only the first");
    let mut modseq = std::collections::HashMap::new();
    for n in [1, 3, 2, 4] {
        let out = run(&mut s, &format!("t{n} STORE {n} +FLAGS \\Seen")).await;
        let m: u64 = out.split("MODSEQ (").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
        modseq.insert(n, m);
    }
    let esearch = |out: String| out.lines().find(|l| l.starts_with("* ESEARCH")).unwrap().to_string();
    let min = esearch(run(&mut s, "e1 SEARCH RETURN (MIN) 1:3 MODSEQ \"/flags/\\\\seen\" all 1").await);
    assert!(min.ends_with(&format!("MIN 1 MODSEQ {}", modseq[&1])), "MIN: the min's modseq: {min}");
    let max = esearch(run(&mut s, "e2 SEARCH RETURN (MAX) 1:3 MODSEQ \"/flags/\\\\seen\" all 1").await);
    assert!(max.ends_with(&format!("MAX 3 MODSEQ {}", modseq[&3])), "MAX: the max's modseq: {max}");
    let all = esearch(run(&mut s, "e3 SEARCH RETURN () 1:3 MODSEQ \"/flags/\\\\seen\" all 1").await);
    assert!(all.ends_with(&format!("ALL 1:3 MODSEQ {}", modseq[&2])), "ALL: the highest: {all}");
}

#[tokio::test]
async fn rfc5256_3_sort_by_subject_size_and_reverse_with_search_criteria() {
    let h = harness();
    h.deliver("Subject: Re: b\r\nFrom: zed@x\r\n\r\nbody bigger than the others\r\n").await;
    h.deliver("Subject: a\r\nFrom: amy@x\r\n\r\nbody\r\n").await;
    h.deliver("Subject: [list] Fwd: b\r\nFrom: bob@x\r\n\r\nbody\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "s1 SELECT INBOX").await;
    assert!(
        run(&mut s, "s2 SORT (SUBJECT) US-ASCII ALL").await.starts_with("* SORT 2 1 3\r\n"),
        "base subjects a, b, b"
    );
    assert!(
        run(&mut s, "s3 SORT (REVERSE SUBJECT) UTF-8 ALL").await.starts_with("* SORT 1 3 2\r\n"),
        "ties keep mailbox order"
    );
    assert!(run(&mut s, "s4 SORT (FROM) UTF-8 ALL").await.starts_with("* SORT 2 3 1\r\n"));
    assert!(run(&mut s, "s5 SORT (SIZE) UTF-8 SUBJECT b").await.starts_with("* SORT 3 1\r\n"), "only matches");
    assert!(run(&mut s, "s6 UID SORT (ARRIVAL) UTF-8 ALL").await.starts_with("* SORT 1 2 3\r\n"));
    assert!(run(&mut s, "s7 SORT (SUBJECT) KOI8-R ALL").await.contains("s7 NO [BADCHARSET"));
    assert!(run(&mut s, "s8 CAPABILITY").await.contains(" SORT SORT=DISPLAY"));
}

#[tokio::test]
async fn rfc5256_4_thread_references_and_orderedsubject() {
    let h = harness();
    h.deliver("Message-ID: <a@x>\r\nSubject: hello\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n").await;
    h.deliver("Message-ID: <z@x>\r\nSubject: other\r\nDate: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\nbody\r\n").await;
    h.deliver("Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: hello\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nbody\r\n").await;
    let mut s = h.session().await;
    run(&mut s, "t1 SELECT INBOX").await;
    assert!(run(&mut s, "t2 THREAD REFERENCES US-ASCII ALL").await.starts_with("* THREAD (1 3)(2)\r\n"));
    assert!(run(&mut s, "t3 UID THREAD ORDEREDSUBJECT UTF-8 ALL").await.starts_with("* THREAD (1 3)(2)\r\n"));
    assert!(run(&mut s, "t4 THREAD REFERENCES UTF-8 SUBJECT other").await.starts_with("* THREAD (2)\r\n"));
    assert!(run(&mut s, "t5 THREAD REFS UTF-8 ALL").await.contains("t5 BAD"));
    assert!(run(&mut s, "t6 CAPABILITY").await.contains("THREAD=ORDEREDSUBJECT THREAD=REFERENCES"));
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
    assert!(run(&mut s, "c6 COMPRESS DEFLATE").await.starts_with("c6 NO [COMPRESSIONACTIVE]"));
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

#[tokio::test]
async fn rfc5464_metadata_of_mailboxes_and_the_server() {
    let h = harness();
    let mut s = h.session().await;
    let caps = run(&mut s, "m0 CAPABILITY").await;
    assert!(caps.contains(" METADATA ") && caps.contains(" METADATA-SERVER"), "{caps}");
    // Server entries (mailbox ""), a mailbox's entries, and NIL removing one.
    assert!(run(&mut s, "m1 SETMETADATA \"\" (/private/vendor/x/theme \"dark\")").await.starts_with("m1 OK"));
    let out = run(&mut s, "m2 SETMETADATA INBOX (/shared/Comment \"team inbox\" /private/comment {3+}\r\nmy!)").await;
    assert!(out.starts_with("m2 OK"), "{out}");
    let out = run(&mut s, "m3 GETMETADATA INBOX (/shared/comment /private/comment /private/none)").await;
    assert!(
        out.starts_with(
            "* METADATA \"INBOX\" (\"/private/comment\" \"my!\" \"/shared/comment\" \"team inbox\")\r\nm3 OK"
        ),
        "{out}"
    );
    let out = run(&mut s, "m4 GETMETADATA \"\" /private/vendor/x/theme").await;
    assert!(out.starts_with("* METADATA \"\" (\"/private/vendor/x/theme\" \"dark\")"), "{out}");
    assert!(run(&mut s, "m5 SETMETADATA INBOX (/shared/comment NIL)").await.starts_with("m5 OK"));
    assert!(!run(&mut s, "m6 GETMETADATA INBOX (/shared/comment)").await.contains("* METADATA"));
    // §4.2.2 DEPTH and §4.2.1 MAXSIZE with LONGENTRIES.
    run(&mut s, "m7 SETMETADATA \"\" (/private/vendor/x/a \"1\" /private/vendor/x/a/b \"long value\")").await;
    let out = run(&mut s, "m8 GETMETADATA (DEPTH 1) \"\" (/private/vendor/x)").await;
    assert!(out.contains("/private/vendor/x/a\" \"1\"") && out.contains("theme") && !out.contains("a/b"), "{out}");
    let out = run(&mut s, "m9 GETMETADATA (DEPTH infinity MAXSIZE 4) \"\" (/private/vendor/x)").await;
    assert!(!out.contains("a/b") && out.contains("m9 OK [METADATA LONGENTRIES 10]"), "{out}");
    // RFC 6154 §4: the special-use attribute, read-only.
    let out = run(&mut s, "m10 GETMETADATA Trash /private/specialuse").await;
    assert!(out.contains("(\"/private/specialuse\" \"\\\\Trash\")"), "{out}");
    assert!(run(&mut s, "m11 SETMETADATA Trash (/private/specialuse \"\\\\Junk\")")
        .await
        .starts_with("m11 NO [CANNOT]"));
    // Errors: no such mailbox, invalid names, bounds.
    assert!(run(&mut s, "m12 GETMETADATA Nowhere /private/comment").await.starts_with("m12 NO [NONEXISTENT]"));
    assert!(run(&mut s, "m13 SETMETADATA INBOX (/other/x \"v\")").await.starts_with("m13 BAD"));
    assert!(run(&mut s, "m14 GETMETADATA INBOX /private/*").await.starts_with("m14 BAD"));
    let big = "x".repeat(crate::mailstore::metadata::VALUE_MAX_BYTES + 1);
    let out = run(&mut s, &format!("m15 SETMETADATA INBOX (/private/big {{{}+}}\r\n{big})", big.len())).await;
    assert!(out.starts_with("m15 NO [METADATA MAXSIZE 65536]"), "{out}");
    let many: String = (0..=crate::mailstore::metadata::ENTRIES_MAX).map(|k| format!(" /private/k{k} \"v\"")).collect();
    let out = run(&mut s, &format!("m16 SETMETADATA INBOX ({})", many.trim_start())).await;
    assert!(out.starts_with("m16 NO [METADATA TOOMANY]"), "{out}");
    // §5: a value holding NUL goes in and out as a literal8.
    let (out, _) = s.input(b"m24 SETMETADATA INBOX (/private/bin ~{3+}\r\na\0b)\r\n").await;
    assert!(text(&out).starts_with("m24 OK"), "{}", text(&out));
    let (out, _) = s.input(b"m25 GETMETADATA INBOX /private/bin\r\n").await;
    assert!(out.starts_with(b"* METADATA \"INBOX\" (\"/private/bin\" ~{3}\r\na\0b)\r\n"), "{}", text(&out));
    // Entries go with RENAME and are gone with DELETE.
    run(&mut s, "m17 CREATE Work").await;
    run(&mut s, "m18 SETMETADATA Work (/private/comment \"w\")").await;
    run(&mut s, "m19 RENAME Work Jobs").await;
    assert!(run(&mut s, "m20 GETMETADATA Jobs /private/comment").await.contains("\"w\""));
    run(&mut s, "m21 DELETE Jobs").await;
    run(&mut s, "m22 CREATE Jobs").await;
    assert!(!run(&mut s, "m23 GETMETADATA Jobs /private/comment").await.contains("* METADATA"));
}

#[tokio::test]
async fn rfc8970_preview_fetch_item() {
    let h = harness();
    h.deliver("Subject: lunch\r\n\r\nAre you free\r\non Friday?\r\n").await;
    let mut s = h.session().await;
    assert!(run(&mut s, "p0 CAPABILITY").await.contains(" PREVIEW"));
    run(&mut s, "p1 SELECT INBOX").await;
    let out = run(&mut s, "p2 FETCH 1 (UID PREVIEW)").await;
    assert!(out.starts_with("* 1 FETCH (UID 1 PREVIEW \"Are you free on Friday?\")\r\np2 OK"), "{out}");
    let out = run(&mut s, "p3 UID FETCH 1 (PREVIEW (LAZY) FLAGS)").await;
    assert!(out.contains("PREVIEW \"Are you free on Friday?\"") && out.contains("FLAGS ("), "{out}");
    assert!(!out.contains("\\Seen"), "a preview does not set \\Seen: {out}");
    assert!(run(&mut s, "p4 FETCH 1 (PREVIEW (FAST))").await.contains("p4 BAD"), "unknown modifier");
}
