//! Storage faults on demand, for tests: fail points (the `fail` crate, configured by the
//! `FAILPOINTS` environment variable) that turn a completed write or sync into `EIO`, or
//! tear a write in half and kill the process as a power loss would. Without the
//! `failpoints` feature of `fail` (every release build) they compile to nothing; this
//! module must never change behaviour when no fail point is configured.
//!
//! Points: `raftlog::write-eio`, `raftlog::sync-eio`, `raftlog::torn-write`.

/// `res`, or `-EIO` when fail point `point` fires.
pub(crate) fn eio_at(point: &str, res: i32) -> i32 {
    let _ = point;
    fail::fail_point!(point, |_| -libc::EIO);
    res
}

/// Write about half of `data` at `offset` of `fd` and abort the process. The cut is at an
/// odd length, so it never falls on a record boundary (records are 16-byte aligned).
#[allow(dead_code)] // Called only from a fail point, absent from release builds.
pub(crate) fn torn_write_and_abort(fd: i32, offset: u64, data: &[u8]) -> ! {
    let half = &data[..((data.len() / 2) | 1).min(data.len())];
    // SAFETY: `fd` is an open descriptor of the caller's segment file and `half` a live
    // buffer of `half.len()` bytes; the result does not matter, the process ends here.
    unsafe { libc::pwrite(fd, half.as_ptr().cast(), half.len(), offset as libc::off_t) };
    tracing::error!(offset, bytes = half.len(), of = data.len(), "fail point: torn write, aborting");
    std::process::abort()
}
