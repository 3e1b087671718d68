//! NOTIFY (RFC 5465): which mailboxes a client watches for which events, parsed from the
//! command (imap-codec does not know it), and the STATUS a change to a watched mailbox that
//! is not selected calls for. Pure; the session keeps the state and looks at the indexes.
//!
//! Events served: MessageNew, MessageExpunge and FlagChange (as `* STATUS` for mailboxes
//! not selected; the selected mailbox reports as it always does), MailboxName and
//! SubscriptionChange (as `* LIST`, §5.4–5.5: a mailbox made or subscribed, one gone with
//! `\NonExistent`, a rename as the old name gone and the new one made). Any other event is
//! refused with `BADEVENT` naming these, as §3.1 allows. Bounded: at most [`GROUPS_MAX`] event
//! groups and [`MAILBOXES_MAX`] names in them.

use std::collections::BTreeSet;

/// Event groups one NOTIFY SET may carry.
pub const GROUPS_MAX: usize = 32;
/// Mailbox names in all of a NOTIFY's filters together.
pub const MAILBOXES_MAX: usize = 1000;

/// The events this server reports, as `BADEVENT` lists them.
pub const EVENTS: &str = "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange";

/// Which mailboxes a group of events is about (RFC 5465 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

/// A message event of RFC 5465 §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    MessageNew,
    MessageExpunge,
    FlagChange,
    MailboxName,
    SubscriptionChange,
}

/// Filter and events (none: `NONE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub filter: Filter,
    pub events: Vec<Event>,
}

/// A parsed NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    None,
    Set { status: bool, groups: Vec<Group> },
}

/// Why a NOTIFY is refused: a syntax error (BAD), or an event not served (NO [BADEVENT]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyError {
    Syntax(String),
    BadEvent(String),
}

struct Words<'a> {
    text: &'a str,
}

impl<'a> Words<'a> {
    fn trim(&mut self) {
        self.text = self.text.trim_start();
    }

    fn eat(&mut self, c: char) -> bool {
        self.trim();
        match self.text.strip_prefix(c) {
            Some(rest) => {
                self.text = rest;
                true
            }
            None => false,
        }
    }

    /// An atom or a quoted string (unquoted).
    fn word(&mut self) -> Option<String> {
        self.trim();
        if let Some(rest) = self.text.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.text = &rest[i + 1..];
                        return Some(out);
                    }
                    '\\' => out.push(chars.next()?.1),
                    c => out.push(c),
                }
            }
            return None;
        }
        let end = self.text.find([' ', '(', ')']).unwrap_or(self.text.len());
        let (w, rest) = self.text.split_at(end);
        self.text = rest;
        (!w.is_empty()).then(|| w.to_string())
    }

    /// One mailbox or a parenthesized list of them.
    fn mailboxes(&mut self) -> Option<Vec<String>> {
        if !self.eat('(') {
            return self.word().map(|w| vec![w]);
        }
        let mut out = Vec::new();
        while !self.eat(')') {
            out.push(self.word()?);
        }
        (!out.is_empty()).then_some(out)
    }
}

fn syntax(why: &str) -> NotifyError {
    NotifyError::Syntax(why.to_string())
}

fn filter(w: &mut Words<'_>) -> Result<Filter, NotifyError> {
    let name = w.word().ok_or_else(|| syntax("a filter is expected"))?.to_ascii_uppercase();
    Ok(match name.as_str() {
        "SELECTED" => Filter::Selected,
        "SELECTED-DELAYED" => Filter::SelectedDelayed,
        "INBOXES" => Filter::Inboxes,
        "PERSONAL" => Filter::Personal,
        "SUBSCRIBED" => Filter::Subscribed,
        "SUBTREE" => Filter::Subtree(w.mailboxes().ok_or_else(|| syntax("SUBTREE needs mailboxes"))?),
        "MAILBOXES" => Filter::Mailboxes(w.mailboxes().ok_or_else(|| syntax("MAILBOXES needs mailboxes"))?),
        other => return Err(syntax(&format!("unknown filter {other}"))),
    })
}

fn events(w: &mut Words<'_>) -> Result<Vec<Event>, NotifyError> {
    if !w.eat('(') {
        return match w.word() {
            Some(n) if n.eq_ignore_ascii_case("NONE") => Ok(Vec::new()),
            _ => Err(syntax("events or NONE expected")),
        };
    }
    let mut out = Vec::new();
    while !w.eat(')') {
        let name = w.word().ok_or_else(|| syntax("an event is expected"))?;
        out.push(match name.to_ascii_lowercase().as_str() {
            "messagenew" => {
                // FETCH attributes for new messages in the selected mailbox: taken, not used.
                if w.eat('(') {
                    while !w.eat(')') {
                        w.word().ok_or_else(|| syntax("malformed MessageNew attributes"))?;
                    }
                }
                Event::MessageNew
            }
            "messageexpunge" => Event::MessageExpunge,
            "flagchange" => Event::FlagChange,
            "mailboxname" => Event::MailboxName,
            "subscriptionchange" => Event::SubscriptionChange,
            _ => return Err(NotifyError::BadEvent(name)),
        });
    }
    Ok(out)
}

/// `tag NOTIFY ...`; `None` for another command.
pub fn parse(bytes: &[u8]) -> Option<Result<Notify, NotifyError>> {
    if !super::preparse::verb_is(bytes, &["NOTIFY"]) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?.trim_end();
    let (_, rest) = text.split_once(' ')?;
    let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
    if !verb.eq_ignore_ascii_case("NOTIFY") {
        return None;
    }
    let mut w = Words { text: args };
    let parsed = (|| {
        match w.word().map(|s| s.to_ascii_uppercase()).as_deref() {
            Some("NONE") => return Ok(Notify::None),
            Some("SET") => {}
            _ => return Err(syntax("NOTIFY SET or NOTIFY NONE")),
        }
        let mut status = false;
        let mut groups = Vec::new();
        let mut names = 0;
        loop {
            w.trim();
            if w.text.is_empty() {
                break;
            }
            if !w.eat('(') {
                match w.word() {
                    Some(s) if s.eq_ignore_ascii_case("STATUS") && groups.is_empty() && !status => {
                        status = true;
                        continue;
                    }
                    _ => return Err(syntax("an event group is expected")),
                }
            }
            let filter = filter(&mut w)?;
            let events = events(&mut w)?;
            if !w.eat(')') {
                return Err(syntax("an event group ends with )"));
            }
            if let Filter::Subtree(m) | Filter::Mailboxes(m) = &filter {
                names += m.len();
            }
            groups.push(Group { filter, events });
            if groups.len() > GROUPS_MAX || names > MAILBOXES_MAX {
                return Err(syntax("too many event groups or mailboxes"));
            }
        }
        if groups.is_empty() {
            return Err(syntax("NOTIFY SET needs an event group"));
        }
        Ok(Notify::Set { status, groups })
    })();
    Some(parsed)
}

impl Group {
    /// Whether this group is about `name` (a mailbox that is not selected).
    pub fn covers(&self, name: &str, subscribed: bool) -> bool {
        match &self.filter {
            Filter::Selected | Filter::SelectedDelayed => false,
            Filter::Inboxes => name.eq_ignore_ascii_case("INBOX"),
            Filter::Personal => true,
            Filter::Subscribed => subscribed,
            Filter::Mailboxes(list) => list.iter().any(|m| m == name),
            Filter::Subtree(list) => {
                list.iter().any(|m| name == m || name.strip_prefix(m.as_str()).is_some_and(|r| r.starts_with('/')))
            }
        }
    }
}

/// What changed in a set of names (mailboxes, or subscriptions) between two looks: the names
/// that came, and the names that went, each in name order.
pub fn name_changes<'a>(before: &'a BTreeSet<String>, now: &'a BTreeSet<String>) -> (Vec<&'a str>, Vec<&'a str>) {
    (now.difference(before).map(String::as_str).collect(), before.difference(now).map(String::as_str).collect())
}

/// The STATUS items that report `events` (RFC 5465 §5.2–5.4), in a fixed order.
pub fn status_items(events: &[Event]) -> Vec<&'static str> {
    let has = |e: Event| events.contains(&e);
    let mut items = Vec::new();
    if has(Event::MessageNew) || has(Event::MessageExpunge) {
        items.push("MESSAGES");
    }
    if has(Event::MessageNew) {
        items.push("UIDNEXT");
    }
    if has(Event::MessageNew) || has(Event::FlagChange) {
        items.push("UIDVALIDITY");
    }
    if has(Event::FlagChange) {
        items.push("HIGHESTMODSEQ");
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5465_notify_set_and_none_parse() {
        let n = parse(b"n1 NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge)) (MAILBOXES (\"a b\" c) (FlagChange))\r\n");
        let Some(Ok(Notify::Set { status: true, groups })) = n else { panic!("{n:?}") };
        assert_eq!(
            groups[0],
            Group { filter: Filter::Selected, events: vec![Event::MessageNew, Event::MessageExpunge] }
        );
        assert_eq!(groups[1].filter, Filter::Mailboxes(vec!["a b".into(), "c".into()]));
        assert_eq!(parse(b"n2 NOTIFY NONE\r\n"), Some(Ok(Notify::None)));
        assert_eq!(
            parse(b"n3 NOTIFY SET (PERSONAL NONE)\r\n").unwrap().unwrap(),
            Notify::Set { status: false, groups: vec![Group { filter: Filter::Personal, events: vec![] }] }
        );
        assert_eq!(
            parse(b"n4 NOTIFY SET (PERSONAL (MailboxMetadataChange))\r\n"),
            Some(Err(NotifyError::BadEvent("MailboxMetadataChange".into())))
        );
        let n = parse(b"n8 NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))\r\n").unwrap().unwrap();
        let Notify::Set { groups, .. } = n else { panic!("{n:?}") };
        assert_eq!(groups[0].events, [Event::MailboxName, Event::SubscriptionChange]);
        assert!(matches!(parse(b"n5 NOTIFY SET (NOWHERE (FlagChange))\r\n"), Some(Err(NotifyError::Syntax(_)))));
        assert!(matches!(parse(b"n6 NOTIFY SET\r\n"), Some(Err(NotifyError::Syntax(_)))));
        assert_eq!(parse(b"n7 NOOP\r\n"), None);
    }

    #[test]
    fn rfc5465_filters_and_status_items() {
        let g = |filter| Group { filter, events: vec![Event::MessageNew] };
        assert!(g(Filter::Subtree(vec!["a".into()])).covers("a/b", false));
        assert!(!g(Filter::Subtree(vec!["a".into()])).covers("ab", false));
        assert!(g(Filter::Inboxes).covers("INBOX", false) && !g(Filter::Inboxes).covers("Sent", false));
        assert!(g(Filter::Subscribed).covers("x", true) && !g(Filter::Subscribed).covers("x", false));
        assert_eq!(status_items(&[Event::MessageExpunge]), ["MESSAGES"]);
        assert_eq!(status_items(&[Event::MessageNew]), ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]);
        assert_eq!(status_items(&[Event::FlagChange]), ["UIDVALIDITY", "HIGHESTMODSEQ"]);
    }
}
