//! Quotas: how much a user's mail takes (every mailbox: what IMAP's STATUS SIZE counts,
//! summed) against the limits the directory gives (qmail-ldap `mailQuotaSize` and
//! `mailQuotaCount`; 0 is unlimited), and when a delivery crosses the 90 % warning line.
//! Checked by the leader before it proposes (a delivery, APPEND, COPY, MOVE), so two
//! writes in flight at once may both pass: the overshoot is at most one write each. This
//! module must never read a file: it sums indexes it is given.

use std::sync::Arc;

use super::index::MailboxIndex;

/// The share of a quota at which the user is warned, in percent.
pub const WARNING_PERCENT: u64 = 90;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

impl Usage {
    /// The usage of the mailboxes whose indexes these are.
    pub fn of(indexes: impl IntoIterator<Item = Arc<MailboxIndex>>) -> Usage {
        indexes.into_iter().fold(Usage::default(), |u, index| Usage {
            bytes: u.bytes + index.messages.iter().map(|m| m.size).sum::<u64>(),
            messages: u.messages + index.messages.len() as u64,
        })
    }

    pub fn plus(self, bytes: u64, messages: u64) -> Usage {
        Usage { bytes: self.bytes.saturating_add(bytes), messages: self.messages.saturating_add(messages) }
    }
}

/// A user's limits; 0 is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub messages: u64,
}

impl Limit {
    pub fn is_unlimited(&self) -> bool {
        self.bytes == 0 && self.messages == 0
    }

    /// Whether `usage` is within the limits.
    pub fn admits(&self, usage: Usage) -> bool {
        (self.bytes == 0 || usage.bytes <= self.bytes) && (self.messages == 0 || usage.messages <= self.messages)
    }

    /// Whether going from `before` to `after` crosses the warning line of either limit.
    pub fn warning_crossed(&self, before: Usage, after: Usage) -> bool {
        // Rounded up: a one-message quota warns at its one message, not before any.
        let line = |limit: u64| limit.saturating_mul(WARNING_PERCENT).div_ceil(100);
        let crossed = |limit: u64, b: u64, a: u64| limit > 0 && b < line(limit) && a >= line(limit);
        crossed(self.bytes, before.bytes, after.bytes) || crossed(self.messages, before.messages, after.messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_the_warning_line() {
        let limit = Limit { bytes: 1000, messages: 0 };
        assert!(limit.admits(Usage { bytes: 1000, messages: 99 }));
        assert!(!limit.admits(Usage { bytes: 1001, messages: 0 }));
        assert!(Limit::default().admits(Usage { bytes: u64::MAX, messages: u64::MAX }));
        let (b, a) = (Usage { bytes: 800, messages: 1 }, Usage { bytes: 950, messages: 2 });
        assert!(limit.warning_crossed(b, a));
        assert!(!limit.warning_crossed(a, a.plus(10, 1)), "once, when crossing");
        let count = Limit { bytes: 0, messages: 10 };
        assert!(count.warning_crossed(Usage { bytes: 0, messages: 8 }, Usage { bytes: 0, messages: 9 }));
        let one = Limit { bytes: 0, messages: 1 };
        assert!(one.warning_crossed(Usage::default(), Usage { bytes: 0, messages: 1 }));
    }
}
