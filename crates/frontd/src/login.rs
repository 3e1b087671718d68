//! Who may log in through the front: the client's credentials checked against the
//! directory (hash or LDAP bind), the account's status, TLS policy, and throttling of
//! failures per client address and per account, with a delay on every failure. Clients
//! may not act for other users (no SASL authorization identity of their own). Never logs
//! a password; refusals never say whether the user exists.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::limiter::{Limiter, Policy};
use common::network::Network;
use common::password::PasswordHash;
use common::sasl::PlainCredentials;
use directory::{Account, Directory, DirectoryError, Purpose};

/// What a connection allows before login (IMAP, POP3 and ManageSieve alike).
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// STARTTLS/STLS is offered (TLS is configured and not yet on).
    pub starttls: bool,
    /// Plaintext logins are allowed (TLS is on, or the client is on a plaintext network).
    pub plaintext_auth: bool,
}

/// What the front's connection loop must do after a client's input, IMAP and POP3 alike.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes and read the next command.
    Reply(Vec<u8>),
    /// Write these bytes, then run the TLS handshake.
    StartTls(Vec<u8>),
    /// Write these bytes and close.
    Close(Vec<u8>),
    /// Write [`PreLogin::SASL_CONTINUE`] and hand the client's next line to
    /// [`PreLogin::sasl_response`].
    SaslContinue,
    /// Check these credentials; answer with [`PreLogin::login_failed`] or
    /// [`PreLogin::login_succeeded`].
    Login(PlainCredentials),
}

/// A protocol's pure machine before login, as the front's one connection loop drives it:
/// the loop reads, the machine decides, the loop writes and checks logins.
pub trait PreLogin {
    /// Longest line of a SASL response.
    const SASL_LINE_MAX: usize;
    /// The last words to a client that sent too many commands without logging in.
    const TOO_MANY_COMMANDS: &'static [u8];
    /// What asks the client for its SASL response (IMAP and POP3: `+ `).
    const SASL_CONTINUE: &'static [u8] = b"+ \r\n";
    /// The first bytes the client reads.
    fn greeting(&self, host: &str) -> Vec<u8>;
    /// Handle one command as the protocol's reader framed it.
    fn input(&mut self, command: &[u8]) -> Step;
    /// The client's line after [`Step::SaslContinue`]'s `+ ` (`None`: the line was too long).
    fn sasl_response(&mut self, line: Option<&[u8]>) -> Step;
    /// TLS is now active (after STARTTLS/STLS); passwords are allowed if `plaintext_auth`.
    /// Returns what to send the client now (ManageSieve repeats its capabilities).
    fn tls_started(&mut self, plaintext_auth: bool) -> Vec<u8>;
    /// The answer to the login in progress, from the storage node's success line.
    fn login_succeeded(&mut self, node_reply: &str) -> Vec<u8>;
    /// The answer to the login in progress when it was refused.
    fn login_failed(&mut self, refusal: &Refusal) -> Vec<u8>;
}

/// Why a login was refused; the texts are safe to show to clients.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("authentication failed")]
    Failed,
    #[error("too many failed logins, try again later")]
    Throttled,
    #[error("plaintext authentication is not allowed without TLS")]
    NeedsTls,
    #[error("account disabled; contact your administrator")]
    Disabled,
    #[error("too many sessions for this account; close some and retry")]
    TooManySessions,
    /// The directory or the mailhost cannot be reached now; the client should retry.
    #[error("{0}")]
    Unavailable(String),
}

/// Checks logins against the directory.
#[derive(Debug)]
pub struct Gate {
    directory: Directory,
    plaintext_networks: Vec<Network>,
    addresses: Limiter,
    accounts: Limiter<String>,
    failure_delay: Duration,
    /// Verified against when the user is unknown, so timing does not reveal it.
    decoy: PasswordHash,
}

impl Gate {
    pub fn new(directory: Directory, plaintext_networks: Vec<Network>, policy: Policy) -> Self {
        let account_policy = Policy { failures_max: policy.failures_max.saturating_mul(3), ..policy };
        Self {
            directory,
            plaintext_networks,
            addresses: Limiter::new(policy),
            accounts: Limiter::new(account_policy),
            failure_delay: policy.failure_delay,
            decoy: PasswordHash::sha512_crypt("decoy"),
        }
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Whether a client at `peer` may send a password on a connection without TLS.
    pub fn plaintext_allowed(&self, peer: IpAddr, tls: bool) -> bool {
        tls || self.plaintext_networks.iter().any(|n| n.contains(peer))
    }

    /// A full login attempt: policy, throttling, the check, and the failure delay.
    pub async fn login(&self, peer: IpAddr, tls: bool, creds: &PlainCredentials) -> Result<Arc<Account>, Refusal> {
        if !self.plaintext_allowed(peer, tls) {
            return Err(Refusal::NeedsTls);
        }
        let account_key = creds.authcid.to_lowercase();
        let now = Instant::now();
        if !self.addresses.allowed(&peer, now) || !self.accounts.allowed(&account_key, now) {
            tokio::time::sleep(self.failure_delay).await;
            return Err(Refusal::Throttled);
        }
        let result = self.check(creds).await;
        match &result {
            Ok(account) => {
                self.addresses.succeeded(&peer);
                self.accounts.succeeded(&account_key);
                tracing::info!(user = %account.mail, %peer, "login accepted");
            }
            Err(Refusal::Unavailable(why)) => {
                tracing::warn!(authcid = %creds.authcid, %peer, why, "login not possible now");
            }
            Err(refusal) => {
                self.addresses.failed(&peer, Instant::now());
                self.accounts.failed(&account_key, Instant::now());
                tracing::info!(authcid = %creds.authcid, %peer, %refusal, "login refused");
                tokio::time::sleep(self.failure_delay).await;
            }
        }
        result
    }

    async fn check(&self, creds: &PlainCredentials) -> Result<Arc<Account>, Refusal> {
        let unavailable = |e: DirectoryError| Refusal::Unavailable(format!("{e}; try again later"));
        // Clients log in as themselves; acting for another user is the front's privilege.
        if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&creds.authcid) {
            return Err(Refusal::Failed);
        }
        let Some(account) = self.directory.lookup(&creds.authcid, Purpose::Login).await.map_err(unavailable)? else {
            let (decoy, password) = (self.decoy.clone(), creds.password.clone());
            let _ = tokio::task::spawn_blocking(move || decoy.verify(&password)).await;
            return Err(Refusal::Failed);
        };
        if !self.directory.verify_password(&account, &creds.password).await.map_err(unavailable)? {
            return Err(Refusal::Failed);
        }
        if !account.may_log_in() {
            return Err(Refusal::Disabled);
        }
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use directory::LdifDirectory;

    fn gate(dir: &std::path::Path) -> Gate {
        let path = dir.join("users.ldif");
        std::fs::write(
            &path,
            "dn: uid=alice,dc=e\nobjectClass: qmailUser\nuid: alice\nmail: alice@example.edu\nmailHost: hermes\n\
             userPassword: {PLAIN}alice-pw\n\n\
             dn: uid=bob,dc=e\nobjectClass: qmailUser\nmail: bob@example.edu\nmailHost: hermes\n\
             userPassword: {PLAIN}bob-pw\naccountStatus: disabled\n",
        )
        .unwrap();
        let directory = Directory::Ldif(Arc::new(LdifDirectory::open(&path).unwrap()));
        let policy = Policy { failure_delay: Duration::ZERO, failures_max: 2, window: Duration::from_secs(60) };
        Gate::new(directory, vec!["127.0.0.0/8".parse().unwrap()], policy)
    }

    fn creds(z: &str, c: &str, p: &str) -> PlainCredentials {
        PlainCredentials { authzid: z.into(), authcid: c.into(), password: p.into() }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn logins_follow_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let local = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(
            g.login(local, false, &creds("", "Alice@example.edu", "alice-pw")).await.unwrap().mail,
            "alice@example.edu"
        );
        assert_eq!(g.login(local, false, &creds("", "alice", "alice-pw")).await.unwrap().mail, "alice@example.edu");
        assert_eq!(g.login(local, false, &creds("", "bob@example.edu", "bob-pw")).await, Err(Refusal::Disabled));
        assert_eq!(
            g.login(local, false, &creds("bob@example.edu", "alice", "alice-pw")).await,
            Err(Refusal::Failed),
            "a client may not act for another user"
        );
        let remote = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(g.login(remote, false, &creds("", "alice", "alice-pw")).await, Err(Refusal::NeedsTls));
        assert!(g.login(remote, true, &creds("", "alice", "alice-pw")).await.is_ok());
        for (k, name) in ["*", "*)(uid=*", "alice\0", "nobody@example.edu"].into_iter().enumerate() {
            let ip = IpAddr::from([10, 0, 0, k as u8]);
            assert_eq!(g.login(ip, true, &creds("", name, "x")).await.map(|_| ()), Err(Refusal::Failed));
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn failures_are_throttled_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let ip = IpAddr::from([127, 0, 0, 2]);
        for _ in 0..2 {
            assert_eq!(g.login(ip, false, &creds("", "alice", "wrong")).await, Err(Refusal::Failed));
        }
        assert_eq!(g.login(ip, false, &creds("", "alice", "alice-pw")).await, Err(Refusal::Throttled));
    }
}
