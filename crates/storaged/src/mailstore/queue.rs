//! The outbound queue of a group: messages a front node could not deliver at once
//! (recipients on several mailhosts, a mailhost down, remote domains), replicated like
//! mail because they are applied from the same log. Owns the queue's envelopes and
//! delivery state (checkpointed with the store's state) and the bodies under `queue/`.
//!
//! Deterministic like the rest of the store: ids are log indexes and every time comes
//! from the operation. Never decides delivery itself: runners lease due messages, try
//! them and record what happened.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use common::admin::{QueueItem, QueuedRecipient, RecipientState};

/// Messages a group's queue holds at most; more are refused (the front answers 452).
pub const QUEUE_MAX: usize = 100_000;
/// Recipients of one queued message at most.
pub const RECIPIENTS_MAX: usize = 1000;
/// Messages one claim leases at most.
pub const CLAIM_MAX: u32 = 256;
/// Longest lease a runner may take.
pub const LEASE_MAX_S: u32 = 3600;
/// Longest error text kept per message.
const ERROR_MAX_BYTES: usize = 512;
/// The next attempt of a held message: never, until a flush releases it.
pub const HELD: i64 = i64::MAX;

/// The queue of one group: envelopes in memory, bodies on disk.
pub struct Queue {
    dir: PathBuf,
    items: BTreeMap<u64, QueueItem>,
    /// The client's retry key of messages a front queued after its own attempt to deliver
    /// them failed (`XMSGKEY`): a runner delivers with it, so that if that first attempt
    /// was committed after all, the storage group recognises the second as the same.
    keys: BTreeMap<u64, [u8; 16]>,
}

/// Why a queue operation was refused; nothing changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueRefusal {
    #[error("queue full ({QUEUE_MAX} messages)")]
    Full,
    #[error("a queued message needs 1 to {RECIPIENTS_MAX} recipients")]
    Recipients,
    #[error("address {0:?} is not a valid envelope address")]
    Address(String),
}

/// An envelope address the queue accepts: printable, no spaces or angle brackets,
/// bounded (RFC 5321 4.5.3.1.3: 256 octets for a path).
fn valid_address(a: &str) -> bool {
    a.len() <= 256 && a.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>') || a.is_empty()
}

fn truncated(s: &str) -> String {
    let mut end = s.len().min(ERROR_MAX_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Queue {
    /// The queue kept under `root/queue`, with the envelopes and retry keys of the last
    /// checkpoint.
    pub fn open(root: &Path, items: Vec<QueueItem>, keys: Vec<(u64, [u8; 16])>) -> io::Result<Self> {
        let dir = root.join("queue");
        fs::create_dir_all(&dir)?;
        let items: BTreeMap<u64, QueueItem> = items.into_iter().map(|i| (i.id, i)).collect();
        let keys = keys.into_iter().filter(|(id, _)| items.contains_key(id)).collect();
        Ok(Self { dir, items, keys })
    }

    /// The envelopes to checkpoint.
    pub fn items(&self) -> impl Iterator<Item = &QueueItem> {
        self.items.values()
    }

    /// The retry keys to checkpoint.
    pub fn keys(&self) -> impl Iterator<Item = (u64, [u8; 16])> + '_ {
        self.keys.iter().map(|(id, key)| (*id, *key))
    }

    /// The retry key message `id` was queued with, if any.
    pub fn key(&self, id: u64) -> Option<[u8; 16]> {
        self.keys.get(&id).copied()
    }

    /// Give queued message `id` the retry key of the delivery attempt that preceded it.
    pub fn set_key(&mut self, id: u64, key: [u8; 16]) {
        if self.items.contains_key(&id) {
            self.keys.insert(id, key);
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The envelope of queued message `id`.
    pub fn item(&self, id: u64) -> Option<&QueueItem> {
        self.items.get(&id)
    }

    /// Where the body of message `id` is (it may be gone by the time it is opened).
    pub fn body_path(&self, id: u64) -> Option<PathBuf> {
        self.items.contains_key(&id).then(|| self.file(id))
    }

    fn file(&self, id: u64) -> PathBuf {
        self.dir.join(Self::file_name(id))
    }

    fn file_name(id: u64) -> String {
        format!("{id:020}.eml")
    }

    /// Queue `message` as entry `id` (the log index). Re-applying writes the same file, by a
    /// new file renamed over it: a queued body is never written in place (a snapshot may
    /// link it).
    pub fn enqueue(
        &mut self,
        id: u64,
        sender: &str,
        recipients: &[String],
        created_s: i64,
        message: &[u8],
    ) -> io::Result<Result<u64, QueueRefusal>> {
        if recipients.is_empty() || recipients.len() > RECIPIENTS_MAX {
            return Ok(Err(QueueRefusal::Recipients));
        }
        if let Some(bad) =
            std::iter::once(sender).chain(recipients.iter().map(String::as_str)).find(|a| !valid_address(a))
        {
            return Ok(Err(QueueRefusal::Address(bad.to_string())));
        }
        if recipients.iter().any(String::is_empty) {
            return Ok(Err(QueueRefusal::Address(String::new())));
        }
        if self.items.len() >= QUEUE_MAX && !self.items.contains_key(&id) {
            return Ok(Err(QueueRefusal::Full));
        }
        super::fileio::replace_private(&self.dir, &Self::file_name(id), message)?;
        let mut seen = std::collections::BTreeSet::new();
        let recipients = recipients
            .iter()
            .filter(|r| seen.insert(r.to_ascii_lowercase()))
            .map(|r| QueuedRecipient { address: r.clone(), state: RecipientState::Pending })
            .collect();
        self.items.insert(
            id,
            QueueItem {
                id,
                sender: sender.to_string(),
                recipients,
                created_s,
                attempts: 0,
                next_attempt_s: created_s,
                last_error: None,
                size_bytes: message.len() as u64,
                lease: None,
            },
        );
        Ok(Ok(id))
    }

    /// Whether any message is due at `now_s` and not leased (a claim would find it).
    pub fn has_due(&self, now_s: i64) -> bool {
        self.items.values().any(|i| i.next_attempt_s <= now_s && i.lease.as_ref().is_none_or(|(_, t)| *t <= now_s))
    }

    /// Lease up to `max` due messages to `holder` until `now_s + lease_s`: oldest due first,
    /// skipping messages another runner holds.
    pub fn claim(&mut self, holder: &str, now_s: i64, lease_s: u32, max: u32) -> Vec<QueueItem> {
        let max = max.min(CLAIM_MAX) as usize;
        let until = now_s + i64::from(lease_s.min(LEASE_MAX_S));
        let mut due: Vec<(i64, u64)> = self
            .items
            .values()
            .filter(|i| i.next_attempt_s <= now_s && i.lease.as_ref().is_none_or(|(_, t)| *t <= now_s))
            .map(|i| (i.next_attempt_s, i.id))
            .collect();
        due.sort_unstable();
        due.truncate(max);
        due.into_iter()
            .map(|(_, id)| {
                let item = self.items.get_mut(&id).expect("due ids are queued");
                item.lease = Some((holder.to_string(), until));
                item.attempts += 1;
                item.clone()
            })
            .collect()
    }

    /// Record an attempt. Delivered and failed recipients are final; when none is pending
    /// the message leaves the queue. Re-recording (a retried request) changes nothing more.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        id: u64,
        holder: &str,
        delivered: &[String],
        failed: &[(String, String)],
        retry_at_s: i64,
        error: Option<&str>,
    ) -> io::Result<()> {
        let Some(item) = self.items.get_mut(&id) else { return Ok(()) };
        for r in item.recipients.iter_mut().filter(|r| r.state == RecipientState::Pending) {
            if delivered.iter().any(|d| d.eq_ignore_ascii_case(&r.address)) {
                r.state = RecipientState::Delivered;
            } else if let Some((_, why)) = failed.iter().find(|(a, _)| a.eq_ignore_ascii_case(&r.address)) {
                r.state = RecipientState::Failed(truncated(why));
            }
        }
        if item.pending().next().is_none() {
            return self.remove(id);
        }
        item.next_attempt_s = retry_at_s;
        if let Some(e) = error {
            item.last_error = Some(truncated(e));
        }
        if item.lease.as_ref().is_some_and(|(h, _)| h == holder) {
            item.lease = None;
        }
        Ok(())
    }

    /// Drop messages (an operator's `mailctl queue delete`).
    pub fn delete(&mut self, ids: &[u64]) -> io::Result<()> {
        ids.iter().try_for_each(|id| self.remove(*id))
    }

    /// Make messages (all if `ids` is empty) due at `now_s`, leases dropped.
    /// Hold message `id` until a flush: it is never due, and says why.
    pub fn hold(&mut self, id: u64, reason: &str) {
        if let Some(item) = self.items.get_mut(&id) {
            item.next_attempt_s = HELD;
            item.last_error = Some(format!("held: {}", common::security::bounded(reason)));
        }
    }

    pub fn flush(&mut self, ids: &[u64], now_s: i64) {
        for item in self.items.values_mut().filter(|i| ids.is_empty() || ids.contains(&i.id)) {
            item.next_attempt_s = item.next_attempt_s.min(now_s);
            item.lease = None;
        }
    }

    fn remove(&mut self, id: u64) -> io::Result<()> {
        self.items.remove(&id);
        self.keys.remove(&id);
        match fs::remove_file(self.file(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpts(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_retry_key_stays_with_its_message_and_leaves_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), vec![], vec![]).unwrap();
        q.enqueue(3, "a@x", &rcpts(&["b@y"]), 100, b"hi").unwrap().unwrap();
        q.set_key(3, [9; 16]);
        q.set_key(4, [8; 16]);
        assert_eq!((q.key(3), q.key(4)), (Some([9; 16]), None), "only a queued message takes a key");
        let reopened = Queue::open(dir.path(), q.items().cloned().collect(), q.keys().collect()).unwrap();
        assert_eq!(reopened.key(3), Some([9; 16]), "checkpointed with the envelopes");
        q.record(3, "r", &rcpts(&["b@y"]), &[], 0, None).unwrap();
        assert_eq!((q.key(3), q.keys().count()), (None, 0), "delivered: the key goes too");
        let stale = Queue::open(dir.path(), vec![], vec![(3, [9; 16])]).unwrap();
        assert_eq!(stale.keys().count(), 0, "a key without its message is dropped on open");
    }

    #[test]
    fn a_message_is_leased_once_retried_and_leaves_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), vec![], vec![]).unwrap();
        assert_eq!(q.enqueue(7, "a@x", &rcpts(&["b@y", "c@z", "B@y"]), 100, b"hi").unwrap(), Ok(7));
        assert_eq!(q.items().next().unwrap().recipients.len(), 2, "one copy per address, any case");
        assert_eq!(fs::read(q.body_path(7).unwrap()).unwrap(), b"hi");
        assert!(q.claim("r1", 99, 60, 10).is_empty(), "not due yet");
        let got = q.claim("r1", 100, 60, 10);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].attempts, 1);
        assert!(q.claim("r2", 120, 60, 10).is_empty(), "leased to r1");
        q.record(7, "r1", &rcpts(&["b@y"]), &[], 400, Some("451 busy")).unwrap();
        assert!(q.claim("r2", 399, 60, 10).is_empty(), "retry time honoured");
        let again = q.claim("r2", 400, 60, 10);
        assert_eq!(again[0].pending().collect::<Vec<_>>(), vec!["c@z"]);
        assert_eq!(again[0].last_error.as_deref(), Some("451 busy"));
        q.record(7, "r2", &[], &[("c@z".into(), "550 no such user".into())], 0, None).unwrap();
        assert!(q.is_empty());
        assert!(!dir.path().join("queue").join(format!("{:020}.eml", 7)).exists());
        // A retried record of a finished message is harmless.
        q.record(7, "r2", &rcpts(&["c@z"]), &[], 0, None).unwrap();
    }

    #[test]
    fn expired_leases_are_taken_over_and_flush_makes_messages_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), vec![], vec![]).unwrap();
        q.enqueue(1, "", &rcpts(&["b@y"]), 0, b"x").unwrap().unwrap();
        assert_eq!(q.claim("r1", 0, 30, 1).len(), 1);
        assert_eq!(q.claim("r2", 30, 30, 1)[0].lease.as_ref().unwrap().0, "r2", "expired lease taken over");
        q.record(1, "r2", &[], &[], 10_000, Some("down")).unwrap();
        q.flush(&[], 50);
        assert_eq!(q.claim("r3", 50, 30, 1).len(), 1);
    }

    #[test]
    fn bad_envelopes_and_a_full_queue_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), vec![], vec![]).unwrap();
        assert_eq!(q.enqueue(1, "a@x", &[], 0, b"").unwrap(), Err(QueueRefusal::Recipients));
        assert!(matches!(q.enqueue(1, "a b@x", &rcpts(&["c@d"]), 0, b"").unwrap(), Err(QueueRefusal::Address(_))));
        assert!(matches!(q.enqueue(1, "", &rcpts(&["<c@d>"]), 0, b"").unwrap(), Err(QueueRefusal::Address(_))));
        assert!(matches!(q.enqueue(1, "", &rcpts(&[""]), 0, b"").unwrap(), Err(QueueRefusal::Address(_))));
        assert!(q.is_empty());
    }
}
