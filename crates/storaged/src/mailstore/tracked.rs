//! The message-tracking records an applied operation yields (`common::tracking`): one per
//! recipient per hop, from the operation, its response and the message's header. Pure:
//! the records depend only on the log (times are the proposer's, written in the entry),
//! so every replica derives the same ones. Writing them down is `crate::tracking`'s job;
//! nothing here touches a file except [`QueuedFacts::read`], which reads the headers of
//! queued messages before an attempt's record or a delete may remove them.

use std::io::Read;

use common::admin::TriedRecipient;
use common::message_log::clean;
use common::tracking::{MessageFacts, TrackEvent, TrackRecord};

use super::ops::{FiledCopy, MailOp, MailResponse, Outbound};
use super::queue::Queue;

/// Header bytes of a queued message read for its facts.
const QUEUED_HEADER_MAX_BYTES: u64 = 64 * 1024;

/// Queued messages one operation drops at most that get a record each (a postmaster's
/// delete names few; beyond, the rest go untracked rather than read a header each).
const DROPPED_TRACKED_MAX: usize = 1000;

/// What a queue operation's records need of the queued messages it reports on, read
/// before it is applied (an attempt's record may remove the message, a delete does).
#[derive(Debug, Default)]
pub struct QueuedFacts(Vec<Queued>);

#[derive(Debug, Default)]
struct Queued {
    id: u64,
    sender: String,
    pending: Vec<String>,
    facts: MessageFacts,
}

impl QueuedFacts {
    /// The facts of the messages an operation reports on (queue attempts and drops only).
    pub fn read(queue: &Queue, op: &MailOp) -> Option<Self> {
        let ids = match op {
            MailOp::QueueAttempt { id, .. } => std::slice::from_ref(id),
            MailOp::QueueDrop { ids, .. } => &ids[..ids.len().min(DROPPED_TRACKED_MAX)],
            _ => return None,
        };
        Some(Self(ids.iter().filter_map(|id| Queued::read(queue, *id)).collect()))
    }

    fn get(&self, id: u64) -> Option<&Queued> {
        self.0.iter().find(|q| q.id == id)
    }
}

impl Queued {
    fn read(queue: &Queue, id: u64) -> Option<Self> {
        let item = queue.item(id)?;
        let mut head = Vec::new();
        if let Some(file) = queue.body_path(id).and_then(|p| std::fs::File::open(p).ok()) {
            // A body that cannot be read leaves the facts empty; the records still say
            // what happened to whom.
            let _ = file.take(QUEUED_HEADER_MAX_BYTES).read_to_end(&mut head);
        }
        let pending = item.pending().map(str::to_string).collect();
        Some(Self { id, sender: item.sender.clone(), pending, facts: MessageFacts::of(&head) })
    }
}

/// Builds the records of one entry.
struct Entry<'a> {
    group: &'a str,
    index: u64,
    at_s: i64,
    facts: &'a MessageFacts,
    from: &'a str,
}

impl Entry<'_> {
    fn record(&self, event: TrackEvent, to: &str, queue_id: String, detail: String) -> TrackRecord {
        TrackRecord {
            at_s: self.at_s,
            group: self.group.to_string(),
            index: self.index,
            event,
            message_id: self.facts.message_id.clone(),
            answers: self.facts.answers.clone(),
            queue_id,
            from: clean(self.from),
            to: clean(to),
            detail: clean(&detail),
        }
    }

    /// The front's hop, if a front received the message.
    fn received(&self, out: &mut Vec<TrackRecord>) {
        if let Some(hop) = &self.facts.front {
            out.push(self.record(TrackEvent::Received, "", String::new(), hop.summary()));
        }
    }
}

/// The records of operation `op` at position `slot` of entry `index` of `group`, which
/// answered `resp`.
pub fn derive(
    group: &str,
    (index, slot): (u64, usize),
    op: &MailOp,
    resp: &MailResponse,
    queued: Option<QueuedFacts>,
    out: &mut Vec<TrackRecord>,
) {
    match op {
        MailOp::Deliver { recipients, internal_date, message } => {
            deliveries(group, index, *internal_date, message, recipients, "INBOX", resp, out)
        }
        MailOp::DeliverInto { recipients, mailbox, internal_date, message } => {
            deliveries(group, index, *internal_date, message, recipients, mailbox, resp, out)
        }
        MailOp::DeliverFiltered { user, internal_date, message, copies, outbound, .. } => {
            let facts = MessageFacts::of(message);
            let from = facts.return_path.clone().unwrap_or_default();
            let e = Entry { group, index, at_s: *internal_date, facts: &facts, from: &from };
            e.received(out);
            let filed = matches!(resp, MailResponse::Delivered(r) if r.first().is_some_and(Result::is_ok));
            out.push(match resp {
                MailResponse::Delivered(r) if !filed => {
                    let why = r.first().and_then(|r| r.as_ref().err()).map(ToString::to_string).unwrap_or_default();
                    e.record(TrackEvent::Refused, user, String::new(), why)
                }
                _ => e.record(TrackEvent::Delivered, user, String::new(), filed_detail(copies)),
            });
            if filed {
                sieve_outbound(group, (index, slot), *internal_date, outbound, out);
            }
        }
        MailOp::Enqueue { sender, recipients, created_s, message }
        | MailOp::EnqueueKeyed { sender, recipients, created_s, message, .. }
        | MailOp::EnqueueHeld { sender, recipients, created_s, message, .. } => {
            let facts = MessageFacts::of(message);
            let e = Entry { group, index, at_s: *created_s, facts: &facts, from: sender };
            e.received(out);
            let (event, detail) = match (op, resp) {
                (_, MailResponse::Rejected(why)) => (TrackEvent::Refused, why.to_string()),
                (MailOp::EnqueueHeld { reason, .. }, _) => (TrackEvent::Held, reason.clone()),
                _ => (TrackEvent::Queued, String::new()),
            };
            let queue_id = match resp {
                MailResponse::Queued { id } => format!("{group}/{id}"),
                _ => String::new(),
            };
            out.extend(recipients.iter().map(|r| e.record(event, r, queue_id.clone(), detail.clone())));
        }
        MailOp::QueueAttempt { id, at_s, delivered, failed, tried, .. } => {
            let Some(queued) = queued.as_ref().and_then(|q| q.get(*id)) else { return };
            let e = Entry { group, index, at_s: *at_s, facts: &queued.facts, from: &queued.sender };
            let queue_id = format!("{group}/{id}");
            for t in tried {
                let (event, reply) = attempt_fate(t, delivered, failed);
                let detail = if t.via.is_empty() { reply.to_string() } else { format!("via {}: {reply}", t.via) };
                out.push(e.record(event, &t.address, queue_id.clone(), detail));
            }
        }
        MailOp::QueueDrop { at_s, .. } => {
            for q in queued.iter().flat_map(|q| &q.0) {
                let e = Entry { group, index, at_s: *at_s, facts: &q.facts, from: &q.sender };
                let queue_id = format!("{group}/{}", q.id);
                let detail = "removed from the queue undelivered by the postmaster";
                out.extend(q.pending.iter().map(|r| e.record(TrackEvent::Deleted, r, queue_id.clone(), detail.into())));
            }
        }
        MailOp::FrontRefusals { refusals } => out.extend(refusals.iter().map(|r| r.record(group, index))),
        _ => {}
    }
}

/// A tried recipient's fate as the attempt recorded it (an expired one was tried with a
/// temporary reply but failed for good; a failure whose bounce could not be queued waits).
fn attempt_fate<'a>(
    t: &'a TriedRecipient,
    delivered: &[String],
    failed: &'a [(String, String)],
) -> (TrackEvent, &'a str) {
    if delivered.contains(&t.address) {
        (TrackEvent::Sent, &t.reply)
    } else if let Some((_, why)) = failed.iter().find(|(r, _)| *r == t.address) {
        (TrackEvent::Bounced, why)
    } else {
        (TrackEvent::Deferred, &t.reply)
    }
}

#[allow(clippy::too_many_arguments)]
fn deliveries(
    group: &str,
    index: u64,
    at_s: i64,
    message: &[u8],
    recipients: &[String],
    mailbox: &str,
    resp: &MailResponse,
    out: &mut Vec<TrackRecord>,
) {
    let facts = MessageFacts::of(message);
    let from = facts.return_path.clone().unwrap_or_default();
    let e = Entry { group, index, at_s, facts: &facts, from: &from };
    e.received(out);
    let results = match resp {
        MailResponse::Delivered(r) => r.as_slice(),
        _ => &[],
    };
    for (k, rcpt) in recipients.iter().enumerate() {
        out.push(match (results.get(k), resp) {
            (Some(Ok(_)), _) => e.record(TrackEvent::Delivered, rcpt, String::new(), mailbox.to_string()),
            (Some(Err(why)), _) | (None, MailResponse::Rejected(why)) => {
                e.record(TrackEvent::Refused, rcpt, String::new(), why.to_string())
            }
            (None, _) => e.record(TrackEvent::Refused, rcpt, String::new(), "not delivered".into()),
        });
    }
}

/// Where a Sieve script filed a message.
fn filed_detail(copies: &[FiledCopy]) -> String {
    if copies.is_empty() {
        return "discarded by Sieve".into();
    }
    let boxes: Vec<&str> = copies.iter().map(|c| c.mailbox.as_str()).collect();
    format!("filed by Sieve into {}", boxes.join(", "))
}

/// The redirects and vacation replies a filtered delivery queued.
fn sieve_outbound(
    group: &str,
    (index, slot): (u64, usize),
    at_s: i64,
    outbound: &[Outbound],
    out: &mut Vec<TrackRecord>,
) {
    for (k, o) in outbound.iter().enumerate() {
        let facts = MessageFacts::of(&o.message);
        let e = Entry { group, index, at_s, facts: &facts, from: &o.sender };
        let queue_id = format!("{group}/{}", super::store::outbound_queue_id(index, slot, k));
        let detail = if o.sender.is_empty() { "sent by Sieve" } else { "redirected by Sieve" };
        out.extend(o.recipients.iter().map(|r| e.record(TrackEvent::Queued, r, queue_id.clone(), detail.into())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstore::rejection::Rejection;

    const MESSAGE: &[u8] = b"Return-Path: <ann@example.org>\r\nReceived: from c ([192.0.2.9])\r\n\tby front1 (frontd) with ESMTP id F1;\r\n\tnow\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n";

    #[test]
    fn a_delivery_says_who_got_it_and_who_did_not() {
        let op = MailOp::Deliver {
            recipients: vec!["alice".into(), "bob".into()],
            internal_date: 1000,
            message: MESSAGE.to_vec(),
        };
        let resp = MailResponse::Delivered(vec![Ok((1, 5)), Err(Rejection::Frozen)]);
        let mut out = Vec::new();
        derive("hermes", (42, 0), &op, &resp, None, &mut out);
        let got: Vec<(TrackEvent, &str, &str)> =
            out.iter().map(|r| (r.event, r.to.as_str(), r.detail.as_str())).collect();
        assert_eq!(got[0].0, TrackEvent::Received);
        assert!(got[0].2.contains("by front1 from 192.0.2.9") && got[0].2.contains("id F1"), "{}", got[0].2);
        assert_eq!(got[1], (TrackEvent::Delivered, "alice", "INBOX"));
        assert_eq!((got[2].0, got[2].1), (TrackEvent::Refused, "bob"));
        assert!(out.iter().all(|r| r.message_id == "<m@x>" && r.from == "ann@example.org" && r.index == 42));
        assert!(out.iter().all(|r| r.at_s == 1000 && r.group == "hermes"));
    }

    #[test]
    fn an_attempt_records_each_recipients_fate_as_the_runner_decided_it() {
        let tried = |a: &str, reply: &str| TriedRecipient {
            address: a.into(),
            via: "mx [127.0.0.1:25]".into(),
            reply: reply.into(),
        };
        let op = MailOp::QueueAttempt {
            id: 9,
            holder: "front1".into(),
            at_s: 2000,
            delivered: vec!["a@r".into()],
            failed: vec![("b@r".into(), "550 5.1.1 no".into()), ("c@r".into(), "554 5.4.7 expired".into())],
            retry_at_s: 2100,
            error: Some("later".into()),
            tried: vec![
                tried("a@r", "250 ok"),
                tried("b@r", "550 5.1.1 no"),
                tried("c@r", "451 busy"),
                tried("d@r", "451 busy"),
            ],
        };
        let queued = QueuedFacts(vec![super::Queued {
            id: 9,
            sender: "ann@example.org".into(),
            pending: Vec::new(),
            facts: MessageFacts::of(MESSAGE),
        }]);
        let mut out = Vec::new();
        derive("apollo", (50, 0), &op, &MailResponse::Done, Some(queued), &mut out);
        let events: Vec<TrackEvent> = out.iter().map(|r| r.event).collect();
        use TrackEvent::*;
        assert_eq!(events, [Sent, Bounced, Bounced, Deferred]);
        assert_eq!(out[2].detail, "via mx [127.0.0.1:25]: 554 5.4.7 expired");
        assert!(out.iter().all(|r| r.queue_id == "apollo/9" && r.message_id == "<m@x>" && r.at_s == 2000));
    }

    #[test]
    fn a_dropped_message_says_who_never_got_it() {
        let queued = |id, pending: &[&str]| Queued {
            id,
            sender: "ann@example.org".into(),
            pending: pending.iter().map(|p| p.to_string()).collect(),
            facts: MessageFacts::of(MESSAGE),
        };
        let facts = QueuedFacts(vec![queued(7, &["x@r", "y@r"]), queued(8, &["z@r"])]);
        let op = MailOp::QueueDrop { ids: vec![7, 8, 99], at_s: 3000 };
        let mut out = Vec::new();
        derive("apollo", (60, 0), &op, &MailResponse::Done, Some(facts), &mut out);
        let got: Vec<(&str, &str)> = out.iter().map(|r| (r.to.as_str(), r.queue_id.as_str())).collect();
        assert_eq!(got, [("x@r", "apollo/7"), ("y@r", "apollo/7"), ("z@r", "apollo/8")]);
        assert!(out.iter().all(|r| r.event == TrackEvent::Deleted && r.at_s == 3000 && r.message_id == "<m@x>"));
    }

    #[test]
    fn a_fronts_refusals_are_recorded_as_it_reported_them() {
        use common::tracking::FrontRefusal;
        let refusals = vec![
            FrontRefusal::new(
                4000,
                "mx1",
                "192.0.2.7",
                "",
                "",
                "spam@x",
                "nobody@example.edu",
                "550 5.1.1 no such user",
            ),
            FrontRefusal::new(
                4001,
                "mx1",
                "192.0.2.7",
                "<v@x>",
                "mx1/ab",
                "a@x",
                "b@example.edu",
                "554 5.7.1 virus\r\n",
            ),
        ];
        let mut out = Vec::new();
        derive("hermes", (70, 0), &MailOp::FrontRefusals { refusals }, &MailResponse::Done, None, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.event == TrackEvent::Refused && r.group == "hermes" && r.index == 70));
        assert_eq!(
            (out[0].to.as_str(), out[0].detail.as_str()),
            ("nobody@example.edu", "by mx1 to client 192.0.2.7: 550 5.1.1 no such user")
        );
        assert_eq!((out[1].message_id.as_str(), out[1].queue_id.as_str()), ("<v@x>", "mx1/ab"));
        assert!(!out[1].detail.contains('\r'), "cleaned like a log field: {}", out[1].detail);
    }
}
