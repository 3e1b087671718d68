//! Commands valid in any state (RFC 3501 §6.1, RFC 2971 ID, RFC 2342 NAMESPACE): what the
//! server offers, keeping the client's view current, and the end of a session.

use super::super::*;
use crate::imap::backend::Backend;
use crate::imap::view::Sync;
use imap_codec::imap_types::core::{IString, NString};

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn capability(&self, out: &mut Vec<u8>) -> Answer {
        line(out, &format!("* CAPABILITY {}", self.capabilities()));
        ok("CAPABILITY completed")
    }

    /// NOOP and CHECK: whatever changed reaches the client (RFC 3501 §6.1.2, §6.4.1).
    pub(in crate::imap::session) fn noop(&mut self, out: &mut Vec<u8>) -> Answer {
        self.sync(out, Sync::Full);
        ok("completed")
    }

    pub(in crate::imap::session) fn logout(&self, out: &mut Vec<u8>) -> Answer {
        line(out, "* BYE logging out");
        Ok(("LOGOUT completed".into(), Outcome::Logout))
    }

    /// ID (RFC 2971). A front node passes the user's mailHost and address here before
    /// logging in; they count only with the proxy credential (see [`ProxyHints`]).
    pub(in crate::imap::session) fn id(
        &mut self,
        parameters: Option<Vec<(IString<'_>, NString<'_>)>>,
        out: &mut Vec<u8>,
    ) -> Answer {
        if self.user.is_none() {
            for (name, value) in parameters.iter().flatten().take(ID_FIELDS_MAX) {
                let value = value.0.as_ref().map(|v| String::from_utf8_lossy(v.as_ref()).into_owned());
                self.hints.set(&String::from_utf8_lossy(name.as_ref()), value.as_deref().unwrap_or(""));
            }
        }
        line(out, "* ID (\"name\" \"storaged\")");
        ok("ID completed")
    }

    pub(in crate::imap::session) fn namespace(&self, out: &mut Vec<u8>) -> Answer {
        line(out, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
        ok("NAMESPACE completed")
    }

    /// COMPRESS=DEFLATE (RFC 4978): the server answers OK (or NO without room) and
    /// compresses; imap-codec knows only DEFLATE, so a parsed COMPRESS names it.
    pub(in crate::imap::session) fn compress(&self, tag: &str) -> Answer {
        if self.compressed {
            return Err(Refusal::No("[COMPRESSIONACTIVE] DEFLATE is already active".into()));
        }
        Ok((String::new(), Outcome::Compress { tag: tag.to_string() }))
    }

    /// IDLE (RFC 2177): the server waits; [`Session::poll`] reports changes meanwhile.
    pub(in crate::imap::session) fn idle(&self, tag: &str) -> Answer {
        Ok((String::new(), Outcome::Idle { tag: tag.to_string() }))
    }

    /// Untagged updates for the selected mailbox (IDLE, after a change notification).
    pub fn poll(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.sync(&mut out, Sync::Full);
        self.notify_poll(&mut out, false);
        out
    }

    pub fn idle_done(&mut self, tag: &str) -> Vec<u8> {
        let mut out = self.poll();
        line(&mut out, &format!("{tag} OK IDLE terminated"));
        out
    }
}
