//! NOTIFY (RFC 5465) in the session: the watch the client set, the STATUS it is sent when a
//! watched mailbox other than the selected one changes (after each command, and while it
//! IDLEs), the initial STATUS of `NOTIFY SET STATUS`, and the LIST lines of mailboxes made,
//! gone and (un)subscribed.

use std::collections::{BTreeSet, HashMap};

use super::super::{line, special_use_of, tagged, wire_name, Outcome, Reply, Session};
use super::status::status_line;
use crate::imap::backend::Backend;
use crate::imap::notify::{name_changes, status_items, Event, Group, Notify, NotifyError, EVENTS};
use crate::imap::{encode, list};
use crate::mailstore::MailboxName;

/// What the client last heard: of each watched mailbox its messages, UIDNEXT, UIDVALIDITY
/// and HIGHESTMODSEQ; and the user's mailbox names and subscriptions.
#[derive(Default)]
pub(in crate::imap::session) struct Seen {
    status: HashMap<MailboxName, (usize, u32, u32, u64)>,
    names: BTreeSet<String>,
    subscriptions: BTreeSet<String>,
}

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
                self.notify_seen = Seen::default();
                tagged(tag, "OK", "NOTIFY completed")
            }
            Ok(Notify::Set { status, groups }) => {
                self.notify = Some(groups);
                self.notify_seen = Seen {
                    names: self.backend().mailboxes(self.user()).iter().map(|n| n.as_str().to_string()).collect(),
                    subscriptions: self.backend().subscriptions(self.user()).into_iter().collect(),
                    ..Seen::default()
                };
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
        if self.notify.is_none() {
            return;
        }
        let names = self.backend().mailboxes(self.user());
        let subscriptions = self.backend().subscriptions(self.user());
        self.notify_names(out, &names, &subscriptions);
        let Some(groups) = self.notify.as_ref() else { return };
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
            let changed = match self.notify_seen.status.get(&name) {
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
        self.notify_seen.status.extend(told);
    }

    /// `* LIST` for each watched mailbox made or gone (MailboxName) and each watched one
    /// subscribed or unsubscribed (SubscriptionChange) since the client last heard.
    fn notify_names(&mut self, out: &mut Vec<u8>, names: &[MailboxName], subscriptions: &[String]) {
        let Some(groups) = self.notify.as_ref() else { return };
        let now_names: BTreeSet<String> = names.iter().map(|n| n.as_str().to_string()).collect();
        let now_subs: BTreeSet<String> = subscriptions.iter().cloned().collect();
        let seen = &self.notify_seen;
        let watches = |event, name: &str, subscribed: bool| watched(groups, name, subscribed).contains(&event);
        let mut lines = Vec::new();
        let (made, gone) = name_changes(&seen.names, &now_names);
        for name in gone {
            if watches(Event::MailboxName, name, seen.subscriptions.contains(name)) {
                lines.push(("\\NonExistent".to_string(), name.to_string()));
            }
        }
        let all: BTreeSet<&str> = now_names.iter().map(String::as_str).collect();
        for name in made {
            if watches(Event::MailboxName, name, now_subs.contains(name)) {
                lines.push((list::attributes(name, &all, special_use_of).join(" "), name.to_string()));
            }
        }
        let (subscribed, unsubscribed) = name_changes(&seen.subscriptions, &now_subs);
        for (name, on) in subscribed.into_iter().map(|n| (n, true)).chain(unsubscribed.into_iter().map(|n| (n, false)))
        {
            if watches(Event::SubscriptionChange, name, true) {
                lines.push((if on { "\\Subscribed" } else { "" }.to_string(), name.to_string()));
            }
        }
        for (attrs, name) in lines {
            let mut l = format!("* LIST ({attrs}) \"/\" ").into_bytes();
            encode::mailbox(&mut l, &wire_name(&name, self.rev2));
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        self.notify_seen.names = now_names;
        self.notify_seen.subscriptions = now_subs;
    }
}

/// The events `groups` watch for mailbox `name`.
fn watched(groups: &[Group], name: &str, subscribed: bool) -> Vec<Event> {
    let mut events: Vec<Event> =
        groups.iter().filter(|g| g.covers(name, subscribed)).flat_map(|g| g.events.iter().copied()).collect();
    events.dedup();
    events
}
