//! Message headers kept in memory for the reads that need nothing else: SEARCH on header
//! fields and FETCH of ENVELOPE or `BODY[HEADER…]`. A client's message list or a `SEARCH
//! SUBJECT` over a mailbox would otherwise open and checksum every message file each time.
//!
//! A message file never changes once written (flag changes rename it, they do not edit
//! it), so a header stays valid for as long as its file exists; the key is the file's
//! unique name together with its size and checksum from the index, and the user, so one
//! user's lookup can never return another's header. The cache only ever holds headers cut
//! from bytes that passed their checksum, and it is bounded in bytes: the least recently
//! touched entries leave first (second-chance order, work bounded by the entry count).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::mailstore::index::MessageMeta;

/// Headers larger than this are not kept (they are rare and would crowd out many others).
pub const HEADER_CACHED_MAX_BYTES: usize = 64 << 10;
/// Bookkeeping per entry counted against the budget besides the header and key strings.
const ENTRY_OVERHEAD_BYTES: usize = 96;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    user: String,
    base: String,
    size: u64,
    crc32c: u32,
}

impl Key {
    fn new(user: &str, meta: &MessageMeta) -> Self {
        Self { user: user.to_string(), base: meta.base.clone(), size: meta.size, crc32c: meta.crc32c }
    }

    fn cost_bytes(&self, header: &[u8]) -> usize {
        header.len() + self.user.len() + self.base.len() + ENTRY_OVERHEAD_BYTES
    }
}

struct Entry {
    header: Arc<[u8]>,
    /// Touched since the eviction hand last passed it.
    referenced: bool,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Every key in `map` exactly once, in eviction order.
    order: VecDeque<Key>,
    bytes: usize,
}

/// A bounded, shared header cache (one per group on each node).
pub struct HeaderCache {
    inner: Mutex<Inner>,
    bytes_max: usize,
}

impl HeaderCache {
    pub fn new(bytes_max: usize) -> Self {
        Self { inner: Mutex::default(), bytes_max }
    }

    /// The cached header of `meta` in `user`'s mail, if any.
    pub fn get(&self, user: &str, meta: &MessageMeta) -> Option<Arc<[u8]>> {
        let key = Key::new(user, meta);
        let mut inner = self.inner.lock().expect("header cache lock");
        let entry = inner.map.get_mut(&key)?;
        entry.referenced = true;
        Some(entry.header.clone())
    }

    /// Keep `header`, cut from the verified bytes of `meta`'s file. Returns it shared.
    pub fn insert(&self, user: &str, meta: &MessageMeta, header: &[u8]) -> Arc<[u8]> {
        let header: Arc<[u8]> = Arc::from(header);
        let key = Key::new(user, meta);
        let cost = key.cost_bytes(&header);
        if header.len() > HEADER_CACHED_MAX_BYTES || cost > self.bytes_max {
            return header;
        }
        let mut inner = self.inner.lock().expect("header cache lock");
        if inner.map.contains_key(&key) {
            return header;
        }
        // Each pass either frees an entry or clears one reference bit, so two passes over
        // the queue always make room.
        let mut steps_left = 2 * inner.order.len() + 1;
        while inner.bytes + cost > self.bytes_max && steps_left > 0 {
            steps_left -= 1;
            let Some(old) = inner.order.pop_front() else { break };
            let entry = inner.map.get_mut(&old).expect("ordered key is cached");
            if std::mem::take(&mut entry.referenced) {
                inner.order.push_back(old);
                continue;
            }
            let entry = inner.map.remove(&old).expect("ordered key is cached");
            inner.bytes -= old.cost_bytes(&entry.header);
        }
        assert!(inner.bytes + cost <= self.bytes_max, "header cache over budget after eviction");
        inner.bytes += cost;
        inner.order.push_back(key.clone());
        inner.map.insert(key, Entry { header: header.clone(), referenced: false });
        header
    }

    /// Bytes accounted to cached entries.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("header cache lock").bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(base: &str, crc32c: u32) -> MessageMeta {
        MessageMeta {
            uid: 1,
            base: base.into(),
            in_cur: false,
            flags: 0,
            keywords: vec![],
            size: 100,
            internal_date: 0,
            modseq: 1,
            crc32c,
            email_id: 0,
            saved_s: 0,
        }
    }

    #[test]
    fn a_header_is_found_only_for_the_same_user_and_file() {
        let cache = HeaderCache::new(1 << 20);
        cache.insert("alice", &meta("m1", 7), b"Subject: a\r\n\r\n");
        assert_eq!(cache.get("alice", &meta("m1", 7)).as_deref(), Some(&b"Subject: a\r\n\r\n"[..]));
        assert!(cache.get("bob", &meta("m1", 7)).is_none(), "another user's lookup must miss");
        assert!(cache.get("alice", &meta("m2", 7)).is_none());
        assert!(cache.get("alice", &meta("m1", 8)).is_none(), "a different checksum is a different file");
    }

    #[test]
    fn the_budget_holds_and_recently_used_entries_survive() {
        let header = vec![b'x'; 1000];
        let one = Key::new("u", &meta("m0", 0)).cost_bytes(&header);
        let cache = HeaderCache::new(4 * one);
        for i in 0..4 {
            cache.insert("u", &meta(&format!("m{i}"), 0), &header);
        }
        assert_eq!(cache.bytes(), 4 * one);
        assert!(cache.get("u", &meta("m0", 0)).is_some());
        for i in 4..10 {
            cache.insert("u", &meta(&format!("m{i}"), 0), &header);
            assert!(cache.bytes() <= 4 * one);
        }
        assert!(cache.get("u", &meta("m9", 0)).is_some(), "the newest entry is kept");
        assert!(cache.get("u", &meta("m1", 0)).is_none(), "an untouched old entry left");
    }

    #[test]
    fn oversized_headers_are_returned_but_not_kept() {
        let cache = HeaderCache::new(1 << 20);
        let big = vec![b'h'; HEADER_CACHED_MAX_BYTES + 1];
        assert_eq!(cache.insert("u", &meta("m", 1), &big).len(), big.len());
        assert!(cache.get("u", &meta("m", 1)).is_none());
        assert_eq!(cache.bytes(), 0);
    }
}
