//! Why the state machine refused an operation, as a type: what protocol sessions branch on
//! (a mailbox that already exists, a user being moved) without reading prose.
//!
//! Rejections are replicated (they are kept in the idempotency table and its checkpoint), so
//! their serialized form is a string, as it was before they were typed: a stable kind, a
//! separator and the detail. A string from an older checkpoint without that form decodes by
//! its old wording, or as [`Rejection::Other`]. What this must never do: change the kind names
//! (replicas and checkpoints of different versions must agree on them).

use serde::{Deserialize, Serialize};

use super::ops::{FROZEN_REPLY, MOVED_REPLY};

/// Separates the kind from the detail in the serialized form (never in a mailbox name).
const SEP: char = '\u{1f}';

/// An operation refused by the state machine; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Rejection {
    /// The mailbox does not exist.
    NoMailbox(String),
    /// A mailbox of that name exists already.
    MailboxExists(String),
    /// The mailbox holds messages of another UIDVALIDITY than the operation names.
    UidValidityDiffers(String),
    /// The message is above the store's size limit (bytes).
    TooLarge(u64),
    /// Not allowed on this mailbox or name (INBOX rules, invalid names).
    Cannot(String),
    /// A bound of the store is reached (queue, concurrent large operations).
    Limit(String),
    /// The user's mail is being moved to another mailhost; writes wait.
    Frozen,
    /// The user's mail moved to this mailhost.
    MovedTo(String),
    /// The operation is malformed (a part alone, nested batches, a failed decode): a bug in
    /// the proposer, never the user's doing.
    Malformed(String),
    /// A refusal recorded by an older version, in its words.
    Other(String),
    /// No Sieve script of that name (ManageSieve NONEXISTENT).
    NoScript(String),
    /// The active Sieve script cannot be deleted (ManageSieve ACTIVE).
    ScriptActive(String),
    /// A Sieve script of that name exists already (ManageSieve ALREADYEXISTS).
    ScriptExists(String),
    /// A bound on the user's scripts is reached (ManageSieve QUOTA).
    ScriptQuota(String),
}

impl Rejection {
    /// The IMAP response code that names this refusal (RFC 5530), if one does.
    pub fn imap_code(&self) -> Option<&'static str> {
        match self {
            Self::NoMailbox(_) => Some("NONEXISTENT"),
            Self::MailboxExists(_) => Some("ALREADYEXISTS"),
            Self::UidValidityDiffers(_) | Self::Cannot(_) => Some("CANNOT"),
            Self::TooLarge(_) => Some("TOOBIG"),
            Self::Limit(_) => Some("LIMIT"),
            Self::Frozen | Self::MovedTo(_) => Some("UNAVAILABLE"),
            Self::Malformed(_) => Some("SERVERBUG"),
            Self::Other(_) => None,
            Self::NoScript(_) => Some("NONEXISTENT"),
            Self::ScriptActive(_) => Some("ACTIVE"),
            Self::ScriptExists(_) => Some("ALREADYEXISTS"),
            Self::ScriptQuota(_) => Some("QUOTA"),
        }
    }

    /// Whether the user's mail is frozen for a move or moved away.
    pub fn is_move(&self) -> bool {
        matches!(self, Self::Frozen | Self::MovedTo(_))
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::NoMailbox(_) => "no-mailbox",
            Self::MailboxExists(_) => "mailbox-exists",
            Self::UidValidityDiffers(_) => "uidvalidity-differs",
            Self::TooLarge(_) => "too-large",
            Self::Cannot(_) => "cannot",
            Self::Limit(_) => "limit",
            Self::Frozen => "frozen",
            Self::MovedTo(_) => "moved",
            Self::Malformed(_) => "malformed",
            Self::Other(_) => "other",
            Self::NoScript(_) => "no-script",
            Self::ScriptActive(_) => "script-active",
            Self::ScriptExists(_) => "script-exists",
            Self::ScriptQuota(_) => "script-quota",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::NoMailbox(s)
            | Self::MailboxExists(s)
            | Self::UidValidityDiffers(s)
            | Self::Cannot(s)
            | Self::Limit(s)
            | Self::MovedTo(s)
            | Self::Malformed(s)
            | Self::Other(s)
            | Self::NoScript(s)
            | Self::ScriptActive(s)
            | Self::ScriptExists(s)
            | Self::ScriptQuota(s) => s.clone(),
            Self::TooLarge(max) => max.to_string(),
            Self::Frozen => String::new(),
        }
    }

    /// A string written before rejections were typed, by its wording.
    fn from_legacy(text: String) -> Self {
        if text == FROZEN_REPLY {
            return Self::Frozen;
        }
        if let Some(target) = common::admin::moved_target(&text) {
            return Self::MovedTo(target.to_string());
        }
        if let Some(mailbox) = text.strip_prefix("no mailbox ") {
            return Self::NoMailbox(mailbox.to_string());
        }
        if let Some(mailbox) = text.strip_prefix("mailbox ").and_then(|t| t.strip_suffix(" exists")) {
            return Self::MailboxExists(mailbox.to_string());
        }
        Self::Other(text)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoMailbox(m) => write!(f, "no mailbox {m}"),
            Self::MailboxExists(m) => write!(f, "mailbox {m} exists"),
            Self::UidValidityDiffers(m) => write!(f, "{m} holds messages of another UIDVALIDITY"),
            Self::TooLarge(max) => write!(f, "message above {max} bytes"),
            Self::Frozen => f.write_str(FROZEN_REPLY),
            Self::MovedTo(target) => write!(f, "{MOVED_REPLY} {target}"),
            Self::Cannot(why) | Self::Limit(why) | Self::Malformed(why) | Self::Other(why) => f.write_str(why),
            Self::NoScript(name) => write!(f, "no script named {name:?}"),
            Self::ScriptActive(name) => write!(f, "script {name:?} is active"),
            Self::ScriptExists(name) => write!(f, "a script named {name:?} exists"),
            Self::ScriptQuota(why) => f.write_str(why),
        }
    }
}

impl From<Rejection> for String {
    fn from(r: Rejection) -> String {
        format!("{}{SEP}{}", r.kind(), r.detail())
    }
}

impl From<String> for Rejection {
    fn from(s: String) -> Self {
        let Some((kind, detail)) = s.split_once(SEP) else { return Self::from_legacy(s) };
        let detail = detail.to_string();
        match kind {
            "no-mailbox" => Self::NoMailbox(detail),
            "mailbox-exists" => Self::MailboxExists(detail),
            "uidvalidity-differs" => Self::UidValidityDiffers(detail),
            "too-large" => detail.parse().map_or(Self::Other(detail), Self::TooLarge),
            "cannot" => Self::Cannot(detail),
            "limit" => Self::Limit(detail),
            "frozen" => Self::Frozen,
            "moved" => Self::MovedTo(detail),
            "malformed" => Self::Malformed(detail),
            "no-script" => Self::NoScript(detail),
            "script-active" => Self::ScriptActive(detail),
            "script-exists" => Self::ScriptExists(detail),
            "script-quota" => Self::ScriptQuota(detail),
            _ => Self::Other(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_its_serialized_form() {
        let all = [
            Rejection::NoMailbox("a/b".into()),
            Rejection::MailboxExists("Sent".into()),
            Rejection::UidValidityDiffers("INBOX".into()),
            Rejection::TooLarge(1 << 20),
            Rejection::Cannot("INBOX cannot be deleted".into()),
            Rejection::Limit("queue full".into()),
            Rejection::Frozen,
            Rejection::MovedTo("mh2".into()),
            Rejection::Malformed("batches do not nest".into()),
            Rejection::Other("anything".into()),
            Rejection::NoScript("main".into()),
            Rejection::ScriptActive("main".into()),
            Rejection::ScriptExists("main".into()),
            Rejection::ScriptQuota("at most 16 scripts".into()),
        ];
        for r in all {
            let bytes = bincode::serialize(&r).unwrap();
            assert_eq!(bincode::deserialize::<Rejection>(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn strings_of_older_checkpoints_decode_by_their_wording() {
        let old = |s: &str| bincode::deserialize::<Rejection>(&bincode::serialize(&s.to_string()).unwrap()).unwrap();
        assert_eq!(old(FROZEN_REPLY), Rejection::Frozen);
        assert_eq!(old(&common::admin::moved_reply("mh3")), Rejection::MovedTo("mh3".into()));
        assert_eq!(old("no mailbox Projects"), Rejection::NoMailbox("Projects".into()));
        assert_eq!(old("mailbox Sent exists"), Rejection::MailboxExists("Sent".into()));
        assert_eq!(old("something else"), Rejection::Other("something else".into()));
        assert_eq!(Rejection::Frozen.to_string(), FROZEN_REPLY, "clients see the same words as before");
    }
}
