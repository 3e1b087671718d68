//! Login for the mail access protocols (IMAP and POP3): checks a user's password, or
//! a proxy credential acting for a user (the front node logs in as its proxy identity with
//! the user as SASL authorization identity, Dovecot's master-user pattern), and throttles
//! failures per client address and per account (against guessing spread over many
//! addresses). Never logs a password or a hash.

pub use common::{limiter, password, sasl};

use std::net::IpAddr;
use std::time::Instant;

pub use common::network::Network;
use common::password::Decoy;
use common::throttle::Throttle;
pub use limiter::Policy;
pub use password::{PasswordError, PasswordHash};
pub use sasl::{PlainCredentials, SaslError};

use crate::mailstore::UserName;
use crate::users::UserDb;

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: UserName,
    pub group: String,
    /// Logged in by the proxy credential on the user's behalf.
    pub via_proxy: bool,
}

/// Why a login was refused. The texts are safe to show to the client: they never say
/// whether the user exists.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    #[error("authentication failed")]
    Failed,
    #[error("too many failed logins from your address, try again later")]
    Throttled,
    #[error("plaintext authentication is not allowed without TLS")]
    NeedsTls,
    /// The proxy credential was right but this node cannot serve the account it acts for
    /// (a name it cannot use as a mailbox, or no mailhost known for it): an operator's
    /// problem with that one account, never counted as a guess against the front.
    #[error("this mailbox cannot be served; contact the postmaster")]
    Unservable,
}

/// What a front node says about the session it forwards (IMAP `ID` fields, POP3
/// `XCLIENT`). Anyone may send these; they count only for a login with the proxy
/// credential, which may act for any user anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyHints {
    /// The group the directory names for the user (its `mailHost`).
    pub mailhost: Option<String>,
    /// The client's address as the front node saw it.
    pub client_ip: Option<IpAddr>,
    /// The user's quota from the directory (qmail-ldap `mailQuotaSize`, `mailQuotaCount`;
    /// 0 unlimited): IMAP's APPEND and COPY are held to it, GETQUOTA reports it.
    pub quota_bytes: Option<u64>,
    pub quota_messages: Option<u64>,
}

impl ProxyHints {
    /// Longest hint value kept.
    const VALUE_LEN_MAX: usize = 255;

    /// Record one `name`/`value` pair (names case-insensitive; unknown names ignored).
    pub fn set(&mut self, name: &str, value: &str) {
        if value.len() > Self::VALUE_LEN_MAX {
            return;
        }
        match name.to_ascii_lowercase().as_str() {
            "x-mailhost" | "mailhost" => self.mailhost = Some(value.to_string()),
            "x-originating-ip" | "addr" => self.client_ip = value.parse().ok(),
            "x-quota-bytes" => self.quota_bytes = value.parse().ok(),
            "x-quota-messages" => self.quota_messages = value.parse().ok(),
            _ => {}
        }
    }
}

/// The proxy identity the front nodes log in with.
#[derive(Debug, Clone)]
pub struct ProxyCredential {
    pub user: String,
    pub password: PasswordHash,
}

/// Checks credentials and throttles failures.
#[derive(Debug)]
pub struct Authenticator {
    proxy: Option<ProxyCredential>,
    plaintext_networks: Vec<Network>,
    /// Failures per address, per account and per (account, address).
    throttle: Throttle,
    /// Verified against when the user is unknown, so timing does not reveal it.
    decoy: Decoy,
}

impl Authenticator {
    pub fn new(proxy: Option<ProxyCredential>, plaintext_networks: Vec<Network>, policy: Policy) -> Self {
        Self { proxy, plaintext_networks, throttle: Throttle::new(policy), decoy: Decoy::default() }
    }

    /// Whether a client at `peer` may send a password on a connection without TLS.
    pub fn plaintext_allowed(&self, peer: IpAddr, tls: bool) -> bool {
        tls || self.plaintext_networks.iter().any(|n| n.contains(peer))
    }

    /// Check `creds` against `users` (blocking: hashing is deliberately slow).
    pub fn check(&self, users: &UserDb, hints: &ProxyHints, creds: &PlainCredentials) -> Result<Login, LoginError> {
        let acting_for = (!creds.authzid.is_empty() && creds.authzid != creds.authcid).then_some(&creds.authzid);
        if let Some(target) = acting_for {
            let Some(proxy) = self.proxy.as_ref().filter(|p| p.user == creds.authcid) else {
                self.decoy.verify(&creds.password);
                return Err(LoginError::Failed);
            };
            if !proxy.password.verify(&creds.password) {
                return Err(LoginError::Failed);
            }
            // The front node routed by the directory's mailHost; its word decides the group.
            if let Some(group) = &hints.mailhost {
                let user = UserName::parse(target).map_err(|_| LoginError::Unservable)?;
                return Ok(Login { user, group: group.clone(), via_proxy: true });
            }
            let (user, group) = users.resolve(target).ok_or(LoginError::Unservable)?;
            return Ok(Login { user, group, via_proxy: true });
        }
        let found = users.resolve(&creds.authcid).and_then(|(u, g)| users.password(&u).map(|p| (u, g, p.clone())));
        match found {
            Some((user, group, hash)) => {
                let right = hash.verify(&creds.password);
                self.decoy.follow(&hash);
                if right {
                    Ok(Login { user, group, via_proxy: false })
                } else {
                    Err(LoginError::Failed)
                }
            }
            None => {
                self.decoy.verify(&creds.password);
                Err(LoginError::Failed)
            }
        }
    }

    /// A full login attempt from `peer`: policy, throttling, check, and the failure delay.
    pub async fn login(
        &self,
        users: &UserDb,
        peer: IpAddr,
        tls: bool,
        hints: &ProxyHints,
        creds: &PlainCredentials,
    ) -> Result<Login, LoginError> {
        if !self.plaintext_allowed(peer, tls) {
            return Err(LoginError::NeedsTls);
        }
        if self.throttle.address_refused(peer, Instant::now()) {
            tokio::time::sleep(self.throttle.policy().failure_delay).await;
            return Err(LoginError::Throttled);
        }
        // The account being logged into, by its canonical name whatever was typed: the
        // authorization identity of a proxy login (so a failing proxy attempt never locks
        // the proxy identity itself), else the user.
        let target = if creds.authzid.is_empty() { &creds.authcid } else { &creds.authzid };
        let account = users.resolve(target).map_or_else(|| target.to_ascii_lowercase(), |(u, _)| u.as_str().into());
        let Ok(attempt) = self.throttle.begin(&account, peer, Instant::now()) else {
            tokio::time::sleep(self.throttle.policy().failure_delay).await;
            return Err(LoginError::Throttled);
        };
        let result = tokio::task::block_in_place(|| self.check(users, hints, creds));
        match &result {
            // The proxy proved itself: nothing was guessed, so nothing is counted or delayed.
            Err(LoginError::Unservable) => {
                attempt.void();
                tracing::warn!(account = %target, %peer, "proxy login for an account this node cannot serve");
            }
            Ok(login) => {
                attempt.succeeded();
                let client = if login.via_proxy { hints.client_ip } else { None };
                tracing::info!(user = %login.user.as_str(), %peer, proxy = login.via_proxy, client = ?client, "login");
            }
            Err(_) => {
                attempt.failed();
                tracing::info!(authcid = %creds.authcid, %peer, "login failed");
                tokio::time::sleep(self.throttle.policy().failure_delay).await;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> UserDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(
            &path,
            "alice@example.edu g {PLAIN}alice-pw\nbob@example.edu g\ncarol@example.edu {PLAIN}carol-pw\n",
        )
        .unwrap();
        UserDb::load(&path, &["g".to_string()], Some("g")).unwrap()
    }

    const NO_HINTS: ProxyHints =
        ProxyHints { mailhost: None, client_ip: None, quota_bytes: None, quota_messages: None };

    fn creds(z: &str, c: &str, p: &str) -> PlainCredentials {
        PlainCredentials { authzid: z.into(), authcid: c.into(), password: p.into() }
    }

    fn auth() -> Authenticator {
        let proxy =
            ProxyCredential { user: "frontd".into(), password: PasswordHash::parse("{PLAIN}proxy-pw").unwrap() };
        Authenticator::new(Some(proxy), vec!["127.0.0.0/8".parse().unwrap()], Policy::default())
    }

    #[test]
    fn users_log_in_with_their_own_password_only() {
        let (a, u) = (auth(), users());
        assert_eq!(
            a.check(&u, &NO_HINTS, &creds("", "alice@example.edu", "alice-pw")).unwrap().user.as_str(),
            "alice@example.edu"
        );
        assert_eq!(a.check(&u, &NO_HINTS, &creds("", "Alice@Example.edu", "alice-pw")).map(|l| l.via_proxy), Ok(false));
        assert_eq!(a.check(&u, &NO_HINTS, &creds("", "alice@example.edu", "carol-pw")), Err(LoginError::Failed));
        assert_eq!(
            a.check(&u, &NO_HINTS, &creds("", "bob@example.edu", "")),
            Err(LoginError::Failed),
            "no hash: no login"
        );
        assert_eq!(a.check(&u, &NO_HINTS, &creds("", "nobody@example.edu", "x")), Err(LoginError::Failed));
        assert!(a.check(&u, &NO_HINTS, &creds("alice@example.edu", "alice@example.edu", "alice-pw")).is_ok());
    }

    #[test]
    fn only_the_proxy_credential_may_act_for_another_user() {
        let (a, u) = (auth(), users());
        let l = a.check(&u, &NO_HINTS, &creds("bob@example.edu", "frontd", "proxy-pw")).unwrap();
        assert_eq!((l.user.as_str(), l.via_proxy), ("bob@example.edu", true));
        assert_eq!(a.check(&u, &NO_HINTS, &creds("bob@example.edu", "frontd", "wrong")), Err(LoginError::Failed));
        assert_eq!(
            a.check(&u, &NO_HINTS, &creds("bob@example.edu", "alice@example.edu", "alice-pw")),
            Err(LoginError::Failed)
        );
        assert_eq!(
            a.check(&u, &NO_HINTS, &creds("nobody@example.edu", "frontd", "proxy-pw")),
            Err(LoginError::Unservable),
            "no mailhost named and none listed: no mailbox is made for the name"
        );
        // The proxy's mailHost decides the group; the same hint from a user counts for nothing.
        let hints = ProxyHints { mailhost: Some("apollo".into()), ..NO_HINTS };
        let l = a.check(&u, &hints, &creds("bob@example.edu", "frontd", "proxy-pw")).unwrap();
        assert_eq!((l.user.as_str(), l.group.as_str()), ("bob@example.edu", "apollo"));
        let l = a.check(&u, &hints, &creds("", "alice@example.edu", "alice-pw")).unwrap();
        assert_eq!(l.group, "g");
        assert_eq!(a.check(&u, &hints, &creds("../etc", "frontd", "proxy-pw")), Err(LoginError::Unservable));
        let no_proxy = Authenticator::new(None, vec![], Policy::default());
        assert_eq!(
            no_proxy.check(&u, &NO_HINTS, &creds("bob@example.edu", "frontd", "proxy-pw")),
            Err(LoginError::Failed)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_account_is_throttled_across_addresses() {
        let policy = Policy {
            failure_delay: std::time::Duration::ZERO,
            failures_max: 1,
            address_failures_max: 10,
            account_failures_max: 3,
            window: std::time::Duration::from_secs(60),
        };
        let a = Authenticator::new(None, vec!["0.0.0.0/0".parse().unwrap()], policy);
        let u = users();
        // Three wrong passwords from three addresses (each address allows one failure).
        for k in 1..=3u8 {
            let ip = IpAddr::from([192, 0, 2, k]);
            assert_eq!(
                a.login(&u, ip, false, &NO_HINTS, &creds("", "alice@example.edu", "bad")).await,
                Err(LoginError::Failed)
            );
        }
        // The account is now locked for the window, from anywhere, even with the password.
        let fresh = IpAddr::from([198, 51, 100, 1]);
        assert_eq!(
            a.login(&u, fresh, false, &NO_HINTS, &creds("", "Alice@example.edu", "alice-pw")).await,
            Err(LoginError::Throttled)
        );
        // Other accounts are not affected.
        assert!(a.login(&u, fresh, false, &NO_HINTS, &creds("", "carol@example.edu", "carol-pw")).await.is_ok());
    }

    /// Finding (hardening): a directory entry storaged refused (`a,dc=evil@example.edu`)
    /// counted as the front's failures, and after a dozen tries every login of the mailhost
    /// was throttled. Now it fails that one login and counts for nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_unservable_account_never_throttles_the_front() {
        let policy = Policy {
            failure_delay: std::time::Duration::ZERO,
            failures_max: 2,
            address_failures_max: 6,
            account_failures_max: 6,
            window: std::time::Duration::from_secs(60),
        };
        let proxy =
            ProxyCredential { user: "frontd".into(), password: PasswordHash::parse("{PLAIN}proxy-pw").unwrap() };
        let a = Authenticator::new(Some(proxy), vec!["127.0.0.0/8".parse().unwrap()], policy);
        let u = users();
        let front = IpAddr::from([127, 0, 0, 1]);
        let hints = ProxyHints { mailhost: Some("g".into()), ..NO_HINTS };
        for _ in 0..20 {
            let r = a.login(&u, front, false, &hints, &creds("a/../b@example.edu", "frontd", "proxy-pw")).await;
            assert_eq!(r, Err(LoginError::Unservable));
        }
        let ok = a.login(&u, front, false, &hints, &creds("alice@example.edu", "frontd", "proxy-pw")).await;
        assert!(ok.is_ok(), "the front still logs users in: {ok:?}");
    }

    #[test]
    fn plaintext_needs_tls_outside_the_configured_networks() {
        let a = auth();
        assert!(a.plaintext_allowed("127.0.0.1".parse().unwrap(), false));
        assert!(!a.plaintext_allowed("192.0.2.1".parse().unwrap(), false));
        assert!(a.plaintext_allowed("192.0.2.1".parse().unwrap(), true));
    }
}
