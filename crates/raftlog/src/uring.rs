//! Thin, checked helpers over `io-uring`: pushing entries when the queue is full, an
//! eventfd to wake a ring-bound thread, and a blocking "run these operations" helper for
//! the rare synchronous paths (segment preparation, truncation, metadata).
//!
//! Every buffer handed to the kernel stays owned by the caller until its completion has
//! been reaped; the functions here document which side holds it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, squeue, types, IoUring};

/// Push one submission entry, flushing the queue to the kernel when it is full.
///
/// # Safety
/// The caller guarantees that every buffer the entry points to stays valid and unmoved
/// until the matching completion is reaped.
pub(crate) unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    // A full queue is drained by submitting; bounded so a wedged ring cannot spin forever.
    for _ in 0..1024 {
        // SAFETY: forwarded from the caller's contract on buffer lifetime.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
    Err(io::Error::other("io_uring submission queue stays full"))
}

/// An eventfd used to wake the writer thread when a request is queued.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Add one to the counter, waking a pending read.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a valid eventfd.
        let n = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
        // EAGAIN (counter saturated) still leaves the reader woken; nothing else can fail.
        debug_assert!(n == 8 || io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock);
    }

    pub fn fd(&self) -> types::Fd {
        types::Fd(self.0.as_raw_fd())
    }
}

/// Run `entries` to completion on an otherwise idle `ring` and return each result.
///
/// The entries must use user data values `base..base + entries.len()`; completions with
/// other user data (an armed eventfd read) are returned in `others` for the caller.
///
/// # Safety
/// Buffers referenced by `entries` must stay valid until this function returns, which is
/// after every one of their completions has been reaped.
pub(crate) unsafe fn run(
    ring: &mut IoUring,
    base: u64,
    entries: &[squeue::Entry],
    others: &mut Vec<(u64, i32)>,
) -> io::Result<Vec<i32>> {
    for e in entries {
        // SAFETY: buffer lifetime is the caller's contract, held until we return.
        unsafe { push(ring, e)? };
    }
    let mut results = vec![None; entries.len()];
    let mut left = entries.len();
    while left > 0 {
        ring.submit_and_wait(1)?;
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            match ud.checked_sub(base).map(|k| k as usize) {
                Some(k) if k < results.len() => {
                    assert!(results[k].is_none(), "duplicate completion");
                    results[k] = Some(cqe.result());
                    left -= 1;
                }
                _ => others.push((ud, cqe.result())),
            }
        }
    }
    Ok(results.into_iter().map(|r| r.expect("all reaped")).collect())
}

/// Turn a completion result for a write of `len` bytes into an error unless it was whole.
pub(crate) fn check_full_write(res: i32, len: usize) -> io::Result<()> {
    if res < 0 {
        return Err(io::Error::from_raw_os_error(-res));
    }
    if res as usize != len {
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write: {res} of {len} bytes")));
    }
    Ok(())
}

/// Turn a completion result of an fsync/fallocate into an `io::Result`.
pub(crate) fn check_ok(res: i32) -> io::Result<()> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(())
    }
}

/// Write `data` at `offset` of `file` and fdatasync it, synchronously through `ring`.
pub(crate) fn write_and_sync(ring: &mut IoUring, file: &File, chunks: &[(u64, &[u8])]) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    let mut entries = Vec::with_capacity(chunks.len());
    for (k, (offset, data)) in chunks.iter().enumerate() {
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("chunk too large"))?;
        entries.push(
            opcode::Write::new(fd, data.as_ptr(), len)
                .offset(*offset)
                .build()
                .user_data(u64::MAX - 1_000_000 + k as u64),
        );
    }
    let mut others = Vec::new();
    // SAFETY: `chunks` borrows the data for the whole call, and `run` reaps all completions.
    let results = unsafe { run(ring, u64::MAX - 1_000_000, &entries, &mut others)? };
    debug_assert!(others.is_empty(), "private ring has no other operations");
    for ((_, data), res) in chunks.iter().zip(results) {
        check_full_write(res, data.len())?;
    }
    sync(ring, file)
}

/// fdatasync `file` through `ring`, synchronously.
pub(crate) fn sync(ring: &mut IoUring, file: &File) -> io::Result<()> {
    let entry = opcode::Fsync::new(types::Fd(file.as_raw_fd()))
        .flags(types::FsyncFlags::DATASYNC)
        .build()
        .user_data(u64::MAX - 2);
    let mut others = Vec::new();
    // SAFETY: fsync references no user memory.
    let res = unsafe { run(ring, u64::MAX - 2, &[entry], &mut others)? };
    check_ok(res[0])
}
