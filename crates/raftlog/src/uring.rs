//! The log's io_uring helpers: the workspace's checked `push` and `run` (crate `uring`: every
//! submitted operation is reaped before its buffers can go, interrupted waits included), an
//! eventfd to wake a ring-bound thread, and synchronous write/sync for the rare paths
//! (segment preparation, truncation, metadata).
//!
//! Every buffer handed to the kernel stays owned by the caller until its completion has
//! been reaped; the functions here document which side holds it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, types, IoUring};

pub(crate) use ::uring::{push, run};

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
