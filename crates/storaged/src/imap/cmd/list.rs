//! LIST and LSUB with LIST-EXTENDED and LIST-STATUS (RFC 3501 §6.3.8–6.3.9, RFC 5258,
//! RFC 5819, RFC 6154 SPECIAL-USE): the request turned into a [`list::Query`], the pure
//! selection in `imap::list`, and the lines written here.

use super::super::*;
use super::status::status_line;
use crate::imap::backend::Backend;
use crate::imap::list;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn list(
        &mut self,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        options: Option<crate::imap::preparse::ListOptions>,
        lsub: bool,
        out: &mut Vec<u8>,
    ) -> Result<(String, Outcome), Refusal> {
        use crate::imap::preparse::ListOptions;
        let verb = if lsub { "LSUB" } else { "LIST" };
        let first: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let more = options.as_ref().map(|o| o.more_patterns.clone()).unwrap_or_default();
        if first.is_empty() && more.is_empty() {
            line(out, &format!("* {verb} (\\Noselect) \"/\" \"\""));
            return Ok((format!("{verb} completed"), Outcome::Continue));
        }
        let has = |list: fn(&ListOptions) -> &Vec<String>, o: &str| {
            options.as_ref().is_some_and(|x| list(x).iter().any(|v| v == o))
        };
        let patterns = std::iter::once(first.to_vec())
            .chain(more.into_iter().map(String::into_bytes))
            .filter(|p| !p.is_empty())
            .map(|p| self.stored_pattern(&reference, &p))
            .collect();
        let query = list::Query {
            patterns,
            lsub,
            subscribed: has(|o| &o.select, "SUBSCRIBED"),
            recursive: has(|o| &o.select, "RECURSIVEMATCH"),
            special_use: has(|o| &o.select, "SPECIAL-USE"),
            show_subscribed: has(|o| &o.select, "SUBSCRIBED") || has(|o| &o.ret, "SUBSCRIBED"),
            nonexistent: if self.rev2 { "\\NonExistent" } else { "\\Noselect" },
        };
        let names = self.backend().mailboxes(self.user());
        let subscriptions = self.backend().subscriptions(self.user());
        let names: Vec<&str> = names.iter().map(MailboxName::as_str).collect();
        let subscriptions: Vec<&str> = subscriptions.iter().map(String::as_str).collect();
        let status_items = options.map(|o| o.status).unwrap_or_default();
        for entry in list::select(&query, &names, &subscriptions, special_use_of) {
            self.list_line(verb, &entry, &status_items, out)?;
        }
        Ok((format!("{verb} completed"), Outcome::Continue))
    }

    /// Reference and pattern as one pattern over stored names: modified UTF-7 for an
    /// IMAP4rev2 session (wildcards are ASCII and stay as they are).
    pub(in crate::imap::session) fn stored_pattern(&self, reference: &str, pattern: &[u8]) -> Vec<u8> {
        let full = [reference.as_bytes(), pattern].concat();
        if self.rev2 {
            crate::imap::mutf7::encode(&String::from_utf8_lossy(&full)).into_bytes()
        } else {
            full
        }
    }

    /// One LIST/LSUB line, its CHILDINFO, and with LIST-STATUS the mailbox's STATUS after it
    /// (RFC 5819).
    pub(in crate::imap::session) fn list_line(
        &self,
        verb: &str,
        entry: &list::Entry,
        status_items: &[String],
        out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let mut l = format!("* {verb} ({}) \"/\" ", entry.attrs.join(" ")).into_bytes();
        encode::mailbox(&mut l, &wire_name(&entry.name, self.rev2));
        if entry.child_subscribed {
            l.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        out.extend_from_slice(&l);
        out.extend_from_slice(b"\r\n");
        if entry.exists && !status_items.is_empty() {
            let Ok(name) = MailboxName::parse(&entry.name) else { return Ok(()) };
            if let Ok(idx) = self.index_of(&name) {
                let items: Vec<&str> = status_items.iter().map(String::as_str).collect();
                let shown = wire_name(&entry.name, self.rev2);
                let recent = self.unclaimed_recent(&name, &idx);
                out.extend_from_slice(&status_line(&shown, &idx, &items, recent).map_err(Refusal::Bad)?);
            }
        }
        Ok(())
    }
}
