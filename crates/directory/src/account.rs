//! One directory account, built from qmail-ldap attributes the same way for both backends.
//! Holds no I/O. Never prints the password hash.

use std::collections::HashMap;

use common::password::PasswordHash;

/// Attribute name (lower case) → values, as an LDAP entry or LDIF record carries them.
pub type Attributes = HashMap<String, Vec<String>>;

/// The attributes an account is built from, as the directory spells them: what an LDAP
/// lookup asks for, and the order LDIF is written in.
pub const ACCOUNT_ATTRIBUTES: &[&str] = &[
    "uid",
    "mail",
    "mailAlternateAddress",
    "mailHost",
    "accountStatus",
    "userPassword",
    "mailQuotaSize",
    "mailQuotaCount",
    "mailSizeMax",
    "mailForwardingAddress",
    "deliveryMode",
    "mailReplyText",
    "mailSpamPolicy",
    "mailSpamThreshold",
    "mailPhishLock",
];

/// qmail-ldap `accountStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Logs in and receives mail (also when the attribute is absent, as in qmail-ldap).
    Active,
    /// Receives mail but may not log in.
    NoAccess,
    /// Neither logs in nor receives mail, for now: deliveries get a temporary failure.
    Disabled,
    /// Gone: deliveries get a permanent failure.
    Deleted,
}

/// `mailSpamPolicy` (this product's schema extension): what becomes of a user's spam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamAction {
    /// Delivered to INBOX, marked (`X-Spam-Flag: YES`).
    Tag,
    /// Delivered to the Junk folder, marked.
    Junk,
    /// Kept in the user's quarantine for review.
    Quarantine,
    /// Refused at the end of DATA (`550 5.7.1`).
    Reject,
}

impl SpamAction {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tag" => Some(Self::Tag),
            "junk" => Some(Self::Junk),
            "quarantine" => Some(Self::Quarantine),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tag => "tag",
            Self::Junk => "junk",
            Self::Quarantine => "quarantine",
            Self::Reject => "reject",
        }
    }
}

/// A user's own spam policy from the directory; what it leaves out, the site decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpamPolicy {
    pub action: Option<SpamAction>,
    /// `mailSpamThreshold` (a score such as `6` or `4.5`), in hundredths of a point.
    pub threshold_centi: Option<i32>,
}

/// A score written as a decimal (`6`, `-1.5`, `4.25`) in hundredths, within ±10,000 points.
fn parse_score_centi(text: &str) -> Option<i32> {
    let text = text.trim();
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 5 || frac.len() > 2 || !all_digits(whole) || !all_digits(frac) {
        return None;
    }
    let centi = whole.parse::<i32>().ok()? * 100 + format!("{frac:0<2}").parse::<i32>().ok()?;
    (centi <= 1_000_000).then_some(if neg { -centi } else { centi })
}

/// A directory user.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Where the entry lives (LDAP DN; for bind authentication and for messages).
    pub dn: String,
    /// The primary address (`mail`), lower case: the mailbox's name.
    pub mail: String,
    /// `mailAlternateAddress` values, lower case: more addresses of the same mailbox.
    pub alternates: Vec<String>,
    /// `uid`, lower case: an alternative login name.
    pub uid: Option<String>,
    /// `mailHost`: the group that owns the mailbox; `None` if the entry names none.
    pub mail_host: Option<String>,
    pub status: AccountStatus,
    pub password: Option<PasswordHash>,
    /// `mailQuotaSize` in bytes (`None`: unlimited, also for `0`, as qmail-ldap reads it).
    pub quota_size_bytes: Option<u64>,
    /// `mailQuotaCount` in messages (`None`: unlimited, also for `0`).
    pub quota_count: Option<u64>,
    /// `mailSizeMax`: the largest message this user accepts, in bytes (`None`: no limit of
    /// the user's own, also for `0`, which qmail-ldap directories use for "unlimited").
    pub message_size_max_bytes: Option<u64>,
    /// `mailForwardingAddress` values.
    pub forwarding: Vec<String>,
    /// `deliveryMode` values, lower case (`nolocal`, `noforward`, `reply`, the older
    /// `forwardonly` and `nombox`, ...).
    pub delivery_modes: Vec<String>,
    /// `mailReplyText`: the auto-reply sent when `deliveryMode` has `reply`.
    pub reply_text: Option<String>,
    /// `mailSpamPolicy` and `mailSpamThreshold`.
    pub spam: SpamPolicy,
    /// `mailPhishLock`: why the account was locked as compromised (time, rule, ticket),
    /// the helpdesk's marker; absent on accounts never locked or released.
    pub phish_lock: Option<String>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("dn", &self.dn)
            .field("mail", &self.mail)
            .field("alternates", &self.alternates)
            .field("uid", &self.uid)
            .field("mail_host", &self.mail_host)
            .field("status", &self.status)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

/// Why an entry is not a usable account.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AttributeError {
    #[error("{dn}: no mail attribute")]
    NoMail { dn: String },
    #[error("{dn}: attribute {attribute}: {reason}")]
    Bad { dn: String, attribute: &'static str, reason: String },
}

impl Account {
    /// Build an account from an entry's attributes (names in any case).
    pub fn from_attributes(dn: &str, attrs: &Attributes) -> Result<Self, AttributeError> {
        // Attribute names are case-insensitive; one entry may spell a name several ways.
        let get = |name: &str| -> Vec<&String> {
            let mut keys: Vec<&String> = attrs.keys().filter(|k| k.eq_ignore_ascii_case(name)).collect();
            keys.sort();
            keys.into_iter().flat_map(|k| &attrs[k]).collect()
        };
        let first = |name: &str| get(name).first().map(|s| s.trim().to_string());
        let lower_all = |name: &str| get(name).iter().map(|s| s.trim().to_lowercase()).collect();
        let bad =
            |attribute: &'static str, reason: String| AttributeError::Bad { dn: dn.to_string(), attribute, reason };
        // 0 is "unlimited" for every limit qmail-ldap has: no limit at all.
        let number = |attribute: &'static str| -> Result<Option<u64>, AttributeError> {
            first(attribute)
                .map(|v| v.parse::<u64>().map_err(|_| bad(attribute, format!("{v:?} is not a number"))))
                .transpose()
                .map(|n| n.filter(|n| *n > 0))
        };
        let mail =
            first("mail").map(|m| m.to_lowercase()).ok_or_else(|| AttributeError::NoMail { dn: dn.to_string() })?;
        // The primary address names the mailbox and logs in: it must be a plain mailbox.
        common::address::validate(&mail).map_err(|e| bad("mail", e.to_string()))?;
        let status = match first("accountStatus").map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("active") => AccountStatus::Active,
            Some("noaccess") => AccountStatus::NoAccess,
            Some("disabled") => AccountStatus::Disabled,
            Some("deleted") => AccountStatus::Deleted,
            Some(other) => return Err(bad("accountStatus", format!("unknown value {other:?}"))),
        };
        let password = first("userPassword")
            .map(|p| PasswordHash::parse(&p).map_err(|e| bad("userPassword", e.to_string())))
            .transpose()?;
        Ok(Self {
            dn: dn.to_string(),
            mail,
            alternates: lower_all("mailAlternateAddress"),
            uid: first("uid").map(|u| u.to_lowercase()),
            mail_host: first("mailHost").filter(|h| !h.is_empty()),
            status,
            password,
            quota_size_bytes: number("mailQuotaSize")?,
            quota_count: number("mailQuotaCount")?,
            message_size_max_bytes: number("mailSizeMax")?,
            forwarding: get("mailForwardingAddress").iter().map(|s| s.trim().to_string()).collect(),
            delivery_modes: lower_all("deliveryMode"),
            reply_text: get("mailReplyText").first().map(|t| t.to_string()).filter(|t| !t.trim().is_empty()),
            phish_lock: get("mailPhishLock").first().map(|t| t.to_string()).filter(|t| !t.trim().is_empty()),
            spam: SpamPolicy {
                action: first("mailSpamPolicy")
                    .map(|v| SpamAction::parse(&v).ok_or_else(|| bad("mailSpamPolicy", format!("unknown value {v:?}"))))
                    .transpose()?,
                threshold_centi: first("mailSpamThreshold")
                    .map(|v| {
                        parse_score_centi(&v).ok_or_else(|| bad("mailSpamThreshold", format!("{v:?} is not a score")))
                    })
                    .transpose()?,
            },
        })
    }

    /// Whether the account may log in to read mail.
    pub fn may_log_in(&self) -> bool {
        self.status == AccountStatus::Active
    }

    /// What the storage node must know to deliver to this account (see
    /// [`common::recipient_rules`]): quota, forwarding, local copy, auto-reply.
    pub fn recipient_rules(&self) -> common::recipient_rules::RecipientRules {
        let has = |mode: &str| self.delivery_modes.iter().any(|m| m == mode);
        let forward = if has("noforward") { Vec::new() } else { self.forwarding.clone() };
        let rules = common::recipient_rules::RecipientRules {
            quota_bytes: self.quota_size_bytes.unwrap_or(0),
            quota_messages: self.quota_count.unwrap_or(0),
            no_local: has("nolocal") || has("forwardonly") || has("nombox"),
            reply: self.reply_text.clone().filter(|_| has("reply")),
            forward,
        }
        .bounded();
        // A mailbox that keeps no copy and forwards nowhere would lose mail: keep it.
        let no_local = rules.no_local && !rules.forward.is_empty();
        common::recipient_rules::RecipientRules { no_local, ..rules }
    }

    /// Every address that delivers to this account.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.mail.as_str()).chain(self.alternates.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        let mut a = Attributes::new();
        for (k, v) in pairs {
            a.entry(k.to_string()).or_default().push(v.to_string());
        }
        a
    }

    #[test]
    fn qmail_ldap_attributes_make_an_account() {
        let a = Account::from_attributes(
            "uid=alice,ou=people,dc=example,dc=edu",
            &attrs(&[
                ("mail", "Alice@Example.edu"),
                ("MailAlternateAddress", "a.smith@example.edu"),
                ("mailAlternateAddress", "alice@mail.example.edu"),
                ("uid", "alice"),
                ("mailHost", "hermes"),
                ("userPassword", "{PLAIN}pw"),
                ("mailQuotaSize", "1048576"),
                ("mailSizeMax", "20000"),
                ("deliveryMode", "noforward"),
            ]),
        )
        .unwrap();
        assert_eq!(a.mail, "alice@example.edu");
        let mut addresses: Vec<_> = a.addresses().collect();
        addresses.sort();
        assert_eq!(addresses, ["a.smith@example.edu", "alice@example.edu", "alice@mail.example.edu"]);
        assert_eq!(a.mail_host.as_deref(), Some("hermes"));
        assert_eq!((a.status, a.may_log_in()), (AccountStatus::Active, true));
        assert_eq!((a.quota_size_bytes, a.quota_count, a.message_size_max_bytes), (Some(1048576), None, Some(20000)));
        assert!(a.password.unwrap().verify("pw"));
        assert!(!format!(
            "{:?}",
            Account::from_attributes("x", &attrs(&[("mail", "m@x"), ("userPassword", "{PLAIN}s3cr3t")])).unwrap()
        )
        .contains("s3cr3t"));
    }

    #[test]
    fn status_and_bad_values() {
        for (value, status, login) in [
            ("disabled", AccountStatus::Disabled, false),
            ("DELETED", AccountStatus::Deleted, false),
            ("noaccess", AccountStatus::NoAccess, false),
        ] {
            let a = Account::from_attributes("x", &attrs(&[("mail", "m@x"), ("accountStatus", value)])).unwrap();
            assert_eq!((a.status, a.may_log_in()), (status, login));
        }
        assert!(Account::from_attributes("x", &attrs(&[("mail", "m@x"), ("accountStatus", "maybe")])).is_err());
        assert!(Account::from_attributes("x", &attrs(&[("mail", "m@x"), ("mailQuotaSize", "lots")])).is_err());
        assert_eq!(
            Account::from_attributes("x", &attrs(&[("uid", "u")])),
            Err(AttributeError::NoMail { dn: "x".into() })
        );
        for bad in ["a,dc=evil@x", "a\nb@x", "a b@x", "nodomain"] {
            let r = Account::from_attributes("x", &attrs(&[("mail", bad)]));
            assert!(matches!(r, Err(AttributeError::Bad { attribute: "mail", .. })), "{bad:?}: {r:?}");
        }
    }

    #[test]
    fn the_spam_policy_attributes_are_read_and_checked() {
        let a = Account::from_attributes(
            "x",
            &attrs(&[("mail", "a@example.edu"), ("mailSpamPolicy", "Quarantine"), ("mailSpamThreshold", "4.5")]),
        )
        .unwrap();
        assert_eq!(a.spam, SpamPolicy { action: Some(SpamAction::Quarantine), threshold_centi: Some(450) });
        let none = Account::from_attributes("x", &attrs(&[("mail", "a@example.edu")])).unwrap();
        assert_eq!(none.spam, SpamPolicy::default());
        for (score, centi) in [("6", 600), ("-1.5", -150), ("0.05", 5), ("10000", 1_000_000)] {
            assert_eq!(parse_score_centi(score), Some(centi), "{score}");
        }
        for bad in ["", "1e3", "4.555", "nan", "99999999", "--1", "20000"] {
            assert_eq!(parse_score_centi(bad), None, "{bad:?}");
        }
        let r = Account::from_attributes("x", &attrs(&[("mail", "a@example.edu"), ("mailSpamPolicy", "bounce")]));
        assert!(matches!(r, Err(AttributeError::Bad { attribute: "mailSpamPolicy", .. })), "{r:?}");
    }

    #[test]
    fn qmail_ldap_delivery_attributes_become_recipient_rules() {
        let entry = |pairs: &[(&str, &str)]| {
            let mut all = vec![("mail", "u@example.edu")];
            all.extend_from_slice(pairs);
            Account::from_attributes("uid=u", &attrs(&all)).unwrap()
        };
        let unlimited = entry(&[("mailSizeMax", "0"), ("mailQuotaSize", "0"), ("mailQuotaCount", "0")]);
        assert_eq!(
            (unlimited.message_size_max_bytes, unlimited.quota_size_bytes, unlimited.quota_count),
            (None, None, None)
        );
        assert!(unlimited.recipient_rules().is_default());
        let forward = entry(&[("mailForwardingAddress", "a@x.org"), ("mailForwardingAddress", "b@y.org")]);
        let rules = forward.recipient_rules();
        assert_eq!((rules.forward.len(), rules.no_local), (2, false), "forwards are in addition to local delivery");
        let only = entry(&[("mailForwardingAddress", "a@x.org"), ("deliveryMode", "forwardonly")]);
        assert!(only.recipient_rules().no_local);
        let off =
            entry(&[("mailForwardingAddress", "a@x.org"), ("deliveryMode", "noforward"), ("deliveryMode", "nolocal")]);
        assert_eq!(off.recipient_rules().forward.len(), 0);
        assert!(!off.recipient_rules().no_local, "nowhere else to go: kept");
        let reply =
            entry(&[("deliveryMode", "reply"), ("mailReplyText", "Away until May."), ("mailQuotaSize", "1000")]);
        let rules = reply.recipient_rules();
        assert_eq!((rules.reply.as_deref(), rules.quota_bytes), (Some("Away until May."), 1000));
        assert_eq!(entry(&[("mailReplyText", "x")]).recipient_rules().reply, None, "replies need deliveryMode reply");
    }
}
