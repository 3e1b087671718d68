//! The directory a move reads and flips: the front's LDIF file (edited in place; frontd
//! re-reads it), or its LDAP server (read with the front's search identity, written with
//! an administrator's bind, because the search identity should not be able to write).
//! Owns nothing but that choice; never caches across commands.

use std::path::{Path, PathBuf};

use anyhow::Context;
use directory::{Account, LdapDirectory, LdifDirectory, Purpose};

/// An administrator's LDAP identity for writes.
pub struct LdapAdmin {
    pub dn: String,
    pub password: String,
}

/// Where users' `mailHost` lives.
pub enum UserDirectory {
    Ldif(PathBuf),
    Ldap { dir: Box<LdapDirectory>, admin: Option<LdapAdmin> },
}

impl UserDirectory {
    /// The front's directory; `admin` is needed to flip `mailHost` in LDAP (without it,
    /// the front's own bind identity is tried).
    pub fn of_front(cfg: &frontd::config::Config, admin: Option<LdapAdmin>) -> anyhow::Result<Self> {
        if let Some(path) = &cfg.directory.ldif {
            return Ok(Self::Ldif(path.clone()));
        }
        let mut ldap = cfg.ldap()?.context("the front's [directory] has neither ldif nor ldap")?;
        // Every lookup asks the server: a move must see the current mailHost.
        ldap.cache_ttl = std::time::Duration::ZERO;
        ldap.connections = 1;
        // Given on the command line, else the one the fronts lock accounts with, else
        // the front's own bind identity.
        let phish = cfg.phish_writer()?.map(|(dn, password)| LdapAdmin { dn, password });
        let admin = admin
            .or(phish)
            .or_else(|| Some(LdapAdmin { dn: ldap.bind_dn.clone()?, password: ldap.bind_password.clone()? }));
        Ok(Self::Ldap { dir: Box::new(LdapDirectory::new(ldap)?), admin })
    }

    fn ldif_dir(path: &Path) -> anyhow::Result<LdifDirectory> {
        LdifDirectory::open(path).with_context(|| format!("reading {}", path.display()))
    }

    async fn account(&self, address: &str) -> anyhow::Result<Account> {
        let key = directory::lookup_key(address, Purpose::Login)
            .with_context(|| format!("{address:?} is not a user name"))?;
        match self {
            Self::Ldif(path) => Ok(Self::ldif_dir(path)?
                .lookup(&key, Purpose::Login)
                .with_context(|| format!("no user {address} in {}", path.display()))?
                .as_ref()
                .clone()),
            Self::Ldap { dir, .. } => Ok(dir
                .lookup(&key, Purpose::Login)
                .await?
                .with_context(|| format!("no user {address} in the LDAP directory"))?
                .as_ref()
                .clone()),
        }
    }

    /// The user's primary address and current mailhost.
    pub async fn locate(&self, address: &str) -> anyhow::Result<(String, String)> {
        let account = self.account(address).await?;
        let host = account.mail_host.clone().with_context(|| format!("{address} has no mailHost"))?;
        Ok((account.mail.to_lowercase(), host.to_lowercase()))
    }

    /// Make the directory place `user` on `host`.
    pub async fn set_mail_host(&self, user: &str, host: &str) -> anyhow::Result<()> {
        match self {
            Self::Ldif(path) => super::users::set_mailhost(path, user, host, true).map(drop),
            Self::Ldap { dir, admin } => {
                let admin = admin.as_ref().context(
                    "flipping mailHost in LDAP needs an identity that may write: --ldap-admin-dn and --ldap-admin-password-file",
                )?;
                let account = self.account(user).await?;
                dir.replace_attribute(&admin.dn, &admin.password, &account.dn, "mailHost", host)
                    .await
                    .with_context(|| format!("flipping mailHost of {} as {}", account.dn, admin.dn))
            }
        }
    }

    /// Change attributes of `user`'s entry (`None` removes one): a snag's lock and its
    /// release.
    pub async fn modify(&self, user: &str, changes: &[(&str, Option<&str>)]) -> anyhow::Result<()> {
        let account = self.account(user).await?;
        match self {
            Self::Ldif(path) => directory::ldif::modify_entry(path, &account.dn, changes)
                .with_context(|| format!("changing {} in {}", account.dn, path.display())),
            Self::Ldap { dir, admin } => {
                let admin = admin.as_ref().context("changing LDAP entries needs an identity that may write")?;
                dir.modify_attributes((&admin.dn, &admin.password), &account.dn, Some("mailstoreUser"), changes)
                    .await
                    .with_context(|| format!("changing {} as {}", account.dn, admin.dn))
            }
        }
    }

    /// Every user the directory lists.
    pub async fn accounts(&self) -> anyhow::Result<Vec<Account>> {
        match self {
            Self::Ldif(path) => Ok(Self::ldif_dir(path)?.accounts().iter().map(|a| a.as_ref().clone()).collect()),
            Self::Ldap { dir, .. } => Ok(dir.accounts().await?),
        }
    }
}
