//! EXPUNGE and UID EXPUNGE (RFC 3501 §6.4.3, RFC 4315 §2.1): the `\\Deleted` messages
//! removed through the group's log, and the view told which went.

use super::super::*;
use crate::imap::backend::Backend;
use crate::imap::search;
use crate::imap::view::Sync;
use imap_codec::imap_types::sequence::SequenceSet;

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn deleted_uids(&self, view: &View, within: Option<&SequenceSet>) -> Vec<u32> {
        let Ok(Some(idx)) = self.backend().index(self.user(), &view.mailbox) else { return Vec::new() };
        let max_uid = idx.messages.last().map_or(0, |m| m.uid);
        idx.messages
            .iter()
            .filter(|m| m.flags & flag::DELETED != 0)
            .filter(|m| within.is_none_or(|set| search::in_set(set, m.uid, max_uid)))
            .map(|m| m.uid)
            .collect()
    }

    pub(in crate::imap::session) async fn expunge(
        &mut self,
        within: Option<&SequenceSet>,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        let view = self.selected()?;
        if view.read_only {
            return Err(Refusal::No("[READ-ONLY] mailbox is read-only".into()));
        }
        let uids = self.deleted_uids(view, within);
        if !uids.is_empty() {
            let op = MailOp::Expunge { user: self.user().as_str().into(), mailbox: view.mailbox.as_str().into(), uids };
            self.propose(op).await?;
        }
        self.sync(out, Sync::Full);
        Ok(("EXPUNGE completed".into(), Outcome::Continue))
    }
}
