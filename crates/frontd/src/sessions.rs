//! Caps on open sessions per key (a client address, a user): a slot is taken when a
//! session starts and given back when it ends, whatever way it ends (the slot's `Drop`).
//! One address cannot hold every connection, and one account cannot open sessions
//! without bound (a leaked password used by a botnet, a misconfigured client). The table
//! holds only keys with open sessions, so it is bounded by the connection limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Open sessions per key, at most `max` each.
#[derive(Debug)]
pub struct SessionCounts<K> {
    max: usize,
    open: Mutex<HashMap<K, usize>>,
}

/// One open session; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    counts: Arc<SessionCounts<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> SessionCounts<K> {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, open: Mutex::new(HashMap::new()) })
    }

    /// A slot for `key`, unless it already has `max` open sessions.
    pub fn try_acquire(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut open = self.open.lock().expect("session counts lock");
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot { counts: self.clone(), key })
    }

    /// Open sessions of `key`.
    pub fn count(&self, key: &K) -> usize {
        self.open.lock().expect("session counts lock").get(key).copied().unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("session counts lock");
        let n = open.get_mut(&self.key).expect("a slot's key is counted");
        assert!(*n > 0);
        *n -= 1;
        if *n == 0 {
            open.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_freed_on_drop() {
        let counts = SessionCounts::new(2);
        let a1 = counts.try_acquire("a").unwrap();
        let _a2 = counts.try_acquire("a").unwrap();
        assert!(counts.try_acquire("a").is_none());
        let _b = counts.try_acquire("b").unwrap();
        drop(a1);
        assert_eq!(counts.count(&"a"), 1);
        assert!(counts.try_acquire("a").is_some(), "the freed slot is reusable (and freed again at once)");
        drop(_a2);
        assert_eq!(counts.count(&"a"), 0);
        assert_eq!(counts.open.lock().unwrap().len(), 1, "keys without sessions leave the table");
    }
}
