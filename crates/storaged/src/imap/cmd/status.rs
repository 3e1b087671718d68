//! STATUS (RFC 3501 §6.3.10, RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 9051 DELETED):
//! counts of a mailbox from its index, never from its files.

use super::super::*;
use crate::imap::backend::Backend;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;

/// A `* STATUS` line for `items` (upper-case names) of a mailbox, named as the session
/// names it.
/// `recent` is how many of its messages no session has claimed yet.
pub(in crate::imap::session) fn status_line(
    name: &str,
    idx: &MailboxIndex,
    items: &[&str],
    recent: usize,
) -> Result<Vec<u8>, String> {
    let count = |bit: u8, set: bool| idx.messages.iter().filter(|m| (m.flags & bit != 0) == set).count();
    let mut parts = Vec::new();
    for item in items {
        parts.push(match *item {
            "MESSAGES" => format!("MESSAGES {}", idx.messages.len()),
            "RECENT" => format!("RECENT {recent}"),
            "UIDNEXT" => format!("UIDNEXT {}", idx.uid_next),
            "UIDVALIDITY" => format!("UIDVALIDITY {}", idx.uid_validity),
            "UNSEEN" => format!("UNSEEN {}", count(flag::SEEN, false)),
            "HIGHESTMODSEQ" => format!("HIGHESTMODSEQ {}", idx.highest_modseq.max(1)),
            "DELETED" => format!("DELETED {}", count(flag::DELETED, true)),
            "SIZE" => format!("SIZE {}", idx.messages.iter().map(|m| m.size).sum::<u64>()),
            "MAILBOXID" => format!("MAILBOXID ({})", mailbox_id(idx.uid_validity)),
            other => return Err(format!("unsupported STATUS item {other}")),
        });
    }
    let mut l = b"* STATUS ".to_vec();
    encode::mailbox(&mut l, name);
    l.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
    Ok(l)
}

impl<B: Backend> Session<B> {
    /// Messages of a mailbox that no session has claimed as `\Recent` (STATUS RECENT).
    pub(in crate::imap::session) fn unclaimed_recent(&self, name: &MailboxName, idx: &MailboxIndex) -> usize {
        let first = self.backend().claim_recent(self.user(), name, idx, false);
        idx.messages.iter().filter(|m| m.uid >= first).count()
    }

    pub(in crate::imap::session) fn status(
        &mut self,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        mailboxid: Option<bool>,
        out: &mut Vec<u8>,
    ) -> Answer {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let idx = self.index_of(&name)?;
        let mut names: Vec<&str> = items
            .iter()
            .map(|item| match item {
                StatusDataItemName::Messages => "MESSAGES",
                StatusDataItemName::Recent => "RECENT",
                StatusDataItemName::UidNext => "UIDNEXT",
                StatusDataItemName::UidValidity => "UIDVALIDITY",
                StatusDataItemName::Unseen => "UNSEEN",
                StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
                StatusDataItemName::Deleted => "DELETED",
                StatusDataItemName::Size => "SIZE",
                _ => "?",
            })
            .collect();
        // MAILBOXID (RFC 8474 §4), which the pre-parser took out; alone, the UIDNEXT it
        // left in its place is not asked for.
        match mailboxid {
            Some(true) => names = vec!["MAILBOXID"],
            Some(false) => names.push("MAILBOXID"),
            None => {}
        }
        if names.contains(&"HIGHESTMODSEQ") {
            self.enable_condstore(out);
        }
        let recent = self.unclaimed_recent(&name, &idx);
        let shown = wire_name(name.as_str(), self.rev2);
        out.extend_from_slice(&status_line(&shown, &idx, &names, recent).map_err(Refusal::Bad)?);
        Ok(("STATUS completed".into(), Outcome::Continue))
    }
}

/// A MAILBOXID as the wire shows it (RFC 8474 §4): from the mailbox's UIDVALIDITY, which a
/// mailbox keeps through RENAME and a move to another mailhost, and which a mailbox made
/// again under the same name does not share.
pub(in crate::imap::session) fn mailbox_id(uid_validity: u32) -> String {
    format!("F{uid_validity:08x}")
}
