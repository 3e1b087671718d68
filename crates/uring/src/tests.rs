//! The interrupted-wait path, driven by real signals.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use io_uring::{opcode, types, IoUring};

use super::*;

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// Install a SIGUSR1 handler without `SA_RESTART`, so a blocked `io_uring_enter` gets `EINTR`.
fn install_handler() {
    // SAFETY: a zeroed `sigaction` is a valid "no flags, empty mask" value; the handler only
    // touches an atomic, which is async-signal-safe; the pointers passed live for the call.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()), 0);
    }
}

#[test]
fn a_signal_during_the_wait_does_not_return_before_the_read_completes() {
    install_handler();
    let (mut reader, mut writer) = std::io::pipe().unwrap();
    let waiter = std::thread::spawn(move || {
        let mut ring = IoUring::new(4).unwrap();
        let mut buf = vec![0u8; 16];
        let read = opcode::Read::new(types::Fd(reader.as_raw_fd()), buf.as_mut_ptr(), 16).build().user_data(7);
        let mut others = Vec::new();
        // SAFETY: `buf` outlives the call, which reaps the read's completion before returning.
        let results = unsafe { run(&mut ring, 7, &[read], &mut others) }.unwrap();
        let _ = &mut reader;
        (results, buf, others)
    });
    // Signal the waiting thread until it has been interrupted inside the ring wait a few
    // times (a signal that lands before the wait starts interrupts nothing).
    let thread = waiter.as_pthread_t();
    let before = interrupted_waits();
    for _ in 0..2_000 {
        if interrupted_waits() >= before + 3 {
            break;
        }
        // SAFETY: the thread is alive (it cannot finish before the pipe is written).
        assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR1) }, 0);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(interrupted_waits() >= before + 3, "the wait was never interrupted");
    assert!(HANDLED.load(Ordering::SeqCst) >= 3);
    assert!(!waiter.is_finished(), "an interrupted wait returned before its read completed");
    writer.write_all(b"late bytes").unwrap();
    let (results, buf, others) = waiter.join().unwrap();
    assert_eq!(results, vec![10], "the read's own result, not an interruption");
    assert_eq!(&buf[..10], b"late bytes");
    assert!(others.is_empty());
}

#[test]
fn more_entries_than_the_queue_holds_all_complete_in_order() {
    // A ring of 2 entries takes the rest only after submitting the first ones.
    let mut ring = IoUring::new(2).unwrap();
    let entries: Vec<_> = (0..9).map(|k| opcode::Nop::new().build().user_data(100 + k)).collect();
    let mut others = Vec::new();
    // SAFETY: NOPs reference no memory.
    let results = unsafe { run(&mut ring, 100, &entries, &mut others) }.unwrap();
    assert_eq!(results, vec![0; 9]);
    assert!(others.is_empty());
}

#[test]
fn draining_cancels_a_pending_read_and_reaps_it() {
    let (reader, _writer) = std::io::pipe().unwrap();
    let mut ring = IoUring::new(4).unwrap();
    let mut buf = vec![0u8; 16];
    let read = opcode::Read::new(types::Fd(reader.as_raw_fd()), buf.as_mut_ptr(), 16).build().user_data(1);
    // SAFETY: `buf` outlives the drain below, which reaps the read.
    unsafe { push(&mut ring, &read) }.unwrap();
    wait(&mut ring, 0);
    cancel_and_drain(&mut ring, 1, u64::MAX);
    assert!(ring.completion().is_empty(), "everything reaped");
    drop(buf);
}
