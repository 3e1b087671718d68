//! The end of an SMTP transaction once its body is in: the fields the scanning stage owns
//! taken out of what the sender wrote, the stage asked, each local recipient's fate decided
//! from their own spam policy, each copy stamped and filed where its fate says (INBOX,
//! Junk, the quarantine), remote recipients queued. One reply per recipient, and a `2xx`
//! for none of them while another's copy is still uncommitted: where any copy failed
//! for now, every recipient gets that temporary reply (a retry may then repeat a committed
//! copy; it never loses one). It never delivers a message the stage refused.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;

use super::session::{Envelope, Mode};
use crate::delivery::{Folder, Resolution};
use crate::scan::policy::Fate;
use crate::scan::{self, rspamd, Outcome, Verdict};
use crate::server::Front;

/// Who sent the transaction, for the scanners.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub mode: Mode,
    pub ip: IpAddr,
    pub helo: Option<&'a str>,
    /// The authenticated user (submission).
    pub user: Option<&'a str>,
}

/// Finish a transaction: `trace` (our `Received:` field) goes on top of `body` (the
/// message as the client sent it, domain aliases collapsed).
pub async fn finish(front: &Front, client: Client<'_>, envelope: &Envelope, trace: &str, body: &[u8]) -> Vec<String> {
    let message = Bytes::from(scan::headers::prefixed_and_stripped(trace.as_bytes(), body));
    let Some(scanner) = &front.scanner else {
        return unscanned(front, envelope, &message).await;
    };
    let all = envelope.all_recipients();
    let scanned = rspamd::Envelope {
        from: &envelope.from,
        recipients: &all,
        ip: client.ip,
        helo: client.helo,
        user: client.user,
    };
    let outcome = scanner.scan(client.mode, &scanned, &message).await;
    let verdict = match outcome {
        Outcome::Refuse { reply, fate } => {
            front.fates.count(&fate, 1);
            tracing::info!(from = %envelope.from, recipients = all.len(), fate = fate.name(), detail = ?fate, "message refused by the scanning stage");
            return vec![reply; all.len()];
        }
        Outcome::Pass(verdict) => verdict,
    };
    if let scan::SpamResult::Scored(report) = &verdict.spam {
        tracing::info!(from = %envelope.from, user = client.user.unwrap_or(""), score = report.score, action = %report.action, "spam score");
        if let (Mode::Submission, Some(user), Some(watch)) = (client.mode, client.user, &front.phish) {
            let held = (envelope.from.as_str(), all.as_slice(), &message[..]);
            if let Some(alarm) = watch.spam_score(user, client.ip, report.score, held).await {
                let reply = format!("554 5.7.1 message held for review ({}); your account is locked", alarm.rule());
                return vec![reply; all.len()];
            }
        }
    }
    let mut replies = vec![String::new(); all.len()];
    let local = file_locally(front, scanner, envelope, &verdict, &message, &mut replies).await;
    if !envelope.remote.is_empty() {
        queue_remote(front, envelope, &message, &mut replies[envelope.recipients.len()..]).await;
    }
    tracing::debug!(copies = local, "transaction filed");
    no_partial_success(replies)
}

/// Whether a delivery's reply says the mailhost could not take it now (`451`: no leader, a
/// timeout, a node down), so the message may wait in the replicated queue instead. A
/// mailbox's own temporary refusals (`452 4.2.2` full, `450 4.2.1` disabled) go back to the
/// sender's server: queueing them here would only move the wait, and bounce from us.
fn mailhost_unavailable(reply: &str) -> bool {
    reply.starts_with("451")
}

/// No scanner: everything to INBOX, as one delivery (or the queue).
async fn unscanned(front: &Front, envelope: &Envelope, message: &[u8]) -> Vec<String> {
    let all = envelope.all_recipients();
    if envelope.direct() {
        let (to, key) = (&envelope.recipients, envelope.retry_key());
        let replies = front.router.deliver_keyed(&envelope.from, to, &[message], Folder::Inbox, key).await;
        if !(replies.iter().all(|r| mailhost_unavailable(r)) && front.queue.is_some()) {
            return no_partial_success(replies);
        }
        tracing::info!(group = ?envelope.group, reply = %replies[0], "mailhost unavailable: queueing the message");
    }
    enqueue(front, envelope, &all, message).await
}

/// One class of local recipients: the same stamp, filed in the same folder.
type Classes = BTreeMap<(Folder, String), (Fate, Vec<usize>)>;

/// Decide and file every local recipient's copy; the number of copies filed.
async fn file_locally(
    front: &Front,
    scanner: &scan::Scanner,
    envelope: &Envelope,
    verdict: &Verdict,
    message: &[u8],
    replies: &mut [String],
) -> usize {
    let mut classes = Classes::new();
    for (i, address) in envelope.recipients.iter().enumerate() {
        let policy = match front.router.resolve(address).await {
            Resolution::Local { account, .. } => account.spam,
            Resolution::Refused(reply) => {
                replies[i] = reply;
                continue;
            }
        };
        let decision = scanner.decide(verdict, policy);
        let fate = scan::fate(verdict, decision.as_ref());
        let folder = match fate {
            Fate::RejectedSpam => {
                front.fates.count(&fate, 1);
                tracing::info!(recipient = %address, fate = fate.name(), "spam refused for this recipient");
                replies[i] = format!("550 5.7.1 <{address}> message refused as spam");
                continue;
            }
            Fate::Junk => Folder::Junk,
            Fate::Quarantined => Folder::Quarantine,
            _ => Folder::Inbox,
        };
        let stamp = scan::stamp(&front.host, &envelope.from, verdict, decision.as_ref());
        classes.entry((folder, stamp)).or_insert_with(|| (fate, Vec::new())).1.push(i);
    }
    let mut filed = 0;
    for ((folder, stamp), (fate, members)) in classes {
        let recipients: Vec<String> = members.iter().map(|i| envelope.recipients[*i].clone()).collect();
        let parts = [stamp.as_bytes(), message];
        let key = envelope.retry_key();
        let mut answers = front.router.deliver_keyed(&envelope.from, &recipients, &parts, folder, key).await;
        if folder == Folder::Inbox && answers.iter().all(|a| mailhost_unavailable(a)) && front.queue.is_some() {
            // The mailhost is down: the stamped copy waits in the replicated queue (which
            // files into INBOX only; Junk and quarantine copies are deferred instead).
            tracing::info!(reply = %answers[0], "mailhost unavailable: queueing the scanned copy");
            answers = enqueue(front, envelope, &recipients, &parts.concat()).await;
        }
        tracing::info!(from = %envelope.from, recipients = recipients.len(), fate = fate.name(), ?folder, reply = %answers[0], "SMTP message filed");
        front.fates.count(&fate, members.len() as u64);
        for (i, answer) in members.iter().zip(answers) {
            filed += usize::from(answer.starts_with('2'));
            replies[*i] = answer;
        }
    }
    filed
}

/// Remote recipients (relaying clients only) onto the queue, unstamped.
async fn queue_remote(front: &Front, envelope: &Envelope, message: &[u8], replies: &mut [String]) {
    let answers = enqueue(front, envelope, &envelope.remote, message).await;
    for (reply, answer) in replies.iter_mut().zip(answers) {
        *reply = answer;
    }
}

async fn enqueue(front: &Front, envelope: &Envelope, recipients: &[String], message: &[u8]) -> Vec<String> {
    let Some(queue) = &front.queue else {
        // The session accepts several mailhosts or remote recipients only with a queue.
        return vec!["451 4.3.0 no queue for this message, try again later".into(); recipients.len()];
    };
    match queue.enqueue_keyed(&envelope.from, recipients, message, envelope.retry_key()).await {
        Ok((group, id)) => vec![format!("250 2.0.0 queued as {group}/{id}"); recipients.len()],
        Err(e @ crate::queue::QueueError::Refused { .. }) => {
            tracing::warn!(error = %e, "queue refused a message");
            vec![format!("452 4.3.1 queue refused the message: {e}"); recipients.len()]
        }
        Err(e) => {
            tracing::warn!(error = %e, "no queue group took the message");
            vec!["451 4.3.0 mail system temporarily unavailable, try again later".into(); recipients.len()]
        }
    }
}

/// Where any recipient's copy failed for now, every recipient gets that reply: DATA has
/// one answer, and a `250` would lose the failed copies.
fn no_partial_success(replies: Vec<String>) -> Vec<String> {
    match replies.iter().find(|r| r.starts_with('4')) {
        Some(temporary) if replies.iter().any(|r| r.starts_with('2')) => vec![temporary.clone(); replies.len()],
        _ => replies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_failure_is_never_hidden_behind_a_250() {
        let mixed = vec!["250 2.0.0 ok".to_string(), "451 4.3.0 later".into(), "550 5.7.1 spam".into()];
        assert_eq!(no_partial_success(mixed), vec!["451 4.3.0 later".to_string(); 3]);
        let refusals = vec!["550 5.7.1 spam".to_string(), "250 2.0.0 ok".into()];
        assert_eq!(no_partial_success(refusals.clone()), refusals, "a permanent refusal of one is its own");
        let deferred = vec!["550 5.1.1 no such user".to_string(), "451 4.3.0 later".into()];
        assert_eq!(no_partial_success(deferred.clone()), deferred);
    }
}
