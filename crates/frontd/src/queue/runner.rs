//! The queue runner: every poll it leases due messages from each queue group, tries their
//! pending recipients (local ones through the router, one mailbox per LMTP transaction so
//! a retry is deduplicated by the storage group's operation ids; remote ones through
//! [`Outbound`]), bounces what failed for good or outlived the queue lifetime, and records
//! the outcome with the next retry time (exponential backoff). Any number of fronts may
//! run it: a lease keeps a message with one runner at a time.

use common::clock::now_s;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::admin::{AdminReply, AdminRequest, AttemptOutcome, QueueItem, TriedRecipient};

use super::bounce::Bounce;
use super::QueueClient;
use crate::config::QueueSection;
use crate::delivery::{Folder, Router};
use crate::outbound::Outbound;

/// Messages leased per claim.
const CLAIM_BATCH: u32 = 32;

/// What the runner needs.
pub struct Runner {
    pub queue: Arc<QueueClient>,
    pub router: Arc<Router>,
    pub outbound: Arc<Outbound>,
    pub settings: QueueSection,
    pub local_domains: Vec<String>,
    pub host: String,
    /// This runner's name in leases.
    pub holder: String,
    pub metrics: Arc<crate::metrics::FrontMetrics>,
}

/// Seconds to wait before attempt `attempts + 1`: `retry_min_s · 2^(attempts-1)`, capped.
pub fn backoff_s(attempts: u32, min_s: u64, max_s: u64) -> u64 {
    let shift = attempts.saturating_sub(1).min(32);
    min_s.saturating_mul(1u64 << shift).min(max_s)
}

/// How one recipient's reply counts.
fn verdict(reply: &str) -> Verdict {
    match reply.as_bytes().first() {
        Some(b'2') => Verdict::Delivered,
        Some(b'5') => Verdict::Failed,
        _ => Verdict::Later,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    Failed,
    Later,
}

impl Runner {
    /// Run forever.
    pub async fn run(self: Arc<Self>) {
        let poll = Duration::from_millis(self.settings.poll_ms);
        loop {
            let mut busy = false;
            for group in self.queue.groups().to_vec() {
                busy |= self.clone().pass(&group).await;
            }
            if !busy {
                tokio::time::sleep(poll).await;
            }
        }
    }

    /// One claim on `group` and the attempts it leased; whether it found any.
    async fn pass(self: Arc<Self>, group: &str) -> bool {
        let claim = AdminRequest::Claim {
            group: group.to_string(),
            holder: self.holder.clone(),
            lease_s: self.settings.lease_s,
            max: CLAIM_BATCH,
        };
        let items = match self.queue.call(group, claim).await {
            Ok(AdminReply::Items(items)) => items,
            Ok(other) => {
                tracing::warn!(group, reply = ?other, "unexpected answer to a queue claim");
                return false;
            }
            Err(e) => {
                tracing::debug!(group, error = %e, "queue not reachable");
                return false;
            }
        };
        if items.is_empty() {
            return false;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for item in items {
            let runner = self.clone();
            let group = group.to_string();
            tasks.spawn(async move { runner.attempt(&group, item).await });
        }
        while tasks.join_next().await.is_some() {}
        true
    }

    /// Try the pending recipients of one leased message and record what happened.
    async fn attempt(&self, group: &str, item: QueueItem) {
        let (body, key) = match self
            .queue
            .call(group, AdminRequest::Read { group: group.to_string(), id: item.id })
            .await
        {
            Ok(AdminReply::Message(Some(body))) => (body, None),
            Ok(AdminReply::KeyedMessage { body, key }) => (body.into_vec(), Some(key)),
            Ok(AdminReply::Message(None)) => return,
            other => {
                tracing::warn!(group, id = item.id, reply = ?other, "cannot read a queued message; it waits for its lease to end");
                return;
            }
        };
        let pending: Vec<String> = item.pending().map(str::to_string).collect();
        let mut outcome =
            AttemptOutcome { delivered: Vec::new(), failed: Vec::new(), retry_at_s: 0, error: None, tried: Vec::new() };
        let mut later: Vec<(String, String)> = Vec::new();
        let mut remote: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let (queue_id, message_id, started) =
            (format!("{group}/{}", item.id), common::message_log::message_id(&body), std::time::Instant::now());
        let mut file = |rcpt: String, via: &str, reply: String, outcome: &mut AttemptOutcome| {
            common::message_log::MessageLine {
                hop: "queue",
                peer: None,
                message_id: message_id.as_deref(),
                queue_id: &queue_id,
                from: &item.sender,
                to: &rcpt,
                size_bytes: body.len(),
                reply: &reply,
                latency: started.elapsed(),
            }
            .log();
            let verdict = verdict(&reply);
            outcome.tried.push(TriedRecipient {
                address: common::message_log::clean(&rcpt),
                via: via.to_string(),
                reply: common::message_log::clean(&reply),
            });
            self.metrics.outbound(match verdict {
                Verdict::Delivered => "sent",
                Verdict::Failed => "bounced",
                Verdict::Later => "deferred",
            });
            match verdict {
                Verdict::Delivered => outcome.delivered.push(rcpt),
                Verdict::Failed => outcome.failed.push((rcpt, reply)),
                Verdict::Later => later.push((rcpt, reply)),
            }
        };
        let mut local = Vec::new();
        for rcpt in pending {
            let domain = rcpt.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
            if self.local_domains.contains(&domain) {
                local.push(rcpt);
            } else {
                remote.entry(domain).or_default().push(rcpt);
            }
        }
        // All local recipients in one delivery: with a retry key, each group then sees the
        // same mailboxes as the front's own attempt did, and so the same operation.
        if !local.is_empty() {
            let replies = self.router.deliver_keyed(&item.sender, &local, &[&body], Folder::Inbox, key).await;
            for (rcpt, reply) in local.into_iter().zip(replies) {
                file(rcpt, "lmtp", reply, &mut outcome);
            }
        }
        for (domain, rcpts) in remote {
            let sent = self.outbound.send(&domain, &item.sender, &rcpts, &body).await;
            for (rcpt, reply) in rcpts.into_iter().zip(sent.replies) {
                file(rcpt, &sent.via, reply, &mut outcome);
            }
        }
        let now = now_s();
        let expired = now.saturating_sub(item.created_s) >= self.settings.lifetime_s as i64;
        if expired {
            for (rcpt, reply) in later.drain(..) {
                let why = format!("554 5.4.7 delivery time expired after {} attempts; last: {reply}", item.attempts);
                outcome.failed.push((rcpt, why));
            }
        }
        outcome.error = later.first().map(|(r, reply)| format!("<{r}>: {reply}"));
        let wait = backoff_s(item.attempts, self.settings.retry_min_s, self.settings.retry_max_s);
        outcome.retry_at_s = now + wait as i64;
        if !outcome.failed.is_empty() && !item.sender.is_empty() && !self.bounce(group, &item, &outcome, &body).await {
            // Without its bounce a failure would be silent: try these again later instead.
            outcome.failed.clear();
        }
        tracing::info!(
            group,
            id = item.id,
            attempt = item.attempts,
            delivered = outcome.delivered.len(),
            failed = outcome.failed.len(),
            later = later.len(),
            "queue attempt"
        );
        let record =
            AdminRequest::Record { group: group.to_string(), id: item.id, holder: self.holder.clone(), outcome };
        if let Err(e) = self.queue.call(group, record).await {
            tracing::warn!(group, id = item.id, error = %e, "attempt not recorded; the message is tried again after its lease");
        }
    }

    /// Queue the bounce for the failed recipients; whether it is queued. Its operation id
    /// comes from the message and the failures, so a repeated attempt bounces once.
    async fn bounce(&self, group: &str, item: &QueueItem, outcome: &AttemptOutcome, body: &[u8]) -> bool {
        let now = chrono::Utc::now();
        let arrival = chrono::DateTime::from_timestamp(item.created_s, 0).unwrap_or(now);
        let mut parts: Vec<&[u8]> = vec![b"bounce", group.as_bytes(), &[]];
        let id = item.id.to_le_bytes();
        parts[2] = &id;
        parts.extend(outcome.failed.iter().map(|(r, _)| r.as_bytes()));
        let op_id = common_digest(&parts);
        let token = u64::from_le_bytes(op_id[..8].try_into().expect("8 bytes"));
        let message = Bounce {
            reporting_host: &self.host,
            to: &item.sender,
            failures: &outcome.failed,
            arrival,
            now,
            original: body,
            token,
        }
        .render();
        let request = AdminRequest::Enqueue {
            group: group.to_string(),
            op_id,
            sender: String::new(),
            recipients: vec![item.sender.clone()],
            message,
            key: None,
        };
        match self.queue.call(group, request).await {
            Ok(AdminReply::Queued { id }) => {
                tracing::info!(group, id = item.id, bounce = id, to = %item.sender, "bounce queued");
                true
            }
            other => {
                tracing::warn!(group, id = item.id, reply = ?other, "bounce not queued");
                false
            }
        }
    }
}

/// A 128-bit digest of length-prefixed parts.
fn common_digest(parts: &[&[u8]]) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize()[..16].try_into().expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_s(1, 60, 3600), 60);
        assert_eq!(backoff_s(2, 60, 3600), 120);
        assert_eq!(backoff_s(4, 60, 3600), 480);
        assert_eq!(backoff_s(10, 60, 3600), 3600);
        assert_eq!(backoff_s(u32::MAX, 60, 3600), 3600, "no overflow");
        assert_eq!(backoff_s(0, 60, 3600), 60);
    }

    #[test]
    fn replies_count_by_their_first_digit() {
        assert_eq!(verdict("250 2.0.0 ok"), Verdict::Delivered);
        assert_eq!(verdict("550 5.1.1 no"), Verdict::Failed);
        assert_eq!(verdict("451 4.3.0 later"), Verdict::Later);
        assert_eq!(verdict(""), Verdict::Later);
    }
}
