//! Checked helpers over `io-uring`, shared by the Raft log, the mail store and the AoE target.
//!
//! The kernel reads and writes a submitted operation's buffers until its completion is
//! posted, so a caller may drop or reuse a buffer only after that completion was reaped.
//! These helpers keep that promise on every path: a wait interrupted by a signal (`EINTR`),
//! a busy completion queue (`EBUSY`) or a transient shortage (`EAGAIN`) is retried, and
//! [`run`] returns only once every operation it pushed has completed, even when pushing a
//! later one failed. A ring that fails in any other way while operations are in flight
//! cannot be waited on and cannot be left holding memory we are about to free: the process
//! aborts with a message (see [`wait`]).
//!
//! What this must never do: return to a caller while an operation it submitted here may
//! still touch the caller's memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use io_uring::{squeue, IoUring};

/// Submissions tried against a full queue before giving up (a wedged ring must not spin).
const FULL_QUEUE_TRIES_MAX: usize = 1024;

/// Waits retried after `EINTR`, for tests and metrics.
static INTERRUPTED_WAITS: AtomicU64 = AtomicU64::new(0);

/// How many ring waits a signal interrupted and were retried, process-wide.
pub fn interrupted_waits() -> u64 {
    INTERRUPTED_WAITS.load(Ordering::Relaxed)
}

/// Whether a failed `io_uring_enter` may simply be tried again.
fn retryable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY))
}

/// Submit queued entries and wait for at least `want` completions, retrying interruptions.
///
/// Returns only when the kernel accepted the wait; a ring error other than a retryable one
/// aborts the process, because operations may be in flight whose buffers the caller would
/// free on an error path. `EBUSY` (completion queue overflowing) is retried as is: the
/// caller reaps completions between waits, and the kernel flushes the overflow on the next
/// enter.
pub fn wait(ring: &mut IoUring, want: usize) -> usize {
    loop {
        match ring.submit_and_wait(want) {
            Ok(n) => return n,
            Err(e) if retryable(&e) => {
                if e.raw_os_error() == Some(libc::EINTR) {
                    INTERRUPTED_WAITS.fetch_add(1, Ordering::Relaxed);
                }
                // A busy ring has completions ready for the caller: let it reap them.
                if want > 0 && !ring.completion().is_empty() {
                    return 0;
                }
            }
            Err(e) => fatal(&e),
        }
    }
}

/// A ring that cannot be waited on while the kernel may still use our buffers.
fn fatal(e: &io::Error) -> ! {
    eprintln!("io_uring wait failed with operations in flight ({e}); aborting rather than freeing their buffers");
    std::process::abort()
}

/// Push one submission entry, submitting to the kernel when the queue is full.
///
/// # Safety
/// Every buffer the entry points to must stay valid and unmoved until the matching
/// completion is reaped.
pub unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    for _ in 0..FULL_QUEUE_TRIES_MAX {
        // SAFETY: forwarded from the caller's contract on buffer lifetime.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        // Submitting never frees a buffer; only a reaped completion does.
        wait(ring, 0);
    }
    Err(io::Error::other("io_uring submission queue stays full"))
}

/// Push two entries as one link (the second runs only if the first succeeds), making room
/// first so the pair is never split across submissions.
///
/// # Safety
/// As for [`push`], for both entries.
pub unsafe fn push_pair(ring: &mut IoUring, first: &squeue::Entry, second: &squeue::Entry) -> io::Result<()> {
    for _ in 0..FULL_QUEUE_TRIES_MAX {
        let mut sq = ring.submission();
        if sq.capacity() - sq.len() >= 2 {
            // SAFETY: forwarded from the caller; two free slots hold both entries, so neither
            // push can fail.
            unsafe {
                sq.push(first).map_err(|_| io::Error::other("submission queue full"))?;
                sq.push(second).map_err(|_| io::Error::other("submission queue full"))?;
            }
            return Ok(());
        }
        drop(sq);
        wait(ring, 0);
    }
    Err(io::Error::other("io_uring submission queue stays full"))
}

/// Cancel every operation in flight on `ring` and reap until the `in_flight` operations the
/// caller counted have all completed (cancelled or finished), so their buffers may go.
/// The cancel request itself carries `cancel_user_data`, which no other operation may use.
pub fn cancel_and_drain(ring: &mut IoUring, mut in_flight: usize, cancel_user_data: u64) {
    if in_flight == 0 {
        return;
    }
    let cancel =
        io_uring::opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::any()).build().user_data(cancel_user_data);
    // SAFETY: a cancel request references no memory. If it cannot be queued, the operations
    // still complete on their own (receives when frames arrive), and we wait for them.
    if unsafe { push(ring, &cancel) }.is_err() {
        eprintln!("io_uring: cannot queue a cancel; waiting for in-flight operations to finish");
    }
    while in_flight > 0 {
        wait(ring, 1);
        for cqe in ring.completion() {
            if cqe.user_data() != cancel_user_data {
                in_flight -= 1;
            }
        }
    }
}

/// Run `entries` to completion on `ring` and return each one's result, in order.
///
/// The entries carry user data `base..base + entries.len()`; completions with other user
/// data (operations the caller keeps armed, like an eventfd read) are handed back in
/// `others`. If pushing an entry fails, the ones already pushed are still waited for before
/// the error is returned.
///
/// # Safety
/// Buffers referenced by `entries` must stay valid until this function returns, which is
/// after every pushed entry's completion has been reaped.
pub unsafe fn run(
    ring: &mut IoUring,
    base: u64,
    entries: &[squeue::Entry],
    others: &mut Vec<(u64, i32)>,
) -> io::Result<Vec<i32>> {
    let mut pushed = 0;
    let mut refused = None;
    for e in entries {
        // SAFETY: buffer lifetime is the caller's contract, held until we return.
        match unsafe { push(ring, e) } {
            Ok(()) => pushed += 1,
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let mut results = vec![None; pushed];
    let mut left = pushed;
    while left > 0 {
        wait(ring, 1);
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            match ud.checked_sub(base).and_then(|k| usize::try_from(k).ok()) {
                Some(k) if k < results.len() => {
                    assert!(results[k].is_none(), "duplicate completion for entry {k}");
                    results[k] = Some(cqe.result());
                    left -= 1;
                }
                _ => others.push((ud, cqe.result())),
            }
        }
    }
    match refused {
        Some(err) => Err(err),
        None => Ok(results.into_iter().map(|r| r.expect("every pushed entry reaped")).collect()),
    }
}

#[cfg(test)]
mod tests;
