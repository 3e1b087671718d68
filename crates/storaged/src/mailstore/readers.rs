//! Read leases: which message files a reader may still be reading, so that the inode of an
//! expunged message is rewritten with another message only once no reader can hold it.
//!
//! A reader takes a [`ReadLease`] under the store lock, in the same critical section that
//! looks up the message's path, and drops it when the bytes are in memory. A file retired
//! under the store lock is stamped with the epoch [`Readers::seal`] closes. Every reader that
//! could have learned the retired file's path leased in that epoch or an earlier one (a
//! lookup after the retire finds no such message), so once no lease of an epoch at or before
//! the stamp is left, no reader can open or be reading the file: [`Readers::quiet_since`].
//!
//! What this must never do: report an epoch quiet while a lease taken in it lives. It keeps
//! no paths and makes no I/O; a lease held long (a slow reader) only delays reuse, never
//! blocks an apply.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The leases of one store. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Readers(Arc<Mutex<Epochs>>);

#[derive(Default)]
struct Epochs {
    /// The epoch new leases join.
    current: u64,
    /// Live leases per epoch (no zero counts).
    live: BTreeMap<u64, usize>,
}

impl Readers {
    /// A lease in the current epoch; take it before looking up a path, under the store lock.
    pub fn lease(&self) -> ReadLease {
        let mut e = self.0.lock().expect("readers lock");
        let epoch = e.current;
        *e.live.entry(epoch).or_default() += 1;
        ReadLease { readers: self.clone(), epoch }
    }

    /// Close the current epoch: a file retired now may be held by leases of the sealed epoch
    /// or earlier ones, never by later ones. Also says which epochs are quiet, in the same
    /// critical section.
    pub fn seal(&self) -> Sealed {
        let mut e = self.0.lock().expect("readers lock");
        let stamp = e.current;
        e.current += 1;
        Sealed { stamp, quiet: Quiet(e.oldest_live()) }
    }

    /// Which epochs have no live lease left, now.
    pub fn quiet(&self) -> Quiet {
        Quiet(self.0.lock().expect("readers lock").oldest_live())
    }

    /// Whether every lease of epoch `stamp` or earlier has been dropped.
    pub fn quiet_since(&self, stamp: u64) -> bool {
        self.quiet().since(stamp)
    }

    /// Live leases (tests and metrics).
    pub fn live(&self) -> usize {
        self.0.lock().expect("readers lock").live.values().sum()
    }
}

impl Epochs {
    fn oldest_live(&self) -> Option<u64> {
        self.live.first_key_value().map(|(&oldest, _)| oldest)
    }
}

/// An epoch closed by [`Readers::seal`], and the leases as they stood then.
#[derive(Debug, Clone, Copy)]
pub struct Sealed {
    /// The stamp for a file retired before the seal.
    pub stamp: u64,
    pub quiet: Quiet,
}

/// Which epochs had no live lease at one moment (the oldest epoch with one, if any). An
/// epoch quiet then stays quiet: leases are only ever taken in the current epoch.
#[derive(Debug, Clone, Copy)]
pub struct Quiet(Option<u64>);

impl Quiet {
    /// Whether no lease of epoch `stamp` or earlier was live.
    pub fn since(self, stamp: u64) -> bool {
        self.0.is_none_or(|oldest| oldest > stamp)
    }
}

/// A reader's claim that it may open or be reading a message file. Dropping it ends the claim.
pub struct ReadLease {
    readers: Readers,
    epoch: u64,
}

impl std::fmt::Debug for ReadLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadLease").field("epoch", &self.epoch).finish()
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let mut e = self.readers.0.lock().expect("readers lock");
        let count = e.live.get_mut(&self.epoch).expect("a live lease is counted");
        assert!(*count > 0, "lease count underflow");
        *count -= 1;
        if *count == 0 {
            e.live.remove(&self.epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_quiet_only_after_every_earlier_lease_is_dropped() {
        let readers = Readers::default();
        assert!(readers.quiet_since(0), "no reader at all");
        let early = readers.lease();
        let stamp = readers.seal().stamp;
        let late = readers.lease();
        assert!(!readers.quiet_since(stamp), "a lease from before the retire may hold the file");
        drop(late);
        assert!(!readers.quiet_since(stamp));
        let after = readers.lease();
        drop(early);
        assert!(readers.quiet_since(stamp), "a lease taken after the retire cannot hold the file");
        assert_eq!(readers.live(), 1);
        let second = readers.seal().stamp;
        assert!(!readers.quiet_since(second), "the later lease holds the next stamp");
        drop(after);
        assert!(readers.quiet_since(second));
        assert_eq!(readers.live(), 0);
    }

    #[test]
    fn several_leases_of_one_epoch_all_count() {
        let readers = Readers::default();
        let a = readers.lease();
        let b = readers.lease();
        let stamp = readers.seal().stamp;
        drop(a);
        assert!(!readers.quiet_since(stamp));
        drop(b);
        assert!(readers.quiet_since(stamp));
    }
}
