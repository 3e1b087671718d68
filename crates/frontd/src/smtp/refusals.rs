//! The recipients this front refused (at `RCPT`, or at the end of `DATA` by policy,
//! scanning or a mailhost's answer), kept until `crate::reports` hands them to the
//! cluster's stats group, whose log makes them message-tracking records (`mailctl trace`
//! finds mail that never reached a mailhost). Bounded: at most [`PENDING_MAX`] wait and a
//! report carries at most [`BATCH_MAX`]; beyond, refusals are counted and dropped, so a
//! dictionary attack grows neither memory nor the log without end. Tracking is a record,
//! never a reason to delay or change a reply.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::tracking::FrontRefusal;

/// Refusals waiting to be reported.
pub const PENDING_MAX: usize = 10_000;
/// Refusals one report (one log entry) carries.
pub const BATCH_MAX: usize = 500;
/// How often refusals are reported.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Refusals not yet reported.
#[derive(Debug, Default)]
pub struct Refusals {
    pending: Mutex<VecDeque<FrontRefusal>>,
    dropped: AtomicU64,
}

impl Refusals {
    /// Keep `refusal` for the next report, or count it dropped when too many wait.
    pub fn record(&self, refusal: FrontRefusal) {
        let mut pending = self.pending.lock().expect("refusals lock");
        if pending.len() >= PENDING_MAX {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.push_back(refusal);
    }

    /// The oldest waiting refusals, at most [`BATCH_MAX`].
    pub fn take(&self) -> Vec<FrontRefusal> {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "refused recipients not tracked: more than {PENDING_MAX} waited to be reported");
        }
        let mut pending = self.pending.lock().expect("refusals lock");
        let n = pending.len().min(BATCH_MAX);
        pending.drain(..n).collect()
    }
}

/// Whether a reply refuses (4xx or 5xx).
pub fn refuses(reply: &str) -> bool {
    matches!(reply.as_bytes().first(), Some(b'4' | b'5'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(k: usize) -> FrontRefusal {
        FrontRefusal::new(1, "mx1", "192.0.2.1", "", "", "a@x", &format!("u{k}@example.edu"), "550 5.1.1 no such user")
    }

    #[test]
    fn refusals_are_reported_oldest_first_in_bounded_batches_and_the_excess_dropped() {
        let r = Refusals::default();
        for k in 0..PENDING_MAX + 7 {
            r.record(refusal(k));
        }
        assert_eq!(r.dropped.load(Ordering::Relaxed), 7);
        let first = r.take();
        assert_eq!(first.len(), BATCH_MAX);
        assert_eq!(first[0].to, "u0@example.edu");
        assert_eq!(r.dropped.load(Ordering::Relaxed), 0, "the drop is logged once");
        let mut left = PENDING_MAX - BATCH_MAX;
        while left > 0 {
            left -= r.take().len();
        }
        assert!(r.take().is_empty());
    }

    #[test]
    fn only_4xx_and_5xx_refuse() {
        assert!(refuses("550 5.1.1 no such user") && refuses("451 4.3.0 later"));
        assert!(!refuses("250 2.1.5 ok") && !refuses("") && !refuses("354 go ahead"));
    }
}
