//! A small bounded cache whose entries expire after a fixed time: directory answers are
//! reused for a short while so a burst of logins does not become a burst of LDAP searches,
//! and a change in the directory is seen once the TTL has passed.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Key → (value, when it was stored), at most `entries_max` entries.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries_max: usize,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, entries_max: usize) -> Self {
        assert!(entries_max > 0);
        Self { ttl, entries_max, map: Mutex::new(HashMap::new()) }
    }

    /// The value stored for `key` less than the TTL before `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let map = self.map.lock().expect("cache lock");
        let (value, at) = map.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
    }

    /// Store `value` for `key` at `now`. When full, expired entries go first, and if none
    /// had expired everything goes (bounded memory beats a perfect hit rate).
    pub fn insert(&self, key: K, value: V, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().expect("cache lock");
        if map.len() >= self.entries_max && !map.contains_key(&key) {
            map.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
            if map.len() >= self.entries_max {
                map.clear();
            }
        }
        map.insert(key, (value, now));
        assert!(map.len() <= self.entries_max);
    }

    /// Forget everything (after a change this process made itself).
    pub fn clear(&self) {
        self.map.lock().expect("cache lock").clear();
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_is_bounded() {
        let cache = TtlCache::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        cache.insert("a", 1, t0);
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(9)), Some(1));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(10)), None);
        cache.insert("b", 2, t0 + Duration::from_secs(5));
        // Full: the expired "a" makes room.
        cache.insert("c", 3, t0 + Duration::from_secs(12));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"b", t0 + Duration::from_secs(12)), Some(2));
        // Full of fresh entries: cleared rather than grown.
        cache.insert("d", 4, t0 + Duration::from_secs(13));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&"d", t0 + Duration::from_secs(13)), Some(4));
        let off = TtlCache::new(Duration::ZERO, 1);
        off.insert("a", 1, t0);
        assert_eq!(off.get(&"a", t0), None, "a zero TTL caches nothing");
    }
}
