//! APPEND with several messages (MULTIAPPEND, RFC 3502) or with CATENATE (RFC 4469): the
//! pieces joined, URLs resolved to parts of the user's own messages, every message made
//! sendable, and all of them committed as one operation (APPENDUID with every new UID).
//! A plain single APPEND (RFC 3501 §6.3.11) comes parsed by imap-codec and is one
//! `Append` operation.

use super::super::{
    flags_of, mailbox_name, mailbox_name_of, ok, tagged, Answer, Outcome, Refusal, Reply, Session, Sync,
};
use crate::imap::append::{self, Append, Piece};
use crate::imap::backend::Backend;
use crate::imap::{encode, fetch, sendable};
use crate::mailstore::{MailOp, MailResponse, NewMessage};
use common::clock::now_s;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

impl<B: Backend> Session<B> {
    /// APPEND of one message, as imap-codec parsed it.
    pub(in crate::imap::session) async fn append(
        &mut self,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'_>,
        out: &mut Vec<u8>,
    ) -> Answer {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let data: &[u8] = match &message {
            LiteralOrLiteral8::Literal(l) => l.data(),
            LiteralOrLiteral8::Literal8(l) => &l.data,
        };
        self.check_size(data.len())?;
        self.check_target(&name)?;
        self.check_quota(data.len() as u64, 1)?;
        let (flags, keywords) = flags_of(flags);
        let op = MailOp::Append {
            user: self.user().as_str().into(),
            mailbox: name.as_str().into(),
            flags,
            keywords,
            internal_date: date.map_or_else(now_s, |d| d.as_ref().timestamp()),
            message: sendable::sendable(data).into_owned(),
            now_s: now_s(),
        };
        let resp = self.propose(op).await?;
        self.appended_to(&name, out);
        match resp {
            MailResponse::Appended { uid_validity, uid } => {
                Ok((format!("[APPENDUID {uid_validity} {uid}] APPEND completed"), Outcome::Continue))
            }
            _ => ok("APPEND completed"),
        }
    }

    fn check_size(&self, len: usize) -> Result<(), Refusal> {
        if len > self.offer.append_limit as usize {
            return Err(Refusal::No(format!("[TOOBIG] message exceeds {} bytes", self.offer.append_limit)));
        }
        Ok(())
    }

    /// APPEND never creates its mailbox; `[TRYCREATE]` tells the client to (RFC 3501 §6.3.11).
    pub(in crate::imap::session) fn check_target(&self, name: &crate::mailstore::MailboxName) -> Result<(), Refusal> {
        if name.is_quarantine() {
            return Err(Refusal::No(format!(
                "[CANNOT] {name} takes no messages from clients; it holds what the scanner held back"
            )));
        }
        if self.backend().index(self.user(), name).ok().flatten().is_none() {
            return Err(Refusal::No(format!("[TRYCREATE] no mailbox {name}")));
        }
        Ok(())
    }

    /// After an APPEND to the selected mailbox, the new messages' EXISTS (not expunges).
    fn appended_to(&mut self, name: &crate::mailstore::MailboxName, out: &mut Vec<u8>) {
        if self.view.as_ref().is_some_and(|v| v.mailbox == *name) {
            self.sync(out, Sync::NoExpunge);
        }
    }

    /// The whole command: `tag APPEND ...` parsed by [`append::parse`].
    pub(in crate::imap::session) async fn append_extended(&mut self, tag: &str, a: Append<'_>) -> Reply {
        if self.user.is_none() {
            return tagged(tag, "BAD", "log in first");
        }
        let mut out = Vec::new();
        let result = self.append_all(a, &mut out).await;
        self.finish(tag, result, out)
    }

    async fn append_all(&mut self, a: Append<'_>, out: &mut Vec<u8>) -> Answer {
        let name = mailbox_name_of(&a.mailbox, self.rev2).map_err(Refusal::No)?;
        self.check_target(&name)?;
        let mut messages = Vec::with_capacity(a.messages.len());
        for m in &a.messages {
            let mut data = Vec::new();
            for piece in &m.pieces {
                match piece {
                    Piece::Text(t) => data.extend_from_slice(t),
                    Piece::Url(u) => data.extend_from_slice(&self.resolve_url(u)?),
                }
                self.check_size(data.len())?;
            }
            let internal_date = match &m.date {
                Some(d) => parse_date(d).ok_or_else(|| Refusal::Bad(format!("invalid date-time {d:?}")))?,
                None => now_s(),
            };
            let data = sendable::sendable(&data).into_owned();
            messages.push(NewMessage { flags: m.flags, keywords: m.keywords.clone(), internal_date, data });
        }
        let bytes: u64 = messages.iter().map(|m| m.data.len() as u64).sum();
        self.check_quota(bytes, messages.len() as u64)?;
        let op = MailOp::AppendMany {
            user: self.user().as_str().into(),
            mailbox: name.as_str().into(),
            messages,
            now_s: now_s(),
        };
        let resp = self.propose(op).await?;
        self.appended_to(&name, out);
        match resp {
            MailResponse::AppendedMany { uid_validity, uids } => Ok((
                format!("[APPENDUID {uid_validity} {}] APPEND completed", encode::uid_set(&uids)),
                Outcome::Continue,
            )),
            _ => ok("APPEND completed"),
        }
    }

    /// The bytes a CATENATE URL names (RFC 4469 §5): a message of the user's, or a section
    /// of it; `NO [BADURL]` when it names nothing this user has.
    fn resolve_url(&self, url: &str) -> Result<Vec<u8>, Refusal> {
        let bad = || Refusal::No(format!("[BADURL {url}] the URL names no message of yours"));
        let u = append::parse_url(url).ok_or_else(bad)?;
        let mailbox = mailbox_name_of(u.mailbox.as_bytes(), self.rev2).map_err(|_| bad())?;
        let idx = self.backend().index(self.user(), &mailbox).ok().flatten().ok_or_else(bad)?;
        if u.uid_validity.is_some_and(|v| v != idx.uid_validity) {
            return Err(bad());
        }
        let message = self.backend().message(self.user(), &mailbox, u.uid)?.ok_or_else(bad)?;
        let section = append::url_section(&u.section).ok_or_else(bad)?;
        let bytes = fetch::section(&fetch::Source::new(&message), &section).ok_or_else(bad)?;
        Ok(u.cut(&bytes).to_vec())
    }
}

/// An APPEND date-time (RFC 3501 `date-time`, the day possibly space-padded) as seconds.
fn parse_date(d: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(d.trim(), "%d-%b-%Y %H:%M:%S %z").ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_parse_with_either_day_form() {
        assert_eq!(super::parse_date("24-Mar-2007 23:00:00 +0200"), Some(1_174_770_000));
        assert_eq!(super::parse_date(" 4-Mar-2007 23:00:00 +0000"), Some(1_173_049_200));
        assert_eq!(super::parse_date("yesterday"), None);
    }
}
