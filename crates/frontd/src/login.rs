//! Who may log in through the front: the client's credentials checked against the
//! directory (hash or LDAP bind), the account's status, TLS policy, and throttling of
//! failures per client address and per account, with a delay on every failure. Clients
//! may not act for other users (no SASL authorization identity of their own). Never logs
//! a password; refusals never say whether the user exists.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use common::limiter::Policy;
use common::network::Network;
use common::password::Decoy;
use common::sasl::PlainCredentials;
use common::throttle::{self, Throttle};
use directory::{lookup_key, Account, Directory, DirectoryError, Purpose};

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
    throttle: Throttle,
    /// Verified against when the user is unknown, so timing does not reveal it.
    decoy: Decoy,
}

impl Gate {
    pub fn new(directory: Directory, plaintext_networks: Vec<Network>, policy: Policy) -> Self {
        Self { directory, plaintext_networks, throttle: Throttle::new(policy), decoy: Decoy::default() }
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
        if self.throttle.address_refused(peer, Instant::now()) {
            return self.throttled(peer, creds, throttle::Refused::Address).await;
        }
        let found = match self.directory.lookup(&creds.authcid, Purpose::Login).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(authcid = %log_safe(&creds.authcid), %peer, error = %e, "login not possible now");
                return Err(Refusal::Unavailable(format!("{e}; try again later")));
            }
        };
        // Failures count against the account, whatever name was typed for it.
        let account_key = match &found {
            Some(account) => account.mail.clone(),
            None => lookup_key(&creds.authcid, Purpose::Login).unwrap_or_default(),
        };
        let attempt = match self.throttle.begin(&account_key, peer, Instant::now()) {
            Ok(attempt) => attempt,
            Err(why) => return self.throttled(peer, creds, why).await,
        };
        let result = self.check(found, creds).await;
        match &result {
            Ok(account) => {
                attempt.succeeded();
                tracing::info!(user = %account.mail, %peer, "login accepted");
            }
            Err(Refusal::Unavailable(why)) => {
                attempt.void();
                tracing::warn!(authcid = %log_safe(&creds.authcid), %peer, why, "login not possible now");
            }
            Err(refusal) => {
                attempt.failed();
                tracing::info!(authcid = %log_safe(&creds.authcid), %peer, %refusal, "login refused");
                self.failure_pause().await;
            }
        }
        result
    }

    async fn throttled(
        &self,
        peer: IpAddr,
        creds: &PlainCredentials,
        why: throttle::Refused,
    ) -> Result<Arc<Account>, Refusal> {
        tracing::info!(authcid = %log_safe(&creds.authcid), %peer, %why, "login throttled");
        self.failure_pause().await;
        Err(Refusal::Throttled)
    }

    async fn check(&self, found: Option<Arc<Account>>, creds: &PlainCredentials) -> Result<Arc<Account>, Refusal> {
        let unavailable = |e: DirectoryError| Refusal::Unavailable(format!("{e}; try again later"));
        // Clients log in as themselves; acting for another user is the front's privilege.
        if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&creds.authcid) {
            return Err(Refusal::Failed);
        }
        let Some(account) = found else {
            self.directory.verify_nobody(&self.decoy, &creds.password).await.map_err(unavailable)?;
            return Err(Refusal::Failed);
        };
        if !self.directory.verify_password(&account, &creds.password).await.map_err(unavailable)? {
            self.follow_cost(&account);
            return Err(Refusal::Failed);
        }
        self.follow_cost(&account);
        if !account.may_log_in() {
            return Err(Refusal::Disabled);
        }
        Ok(account)
    }

    /// Make the decoy cost what `account`'s hash costs, if it does not already.
    fn follow_cost(&self, account: &Account) {
        let Some(hash) = &account.password else { return };
        // Hashing a new decoy is slow: only when the scheme or cost changed, off the worker.
        if self.decoy.hash().cost() != hash.cost() {
            tokio::task::block_in_place(|| self.decoy.follow(hash));
        }
    }

    /// The wait before a failure's answer (none when the policy says zero).
    async fn failure_pause(&self) {
        let delay = self.throttle.policy().failure_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// Keys the throttle tracks now (its tables are bounded).
    pub fn throttle_tracked(&self) -> usize {
        self.throttle.tracked()
    }
}

/// A typed login name as it goes into a log line: at most 64 characters (the log writer
/// escapes control characters, so a name cannot start a line of its own).
fn log_safe(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use directory::LdifDirectory;
    use std::time::Duration;

    const POLICY: Policy = Policy {
        failure_delay: Duration::ZERO,
        failures_max: 2,
        address_failures_max: 6,
        account_failures_max: 4,
        window: Duration::from_secs(60),
    };

    fn gate(dir: &std::path::Path) -> Gate {
        gate_with(dir, "{PLAIN}alice-pw", POLICY)
    }

    fn gate_with(dir: &std::path::Path, alice_hash: &str, policy: Policy) -> Gate {
        let path = dir.join("users.ldif");
        let ldif = format!(
            "dn: uid=alice,dc=e\nobjectClass: qmailUser\nuid: alice\nmail: alice@example.edu\nmailHost: hermes\n\
             userPassword: {alice_hash}\n\n\
             dn: uid=bob,dc=e\nobjectClass: qmailUser\nmail: bob@example.edu\nmailHost: hermes\n\
             userPassword: {{PLAIN}}bob-pw\naccountStatus: disabled\n\n\
             dn: uid=carol,dc=e\nobjectClass: qmailUser\nuid: carol\nmail: carol@example.edu\nmailHost: hermes\n\
             userPassword: {{PLAIN}}carol-pw\n"
        );
        std::fs::write(&path, ldif).unwrap();
        let directory = Directory::Ldif(Arc::new(LdifDirectory::open(&path).unwrap()));
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

    /// Hole: the attacker's own successful login reset the address's failures, so one
    /// address could guess a victim's password without end (9 wrong + 1 right, repeated).
    #[tokio::test(flavor = "multi_thread")]
    async fn an_attackers_own_login_does_not_reset_the_guesses() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let ip = IpAddr::from([127, 0, 0, 3]);
        for _ in 0..2 {
            assert_eq!(g.login(ip, false, &creds("", "alice", "guess")).await, Err(Refusal::Failed));
            assert!(g.login(ip, false, &creds("", "carol", "carol-pw")).await.is_ok());
        }
        assert_eq!(g.login(ip, false, &creds("", "alice", "alice-pw")).await, Err(Refusal::Throttled));
        let home = IpAddr::from([127, 0, 0, 4]);
        assert!(g.login(home, false, &creds("", "alice", "alice-pw")).await.is_ok(), "only that pair waits");
    }

    /// Hole: failures from three addresses locked the owner out from everywhere.
    #[tokio::test(flavor = "multi_thread")]
    async fn strangers_cannot_lock_the_owner_out_of_their_address() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let home = IpAddr::from([127, 0, 1, 1]);
        assert!(g.login(home, false, &creds("", "alice", "alice-pw")).await.is_ok());
        for k in 2..=3 {
            let stranger = IpAddr::from([127, 0, 1, k]);
            for _ in 0..2 {
                assert_eq!(g.login(stranger, false, &creds("", "alice", "guess")).await, Err(Refusal::Failed));
            }
        }
        let elsewhere = IpAddr::from([127, 0, 1, 9]);
        assert_eq!(g.login(elsewhere, false, &creds("", "alice", "alice-pw")).await, Err(Refusal::Throttled));
        assert!(g.login(home, false, &creds("", "alice", "alice-pw")).await.is_ok(), "the owner's address is open");
    }

    /// Hole: `alice` and `alice@example.edu` had a failure budget each.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_name_of_an_account_shares_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        let ip = IpAddr::from([127, 0, 2, 1]);
        assert_eq!(g.login(ip, false, &creds("", "alice", "guess")).await, Err(Refusal::Failed));
        assert_eq!(g.login(ip, false, &creds("", "ALICE@example.edu", "guess")).await, Err(Refusal::Failed));
        assert_eq!(g.login(ip, false, &creds("", "alice@example.edu", "guess")).await, Err(Refusal::Throttled));
    }

    /// Hole: an unknown user was checked against a SHA512-CRYPT decoy whatever the real
    /// users' scheme, so it answered at another speed than a known user (who exists?).
    #[tokio::test(flavor = "multi_thread")]
    async fn unknown_users_are_checked_at_the_real_users_cost() {
        let dir = tempfile::tempdir().unwrap();
        let real = common::password::PasswordHash::salted(common::password::Digest::Sha512, "alice-pw");
        let g = gate_with(dir.path(), &real.to_stored(), POLICY);
        assert_ne!(g.decoy.hash().cost(), real.cost());
        let ip = IpAddr::from([127, 0, 3, 1]);
        assert!(g.login(ip, false, &creds("", "alice", "alice-pw")).await.is_ok());
        assert_eq!(g.decoy.hash().cost(), real.cost(), "the decoy follows the users' scheme");
        assert_eq!(g.login(ip, false, &creds("", "nobody", "x")).await, Err(Refusal::Failed));
    }

    /// Hole: parallel attempts were all checked before any failure was counted.
    #[tokio::test(flavor = "multi_thread")]
    async fn parallel_guesses_are_counted_before_their_checks() {
        let dir = tempfile::tempdir().unwrap();
        // A slow hash, so every attempt is in flight before the first one's answer.
        let slow = sha_crypt::sha512_simple("alice-pw", &sha_crypt::Sha512Params::new(50_000).unwrap()).unwrap();
        let g = Arc::new(gate_with(dir.path(), &format!("{{CRYPT}}{slow}"), POLICY));
        let ip = IpAddr::from([127, 0, 4, 1]);
        let tries: Vec<_> = (0..12)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.login(ip, false, &creds("", "alice", "guess")).await })
            })
            .collect();
        let mut checked = 0;
        for t in tries {
            if t.await.unwrap() == Err(Refusal::Failed) {
                checked += 1;
            }
        }
        assert_eq!(checked, POLICY.failures_max, "only the allowed number of guesses were checked");
    }

    /// Bad input: 10,000 attempts from 1,000 addresses keep the tables bounded, and the
    /// owner still logs in from their address.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_flood_of_guesses_stays_bounded_and_the_owner_gets_in() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy { failures_max: 10, address_failures_max: 30, account_failures_max: 100, ..POLICY };
        let g = gate_with(dir.path(), "{PLAIN}alice-pw", policy);
        let home = IpAddr::from([127, 9, 9, 9]);
        assert!(g.login(home, false, &creds("", "alice", "alice-pw")).await.is_ok());
        for k in 0..10_000u32 {
            let ip = IpAddr::from([127, 1, (k % 1000 / 250) as u8, (k % 250) as u8]);
            let name = if k % 2 == 0 { "alice".to_string() } else { format!("user{k}@example.edu") };
            let _ = g.login(ip, false, &creds("", &name, "guess")).await;
        }
        assert!(g.throttle_tracked() <= common::limiter::TRACKED_MAX);
        assert!(g.login(home, false, &creds("", "alice@example.edu", "alice-pw")).await.is_ok());
    }
}
