//! Failed-login throttling per key (a client address, or an account name): every failure
//! is answered only after a delay, and a key with too many recent failures is refused
//! outright until its window passes. The table is bounded; the oldest keys are forgotten
//! first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
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

/// Per-key failure counts (by default per client address).
#[derive(Debug)]
pub struct Limiter<K = IpAddr> {
    policy: Policy,
    table: Mutex<(HashMap<K, Record>, VecDeque<K>)>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(policy: Policy) -> Self {
        Self { policy, table: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Whether `key` may try to log in now.
    pub fn allowed(&self, key: &K, now: Instant) -> bool {
        let table = self.table.lock().expect("limiter lock");
        match table.0.get(key) {
            Some(r) if now.duration_since(r.since) < self.policy.window => r.failures < self.policy.failures_max,
            _ => true,
        }
    }

    /// Record a failed attempt for `key`.
    pub fn failed(&self, key: &K, now: Instant) {
        let mut guard = self.table.lock().expect("limiter lock");
        let (map, order) = &mut *guard;
        match map.get_mut(key) {
            Some(r) if now.duration_since(r.since) < self.policy.window => r.failures += 1,
            Some(r) => *r = Record { failures: 1, since: now },
            None => {
                if order.len() >= TRACKED_MAX {
                    if let Some(old) = order.pop_front() {
                        map.remove(&old);
                    }
                }
                order.push_back(key.clone());
                map.insert(key.clone(), Record { failures: 1, since: now });
            }
        }
    }

    /// Forget `key`'s failures after a successful login.
    pub fn succeeded(&self, key: &K) {
        let mut guard = self.table.lock().expect("limiter lock");
        if guard.0.remove(key).is_some() {
            guard.1.retain(|x| x != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_passes() {
        let policy = Policy { failure_delay: Duration::ZERO, failures_max: 3, window: Duration::from_secs(60) };
        let l: Limiter = Limiter::new(policy);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.allowed(&a, t0));
            l.failed(&a, t0);
        }
        assert!(!l.allowed(&a, t0 + Duration::from_secs(1)));
        assert!(l.allowed(&b, t0), "other addresses are not affected");
        assert!(l.allowed(&a, t0 + Duration::from_secs(61)));
        l.failed(&a, t0 + Duration::from_secs(61));
        assert!(l.allowed(&a, t0 + Duration::from_secs(62)), "a new window starts counting afresh");
        l.succeeded(&a);
        assert!(l.allowed(&a, t0 + Duration::from_secs(62)));
    }

    #[test]
    fn the_table_stays_bounded() {
        let l: Limiter = Limiter::new(Policy::default());
        let t0 = Instant::now();
        for i in 0..(TRACKED_MAX as u32 + 100) {
            l.failed(&IpAddr::from(i.to_be_bytes()), t0);
        }
        let t = l.table.lock().unwrap();
        assert_eq!(t.0.len(), TRACKED_MAX);
        assert_eq!(t.1.len(), TRACKED_MAX);
    }
}
