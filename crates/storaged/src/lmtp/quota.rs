//! Quotas at delivery: a recipient whose quota (from the front's `XUSER=`) would be
//! exceeded gets a temporary failure (`452 4.2.2`: the sender's server retries for days
//! while the user makes room, and nothing is lost); one that crosses 90 % gets one warning
//! in INBOX. This module must never deliver the message itself.

use std::sync::Arc;

use super::session::Recipient;
use crate::group::Group;
use crate::mailstore::quota::{Limit, Usage};
use crate::mailstore::{MailOp, MailRequest, OpId};
use crate::node::Node;

/// A recipient under a quota, as it stood before this delivery.
pub struct Watched {
    group: Arc<Group>,
    limit: Limit,
    before: Usage,
}

/// What the quota says of delivering `size` bytes to `r`: `Err(reply)` when it is full;
/// `Ok(Some(_))` to check the warning line after the delivery; `Ok(None)` when no quota
/// applies (or this node does not lead: the "not the leader" answer comes later).
pub fn check(node: &Node, r: &Recipient, size: usize) -> Result<Option<Watched>, String> {
    let limit = Limit { bytes: r.rules.quota_bytes, messages: r.rules.quota_messages };
    if limit.is_unlimited() {
        return Ok(None);
    }
    let Some(group) = node.group(&r.group).filter(|g| g.is_leader(node.id)) else { return Ok(None) };
    let before = match group.usage(&r.user) {
        Ok(usage) => usage,
        Err(e) => {
            tracing::error!(user = %r.user.as_str(), error = %e, "cannot read the mailbox's usage");
            return Err(format!("451 4.3.0 <{}> temporary failure, try again later", r.address));
        }
    };
    if !limit.admits(before.plus(size as u64, 1)) {
        tracing::info!(user = %r.user.as_str(), bytes = before.bytes, messages = before.messages, "mailbox full");
        return Err(format!("452 4.2.2 <{}> mailbox full, try again later", r.address));
    }
    Ok(Some(Watched { group, limit, before }))
}

/// After a delivery of `size` bytes to `r`: one warning if it crossed the 90 % line.
pub async fn warn_if_crossed(watched: Watched, r: &Recipient, size: usize, now_s: i64) {
    let after = watched.before.plus(size as u64, 1);
    if !watched.limit.warning_crossed(watched.before, after) {
        return;
    }
    let message = warning(r.user.as_str(), watched.limit, after, now_s);
    let id = OpId::digest(&[b"quota-warning", r.user.as_str().as_bytes(), &watched.before.bytes.to_le_bytes()]);
    let op = MailOp::Deliver { recipients: vec![r.user.as_str().to_string()], internal_date: now_s, message };
    if let Err(e) = watched.group.write(MailRequest { op_id: id, op }).await {
        tracing::warn!(user = %r.user.as_str(), error = %e, "the quota warning was not delivered");
    }
}

fn warning(user: &str, limit: Limit, usage: Usage, now_s: i64) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp(now_s, 0).unwrap_or_default().to_rfc2822();
    let domain = user.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let of = |used: u64, max: u64, unit: &str| match max {
        0 => String::new(),
        max => format!("  {used} of {max} {unit} ({}%)\r\n", used.saturating_mul(100) / max),
    };
    format!(
        "From: Mail system <postmaster@{domain}>\r\nTo: <{user}>\r\nSubject: Your mailbox is almost full\r\n\
         Date: {date}\r\nMessage-ID: <quota-warning.{now_s}.{user}>\r\nAuto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Your mailbox is over {pct}% of its quota:\r\n\r\n{bytes}{messages}\r\n\
         When it is full, new mail waits at the sender's server and is returned to the sender\r\n\
         after a few days. Delete or archive old messages (and empty the Trash) to make room.\r\n",
        pct = crate::mailstore::quota::WARNING_PERCENT,
        bytes = of(usage.bytes, limit.bytes, "bytes"),
        messages = of(usage.messages, limit.messages, "messages"),
    )
    .into_bytes()
}
