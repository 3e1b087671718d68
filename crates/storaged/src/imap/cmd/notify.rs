//! NOTIFY (RFC 5465) in the session: the watch the client set, the STATUS it is sent when a
//! watched mailbox other than the selected one changes (after each command, and while it
//! IDLEs), and the initial STATUS of `NOTIFY SET STATUS`.

use std::collections::HashMap;

use super::super::{line, tagged, wire_name, Outcome, Reply, Session};
use super::status::status_line;
use crate::imap::backend::Backend;
use crate::imap::notify::{status_items, Event, Group, Notify, NotifyError, EVENTS};
use crate::mailstore::MailboxName;

/// What the client last heard of a watched mailbox: messages, UIDNEXT, UIDVALIDITY and
/// HIGHESTMODSEQ.
pub(in crate::imap::session) type Seen = HashMap<MailboxName, (usize, u32, u32, u64)>;

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn notify_command(&mut self, tag: &str, n: Result<Notify, NotifyError>) -> Reply {
        if self.user.is_none() {
            return tagged(tag, "BAD", "log in first");
        }
        match n {
            Err(NotifyError::Syntax(why)) => tagged(tag, "BAD", &why),
            Err(NotifyError::BadEvent(e)) => tagged(tag, "NO", &format!("[BADEVENT ({EVENTS})] {e} is not reported")),
            Ok(Notify::None) => {
                self.notify = None;
                self.notify_seen.clear();
                tagged(tag, "OK", "NOTIFY completed")
            }
            Ok(Notify::Set { status, groups }) => {
                self.notify = Some(groups);
                self.notify_seen.clear();
                let mut out = Vec::new();
                self.notify_poll(&mut out, status);
                line(&mut out, &format!("{tag} OK NOTIFY completed"));
                (out, Outcome::Continue)
            }
        }
    }

    /// `* STATUS` for each watched mailbox (not the selected one) that changed since the
    /// client last heard of it; with `announce`, for every watched mailbox now.
    pub(in crate::imap::session) fn notify_poll(&mut self, out: &mut Vec<u8>, announce: bool) {
        let Some(groups) = self.notify.as_ref() else { return };
        let names = self.backend().mailboxes(self.user());
        let subscriptions = self.backend().subscriptions(self.user());
        let selected = self.view.as_ref().map(|v| v.mailbox.clone());
        let mut told = Vec::new();
        for name in names.into_iter().filter(|n| Some(n) != selected.as_ref()) {
            let subscribed = subscriptions.iter().any(|s| s == name.as_str());
            let events: Vec<Event> = watched(groups, name.as_str(), subscribed);
            if events.is_empty() {
                continue;
            }
            let Ok(idx) = self.index_of(&name) else { continue };
            let now = (idx.messages.len(), idx.uid_next, idx.uid_validity, idx.highest_modseq);
            let changed = match self.notify_seen.get(&name) {
                None => announce,
                Some(before) => *before != now,
            };
            told.push((name.clone(), now));
            if changed {
                let shown = wire_name(name.as_str(), self.rev2);
                if let Ok(l) = status_line(&shown, &idx, &status_items(&events), 0) {
                    out.extend_from_slice(&l);
                }
            }
        }
        self.notify_seen.extend(told);
    }
}

/// The events `groups` watch for mailbox `name`.
fn watched(groups: &[Group], name: &str, subscribed: bool) -> Vec<Event> {
    let mut events: Vec<Event> =
        groups.iter().filter(|g| g.covers(name, subscribed)).flat_map(|g| g.events.iter().copied()).collect();
    events.dedup();
    events
}
