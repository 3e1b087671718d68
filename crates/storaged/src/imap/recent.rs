//! Which session first sees a message: the `\Recent` flag of IMAP4rev1 (RFC 3501 §2.3.2).
//! Per mailbox, the lowest UID no session has claimed yet; selecting a mailbox (or being
//! told of new mail in it) claims everything below UIDNEXT, and those messages are recent
//! in that session only. Claims live in the serving node's memory, not in the Raft log (a
//! read must not cost a commit): after a restart or a leader change, a mailbox's first
//! unclaimed UID starts again at its oldest message still in Maildir `new/`, which is
//! where Maildir keeps mail no client has looked at. A mailbox deleted and created again
//! under the same name has a new UIDVALIDITY, and its claims start over with it. Bounded:
//! beyond [`MAILBOXES_MAX`]
//! mailboxes the table starts over, which only makes some mail recent a second time.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::mailstore::index::MailboxIndex;
use crate::mailstore::{MailboxName, UserName};

/// Mailboxes whose claims are remembered.
pub const MAILBOXES_MAX: usize = 100_000;

/// The claims of one node's sessions.
#[derive(Debug, Default)]
pub struct RecentClaims {
    /// Per mailbox: the UIDVALIDITY the claim is about, and the first unclaimed UID.
    first_unclaimed: Mutex<HashMap<(UserName, MailboxName), (u32, u32)>>,
}

impl RecentClaims {
    /// The first UID not claimed before this call; with `take`, everything in `index`
    /// (below its UIDNEXT) is claimed now. Messages from the returned UID up are recent
    /// for a caller that took them.
    pub fn claim(&self, user: &UserName, mailbox: &MailboxName, index: &MailboxIndex, take: bool) -> u32 {
        let mut table = self.first_unclaimed.lock().expect("recent claims lock");
        if table.len() >= MAILBOXES_MAX && !table.contains_key(&(user.clone(), mailbox.clone())) {
            table.clear();
        }
        let fresh = index.messages.iter().find(|m| !m.in_cur).map_or(index.uid_next, |m| m.uid);
        let entry = table.entry((user.clone(), mailbox.clone())).or_insert((index.uid_validity, fresh));
        if entry.0 != index.uid_validity {
            *entry = (index.uid_validity, fresh);
        }
        let before = entry.1;
        if take {
            entry.1 = entry.1.max(index.uid_next);
        }
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstore::index::MessageMeta;

    fn index(messages: &[(u32, bool)], uid_next: u32) -> MailboxIndex {
        index_of(1, messages, uid_next)
    }

    fn index_of(uid_validity: u32, messages: &[(u32, bool)], uid_next: u32) -> MailboxIndex {
        let mut idx = MailboxIndex::new(uid_validity, 1);
        for (uid, in_cur) in messages {
            idx.messages.push(MessageMeta {
                uid: *uid,
                base: format!("m{uid}"),
                in_cur: *in_cur,
                flags: 0,
                keywords: vec![],
                size: 1,
                internal_date: 0,
                modseq: 1,
                crc32c: 0,
                email_id: 0,
                saved_s: 0,
            });
        }
        idx.uid_next = uid_next;
        idx
    }

    #[test]
    fn each_message_is_claimed_once() {
        let claims = RecentClaims::default();
        let (user, inbox) = (UserName::parse("a@example.edu").unwrap(), MailboxName::inbox());
        // Messages 1-2 were seen (in cur/), 3-4 were not: a fresh table starts at 3.
        let idx = index(&[(1, true), (2, true), (3, false), (4, false)], 5);
        assert_eq!(claims.claim(&user, &inbox, &idx, false), 3, "looking claims nothing");
        assert_eq!(claims.claim(&user, &inbox, &idx, true), 3);
        assert_eq!(claims.claim(&user, &inbox, &idx, true), 5, "the second session gets none");
        let more = index(&[(1, true), (2, true), (3, false), (4, false), (5, false)], 6);
        assert_eq!(claims.claim(&user, &inbox, &more, true), 5);
        assert_eq!(claims.claim(&user, &MailboxName::parse("Sent").unwrap(), &index(&[], 1), true), 1);
    }

    #[test]
    fn rfc3501_2_3_1_1_a_mailbox_created_again_has_recent_mail_again() {
        let claims = RecentClaims::default();
        let (user, name) = (UserName::parse("a@example.edu").unwrap(), MailboxName::parse("box").unwrap());
        assert_eq!(claims.claim(&user, &name, &index_of(7, &[(1, false), (2, false)], 3), true), 1);
        // Deleted and created again: UIDs start over under a new UIDVALIDITY.
        let again = index_of(8, &[(1, false), (2, false)], 3);
        assert_eq!(claims.claim(&user, &name, &again, true), 1, "both messages are recent in the new mailbox");
        assert_eq!(claims.claim(&user, &name, &again, true), 3, "once");
    }
}
