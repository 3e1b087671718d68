//! The directory of mail users, for the front nodes and the tools (storage nodes never
//! read it: they serve the users a front names): who a login name or a recipient
//! address is, where their mail lives (`mailHost`, a group name) and whether they may log
//! in or receive mail. Two backends behind one interface: an LDIF file (the embedded
//! default, so one machine needs no LDAP server) and an LDAP server with the qmail-ldap
//! attributes. Answers are either "this account", "nobody" or "the directory is
//! unavailable" (a temporary failure): never a guess. Never logs passwords or hashes.

mod account;
mod cache;
mod ldap;
pub mod ldif;

use std::sync::Arc;

use common::password::Decoy;

pub use account::{Account, AccountStatus, AttributeError, Attributes, SpamAction, SpamPolicy};
pub use cache::TtlCache;
pub use ldap::{LdapConfig, LdapDirectory};
pub use ldif::{parse_ldif, write_ldif, LdifDirectory, LdifError, LdifRecord};

/// `value` escaped for an RDN (RFC 4514 §2.4): `uid=` + this is one RDN whatever it holds.
pub fn rdn_escape(value: &str) -> std::borrow::Cow<'_, str> {
    ldap3::dn_escape(value)
}

/// Why the directory could not answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// The directory is unreachable or failed: a temporary condition for the client.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// What a name is being looked up for: login names may be a `uid` or an address;
/// recipients are addresses whose `+tag` is ignored (`user+tag@domain` is `user@domain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Login,
    Delivery,
}

/// The key a name is looked up by: lower-case, `+tag` removed for deliveries. `None` for
/// names no account can have (empty, over-long, control characters, NUL).
pub fn lookup_key(name: &str, purpose: Purpose) -> Option<String> {
    const NAME_LEN_MAX: usize = 320;
    let name = name.trim();
    if name.is_empty() || name.len() > NAME_LEN_MAX || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let lower = name.to_lowercase();
    if purpose == Purpose::Login {
        return Some(lower);
    }
    let (local, domain) = lower.rsplit_once('@')?;
    let local = local.split_once('+').map_or(local, |(base, _tag)| base);
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// A directory backend.
#[derive(Debug, Clone)]
pub enum Directory {
    Ldif(Arc<LdifDirectory>),
    Ldap(Arc<LdapDirectory>),
}

impl Directory {
    /// The account `name` names, for `purpose`.
    pub async fn lookup(&self, name: &str, purpose: Purpose) -> Result<Option<Arc<Account>>, DirectoryError> {
        let Some(key) = lookup_key(name, purpose) else { return Ok(None) };
        match self {
            Self::Ldif(d) => Ok(d.lookup(&key, purpose)),
            Self::Ldap(d) => d.lookup(&key, purpose).await,
        }
    }

    /// Whether `password` is `account`'s: against its stored hash, or by binding as the
    /// account when the LDAP directory is configured for bind authentication.
    pub async fn verify_password(&self, account: &Account, password: &str) -> Result<bool, DirectoryError> {
        match self {
            Self::Ldap(d) if d.bind_auth() => d.bind_as(account, password).await,
            _ => {
                let Some(hash) = account.password.clone() else { return Ok(false) };
                let password = password.to_string();
                // Hashing is deliberately slow: keep it off the async workers.
                tokio::task::spawn_blocking(move || hash.verify(&password))
                    .await
                    .map_err(|e| DirectoryError::Unavailable(format!("password check failed: {e}")))
            }
        }
    }

    /// Change attributes of `account`'s entry (see [`ldif::modify_entry`] and
    /// [`LdapDirectory::modify_attributes`]); an LDAP directory is written as `writer`
    /// (DN and password), which must be given.
    pub async fn modify(
        &self,
        account: &Account,
        writer: Option<(&str, &str)>,
        changes: &[(&str, Option<&str>)],
    ) -> Result<(), DirectoryError> {
        match self {
            Self::Ldif(d) => d.modify(&account.dn, changes).map_err(|e| DirectoryError::Unavailable(e.to_string())),
            Self::Ldap(d) => {
                let writer = writer.ok_or_else(|| DirectoryError::Unavailable("no identity to write with".into()))?;
                d.modify_attributes(writer, &account.dn, Some("mailstoreUser"), changes).await
            }
        }
    }

    /// Check `password` as [`Self::verify_password`] would for an account that does not
    /// exist, against `decoy` (a hash like the real users'), or by binding as nobody.
    /// Always false; it only takes the time a real check takes.
    pub async fn verify_nobody(&self, decoy: &Decoy, password: &str) -> Result<bool, DirectoryError> {
        match self {
            Self::Ldap(d) if d.bind_auth() => d.bind_nobody(password).await,
            _ => {
                let (decoy, password) = (decoy.hash(), password.to_string());
                let _ = tokio::task::spawn_blocking(move || decoy.verify(&password)).await;
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lower_case_and_deliveries_drop_the_tag() {
        assert_eq!(lookup_key("Alice@Example.EDU", Purpose::Login).as_deref(), Some("alice@example.edu"));
        assert_eq!(lookup_key("alice+lists@example.edu", Purpose::Delivery).as_deref(), Some("alice@example.edu"));
        assert_eq!(lookup_key("alice+lists@example.edu", Purpose::Login).as_deref(), Some("alice+lists@example.edu"));
        assert_eq!(lookup_key("jdoe", Purpose::Login).as_deref(), Some("jdoe"));
        assert_eq!(lookup_key("jdoe", Purpose::Delivery), None, "a recipient needs a domain");
        assert_eq!(lookup_key("+x@example.edu", Purpose::Delivery), None);
        assert_eq!(lookup_key("a\0b@example.edu", Purpose::Login), None);
        assert_eq!(lookup_key("a b@example.edu", Purpose::Login), None);
        assert_eq!(lookup_key("", Purpose::Login), None);
        assert_eq!(lookup_key(&"x".repeat(400), Purpose::Login), None);
    }
}

#[cfg(test)]
mod rdn_tests {
    use super::rdn_escape;

    #[test]
    fn an_rdn_value_cannot_add_an_rdn() {
        assert_eq!(rdn_escape("a,dc=evil"), "a\\2cdc\\3devil");
        assert_eq!(rdn_escape("plain"), "plain");
        assert_eq!(rdn_escape(" #lead"), "\\20#lead");
    }
}
