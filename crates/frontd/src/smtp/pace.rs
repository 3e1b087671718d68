//! How long a message transfer may take: a total bound from the start of DATA (or the first
//! BDAT) to its end, and a minimum average rate once a grace period has passed, so a client
//! that sends a line every few minutes cannot hold a connection and its buffered body for
//! hours. Pure: the server asks for the deadline of its next read and says what arrived.

use std::time::{Duration, Instant};

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: Duration,
    pub rate_min_bytes_per_s: u64,
    pub grace: Duration,
}

/// One transfer's clock.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    limits: Limits,
    started: Instant,
    bytes: u64,
}

impl Pace {
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self { limits, started: now, bytes: 0 }
    }

    pub fn received(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// When the transfer is too slow or too long if nothing more arrives by then.
    pub fn deadline(&self) -> Instant {
        let total = self.started + self.limits.total;
        let rate = self.limits.rate_min_bytes_per_s.max(1);
        // At `rate`, the bytes so far would have taken this long: the transfer is too slow
        // once it has lasted longer (and longer than the grace period).
        let earned = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        total.min(self.started + earned.max(self.limits.grace))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits =
        Limits { total: Duration::from_secs(600), rate_min_bytes_per_s: 1000, grace: Duration::from_secs(30) };

    #[test]
    fn a_slow_sender_runs_out_of_time_and_a_fast_one_hits_the_total() {
        let t0 = Instant::now();
        let mut p = Pace::new(LIMITS, t0);
        assert_eq!(p.deadline(), t0 + Duration::from_secs(30), "the grace period first");
        p.received(10_000);
        assert_eq!(p.deadline(), t0 + Duration::from_secs(30), "10 s of earned time is inside the grace");
        p.received(90_000);
        assert_eq!(p.deadline(), t0 + Duration::from_secs(100), "100 kB at 1 kB/s");
        p.received(10_000_000);
        assert_eq!(p.deadline(), t0 + Duration::from_secs(600), "never past the total");
    }
}
