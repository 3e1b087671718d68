//! SELECT and EXAMINE with CONDSTORE/QRESYNC parameters (RFC 3501 §6.3.1–6.3.2, RFC 7162
//! §3.2.5), CLOSE and UNSELECT (RFC 3501 §6.4.2, RFC 3691): opening and leaving the
//! session's view of one mailbox.

use super::super::*;
use crate::imap::backend::Backend;
use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;

/// UIDs expunged after `modseq`, within `known` if given. Without tombstones that old, every
/// UID below UIDNEXT that is not present is reported (RFC 7162 allows reporting more).
pub(in crate::imap::session) fn vanished_since(
    idx: &MailboxIndex,
    modseq: u64,
    known: Option<&SequenceSet>,
) -> Vec<u32> {
    let max_uid = idx.uid_next.saturating_sub(1);
    let within = |u: u32| known.is_none_or(|set| search::in_set(set, u, max_uid));
    match idx.vanished_since(modseq) {
        Some(uids) => uids.into_iter().filter(|u| within(*u)).collect(),
        None => {
            // Bounded by UIDNEXT and, for huge gaps, by what the client says it knows.
            let present: std::collections::HashSet<u32> = idx.messages.iter().map(|m| m.uid).collect();
            (1..=max_uid).filter(|u| !present.contains(u) && within(*u)).take(1_000_000).collect()
        }
    }
}

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn select(
        &mut self,
        mailbox: &Mailbox<'_>,
        read_only: bool,
        parameters: &[imap_codec::imap_types::command::SelectParameter],
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1); leaving one says so
        // before anything about the next (RFC 7162 §3.2.11, RFC 9051 [CLOSED]).
        self.contexts.clear();
        if self.view.take().is_some() {
            line(out, "* OK [CLOSED] previous mailbox closed");
        }
        let mut resync = None;
        for p in parameters {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { .. } if !self.qresync => {
                    return Err(Refusal::Bad("ENABLE QRESYNC first".into()));
                }
                SelectParameter::QResync { uid_validity, mod_sequence_value, known_uids, .. } => {
                    resync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids.clone()));
                }
            }
        }
        self.saved.clear();
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let idx = self.index_of(&name)?;
        let recent_from = self.backend().claim_recent(self.user(), &name, &idx, !read_only);
        let (mut view, lines) = View::open(name, read_only, &idx, recent_from);
        view.recent_flag = !self.rev2;
        view.condstore = self.condstore;
        view.qresync = self.qresync;
        for l in lines {
            // IMAP4rev2 has no \Recent and no [UNSEEN] (RFC 9051 §6.3.2).
            if !(self.rev2 && (l.ends_with(" RECENT") || l.starts_with("* OK [UNSEEN "))) {
                line(out, &l);
            }
        }
        if self.rev2 {
            // ... and names the mailbox in a LIST response, as LIST would show it.
            let names = self.backend().mailboxes(self.user());
            let names: std::collections::BTreeSet<&str> = names.iter().map(MailboxName::as_str).collect();
            let attrs = crate::imap::list::attributes(view.mailbox.as_str(), &names, special_use_of);
            let mut l = format!("* LIST ({}) \"/\" ", attrs.join(" ")).into_bytes();
            encode::mailbox(&mut l, &wire_name(view.mailbox.as_str(), true));
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((_, modseq, known)) = resync.filter(|r| r.0 == idx.uid_validity) {
            // RFC 7162 §3.2.5: what vanished and what changed since the client's modseq.
            let vanished = vanished_since(&idx, modseq, known.as_ref());
            if !vanished.is_empty() {
                line(out, &format!("* VANISHED (EARLIER) {}", encode::uid_set(&vanished)));
            }
            for (k, m) in idx.messages.iter().enumerate().filter(|(_, m)| m.modseq > modseq) {
                let flags = encode::flags_recent(m.flags, &m.keywords, view.shows_recent(m.uid));
                line(out, &format!("* {} FETCH (UID {} FLAGS {flags} MODSEQ ({}))", k + 1, m.uid, m.modseq));
            }
        }
        line(out, &format!("* OK [MAILBOXID ({})] Ok", super::status::mailbox_id(idx.uid_validity)));
        self.view = Some(view);
        let mode = if read_only { "[READ-ONLY] EXAMINE" } else { "[READ-WRITE] SELECT" };
        Ok((format!("{mode} completed"), Outcome::Continue))
    }

    /// CLOSE: expunge what is `\\Deleted` (unless read-only), silently, and leave.
    pub(in crate::imap::session) async fn close(&mut self) -> Answer {
        self.saved.clear();
        self.contexts.clear();
        if let Some(v) = self.view.take() {
            if !v.read_only {
                let deleted = self.deleted_uids(&v, None);
                if !deleted.is_empty() {
                    let op = MailOp::Expunge {
                        user: self.user().as_str().into(),
                        mailbox: v.mailbox.as_str().into(),
                        uids: deleted,
                    };
                    self.propose(op).await?;
                }
            }
        }
        ok("CLOSE completed")
    }

    pub(in crate::imap::session) fn unselect(&mut self) -> Answer {
        self.saved.clear();
        self.contexts.clear();
        self.view = None;
        ok("UNSELECT completed")
    }
}
