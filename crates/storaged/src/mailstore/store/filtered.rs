//! Applying what Sieve needs from the store: the user's scripts (ManageSieve's changes) and
//! a delivery the user's script filtered. Deterministic like the rest of apply: names,
//! mailboxes and time come from the entry. This module must never run a script (the leader
//! did, before proposing).

use super::{io_ctx, Incoming, Store, StoreError};
use crate::mailstore::ops::{FiledCopy, MailResponse, Outbound};
use crate::mailstore::scripts::{self, ScriptError};
use crate::mailstore::{sieve_memory, MailboxName, Rejection, UserName};

/// Queue ids of a filtered delivery's outbound messages: apart from the log indexes plain
/// `Enqueue` entries use, one per message of the entry.
pub(super) const OUTBOUND_ID_BIT: u64 = 1 << 63;
/// Outbound messages one filtered delivery may queue (redirects and a vacation reply).
pub const OUTBOUND_MAX: usize = 15;

/// A script operation's refusal as the store reports it.
fn refusal(err: ScriptError) -> Result<MailResponse, StoreError> {
    let rejection = match err {
        ScriptError::BadName(name) => Rejection::Cannot(format!("{name:?} is not a valid script name")),
        ScriptError::NoSuchScript(name) => Rejection::NoScript(name),
        ScriptError::Exists(name) => Rejection::ScriptExists(name),
        ScriptError::Active(name) => Rejection::ScriptActive(name),
        ScriptError::Quota(why) => Rejection::ScriptQuota(why),
        ScriptError::Io(e) => return Err(io_ctx("sieve scripts")(e)),
    };
    Ok(MailResponse::Rejected(rejection))
}

/// What a script operation does, named by its user.
pub enum ScriptChange<'a> {
    Put { name: &'a str, script: &'a str },
    Delete { name: &'a str },
    Rename { from: &'a str, to: &'a str },
    Activate { name: Option<&'a str> },
}

impl Store {
    pub(super) fn script_change(&mut self, user: &str, change: ScriptChange) -> Result<MailResponse, StoreError> {
        let user = match UserName::parse(user) {
            Ok(u) => u,
            Err(e) => return Ok(MailResponse::Rejected(Rejection::Cannot(e.to_string()))),
        };
        let dir = self.layout.user_dir(&user);
        let done = match change {
            ScriptChange::Put { name, script } => scripts::put(&dir, name, script),
            ScriptChange::Delete { name } => scripts::delete(&dir, name),
            ScriptChange::Rename { from, to } => scripts::rename(&dir, from, to),
            ScriptChange::Activate { name } => scripts::set_active(&dir, name),
        };
        match done {
            Ok(()) => Ok(MailResponse::Done),
            Err(err) => refusal(err),
        }
    }

    /// Files each copy, queues each outbound message and keeps the memory: all or nothing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver_filtered(
        &mut self,
        index: u64,
        user: &str,
        internal_date: i64,
        message: &[u8],
        copies: &[FiledCopy],
        outbound: &[Outbound],
        remember: &[(String, i64)],
    ) -> Result<MailResponse, StoreError> {
        let user = match UserName::parse(user) {
            Ok(u) => u,
            Err(e) => return Ok(MailResponse::Delivered(vec![Err(Rejection::Cannot(e.to_string()))])),
        };
        if let Some(refusal) = self.outbound_refusal(outbound) {
            return Ok(MailResponse::Delivered(vec![Err(refusal)]));
        }
        self.ensure_inbox(&user, index)?;
        let targets = copy_targets(copies);
        let mut first = None;
        for (k, (mailbox, copy)) in targets.iter().enumerate() {
            self.ensure_mailbox(&user, mailbox, index)?;
            let incoming = Incoming {
                flags: copy.flags,
                keywords: &copy.keywords,
                internal_date,
                saved_s: internal_date,
                message,
            };
            match self.add_message(&user, mailbox, index, k, incoming) {
                Ok(uid) => {
                    first.get_or_insert(uid);
                }
                // Only the first copy can be refused (size): nothing is filed yet.
                Err(refusal) => return Ok(MailResponse::Delivered(vec![Err(refusal)])),
            }
        }
        for (k, out) in outbound.iter().enumerate() {
            let id = super::outbound_queue_id(index, self.entry_slot, k);
            let queued = self.queue.enqueue(id, &out.sender, &out.recipients, internal_date, &out.message);
            if let Err(refusal) = queued.map_err(io_ctx("queue"))? {
                tracing::warn!(%id, %refusal, "a filtered delivery's outbound message was refused by the queue");
            }
        }
        sieve_memory::remember(&self.layout.user_dir(&user), remember, internal_date)
            .map_err(io_ctx("sieve memory"))?;
        // A discard files nothing: the delivery is done all the same.
        Ok(MailResponse::Delivered(vec![Ok(first.unwrap_or((0, 0)))]))
    }

    fn outbound_refusal(&self, outbound: &[Outbound]) -> Option<Rejection> {
        if outbound.len() > OUTBOUND_MAX {
            return Some(Rejection::Malformed(format!("more than {OUTBOUND_MAX} outbound messages")));
        }
        let too_large = outbound.iter().any(|o| o.message.len() > super::MESSAGE_MAX);
        let full = self.queue.len() + outbound.len() > crate::mailstore::queue::QUEUE_MAX;
        match (too_large, full) {
            (true, _) => Some(Rejection::TooLarge(super::MESSAGE_MAX as u64)),
            (_, true) => Some(Rejection::Limit("the outbound queue is full".into())),
            _ => None,
        }
    }
}

/// Where each copy goes: its mailbox, made (and subscribed) when missing, as users expect of
/// a filter (RFC 5228 §4.1 lets a server create it; `:create` asks for it explicitly), or
/// INBOX when the name is not a valid mailbox name; two copies into one mailbox are one.
fn copy_targets(copies: &[FiledCopy]) -> Vec<(MailboxName, &FiledCopy)> {
    let mut out: Vec<(MailboxName, &FiledCopy)> = Vec::new();
    for copy in copies {
        let mailbox = MailboxName::parse(&copy.mailbox).unwrap_or_else(|_| MailboxName::inbox());
        if !out.iter().any(|(m, _)| *m == mailbox) {
            out.push((mailbox, copy));
        }
    }
    out
}
