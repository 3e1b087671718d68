//! Login throttling without the holes of per-key counters: every attempt is counted
//! before its password is checked (parallel attempts cannot overshoot), failures are
//! counted per client address, per (account, address) and per account — the account
//! always under its canonical name, whatever name was typed — and a success takes back
//! only its own count and clears only its own (account, address) pair, never failures that
//! other accounts' guesses made. A stranger who fails many times against an account locks
//! it only for addresses it has not logged in from: the owner's usual addresses stay open.
//! Every table is bounded. What this must never do: let a success reset an address, or
//! lock an account out of an address it has used successfully.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limiter::{Policy, WindowCounts, TRACKED_MAX};

/// Addresses remembered per account as its usual ones.
const USUAL_PER_ACCOUNT_MAX: usize = 4;
/// How long an address stays usual after the account's last success from it.
const USUAL_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why an attempt may not even be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many failed logins from this address")]
    Address,
    #[error("too many failed logins for this account from this address")]
    Pair,
    #[error("too many failed logins for this account from unfamiliar addresses")]
    Account,
}

/// The key an address is counted under: IPv6 clients by their /64, which one host or one
/// subscriber usually holds whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
    }
}

#[derive(Debug)]
struct Tables {
    addresses: WindowCounts<IpAddr>,
    pairs: WindowCounts<(String, IpAddr)>,
    accounts: WindowCounts<String>,
    /// Addresses each account logged in from, newest last, with when.
    usual: HashMap<String, Vec<(IpAddr, Instant)>>,
    usual_order: VecDeque<String>,
}

impl Tables {
    fn is_usual(&self, account: &str, ip: IpAddr, now: Instant) -> bool {
        self.usual
            .get(account)
            .is_some_and(|seen| seen.iter().any(|(a, at)| *a == ip && now.saturating_duration_since(*at) < USUAL_FOR))
    }

    fn remember(&mut self, account: &str, ip: IpAddr, now: Instant) {
        if !self.usual.contains_key(account) {
            if self.usual_order.len() >= TRACKED_MAX {
                if let Some(old) = self.usual_order.pop_front() {
                    self.usual.remove(&old);
                }
            }
            self.usual_order.push_back(account.to_string());
        }
        let seen = self.usual.entry(account.to_string()).or_default();
        seen.retain(|(a, _)| *a != ip);
        if seen.len() >= USUAL_PER_ACCOUNT_MAX {
            seen.remove(0);
        }
        seen.push((ip, now));
    }
}

/// Failure counts for one daemon's logins.
#[derive(Debug)]
pub struct Throttle {
    policy: Policy,
    tables: Mutex<Tables>,
}

/// One attempt, counted as a failure until it is settled otherwise. Dropping it unsettled
/// (a client that hangs up during the check) keeps it counted.
#[derive(Debug)]
#[must_use = "an attempt is a failure unless settled"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    account: String,
    ip: IpAddr,
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        let tables = Tables {
            addresses: WindowCounts::new(policy.window),
            pairs: WindowCounts::new(policy.window),
            accounts: WindowCounts::new(policy.window),
            usual: HashMap::new(),
            usual_order: VecDeque::new(),
        };
        Self { policy, tables: Mutex::new(tables) }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether `ip` has failed too often to be heard at all (checked before the directory
    /// is asked who the account is).
    pub fn address_refused(&self, ip: IpAddr, now: Instant) -> bool {
        let tables = self.tables.lock().expect("throttle lock");
        tables.addresses.count(&address_key(ip), now) >= self.policy.address_failures_max
    }

    /// Count an attempt on `account` (its canonical name) from `ip`, or refuse it.
    pub fn begin(&self, account: &str, ip: IpAddr, now: Instant) -> Result<Attempt<'_>, Refused> {
        let ip = address_key(ip);
        let account = account.to_string();
        let mut t = self.tables.lock().expect("throttle lock");
        let pair = (account.clone(), ip);
        if t.addresses.count(&ip, now) >= self.policy.address_failures_max {
            return Err(Refused::Address);
        }
        if t.pairs.count(&pair, now) >= self.policy.failures_max {
            return Err(Refused::Pair);
        }
        if t.accounts.count(&account, now) >= self.policy.account_failures_max && !t.is_usual(&account, ip, now) {
            return Err(Refused::Account);
        }
        t.addresses.add(&ip, now);
        t.pairs.add(&pair, now);
        t.accounts.add(&account, now);
        Ok(Attempt { throttle: self, account, ip })
    }

    /// Keys tracked by the largest table (for bounds checks).
    pub fn tracked(&self) -> usize {
        let t = self.tables.lock().expect("throttle lock");
        t.addresses.len().max(t.pairs.len()).max(t.accounts.len()).max(t.usual.len())
    }
}

impl Attempt<'_> {
    /// The password was right: take this attempt's count back, clear the account's
    /// failures from this address, and remember the address as usual for the account.
    pub fn succeeded(self) {
        let mut t = self.throttle.tables.lock().expect("throttle lock");
        let pair = (self.account.clone(), self.ip);
        t.addresses.take_back(&self.ip);
        t.accounts.take_back(&self.account);
        t.pairs.clear(&pair);
        t.remember(&self.account, self.ip, Instant::now());
    }

    /// Nothing was checked (the directory could not answer): take the count back.
    pub fn void(self) {
        let mut t = self.throttle.tables.lock().expect("throttle lock");
        let pair = (self.account.clone(), self.ip);
        t.addresses.take_back(&self.ip);
        t.accounts.take_back(&self.account);
        t.pairs.take_back(&pair);
    }

    /// The check failed: the count stands.
    pub fn failed(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            failure_delay: Duration::ZERO,
            failures_max: 3,
            address_failures_max: 10,
            account_failures_max: 6,
            window: Duration::from_secs(60),
        }
    }

    fn ip(k: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, k])
    }

    #[test]
    fn a_success_of_another_account_does_not_reset_an_address() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        // The attacker's own account logs in between every two guesses at the victim's.
        for _ in 0..3 {
            t.begin("victim", ip(1), now).unwrap().failed();
            t.begin("attacker", ip(1), now).unwrap().succeeded();
        }
        assert_eq!(t.begin("victim", ip(1), now).map(|_| ()), Err(Refused::Pair));
    }

    #[test]
    fn an_address_is_refused_after_failures_across_accounts() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for k in 0..10 {
            t.begin(&format!("user{k}"), ip(2), now).unwrap().failed();
        }
        assert!(t.address_refused(ip(2), now));
        assert_eq!(t.begin("user99", ip(2), now).map(|_| ()), Err(Refused::Address));
        assert!(!t.address_refused(ip(3), now));
        assert!(!t.address_refused(ip(2), now + Duration::from_secs(61)), "the window passes");
    }

    #[test]
    fn strangers_cannot_lock_the_owner_out_of_a_usual_address() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        t.begin("owner", ip(10), now).unwrap().succeeded();
        for k in 20..26 {
            t.begin("owner", ip(k), now).unwrap().failed();
        }
        assert_eq!(t.begin("owner", ip(30), now).map(|_| ()), Err(Refused::Account), "unfamiliar addresses wait");
        t.begin("owner", ip(10), now).expect("the owner's usual address stays open").succeeded();
    }

    #[test]
    fn parallel_attempts_are_counted_before_their_checks() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        // Three attempts in flight at once: the fourth is refused before any has finished.
        let flying: Vec<_> = (0..3).map(|_| t.begin("victim", ip(4), now).unwrap()).collect();
        assert_eq!(t.begin("victim", ip(4), now).map(|_| ()), Err(Refused::Pair));
        drop(flying);
        assert_eq!(t.begin("victim", ip(4), now).map(|_| ()), Err(Refused::Pair), "dropped attempts count");
    }

    #[test]
    fn a_void_attempt_counts_for_nothing() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for _ in 0..10 {
            t.begin("someone", ip(5), now).unwrap().void();
        }
        assert!(!t.address_refused(ip(5), now));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for k in 0..10u16 {
            let a = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, k]);
            t.begin(&format!("u{k}"), a, now).unwrap().failed();
        }
        assert!(t.address_refused(IpAddr::from([0x2001, 0xdb8, 0, 1, 9, 9, 9, 9]), now));
        assert!(!t.address_refused(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]), now));
    }
}
