//! Failed-login throttling per client address: every failure is answered only after a
//! delay, and an address with too many recent failures is refused outright until its
//! window passes. The table is bounded; the oldest addresses are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once.
const TRACKED_MAX: usize = 16_384;

/// Throttling policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long a failed attempt waits before its answer.
    pub failure_delay: Duration,
    /// Failures allowed per address within `window`.
    pub failures_max: u32,
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { failure_delay: Duration::from_secs(2), failures_max: 10, window: Duration::from_secs(60) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    since: Instant,
}

/// Per-address failure counts.
#[derive(Debug)]
pub struct Limiter {
    policy: Policy,
    table: Mutex<(HashMap<IpAddr, Record>, VecDeque<IpAddr>)>,
}

impl Limiter {
    pub fn new(policy: Policy) -> Self {
        Self { policy, table: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether `ip` may try to log in now.
    pub fn allowed(&self, ip: IpAddr, now: Instant) -> bool {
        let table = self.table.lock().expect("limiter lock");
        match table.0.get(&ip) {
            Some(r) if now.duration_since(r.since) < self.policy.window => r.failures < self.policy.failures_max,
            _ => true,
        }
    }

    /// Record a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut guard = self.table.lock().expect("limiter lock");
        let (map, order) = &mut *guard;
        match map.get_mut(&ip) {
            Some(r) if now.duration_since(r.since) < self.policy.window => r.failures += 1,
            Some(r) => *r = Record { failures: 1, since: now },
            None => {
                if order.len() >= TRACKED_MAX {
                    if let Some(old) = order.pop_front() {
                        map.remove(&old);
                    }
                }
                order.push_back(ip);
                map.insert(ip, Record { failures: 1, since: now });
            }
        }
    }

    /// Forget `ip`'s failures after a successful login.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut guard = self.table.lock().expect("limiter lock");
        if guard.0.remove(&ip).is_some() {
            guard.1.retain(|x| *x != ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_passes() {
        let policy = Policy { failure_delay: Duration::ZERO, failures_max: 3, window: Duration::from_secs(60) };
        let l = Limiter::new(policy);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.allowed(a, t0));
            l.failed(a, t0);
        }
        assert!(!l.allowed(a, t0 + Duration::from_secs(1)));
        assert!(l.allowed(b, t0), "other addresses are not affected");
        assert!(l.allowed(a, t0 + Duration::from_secs(61)));
        l.failed(a, t0 + Duration::from_secs(61));
        assert!(l.allowed(a, t0 + Duration::from_secs(62)), "a new window starts counting afresh");
        l.succeeded(a);
        assert!(l.allowed(a, t0 + Duration::from_secs(62)));
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = Limiter::new(Policy::default());
        let t0 = Instant::now();
        for i in 0..(TRACKED_MAX as u32 + 100) {
            l.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        let t = l.table.lock().unwrap();
        assert_eq!(t.0.len(), TRACKED_MAX);
        assert_eq!(t.1.len(), TRACKED_MAX);
    }
}
