//! Message tracking: what `mailctl trace` reads. Every storage replica derives a record per
//! recipient per hop from the Raft entries it applies (a delivery, a queued message, a
//! queue runner's attempt), so the records are replicated with the mail and outlive a
//! user's move; this module owns their shape, the query that selects them, and the facts
//! read from a message's header to fill them (its Message-ID, the message it answers, the
//! front that received it). Never holds message content beyond those header fields, and
//! every field is cut and cleaned like a log field (a sender cannot forge record lines).

use serde::{Deserialize, Serialize};

use crate::message_log::{clean, header_fields, unfold};

/// Records one query returns at most (per node; `mailctl trace` merges nodes).
pub const RESULTS_MAX: usize = 2000;
/// Message-IDs one query may name at most.
pub const QUERY_IDS_MAX: usize = 256;

/// What happened at one hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackEvent {
    /// A front took the message from a client (read from its `Received:` field).
    Received,
    /// Committed into a mailbox of a local user.
    Delivered,
    /// A mailhost refused it for this recipient (moved user, size, full disk, …), or a
    /// front did before any mailhost saw it (unknown user, relaying, a virus, a policy).
    Refused,
    /// Put on a group's outbound queue.
    Queued,
    /// Put on the queue held for review (a snagged account's mail).
    Held,
    /// Handed to the next hop (a remote MX or a local mailhost) with a 2xx reply.
    Sent,
    /// An attempt failed for now; the message stays queued.
    Deferred,
    /// Refused for good (or expired): a bounce goes to the sender.
    Bounced,
    /// Removed from the queue undelivered by the postmaster (`mailctl queue delete`).
    Deleted,
}

impl TrackEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackEvent::Received => "received",
            TrackEvent::Delivered => "delivered",
            TrackEvent::Refused => "refused",
            TrackEvent::Queued => "queued",
            TrackEvent::Held => "held",
            TrackEvent::Sent => "sent",
            TrackEvent::Deferred => "deferred",
            TrackEvent::Bounced => "bounced",
            TrackEvent::Deleted => "deleted",
        }
    }
}

/// One hop of one message for one recipient, as a group's log committed it. Every field
/// is always encoded: the admin protocol's bincode is positional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRecord {
    /// When (unix seconds, the proposer's clock written in the entry).
    pub at_s: i64,
    /// The group whose log holds the entry, and its index.
    pub group: String,
    pub index: u64,
    pub event: TrackEvent,
    /// The message's Message-ID field (empty if it has none).
    pub message_id: String,
    /// For an automatic message (a bounce, a vacation reply): the Message-ID it answers.
    pub answers: String,
    /// `GROUP/ID` of the queued message, for queue events.
    pub queue_id: String,
    pub from: String,
    /// The recipient (empty for a `received` record).
    pub to: String,
    /// The mailbox, the reply and the host it came from, the front's `Received:` summary.
    pub detail: String,
}

impl TrackRecord {
    /// What identifies a record across replicas (each replica writes its own copy).
    pub fn key(&self) -> (&str, u64, TrackEvent, &str, &str, &str) {
        (&self.group, self.index, self.event, &self.to, &self.queue_id, &self.detail)
    }
}

/// A recipient a front refused before any mailhost took the message (at `RCPT`, or at
/// the end of `DATA` by policy or scanning), as the front reports it to be tracked. Every
/// field is cleaned and cut like a log field by [`FrontRefusal::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FrontRefusal {
    /// When (unix seconds, the front's clock).
    pub at_s: i64,
    /// The front's host name and the client's address.
    pub front: String,
    pub peer: String,
    /// The message's Message-ID (empty when refused before its data).
    pub message_id: String,
    /// The front's id of the transaction (empty when refused before its data).
    pub queue_id: String,
    pub from: String,
    pub to: String,
    /// The reply the client got for this recipient.
    pub reply: String,
}

impl FrontRefusal {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        at_s: i64,
        front: &str,
        peer: &str,
        message_id: &str,
        queue_id: &str,
        from: &str,
        to: &str,
        reply: &str,
    ) -> Self {
        Self {
            at_s,
            front: clean(front),
            peer: clean(peer),
            message_id: clean(message_id),
            queue_id: clean(queue_id),
            from: clean(from),
            to: clean(to),
            reply: clean(reply),
        }
    }

    /// Its record, as entry `index` of `group` committed it.
    pub fn record(&self, group: &str, index: u64) -> TrackRecord {
        TrackRecord {
            at_s: self.at_s,
            group: group.to_string(),
            index,
            event: TrackEvent::Refused,
            message_id: self.message_id.clone(),
            answers: String::new(),
            queue_id: self.queue_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            detail: format!("by {} to client {}: {}", self.front, self.peer, self.reply),
        }
    }
}

/// Which records a trace wants: all of the given criteria hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceQuery {
    /// The message's (or the message it answers) Message-ID is one of these; empty: any.
    pub message_ids: Vec<String>,
    /// The sender contains this (case-insensitive).
    pub from: Option<String>,
    /// The recipient contains this (case-insensitive).
    pub to: Option<String>,
    /// Records at or after this time (unix seconds).
    pub since_s: i64,
}

impl TraceQuery {
    pub fn matches(&self, r: &TrackRecord) -> bool {
        let contains = |hay: &str, needle: &Option<String>| {
            needle.as_ref().is_none_or(|n| hay.to_ascii_lowercase().contains(&n.to_ascii_lowercase()))
        };
        r.at_s >= self.since_s
            && (self.message_ids.is_empty()
                || self.message_ids.iter().any(|id| *id == r.message_id || (!r.answers.is_empty() && *id == r.answers)))
            && contains(&r.from, &self.from)
            && contains(&r.to, &self.to)
    }

    /// Whether a stored line may hold a matching record: a cheap test before it is parsed
    /// (the line's JSON escapes nothing a Message-ID or an address may hold but `"` and `\`).
    pub fn may_match(&self, line: &str) -> bool {
        let ids = self.message_ids.is_empty() || self.message_ids.iter().any(|id| line.contains(id.as_str()));
        let lower = || line.to_ascii_lowercase();
        ids && self.from.as_ref().is_none_or(|f| lower().contains(&f.to_ascii_lowercase()))
            && self.to.as_ref().is_none_or(|t| lower().contains(&t.to_ascii_lowercase()))
    }

    /// The query with its bounds enforced (ids past [`QUERY_IDS_MAX`] dropped, fields cut).
    pub fn bounded(mut self) -> Self {
        self.message_ids.truncate(QUERY_IDS_MAX);
        self.message_ids.iter_mut().for_each(|id| *id = clean(id));
        self.from = self.from.map(|f| clean(&f));
        self.to = self.to.map(|t| clean(&t));
        self
    }
}

/// How a front names itself and its client in the `Received:` field it prepends, which
/// is how the storage groups learn which front took a message from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontHop {
    pub helo: String,
    pub ip: String,
    pub host: String,
    pub protocol: String,
    pub id: String,
}

/// The marker after the front's host name that tells its `Received:` fields from others.
const FRONT_MARK: &str = "(frontd)";

impl FrontHop {
    /// The whole `Received:` field (CRLF-terminated, folded). `extra` are comments after
    /// the client (TLS, the authenticated user), `for_rcpt` names a single recipient.
    pub fn header(&self, extra: &[String], for_rcpt: Option<&str>, date: &str) -> String {
        let extra: String = extra.iter().map(|c| format!("\r\n\t({c})")).collect();
        let to = for_rcpt.map(|r| format!("\r\n\tfor <{r}>")).unwrap_or_default();
        format!(
            "Received: from {} ([{}]){extra}\r\n\tby {} {FRONT_MARK} with {} id {}{to};\r\n\t{date}\r\n",
            self.helo, self.ip, self.host, self.protocol, self.id
        )
    }

    /// The hop a front's `Received:` value describes; `None` for anyone else's.
    pub fn parse(value: &str) -> Option<Self> {
        let words: Vec<&str> = value.split_whitespace().collect();
        let client = words.iter().position(|w| w.starts_with("(["))?;
        let by = client + words[client..].iter().position(|w| *w == "by")?;
        if words.get(by + 2) != Some(&FRONT_MARK) || words.first() != Some(&"from") {
            return None;
        }
        let after = |w: &str| words[by..].iter().position(|x| *x == w).and_then(|k| words.get(by + k + 1));
        let ip = words[client].strip_prefix("([")?.split(']').next()?;
        Some(Self {
            helo: clean(&words[1..client].join(" ")),
            ip: clean(ip),
            host: clean(words.get(by + 1)?),
            protocol: clean(after("with")?),
            id: clean(after("id")?.trim_end_matches(';')),
        })
    }

    /// One line for a trace: `by HOST from IP (helo H) with P id ID`.
    pub fn summary(&self) -> String {
        format!("by {} from {} (helo {}) with {} id {}", self.host, self.ip, self.helo, self.protocol, self.id)
    }
}

/// What a tracking record needs from a message's header section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFacts {
    pub message_id: String,
    /// The Message-ID an automatic message answers (RFC 3834 `Auto-Submitted` other than
    /// `no`, with `In-Reply-To` or the last of `References`); empty for anything else, so
    /// a person's reply never shows up in the trace of the message it replies to.
    pub answers: String,
    /// The `Return-Path:` the final delivery wrote (angle brackets removed).
    pub return_path: Option<String>,
    /// The nearest front that received it.
    pub front: Option<FrontHop>,
}

impl MessageFacts {
    /// Read from the header section (first 64 KiB) of `message`.
    pub fn of(message: &[u8]) -> Self {
        let mut facts = Self::default();
        let (mut automatic, mut in_reply_to, mut references) = (false, None, None);
        for (name, raw) in header_fields(message) {
            let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
            let wanted = ["message-id", "return-path", "received", "auto-submitted", "in-reply-to", "references"];
            if !wanted.iter().any(|n| is(n)) {
                continue;
            }
            let value = unfold(raw);
            if is("message-id") && facts.message_id.is_empty() {
                facts.message_id = clean(value.trim());
            } else if is("return-path") && facts.return_path.is_none() {
                facts.return_path = Some(clean(value.trim().trim_start_matches('<').trim_end_matches('>')));
            } else if is("received") && facts.front.is_none() {
                facts.front = FrontHop::parse(&value);
            } else if is("auto-submitted") {
                automatic = !value.trim().to_ascii_lowercase().starts_with("no");
            } else if is("in-reply-to") && in_reply_to.is_none() {
                in_reply_to = last_msg_id(&value);
            } else if is("references") && references.is_none() {
                references = last_msg_id(&value);
            }
        }
        if automatic {
            facts.answers = in_reply_to.or(references).unwrap_or_default();
        }
        facts
    }
}

/// The last `<...>` of a field (a References list ends with the parent).
fn last_msg_id(value: &str) -> Option<String> {
    let end = value.rfind('>')?;
    let start = value[..end].rfind('<')?;
    Some(clean(&value[start..=end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop() -> FrontHop {
        FrontHop {
            helo: "client.example".into(),
            ip: "192.0.2.7".into(),
            host: "front1.example.edu".into(),
            protocol: "ESMTPS".into(),
            id: "1A2B3C".into(),
        }
    }

    #[test]
    fn a_front_reads_back_the_received_field_it_writes() {
        let header = hop().header(&["using TLSv1.3".into()], Some("bob@example.edu"), "Sun, 6 Dec 2026 20:00:00 +0000");
        let value = header.split_once(':').unwrap().1;
        assert_eq!(FrontHop::parse(value), Some(hop()));
        assert_eq!(FrontHop::parse(" from x (y [192.0.2.1]) by mx.example.org (Postfix) with ESMTP id Q;"), None);
    }

    #[test]
    fn facts_come_from_the_header_only() {
        let mut m = b"Return-Path: <alice@example.edu>\r\n".to_vec();
        m.extend_from_slice(hop().header(&[], None, "now").as_bytes());
        m.extend_from_slice(b"Message-ID: <m1@x>\r\nReceived: from a ([10.0.0.1]) by b (frontd) with ESMTP id Z;\r\n");
        m.extend_from_slice(b"References: <a@x> <b@x>\r\n\r\nMessage-ID: <body@x>\r\n");
        let facts = MessageFacts::of(&m);
        assert_eq!(facts.message_id, "<m1@x>");
        assert_eq!(facts.return_path.as_deref(), Some("alice@example.edu"));
        assert_eq!(facts.front, Some(hop()), "the nearest front, not an earlier one");
        assert_eq!(facts.answers, "", "a person's reply is not part of the original's trace");
        let bounce = b"Auto-Submitted: auto-replied\r\nMessage-ID: <bounce.1@f>\r\nReferences: <a@x> <b@x>\r\n\r\n";
        assert_eq!(MessageFacts::of(bounce).answers, "<b@x>");
    }

    #[test]
    fn a_query_selects_by_every_criterion_it_names() {
        let r = TrackRecord {
            at_s: 100,
            group: "hermes".into(),
            index: 7,
            event: TrackEvent::Delivered,
            message_id: "<m1@x>".into(),
            answers: String::new(),
            queue_id: String::new(),
            from: "Alice@Example.edu".into(),
            to: "bob@example.edu".into(),
            detail: "INBOX".into(),
        };
        let q = |ids: &[&str], from: Option<&str>, to: Option<&str>, since_s| TraceQuery {
            message_ids: ids.iter().map(|s| s.to_string()).collect(),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            since_s,
        };
        assert!(q(&[], None, None, 0).matches(&r));
        assert!(q(&["<m2@x>", "<m1@x>"], Some("alice@"), Some("BOB"), 100).matches(&r));
        assert!(!q(&["<m2@x>"], None, None, 0).matches(&r));
        assert!(!q(&[], Some("carol"), None, 0).matches(&r));
        assert!(!q(&[], None, None, 101).matches(&r));
        let line = serde_json_free_line(&r);
        assert!(q(&["<m1@x>"], Some("ALICE"), Some("bob"), 0).may_match(&line));
        assert!(!q(&["<m3@x>"], None, None, 0).may_match(&line));
    }

    /// A stand-in for the stored JSON line (this crate has no JSON dependency).
    fn serde_json_free_line(r: &TrackRecord) -> String {
        format!("{{\"message_id\":\"{}\",\"from\":\"{}\",\"to\":\"{}\"}}", r.message_id, r.from, r.to)
    }
}
