//! RFC 5530 response codes for failed reads and refused writes.

use super::*;

/// A backend whose message reads fail the way the test says.
struct FailingReads {
    inner: StoreBackend,
    fail: fn(u32) -> crate::imap::backend::BackendError,
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
    ) -> Result<Option<crate::mailstore::metadata::Entries>, crate::imap::backend::BackendError> {
        self.inner.metadata(user, mailbox)
    }
    fn index(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
    ) -> Result<Option<Arc<crate::mailstore::index::MailboxIndex>>, crate::imap::backend::BackendError> {
        self.inner.index(user, mailbox)
    }
    fn message(
        &self,
        _: &UserName,
        _: &MailboxName,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, crate::imap::backend::BackendError> {
        Err((self.fail)(uid))
    }
    async fn propose(
        &self,
        op_id: OpId,
        op: MailOp,
    ) -> Result<crate::mailstore::MailResponse, crate::imap::backend::BackendError> {
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
    use crate::imap::backend::BackendError as E;
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
    assert_eq!(status_of(&run(&mut s, "c1 CREATE Projects").await, "c1").0, StatusKind::Ok);
    // imap-codec knows RFC 5530's codes only as "other" codes: their names are compared.
    for (cmd, want) in
        [("c2 CREATE Projects", "ALREADYEXISTS"), ("c3 DELETE Nowhere", "NONEXISTENT"), ("c4 DELETE INBOX", "CANNOT")]
    {
        let tag = cmd.split(' ').next().unwrap();
        let (kind, code) = status_of(&run(&mut s, cmd).await, tag);
        let name = match code {
            Some(Code::Other(other)) => String::from_utf8_lossy(other.inner()).into_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!((kind, name.as_str()), (StatusKind::No, want), "{cmd}");
    }
}

#[tokio::test]
async fn a_search_that_cannot_read_a_message_fails_instead_of_missing_it() {
    use crate::imap::backend::BackendError as E;
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
