//! What one execution decided: the actions in order, whether the implicit keep stands, the
//! edited header, the duplicate ids to remember. `Actions` enforces RFC 5228 §4's rules as
//! actions arrive (duplicates merged, reject against delivery, limits). This module must
//! never perform an action: delivery, mail and state belong to the caller.

use crate::error::RuntimeError;

/// One thing to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver into a mailbox with these flags (keep = INBOX); `create` makes it if missing.
    Store {
        mailbox: String,
        flags: Vec<String>,
        create: bool,
    },
    Redirect {
        address: String,
    },
    /// Refuse the message (RFC 5429); `extended` is ereject (refuse in the protocol).
    Reject {
        reason: String,
        extended: bool,
    },
    Vacation(Box<Reply>),
}

/// A vacation reply (RFC 5230) the script asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The envelope sender being answered.
    pub to: String,
    pub from: Option<String>,
    pub subject: String,
    pub body: String,
    pub mime: bool,
    /// Which vacation this is: replies with the same handle to the same sender are one.
    pub handle: String,
    /// Answer a sender at most once per this many seconds.
    pub period_s: u64,
    /// The original's Message-ID, for In-Reply-To and References.
    pub in_reply_to: Option<String>,
    /// Why RFC 3834 / RFC 5230 §4.5-4.6 say not to answer; None when a reply may go.
    pub suppressed: Option<&'static str>,
}

/// A `duplicate` id to remember once the message is delivered (RFC 7352 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateMark {
    pub key: String,
    pub period_s: u64,
    /// `:last`: the period restarts at every sighting.
    pub last: bool,
}

/// The result of running a program on one message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// True when the last `Store` into INBOX is the implicit keep (RFC 5228 §2.10.2).
    pub implicit_keep: bool,
    /// The header section as edited by addheader/deleteheader, when the script edited it.
    pub header: Option<Vec<u8>>,
    pub duplicates: Vec<DuplicateMark>,
}

/// Actions gathered during execution.
#[derive(Debug, Default)]
pub struct Actions {
    pub list: Vec<Action>,
    /// Whether an action so far cancels the implicit keep.
    pub cancelled: bool,
    max_actions: usize,
    max_redirects: usize,
}

impl Actions {
    pub fn new(max_actions: usize, max_redirects: usize) -> Actions {
        Actions { max_actions, max_redirects, ..Default::default() }
    }

    fn delivers(&self) -> bool {
        self.list.iter().any(|a| matches!(a, Action::Store { .. } | Action::Redirect { .. }))
    }

    fn rejected(&self) -> bool {
        self.list.iter().any(|a| matches!(a, Action::Reject { .. }))
    }

    fn push(&mut self, action: Action) -> Result<(), RuntimeError> {
        if self.list.len() >= self.max_actions {
            return Err(RuntimeError::TooManyActions(self.max_actions));
        }
        self.list.push(action);
        Ok(())
    }

    /// keep and fileinto; a second store into the same mailbox merges into the first.
    pub fn store(
        &mut self,
        mailbox: String,
        flags: Vec<String>,
        create: bool,
        cancels: bool,
    ) -> Result<(), RuntimeError> {
        if self.rejected() {
            return Err(RuntimeError::Conflict("reject cannot be combined with keep or fileinto".into()));
        }
        self.cancelled |= cancels;
        let same = |a: &Action| matches!(a, Action::Store { mailbox: m, .. } if m == &mailbox);
        if let Some(Action::Store { flags: old, create: old_create, .. }) = self.list.iter_mut().find(|a| same(a)) {
            *old = flags;
            *old_create |= create;
            return Ok(());
        }
        self.push(Action::Store { mailbox, flags, create })
    }

    pub fn redirect(&mut self, address: String, cancels: bool) -> Result<(), RuntimeError> {
        if self.rejected() {
            return Err(RuntimeError::Conflict("reject cannot be combined with redirect".into()));
        }
        self.cancelled |= cancels;
        let same = |a: &Action| matches!(a, Action::Redirect { address: x } if x.eq_ignore_ascii_case(&address));
        if self.list.iter().any(same) {
            return Ok(());
        }
        let redirects = self.list.iter().filter(|a| matches!(a, Action::Redirect { .. })).count();
        if redirects >= self.max_redirects {
            return Err(RuntimeError::TooManyRedirects(self.max_redirects));
        }
        self.push(Action::Redirect { address })
    }

    pub fn reject(&mut self, reason: String, extended: bool) -> Result<(), RuntimeError> {
        if self.delivers() {
            return Err(RuntimeError::Conflict("reject cannot be combined with keep, fileinto or redirect".into()));
        }
        if self.rejected() {
            return Err(RuntimeError::Conflict("only one reject per message".into()));
        }
        if self.list.iter().any(|a| matches!(a, Action::Vacation(_))) {
            return Err(RuntimeError::Conflict("reject cannot be combined with vacation".into()));
        }
        self.cancelled = true;
        self.push(Action::Reject { reason, extended })
    }

    pub fn vacation(&mut self, reply: Reply) -> Result<(), RuntimeError> {
        if self.list.iter().any(|a| matches!(a, Action::Vacation(_))) {
            return Err(RuntimeError::Conflict("only one vacation per message".into()));
        }
        if self.rejected() {
            return Err(RuntimeError::Conflict("reject cannot be combined with vacation".into()));
        }
        self.push(Action::Vacation(Box::new(reply)))
    }
}
