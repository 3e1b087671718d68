//! What a front tells a storage node about one recipient of a delivery, from the directory
//! (storage nodes never read the directory): the quota (qmail-ldap `mailQuotaSize`,
//! `mailQuotaCount`; 0 is unlimited), forwarding (`mailForwardingAddress` unless
//! `deliveryMode: noforward`), whether to keep a local copy (`deliveryMode: nolocal`, or the
//! older `forwardonly`/`nombox`), and the auto-reply (`deliveryMode: reply` with
//! `mailReplyText`). Carried as the LMTP `RCPT` parameter `XUSER=` (base64url of a bincode
//! encoding, bounded both ways). This module must never decide what the rules mean for a
//! message; the storage node's filter does.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Forwarding addresses kept per recipient.
pub const FORWARD_MAX: usize = 32;
/// Longest auto-reply text kept, in bytes.
pub const REPLY_MAX_BYTES: usize = 4096;
/// Longest encoded parameter accepted.
pub const PARAM_MAX_BYTES: usize = 8192;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientRules {
    /// Bytes the user's mail may take; 0 is unlimited.
    pub quota_bytes: u64,
    /// Messages the user may keep; 0 is unlimited.
    pub quota_messages: u64,
    /// Where copies are forwarded.
    pub forward: Vec<String>,
    /// No copy in the user's own mailbox (when there is somewhere else to send it).
    pub no_local: bool,
    /// The auto-reply's text, when replies are on.
    pub reply: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("XUSER parameter is not valid: {0}")]
pub struct RulesError(&'static str);

impl RecipientRules {
    /// Whether these rules say anything (an empty set is not sent).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The rules cut to their bounds: forwarding addresses that are plain addresses, at most
    /// `FORWARD_MAX`; the reply text at most `REPLY_MAX_BYTES` (at a character boundary).
    pub fn bounded(mut self) -> Self {
        self.forward.retain(|a| crate::address::validate(a).is_ok());
        self.forward.truncate(FORWARD_MAX);
        if let Some(text) = &mut self.reply {
            let mut end = text.len().min(REPLY_MAX_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        self
    }

    /// The `XUSER=` value.
    pub fn to_param(&self) -> String {
        let bytes = bincode::serialize(self).expect("rules always encode");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn from_param(param: &str) -> Result<Self, RulesError> {
        use bincode::Options;
        if param.len() > PARAM_MAX_BYTES {
            return Err(RulesError("too long"));
        }
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(param).map_err(|_| RulesError("not base64url"))?;
        let rules: Self = bincode::options()
            .with_fixint_encoding()
            .with_limit(PARAM_MAX_BYTES as u64)
            .deserialize(&bytes)
            .map_err(|_| RulesError("does not decode"))?;
        let within =
            rules.forward.len() <= FORWARD_MAX && rules.reply.as_ref().is_none_or(|r| r.len() <= REPLY_MAX_BYTES);
        let valid = rules.forward.iter().all(|a| crate::address::validate(a).is_ok());
        match (within, valid) {
            (true, true) => Ok(rules),
            (false, _) => Err(RulesError("over its bounds")),
            (_, false) => Err(RulesError("a forwarding address is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let rules = RecipientRules {
            quota_bytes: 1000,
            quota_messages: 1,
            forward: vec!["a@example.org".into(), "not an address".into()],
            no_local: true,
            reply: Some("\u{e9}".repeat(3000)),
        }
        .bounded();
        assert_eq!(rules.forward, vec!["a@example.org"]);
        assert!(rules.reply.as_ref().unwrap().len() <= REPLY_MAX_BYTES);
        let param = rules.to_param();
        assert!(param.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{param}");
        assert_eq!(RecipientRules::from_param(&param).unwrap(), rules);
        assert!(RecipientRules::from_param("!!").is_err());
        assert!(RecipientRules::from_param(&"A".repeat(PARAM_MAX_BYTES + 1)).is_err());
        let evil = RecipientRules { forward: vec!["x\r\nRCPT TO:<y@z>".into()], ..RecipientRules::default() };
        assert!(RecipientRules::from_param(&evil.to_param()).is_err());
        assert!(RecipientRules::default().is_default());
    }
}
