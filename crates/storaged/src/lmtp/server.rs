//! The LMTP server: bounded line reading, one task per connection, and delivery through
//! the Raft group of each recipient. A recipient gets `250` only after its group
//! committed and applied the delivery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::message_log::MessageLine;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::filter::{Delivery, Filtered};
use super::session::{Action, Context, Envelope, Limits, PeerAuth, Session};
use crate::group::access::AccessError;
use crate::line::{read_data, read_line_within, Data, Line};
use crate::mailstore::{MailOp, MailRequest, MailResponse, OpId, UserName};
use crate::node::Node;

/// Longest command line: an address and its parameters, `XUSER=` the largest (see
/// `common::recipient_rules::PARAM_MAX_BYTES`).
const COMMAND_LINE_MAX: usize = 1024 + common::recipient_rules::PARAM_MAX_BYTES;
/// Idle time before a connection is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Read buffer per connection.
const READ_BUFFER_BYTES: usize = 32 << 10;

/// Serve LMTP on `listener` until it fails.
pub async fn serve(listener: TcpListener, node: Arc<Node>) -> std::io::Result<()> {
    let max = node.limits.connections_max;
    crate::accept::serve(listener, max, "LMTP", b"421 4.3.2 too many connections\r\n", move |stream, _| {
        handle(stream, node.clone())
    })
    .await
}

struct ConnContext<'a> {
    node: &'a Node,
}

impl Context for ConnContext<'_> {
    fn resolve(&self, address: &str, mailhost: Option<&str>) -> Option<(UserName, String)> {
        if let Some(group) = mailhost.filter(|g| self.node.serves(g)) {
            return Some((UserName::parse(address).ok()?, group.to_string()));
        }
        self.node.users().resolve(address).filter(|(_, g)| self.node.serves(g))
    }

    fn not_leader(&self, group: &str) -> Option<String> {
        let g = self.node.group(group)?;
        if g.is_leader(self.node.id) {
            return None;
        }
        Some(match g.leader_lmtp() {
            Some(addr) => format!("leader is {addr}"),
            None => "no leader elected yet, retry shortly".into(),
        })
    }
}

async fn handle(stream: TcpStream, node: Arc<Node>) -> std::io::Result<()> {
    node.metrics.sessions.opened("lmtp");
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    // Message bodies arrive in large pieces; LMTP connections are few (the fronts').
    let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
    let limits = Limits { message_max: node.limits.message_max_bytes, recipients_max: node.limits.recipients_max };
    let mut session = Session::new(node.host.clone(), limits, PeerAuth::new(node.cluster_key().clone()));
    wr.write_all(format!("{}\r\n", session.greeting()).as_bytes()).await?;
    // Data lines may be long (no line limit beyond the message limit); commands are short.
    loop {
        let actions = if session.in_data() {
            match read_data(&mut rd, limits.message_max, IDLE_TIMEOUT).await? {
                Data::Idle => {
                    wr.write_all(b"421 4.4.2 idle too long\r\n").await?;
                    return Ok(());
                }
                Data::Eof => return Ok(()),
                Data::TooBig => session.data_body(None),
                Data::Complete(body) => session.data_body(Some(body)),
            }
        } else {
            match read_line_within(&mut rd, COMMAND_LINE_MAX, IDLE_TIMEOUT).await? {
                Line::Idle => {
                    wr.write_all(b"421 4.4.2 idle too long\r\n").await?;
                    return Ok(());
                }
                Line::Eof => return Ok(()),
                Line::TooLong { .. } => vec![Action::Reply("500 5.5.2 line too long".into())],
                Line::Complete(l) => session.command(&l, &ConnContext { node: &node }),
            }
        };
        let mut out = Vec::new();
        let mut close = false;
        for action in actions {
            match action {
                Action::Reply(r) => {
                    out.extend_from_slice(r.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Action::Deliver(env) => {
                    for r in deliver(&node, env).await {
                        out.extend_from_slice(r.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                Action::Close => close = true,
            }
        }
        // Replies go out per input line; pipelined commands are simply read in order.
        if !out.is_empty() {
            wr.write_all(&out).await?;
        }
        if close {
            return Ok(());
        }
    }
}

/// Where a recipient's copy was committed: its group and log index.
type Committed<'e> = Option<(&'e str, u64)>;

/// Deliver `env` through each recipient's group; one reply line per recipient, in order.
async fn deliver(node: &Node, env: Envelope) -> Vec<String> {
    let started = Instant::now();
    let mut message = format!("Return-Path: <{}>\r\n", env.from).into_bytes();
    message.extend_from_slice(&env.data);
    // A stray NUL (SMTP forbids it; strangers send it) would make BODY[] unsendable.
    if let std::borrow::Cow::Owned(fixed) = crate::imap::sendable::sendable(&message) {
        message = fixed;
    }
    let size = message.len();
    let internal_date =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let message_id = common::message_log::message_id(&message);
    let mut replies = vec![String::new(); env.recipients.len()];
    let mut indexes = vec![None; env.recipients.len()];
    let (unfiltered, watched) = per_recipient(node, &env, &message, internal_date, (&mut replies, &mut indexes)).await;
    // One entry per group and folder.
    let mut by_group: BTreeMap<(&str, Option<&str>), Vec<usize>> = BTreeMap::new();
    for k in unfiltered {
        let r = &env.recipients[k];
        by_group.entry((r.group.as_str(), r.folder)).or_default().push(k);
    }
    let groups = by_group.len();
    for (n, ((group_name, folder), idxs)) in by_group.into_iter().enumerate() {
        let users: Vec<String> = idxs.iter().map(|k| env.recipients[*k].user.as_str().to_string()).collect();
        let mut parts: Vec<&[u8]> = match &env.message_key {
            Some(key) => vec![b"key", key],
            None => vec![env.from.as_bytes(), &message],
        };
        parts.extend(users.iter().map(|u| u.as_bytes()));
        parts.extend(folder.map(str::as_bytes));
        let op_id = OpId::digest(&parts);
        // The last group takes the body itself: a 64 KiB copy less per delivery.
        let message = if n + 1 == groups { std::mem::take(&mut message) } else { message.clone() };
        let op = match folder {
            None => MailOp::Deliver { recipients: users.clone(), internal_date, message },
            Some(f) => MailOp::DeliverInto { recipients: users.clone(), mailbox: f.into(), internal_date, message },
        };
        let req = MailRequest { op_id, op };
        let Some(group) = node.group(group_name) else { continue };
        // A deliberately broken build for the chaos checker to catch (never in a release):
        // answer 250 as soon as the leader has the message, before it is committed.
        #[cfg(feature = "broken-early-ack")]
        if group.is_leader(node.id) {
            let raft = group.raft.clone();
            tokio::spawn(async move { raft.client_write(req).await });
            for k in &idxs {
                replies[*k] = format!("250 2.0.0 <{}> accepted (not yet committed)", env.recipients[*k].address);
            }
            continue;
        }
        let result = group.write(req).await;
        for (pos, k) in idxs.iter().enumerate() {
            indexes[*k] = result.as_ref().ok().map(|c| (group_name, c.index));
            let outcome = Outcome { group: &group, group_name };
            replies[*k] = outcome.reply(&result, pos, &env.recipients[*k].address);
        }
    }
    for (k, w) in watched {
        if replies[k].starts_with("250") {
            super::quota::warn_if_crossed(w, &env.recipients[k], size, internal_date).await;
        }
    }
    for ((reply, r), index) in replies.iter().zip(&env.recipients).zip(&indexes) {
        let queue_id = index.map(|(g, i)| format!("{g}@{i}")).unwrap_or_else(|| r.group.clone());
        let latency = started.elapsed();
        let (from, to, message_id) = (&env.from, &r.address, message_id.as_deref());
        let line = MessageLine {
            hop: "lmtp",
            peer: None,
            message_id,
            queue_id: &queue_id,
            from,
            to,
            size_bytes: size,
            reply,
            latency,
        };
        line.log();
        node.metrics.lmtp_recipient(reply, size, latency);
    }
    replies
}

/// What each recipient's quota and filter decide, before the shared entries: refusals and
/// each filtered recipient's own entry answered in `replies`; returns the recipients left
/// for the shared entries, and those whose quota's warning line to check afterwards.
async fn per_recipient<'e>(
    node: &Node,
    env: &'e Envelope,
    message: &[u8],
    internal_date: i64,
    (replies, indexes): (&mut [String], &mut [Committed<'e>]),
) -> (Vec<usize>, Vec<(usize, super::quota::Watched)>) {
    let mut watched = Vec::new();
    let mut unfiltered = Vec::new();
    for (k, r) in env.recipients.iter().enumerate() {
        match super::quota::check(node, r, message.len()) {
            Err(reply) => {
                replies[k] = reply;
                continue;
            }
            Ok(Some(w)) => watched.push((k, w)),
            Ok(None) => {}
        }
        match sieve_filter(node, r, &env.from, message, internal_date) {
            None | Some((_, Filtered::Unfiltered)) => unfiltered.push(k),
            Some((_, Filtered::Rejected(reason))) => replies[k] = rejected_reply(&r.address, &reason),
            Some((group, Filtered::Deliver(op))) => {
                let user = r.user.as_str().as_bytes();
                let parts: Vec<&[u8]> = match &env.message_key {
                    Some(key) => vec![b"sieve-key", key, user],
                    None => vec![b"sieve", env.from.as_bytes(), message, user],
                };
                let result = group.write(MailRequest { op_id: OpId::digest(&parts), op }).await;
                indexes[k] = result.as_ref().ok().map(|c| (r.group.as_str(), c.index));
                let outcome = Outcome { group: &group, group_name: &r.group };
                replies[k] = outcome.reply(&result, 0, &r.address);
            }
        }
    }
    (unfiltered, watched)
}

/// The recipient's Sieve verdict, when the delivery is to their INBOX and this node leads
/// their group (a follower answers "not the leader" below, without running anything).
fn sieve_filter(
    node: &Node,
    r: &super::session::Recipient,
    from: &str,
    message: &[u8],
    internal_date: i64,
) -> Option<(Arc<crate::group::Group>, Filtered)> {
    let group = node.group(&r.group)?;
    if r.folder.is_some() || !group.is_leader(node.id) {
        return None;
    }
    let srs = node.srs();
    let global_dir = node.sieve_global_dir();
    let programs = &node.sieve_programs;
    let delivery =
        Delivery { envelope_from: from, srs: &srs, global_dir, programs, address: &r.address, message, internal_date };
    let filtered = super::filter::filter(&group, &r.user, &delivery, &r.rules);
    Some((group, filtered))
}

/// The reply for a recipient whose script rejected the message (RFC 5429 §2.1: refused in
/// the protocol, so the sending server bounces it): one line, the script's reason.
fn rejected_reply(addr: &str, reason: &str) -> String {
    let reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(400).collect();
    let reason = reason.trim();
    let reason = if reason.is_empty() { "message rejected by the recipient's filter" } else { reason };
    format!("550 5.7.1 <{addr}> {reason}")
}

/// A committed (or failed) delivery entry, as LMTP replies.
struct Outcome<'a> {
    group: &'a crate::group::Group,
    group_name: &'a str,
}

impl Outcome<'_> {
    /// The reply for the recipient at `pos` of the entry.
    fn reply(&self, result: &Result<crate::group::access::Committed, AccessError>, pos: usize, addr: &str) -> String {
        let group_name = self.group_name;
        match result {
            Ok(committed) => match &committed.data {
                MailResponse::Delivered(rs) => match rs.get(pos) {
                    Some(Ok((_, uid))) => format!("250 2.0.0 <{addr}> delivered (uid {uid})"),
                    Some(Err(e)) => refusal_reply(addr, e),
                    None => format!("451 4.3.0 <{addr}> internal error"),
                },
                other => format!("451 4.3.0 <{addr}> unexpected result {other:?}"),
            },
            Err(AccessError::NotLeader { leader, .. }) => {
                let hint = leader
                    .and_then(|id| self.group.member_lmtp(id))
                    .map_or_else(|| "no leader elected yet, retry shortly".to_string(), |a| format!("leader is {a}"));
                format!("451 4.3.0 <{addr}> not the leader for mailhost {group_name}; {hint}")
            }
            Err(AccessError::NoRoom) => {
                format!("452 4.3.1 <{addr}> the mail system's storage is full, try again later")
            }
            Err(AccessError::Timeout(_)) => {
                tracing::warn!(group = %group_name, "delivery timed out");
                format!("451 4.4.7 <{addr}> delivery timed out, try again later")
            }
            Err(e) => {
                tracing::warn!(group = %group_name, error = %e, "delivery failed");
                format!("451 4.3.0 <{addr}> temporary failure, try again later")
            }
        }
    }
}

/// The LMTP reply for one recipient the store refused.
fn refusal_reply(addr: &str, refusal: &crate::mailstore::Rejection) -> String {
    use crate::mailstore::Rejection as R;
    match refusal {
        R::Frozen | R::MovedTo(_) => format!("451 4.2.1 <{addr}> {refusal}"),
        R::TooLarge(_) => format!("552 5.3.4 <{addr}> {refusal}"),
        R::NoMailbox(_) | R::Cannot(_) | R::MailboxExists(_) | R::UidValidityDiffers(_) => {
            format!("550 5.1.1 <{addr}> {refusal}")
        }
        R::Limit(_) => format!("452 4.3.1 <{addr}> {refusal}"),
        R::Malformed(_)
        | R::Other(_)
        | R::NoScript(_)
        | R::ScriptActive(_)
        | R::ScriptExists(_)
        | R::ScriptQuota(_) => {
            format!("451 4.3.0 <{addr}> {refusal}")
        }
    }
}
