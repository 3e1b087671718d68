//! Failed-login throttling: the policy (how many failures per window, for which key) and a
//! bounded table of failures counted per key within a window. The table never grows past
//! its bound: when it is full the key seen longest ago is forgotten first. What this must
//! never do: allocate per attempt without bound, or hold a lock across I/O.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Keys one table tracks at once.
pub const TRACKED_MAX: usize = 16_384;

/// Throttling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a failed attempt waits before its answer.
    pub failure_delay: Duration,
    /// Failures allowed per account from one client address within `window`.
    pub failures_max: u32,
    /// Failures allowed per client address within `window`, whatever accounts it tries.
    pub address_failures_max: u32,
    /// Failures allowed per account within `window` from addresses it has not logged in
    /// from before (its usual addresses are held to `failures_max` only).
    pub account_failures_max: u32,
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            failure_delay: Duration::from_secs(2),
            failures_max: 10,
            address_failures_max: 30,
            account_failures_max: 100,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    since: Instant,
}

/// Failures per key within a window, for at most `TRACKED_MAX` keys.
#[derive(Debug)]
pub struct WindowCounts<K> {
    window: Duration,
    map: HashMap<K, Record>,
    /// Keys in the order they were first tracked; always the same set as `map`'s keys.
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone> WindowCounts<K> {
    pub fn new(window: Duration) -> Self {
        Self { window, map: HashMap::new(), order: VecDeque::new() }
    }

    /// Failures of `key` in the window that holds `now`.
    pub fn count(&self, key: &K, now: Instant) -> u32 {
        match self.map.get(key) {
            Some(r) if now.saturating_duration_since(r.since) < self.window => r.failures,
            _ => 0,
        }
    }

    /// Count one failure of `key` at `now`.
    pub fn add(&mut self, key: &K, now: Instant) {
        if let Some(r) = self.map.get_mut(key) {
            if now.saturating_duration_since(r.since) < self.window {
                r.failures = r.failures.saturating_add(1);
            } else {
                *r = Record { failures: 1, since: now };
            }
            return;
        }
        if self.order.len() >= TRACKED_MAX {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key.clone(), Record { failures: 1, since: now });
        debug_assert_eq!(self.map.len(), self.order.len());
    }

    /// Take back one failure counted for `key` (an attempt that turned out not to fail).
    pub fn take_back(&mut self, key: &K) {
        if let Some(r) = self.map.get_mut(key) {
            r.failures = r.failures.saturating_sub(1);
        }
    }

    /// Forget `key`'s failures (its record stays, at zero, so the order stays exact).
    pub fn clear(&mut self, key: &K) {
        if let Some(r) = self.map.get_mut(key) {
            r.failures = 0;
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn failures_count_within_the_window_and_start_afresh_after_it() {
        let mut t: WindowCounts<IpAddr> = WindowCounts::new(Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            t.add(&a, t0);
        }
        assert_eq!(t.count(&a, t0 + Duration::from_secs(1)), 3);
        assert_eq!(t.count(&b, t0), 0, "other keys are not affected");
        assert_eq!(t.count(&a, t0 + Duration::from_secs(61)), 0);
        t.add(&a, t0 + Duration::from_secs(61));
        assert_eq!(t.count(&a, t0 + Duration::from_secs(62)), 1, "a new window starts counting afresh");
        t.take_back(&a);
        assert_eq!(t.count(&a, t0 + Duration::from_secs(62)), 0);
        t.add(&a, t0 + Duration::from_secs(62));
        t.clear(&a);
        assert_eq!(t.count(&a, t0 + Duration::from_secs(62)), 0);
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut t: WindowCounts<IpAddr> = WindowCounts::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(TRACKED_MAX as u32 + 100) {
            t.add(&IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(t.len(), TRACKED_MAX);
        assert_eq!(t.order.len(), TRACKED_MAX);
        assert_eq!(t.count(&IpAddr::from(0u32.to_be_bytes()), t0), 0, "the oldest key was forgotten");
    }
}
