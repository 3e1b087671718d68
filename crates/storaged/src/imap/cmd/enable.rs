//! ENABLE (RFC 5161) and what it turns on: CONDSTORE and QRESYNC (RFC 7162), IMAP4rev2
//! (RFC 9051 §6.3.1). Each is on for the rest of the session.

use super::super::*;
use crate::imap::backend::Backend;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;

impl<B: Backend> Session<B> {
    pub(in crate::imap::session) fn enable(
        &mut self,
        capabilities: &[CapabilityEnable<'_>],
        out: &mut Vec<u8>,
    ) -> Answer {
        let mut enabled = Vec::new();
        for c in capabilities {
            match c {
                CapabilityEnable::CondStore if !self.condstore => {
                    self.enable_condstore(out);
                    enabled.push("CONDSTORE");
                }
                // imap-codec names QRESYNC only as an "other" capability (via Display).
                other if other.to_string().eq_ignore_ascii_case("QRESYNC") && !self.qresync => {
                    // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                    self.enable_condstore(out);
                    self.qresync = true;
                    if let Some(v) = self.view.as_mut() {
                        v.qresync = true;
                    }
                    enabled.push("QRESYNC");
                }
                other if other.to_string().eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 => {
                    self.rev2 = true;
                    if let Some(v) = self.view.as_mut() {
                        v.recent_flag = false;
                    }
                    enabled.push("IMAP4rev2");
                }
                _ => {}
            }
        }
        line(out, &format!("* ENABLED{}{}", if enabled.is_empty() { "" } else { " " }, enabled.join(" ")));
        ok("ENABLE completed")
    }

    /// CONDSTORE is on from now; the first time, with a mailbox selected, the client learns
    /// its HIGHESTMODSEQ (RFC 7162 §3.1: a CONDSTORE-enabling command after SELECT).
    pub(in crate::imap::session) fn enable_condstore(&mut self, out: &mut Vec<u8>) {
        let first = !self.condstore;
        self.condstore = true;
        let Some(v) = self.view.as_mut() else { return };
        v.condstore = true;
        let mailbox = v.mailbox.clone();
        if first {
            if let Ok(idx) = self.index_of(&mailbox) {
                line(out, &format!("* OK [HIGHESTMODSEQ {}] highest", idx.highest_modseq.max(1)));
            }
        }
    }
}
