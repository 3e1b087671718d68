//! Spam-training intents: a message moved or copied into `Junk` is to be learned as spam;
//! one moved out of `Junk`, or released from the quarantine, as ham. The MOVE/COPY's own
//! apply records the intent (replicated and checkpointed with the store: a failover neither
//! loses nor repeats it), the leader carries it out after commit (`crate::group::training`)
//! and a `TrainingDone` entry retires it. At most once per message (its EMAILID) and
//! direction. Bounded: [`PENDING_MAX`] waiting (the oldest give way), [`LEARNED_MAX`]
//! remembered. It never reads mail and never talks to rspamd itself.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::names::{MailboxName, QUARANTINE};

pub const PENDING_MAX: usize = 10_000;
pub const LEARNED_MAX: usize = 100_000;
const JUNK: &str = "Junk";
const TRASH: &str = "Trash";

/// One message to learn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub user: String,
    /// Where the message is now (the move's destination) and its UID there.
    pub mailbox: String,
    pub uid: u32,
    pub email_id: u64,
    /// Spam (into Junk) or ham (out of Junk or the quarantine).
    pub spam: bool,
}

/// What the checkpoint keeps: pending intents by id, and what was learned.
pub type TrainingState = (Vec<(u64, Intent)>, Vec<(u64, bool)>);

#[derive(Debug, Clone, Default)]
pub struct Training {
    pending: BTreeMap<u64, Intent>,
    /// `(email_id, spam)` of every pending intent: a MOVE of many messages checks each in
    /// constant time, not against every waiting intent.
    waiting: HashSet<(u64, bool)>,
    learned: BTreeSet<(u64, bool)>,
    learned_order: VecDeque<(u64, bool)>,
}

/// What a move from `from` to `to` teaches: `Some(true)` spam, `Some(false)` ham.
pub fn direction(from: &MailboxName, to: &MailboxName) -> Option<bool> {
    let (from, to) = (from.as_str(), to.as_str());
    if to == JUNK && from != JUNK {
        return Some(true);
    }
    let rescued = from == JUNK || from == QUARANTINE;
    (rescued && to != JUNK && to != TRASH && to != QUARANTINE).then_some(false)
}

impl Training {
    pub fn from_state((pending, learned): TrainingState) -> Self {
        let mut t = Self { pending: pending.into_iter().collect(), ..Self::default() };
        t.waiting = t.pending.values().map(|i| (i.email_id, i.spam)).collect();
        learned.into_iter().for_each(|l| t.remember(l));
        t
    }

    pub fn state(&self) -> TrainingState {
        (self.pending.iter().map(|(id, i)| (*id, i.clone())).collect(), self.learned_order.iter().copied().collect())
    }

    /// Record `intent` under `id` (unique per log entry and message), unless this message
    /// was learned, or is waiting, in this direction already.
    pub fn record(&mut self, id: u64, intent: Intent) {
        let key = (intent.email_id, intent.spam);
        if self.learned.contains(&key) || !self.waiting.insert(key) {
            return;
        }
        self.pending.insert(id, intent);
        while self.pending.len() > PENDING_MAX {
            if let Some((_, old)) = self.pending.pop_first() {
                self.waiting.remove(&(old.email_id, old.spam));
            }
        }
    }

    /// Retire intents carried out (or that cannot be: their message is gone).
    pub fn done(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some(i) = self.pending.remove(id) {
                self.waiting.remove(&(i.email_id, i.spam));
                self.remember((i.email_id, i.spam));
            }
        }
    }

    fn remember(&mut self, key: (u64, bool)) {
        if self.learned.insert(key) {
            self.learned_order.push_back(key);
        }
        while self.learned_order.len() > LEARNED_MAX {
            if let Some(old) = self.learned_order.pop_front() {
                self.learned.remove(&old);
            }
        }
    }

    /// Messages of `user` moved from `from` to `to` (`(old uid, new uid)` pairs): waiting
    /// intents follow them, so a message moved on before it was learned is still found.
    pub fn relocate(&mut self, user: &str, from: &MailboxName, to: &MailboxName, pairs: &[(u32, u32)]) {
        if self.pending.is_empty() {
            return;
        }
        let moved: std::collections::HashMap<u32, u32> = pairs.iter().copied().collect();
        for i in self.pending.values_mut().filter(|i| i.user == user && i.mailbox == from.as_str()) {
            if let Some(new) = moved.get(&i.uid) {
                i.mailbox = to.as_str().to_string();
                i.uid = *new;
            }
        }
    }

    /// The oldest `max` waiting intents.
    pub fn pending(&self, max: usize) -> Vec<(u64, Intent)> {
        self.pending.iter().take(max).map(|(id, i)| (*id, i.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> MailboxName {
        MailboxName::parse(n).unwrap()
    }

    fn intent(email_id: u64, spam: bool) -> Intent {
        Intent { user: "u".into(), mailbox: "Junk".into(), uid: 1, email_id, spam }
    }

    #[test]
    fn moves_into_junk_teach_spam_and_rescues_teach_ham() {
        assert_eq!(direction(&name("INBOX"), &name("Junk")), Some(true));
        assert_eq!(direction(&name("Junk"), &name("INBOX")), Some(false));
        assert_eq!(direction(&name("Quarantine"), &name("INBOX")), Some(false));
        assert_eq!(direction(&name("Junk"), &name("Trash")), None, "deleting spam teaches nothing");
        assert_eq!(direction(&name("INBOX"), &name("Archive")), None);
        assert_eq!(direction(&name("Junk"), &name("Junk")), None);
    }

    #[test]
    fn each_message_is_learned_once_per_direction() {
        let mut t = Training::default();
        t.record(1, intent(7, true));
        t.record(2, intent(7, true));
        assert_eq!(t.pending(10).len(), 1, "waiting already");
        t.done(&[1]);
        t.record(3, intent(7, true));
        assert!(t.pending(10).is_empty(), "learned already");
        t.record(4, intent(7, false));
        assert_eq!(t.pending(10), vec![(4, intent(7, false))], "the other direction is news");
        let again = Training::from_state(t.state());
        assert_eq!(again.state(), t.state());
        t.relocate("u", &name("Junk"), &name("INBOX"), &[(1, 9)]);
        assert_eq!(t.pending(10)[0].1.mailbox, "INBOX");
        assert_eq!(t.pending(10)[0].1.uid, 9, "the intent follows its message");
    }
}
