//! The cluster's records of compromised accounts, as fronts, storage groups and `mailctl`
//! exchange them: the block list every front enforces on every listener (a network, until
//! when, why), the tickets of snagged accounts, and the changes to both. The records live
//! in a storage group's replicated state (the stats group for blocks and tickets, the
//! user's own group for the lock of a user); their bounds and time rules are here, pure.
//! Times are always the proposer's, written in the log.

use serde::{Deserialize, Serialize};

/// Block-list entries kept (the ones expiring soonest are dropped first beyond this).
pub const BLOCKS_MAX: usize = 10_000;
/// Tickets kept (the oldest closed ones go first, then the oldest).
pub const TICKETS_MAX: usize = 2_000;
/// Longest reason, rule, detail or note kept, in bytes.
pub const TEXT_MAX_BYTES: usize = 512;

/// One blocked network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    /// `192.0.2.7/32`, `2001:db8::/64`.
    pub network: String,
    pub since_s: i64,
    pub until_s: i64,
    pub reason: String,
}

/// A snagged account, for the postmaster and the helpdesk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The log index that opened it (unique in its group).
    pub id: u64,
    pub at_s: i64,
    pub user: String,
    /// The rule that fired (`geo-velocity`, `bulk-spoofing`, ...).
    pub rule: String,
    pub detail: String,
    /// The address the trigger came from.
    pub ip: String,
    pub front: String,
    /// Messages held in the queue: `(group, queue id)`.
    pub held: Vec<(String, u64)>,
    /// When and how it was closed (`mailctl phish release`).
    pub closed: Option<(i64, String)>,
}

/// A change to the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum SecurityChange {
    Block {
        network: String,
        until_s: i64,
        reason: String,
    },
    Unblock {
        network: String,
    },
    OpenTicket {
        user: String,
        rule: String,
        detail: String,
        ip: String,
        front: String,
        held: Vec<(String, u64)>,
    },
    CloseTicket {
        id: u64,
        note: String,
    },
    /// Lock a user of this group (sessions closed, logins refused) or unlock (`None`).
    Lock {
        user: String,
        reason: Option<String>,
    },
}

/// `text` cut to [`TEXT_MAX_BYTES`] on a character boundary, without control characters.
pub fn bounded(text: &str) -> String {
    let mut end = text.len().min(TEXT_MAX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().filter(|c| !c.is_control()).collect()
}

/// The records of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    pub blocks: Vec<BlockEntry>,
    pub tickets: Vec<Ticket>,
    /// Users of this group locked, with why.
    pub locked: Vec<(String, String)>,
}

impl SecurityState {
    /// Apply `change`, proposed at `now_s` as log entry `index`; expired blocks go.
    pub fn apply(&mut self, change: &SecurityChange, index: u64, now_s: i64) {
        match change {
            SecurityChange::Block { network, until_s, reason } => {
                self.blocks.retain(|b| &b.network != network);
                let reason = bounded(reason);
                self.blocks.push(BlockEntry { network: bounded(network), since_s: now_s, until_s: *until_s, reason });
            }
            SecurityChange::Unblock { network } => self.blocks.retain(|b| &b.network != network),
            SecurityChange::OpenTicket { user, rule, detail, ip, front, held } => self.tickets.push(Ticket {
                id: index,
                at_s: now_s,
                user: bounded(user),
                rule: bounded(rule),
                detail: bounded(detail),
                ip: bounded(ip),
                front: bounded(front),
                held: held.iter().take(64).cloned().collect(),
                closed: None,
            }),
            SecurityChange::CloseTicket { id, note } => {
                if let Some(t) = self.tickets.iter_mut().find(|t| t.id == *id) {
                    t.closed = Some((now_s, bounded(note)));
                }
            }
            SecurityChange::Lock { user, reason: Some(reason) } => {
                self.locked.retain(|(u, _)| u != user);
                self.locked.push((bounded(user), bounded(reason)));
            }
            SecurityChange::Lock { user, reason: None } => self.locked.retain(|(u, _)| u != user),
        }
        self.bound(now_s);
    }

    fn bound(&mut self, now_s: i64) {
        self.blocks.retain(|b| b.until_s > now_s);
        if self.blocks.len() > BLOCKS_MAX {
            self.blocks.sort_by_key(|b| std::cmp::Reverse(b.until_s));
            self.blocks.truncate(BLOCKS_MAX);
        }
        while self.tickets.len() > TICKETS_MAX {
            let victim = self.tickets.iter().position(|t| t.closed.is_some()).unwrap_or(0);
            self.tickets.remove(victim);
        }
        if self.locked.len() > TICKETS_MAX {
            let excess = self.locked.len() - TICKETS_MAX;
            self.locked.drain(..excess);
        }
    }

    /// Why `user` is locked, if they are.
    pub fn lock_of(&self, user: &str) -> Option<&str> {
        self.locked.iter().find(|(u, _)| u == user).map(|(_, why)| why.as_str())
    }

    /// The blocks in force at `now_s`.
    pub fn blocks_at(&self, now_s: i64) -> Vec<BlockEntry> {
        self.blocks.iter().filter(|b| b.until_s > now_s).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_expire_by_the_log_and_stay_bounded() {
        let mut s = SecurityState::default();
        let block = |n: &str, until_s| SecurityChange::Block { network: n.into(), until_s, reason: "phish".into() };
        s.apply(&block("192.0.2.1/32", 100), 1, 10);
        s.apply(&block("192.0.2.2/32", 50), 2, 10);
        assert_eq!(s.blocks_at(60).len(), 1);
        s.apply(&block("192.0.2.3/32", 500), 3, 60);
        assert_eq!(s.blocks.len(), 2, "the expired one is gone at the next change");
        s.apply(&SecurityChange::Unblock { network: "192.0.2.3/32".into() }, 4, 61);
        assert_eq!(s.blocks.len(), 1);
        for k in 0..(BLOCKS_MAX + 5) {
            s.apply(&block(&format!("10.{}.{}.0/24", k / 256, k % 256), 1000 + k as i64), 10 + k as u64, 70);
        }
        assert_eq!(s.blocks.len(), BLOCKS_MAX);
    }

    #[test]
    fn tickets_open_close_and_stay_bounded_and_locks_come_and_go() {
        let mut s = SecurityState::default();
        let open = SecurityChange::OpenTicket {
            user: "alice@example.edu".into(),
            rule: "geo-velocity".into(),
            detail: "x".repeat(5000),
            ip: "192.0.2.1".into(),
            front: "f1".into(),
            held: vec![],
        };
        s.apply(&open, 7, 100);
        assert_eq!((s.tickets[0].id, s.tickets[0].detail.len()), (7, TEXT_MAX_BYTES));
        s.apply(&SecurityChange::CloseTicket { id: 7, note: "released".into() }, 8, 200);
        assert_eq!(s.tickets[0].closed, Some((200, "released".into())));
        for k in 0..TICKETS_MAX as u64 {
            s.apply(&open, 100 + k, 300);
        }
        assert_eq!(s.tickets.len(), TICKETS_MAX);
        assert!(s.tickets.iter().all(|t| t.id != 7), "the closed ticket went first");
        s.apply(&SecurityChange::Lock { user: "alice@example.edu".into(), reason: Some("phish".into()) }, 1, 1);
        assert_eq!(s.lock_of("alice@example.edu"), Some("phish"));
        s.apply(&SecurityChange::Lock { user: "alice@example.edu".into(), reason: None }, 2, 2);
        assert_eq!(s.lock_of("alice@example.edu"), None);
    }
}
