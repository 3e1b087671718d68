//! Mailbox management (RFC 3501 §6.3.3–6.3.7): CREATE with its superiors, DELETE, RENAME,
//! SUBSCRIBE and UNSUBSCRIBE, each one operation through the group's log.

use super::super::*;
use crate::imap::backend::Backend;
use imap_codec::imap_types::mailbox::Mailbox;

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) async fn create(&mut self, mailbox: &Mailbox<'_>) -> Answer {
        // `a/b/` declares that names will be made under `a/b`: it creates `a/b`
        // (RFC 3501 §6.3.3).
        let mailbox = match mailbox {
            Mailbox::Other(o) if o.as_ref().len() > 1 && o.as_ref().ends_with(b"/") => {
                let trimmed = o.as_ref()[..o.as_ref().len() - 1].to_vec();
                Mailbox::try_from(trimmed).map_err(|_| Refusal::No("invalid mailbox name".into()))?
            }
            _ => mailbox.clone(),
        };
        let name = mailbox_name(&mailbox, self.rev2).map_err(Refusal::No)?;
        if name.is_inbox() {
            return Err(Refusal::No("[ALREADYEXISTS] INBOX exists".into()));
        }
        self.create_superiors(&name).await?;
        let op = MailOp::CreateMailbox { user: self.user().as_str().into(), mailbox: name.as_str().into() };
        self.propose(op).await?;
        // RFC 8474 §4.1: the new mailbox's MAILBOXID in the tagged OK.
        match self.index_of(&name) {
            Ok(idx) => Ok((
                format!("[MAILBOXID ({})] CREATE completed", super::status::mailbox_id(idx.uid_validity)),
                Outcome::Continue,
            )),
            Err(_) => ok("CREATE completed"),
        }
    }

    pub(in crate::imap::session) async fn delete(&mut self, mailbox: &Mailbox<'_>) -> Answer {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        if self.view.as_ref().is_some_and(|v| v.mailbox == name) {
            self.view = None;
            self.contexts.clear();
        }
        let op = MailOp::DeleteMailbox { user: self.user().as_str().into(), mailbox: name.as_str().into() };
        self.propose(op).await?;
        ok("DELETE completed")
    }

    pub(in crate::imap::session) async fn rename(&mut self, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Answer {
        let from = mailbox_name(from, self.rev2).map_err(Refusal::No)?;
        let to = mailbox_name(to, self.rev2).map_err(Refusal::No)?;
        self.create_superiors(&to).await?;
        let op = MailOp::RenameMailbox {
            user: self.user().as_str().into(),
            from: from.as_str().into(),
            to: to.as_str().into(),
        };
        self.propose(op).await?;
        ok("RENAME completed")
    }

    /// Create the missing superiors of `name` (`a` and `a/b` for `a/b/c`), as RFC 3501
    /// §6.3.3 asks, so every level of a hierarchy a client made is a mailbox it can select.
    pub(in crate::imap::session) async fn create_superiors(&mut self, name: &MailboxName) -> Result<(), Refusal> {
        let existing = self.backend().mailboxes(self.user());
        let levels: Vec<usize> = name.as_str().match_indices('/').map(|(at, _)| at).collect();
        for at in levels {
            let parent = &name.as_str()[..at];
            if parent.eq_ignore_ascii_case("INBOX") || existing.iter().any(|m| m.as_str() == parent) {
                continue;
            }
            let op = MailOp::CreateMailbox { user: self.user().as_str().into(), mailbox: parent.into() };
            match self.propose(op).await {
                // Another session made it meanwhile: just as good.
                Err(Refusal::Rejected(Rejection::MailboxExists(_))) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    pub(in crate::imap::session) async fn subscribe(
        &mut self,
        mailbox: &Mailbox<'_>,
        on: bool,
    ) -> Result<(String, Outcome), Refusal> {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let op = MailOp::Subscribe { user: self.user().as_str().into(), mailbox: name.as_str().into(), subscribed: on };
        self.propose(op).await?;
        Ok((if on { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }.into(), Outcome::Continue))
    }
}
