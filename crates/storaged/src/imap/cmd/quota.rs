//! QUOTA (RFC 9208): one quota root per user, named "", holding every mailbox of the
//! user; its STORAGE (in 1024-octet units, rounded up) and MESSAGE resources count what
//! STATUS SIZE and MESSAGES count, summed; their limits are the directory's (a front passes
//! them at login). APPEND and COPY that would exceed them get `NO [OVERQUOTA]`; MOVE moves
//! nothing into the quota. SETQUOTA is refused: quotas are set in the directory.

use super::super::*;
use crate::imap::backend::Backend;
use crate::mailstore::quota::{Limit, Usage};
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::mailbox::Mailbox;

/// The one quota root's name.
const ROOT: &str = "";

impl<B: Backend> Session<B> {
    /// The quota a front named for this user at login (see `ProxyHints`).
    pub fn set_user_quota(&mut self, limit: Limit) {
        self.quota = limit;
    }

    fn usage(&self) -> Result<Usage, Refusal> {
        let user = self.user();
        let mut indexes = Vec::new();
        for mailbox in self.backend().mailboxes(user) {
            indexes.extend(self.backend().index(user, &mailbox)?);
        }
        Ok(Usage::of(indexes))
    }

    /// `NO [OVERQUOTA]` when adding `bytes` in `messages` would go over the quota.
    pub(in crate::imap::session) fn check_quota(&self, bytes: u64, messages: u64) -> Result<(), Refusal> {
        if self.quota.is_unlimited() || messages == 0 {
            return Ok(());
        }
        if self.quota.admits(self.usage()?.plus(bytes, messages)) {
            return Ok(());
        }
        Err(Refusal::No("[OVERQUOTA] the mailbox is full; delete messages to make room".into()))
    }

    /// `* QUOTA "" (...)`: each resource that has a limit.
    fn quota_line(&self, out: &mut Vec<u8>) -> Result<(), Refusal> {
        let usage = self.usage()?;
        let mut resources = Vec::new();
        if self.quota.bytes > 0 {
            resources.push(format!("STORAGE {} {}", usage.bytes.div_ceil(1024), self.quota.bytes.div_ceil(1024)));
        }
        if self.quota.messages > 0 {
            resources.push(format!("MESSAGE {} {}", usage.messages, self.quota.messages));
        }
        if !resources.is_empty() {
            line(out, &format!("* QUOTA \"{ROOT}\" ({})", resources.join(" ")));
        }
        Ok(())
    }

    pub(in crate::imap::session) fn get_quota(&mut self, root: &[u8], out: &mut Vec<u8>) -> Answer {
        if root != ROOT.as_bytes() || self.quota.is_unlimited() {
            return Err(Refusal::No("[NONEXISTENT] no such quota root".into()));
        }
        self.quota_line(out)?;
        ok("GETQUOTA completed")
    }

    pub(in crate::imap::session) fn get_quota_root(&mut self, mailbox: &Mailbox<'_>, out: &mut Vec<u8>) -> Answer {
        let name = mailbox_name(mailbox, self.rev2).map_err(Refusal::No)?;
        let mut text = Vec::new();
        encode::mailbox(&mut text, &wire_name(name.as_str(), self.rev2));
        let text = String::from_utf8_lossy(&text).into_owned();
        match self.quota.is_unlimited() {
            true => line(out, &format!("* QUOTAROOT {text}")),
            false => {
                line(out, &format!("* QUOTAROOT {text} \"{ROOT}\""));
                self.quota_line(out)?;
            }
        }
        ok("GETQUOTAROOT completed")
    }

    pub(in crate::imap::session) fn set_quota(&mut self) -> Answer {
        Err(Refusal::No("[CANNOT] quotas are set in the directory".into()))
    }
}

/// The root a GETQUOTA names, as bytes.
pub(in crate::imap::session) fn root_bytes<'a>(root: &'a AString<'_>) -> &'a [u8] {
    root.as_ref()
}
