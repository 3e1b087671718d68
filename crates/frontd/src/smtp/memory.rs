//! The memory message bodies may hold in frontd, as one budget over every SMTP connection:
//! a global byte bound, a byte bound and a transaction bound per client address, and a
//! slice of the global bound that only small messages may use, so big ones (an attacker's
//! many unfinished 32 MiB transactions) cannot starve ordinary mail.
//!
//! A transaction takes a [`Reservation`] when DATA or BDAT starts and grows it before its
//! body grows; a growth that does not fit fails and the transaction is refused with `452
//! 4.3.1` (its bytes dropped, so it holds nothing while the client finishes sending). A
//! reservation gives everything back when dropped, however the transaction ends. This
//! module must never let the sum of reservations pass the global bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Reservations grow in steps of this many bytes (fewer trips through the lock).
const STEP_BYTES: usize = 256 << 10;
/// A reservation up to this size is small: it may use the slice kept for small messages.
const SMALL_BYTES: usize = 2 << 20;

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Every body of every connection together.
    pub total_max_bytes: usize,
    /// The bodies of one client address together.
    pub per_address_max_bytes: usize,
    /// Open DATA/BDAT transactions of one client address.
    pub transactions_per_address_max: usize,
}

#[derive(Debug, Default)]
struct State {
    total_bytes: usize,
    /// Bytes and open transactions per address (only addresses with a transaction).
    addresses: HashMap<IpAddr, (usize, usize)>,
}

/// The shared budget.
#[derive(Debug)]
pub struct BodyMemory {
    limits: Limits,
    state: Mutex<State>,
}

/// One transaction's share; dropping it gives the bytes and the transaction slot back.
#[derive(Debug)]
pub struct Reservation {
    pool: Arc<BodyMemory>,
    /// `None` for copies made while delivering (they count globally only).
    address: Option<IpAddr>,
    bytes: usize,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    #[error("too many messages in transfer from your address")]
    Transactions,
    #[error("insufficient system storage for the message")]
    Bytes,
}

impl BodyMemory {
    pub fn new(limits: Limits) -> Arc<Self> {
        assert!(limits.total_max_bytes >= 4 * SMALL_BYTES, "the budget holds a few small messages at least");
        Arc::new(Self { limits, state: Mutex::default() })
    }

    /// A transaction from `address` starts: an empty reservation, unless the address has
    /// as many open as it may.
    pub fn begin(self: &Arc<Self>, address: IpAddr) -> Result<Reservation, NoRoom> {
        let mut state = self.state.lock().expect("body memory lock");
        let entry = state.addresses.entry(address).or_default();
        if entry.1 >= self.limits.transactions_per_address_max {
            if entry.1 == 0 {
                state.addresses.remove(&address);
            }
            return Err(NoRoom::Transactions);
        }
        entry.1 += 1;
        Ok(Reservation { pool: self.clone(), address: Some(address), bytes: 0 })
    }

    /// Room for `bytes` of copies a delivery makes (counted globally only).
    pub fn for_copies(self: &Arc<Self>, bytes: usize) -> Result<Reservation, NoRoom> {
        let mut r = Reservation { pool: self.clone(), address: None, bytes: 0 };
        r.grow_to(bytes)?;
        Ok(r)
    }

    /// Bytes reserved now, over everything.
    pub fn total_bytes(&self) -> usize {
        self.state.lock().expect("body memory lock").total_bytes
    }

    /// Whether a reservation of `from` bytes may become `to` bytes; if so, take them.
    fn take(&self, address: Option<IpAddr>, from: usize, to: usize) -> Result<(), NoRoom> {
        let mut state = self.state.lock().expect("body memory lock");
        let more = to - from;
        let total = state.total_bytes + more;
        // Big reservations leave the last eighth of the budget to small ones.
        let ceiling = if to > SMALL_BYTES {
            self.limits.total_max_bytes - self.limits.total_max_bytes / 8
        } else {
            self.limits.total_max_bytes
        };
        if total > ceiling {
            return Err(NoRoom::Bytes);
        }
        if let Some(a) = address {
            let entry = state.addresses.get_mut(&a).expect("an open transaction's address is counted");
            if entry.0 + more > self.limits.per_address_max_bytes {
                return Err(NoRoom::Bytes);
            }
            entry.0 += more;
        }
        state.total_bytes = total;
        debug_assert!(state.total_bytes <= self.limits.total_max_bytes);
        Ok(())
    }

    fn give_back(&self, address: Option<IpAddr>, bytes: usize, end: bool) {
        let mut state = self.state.lock().expect("body memory lock");
        assert!(state.total_bytes >= bytes, "more given back than reserved");
        state.total_bytes -= bytes;
        let Some(a) = address else { return };
        let entry = state.addresses.get_mut(&a).expect("an open transaction's address is counted");
        entry.0 -= bytes;
        if end {
            entry.1 -= 1;
            if entry.1 == 0 {
                debug_assert_eq!(entry.0, 0);
                state.addresses.remove(&a);
            }
        }
    }
}

impl Reservation {
    /// Hold room for `bytes` in all (rounded up to a step); on refusal nothing changes.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), NoRoom> {
        if bytes <= self.bytes {
            return Ok(());
        }
        let target = bytes.div_ceil(STEP_BYTES) * STEP_BYTES;
        self.pool.take(self.address, self.bytes, target)?;
        self.bytes = target;
        Ok(())
    }

    /// Give every byte back but keep the transaction open (its body was dropped).
    pub fn release_bytes(&mut self) {
        self.pool.give_back(self.address, std::mem::take(&mut self.bytes), false);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.give_back(self.address, self.bytes, self.address.is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn pool() -> Arc<BodyMemory> {
        BodyMemory::new(Limits {
            total_max_bytes: 64 * MIB,
            per_address_max_bytes: 20 * MIB,
            transactions_per_address_max: 2,
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn an_address_holds_its_share_and_gives_it_back() {
        let p = pool();
        let mut a = p.begin(ip(1)).unwrap();
        let _b = p.begin(ip(1)).unwrap();
        assert_eq!(p.begin(ip(1)).unwrap_err(), NoRoom::Transactions);
        a.grow_to(20 * MIB).unwrap();
        assert_eq!(a.grow_to(20 * MIB + 1), Err(NoRoom::Bytes), "the per-address bound");
        assert_eq!(p.total_bytes(), 20 * MIB);
        a.release_bytes();
        assert_eq!(p.total_bytes(), 0);
        drop(a);
        let c = p.begin(ip(1)).unwrap();
        drop(c);
        drop(_b);
        assert!(p.state.lock().unwrap().addresses.is_empty(), "no address left behind");
    }

    #[test]
    fn big_bodies_never_take_the_slice_small_ones_need() {
        let p = pool();
        let mut big: Vec<Reservation> = (1..=4).map(|k| p.begin(ip(k)).unwrap()).collect();
        let mut refused = 0;
        for r in &mut big {
            if r.grow_to(20 * MIB).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 2, "two 20 MiB bodies fit in the 56 MiB big slice, not three");
        assert!(p.total_bytes() <= 56 * MIB);
        // Small messages from anyone still fit.
        let mut small: Vec<Reservation> = (10..14).map(|k| p.begin(ip(k)).unwrap()).collect();
        for r in &mut small {
            r.grow_to(MIB).unwrap();
        }
        let mut copies = p.for_copies(MIB).unwrap();
        assert!(copies.grow_to(64 * MIB).is_err(), "never past the global bound");
        drop((big, small, copies));
        assert_eq!(p.total_bytes(), 0);
    }
}
