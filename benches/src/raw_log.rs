//! The physical baseline for a durable log: write each batch's bytes with io_uring into a
//! preallocated, zero-filled file, then one fdatasync, then acknowledge. No framing, no
//! checksums, no index: what the disk can do for this access pattern.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use io_uring::{opcode, types, IoUring};

use crate::closed_loop::DurableSink;

/// A circular region of a preallocated file written through io_uring.
pub struct RawLog {
    ring: IoUring,
    file: File,
    size: u64,
    pos: u64,
}

fn wait_one(ring: &mut IoUring) -> i32 {
    ring.submit_and_wait(1).expect("io_uring wait");
    let cqe = ring.completion().next().expect("one completion");
    cqe.result()
}

impl RawLog {
    /// Create `path` with `size` bytes of zeros, durable.
    pub fn create(path: &Path, size: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        let mut ring = IoUring::new(64)?;
        let zeros = vec![0u8; 1 << 20];
        let fd = types::Fd(file.as_raw_fd());
        let mut at = 0;
        while at < size {
            let e = opcode::Write::new(fd, zeros.as_ptr(), zeros.len() as u32).offset(at).build();
            // SAFETY: `zeros` outlives the completion, which `wait_one` reaps before reuse.
            unsafe { ring.submission().push(&e).expect("queue has room") };
            assert_eq!(wait_one(&mut ring), zeros.len() as i32, "zero fill");
            at += zeros.len() as u64;
        }
        file.sync_all()?;
        Ok(Self { ring, file, size, pos: 0 })
    }
}

impl DurableSink for RawLog {
    fn append(&mut self, batch: Vec<Vec<u8>>, done: Box<dyn FnOnce() + Send>) {
        let bytes: Vec<u8> = batch.concat();
        assert!(bytes.len() as u64 <= self.size, "batch larger than the raw region");
        if self.pos + bytes.len() as u64 > self.size {
            self.pos = 0;
        }
        let fd = types::Fd(self.file.as_raw_fd());
        let e = opcode::Write::new(fd, bytes.as_ptr(), bytes.len() as u32).offset(self.pos).build();
        // SAFETY: `bytes` lives until after the completion is reaped by `wait_one`.
        unsafe { self.ring.submission().push(&e).expect("queue has room") };
        assert_eq!(wait_one(&mut self.ring), bytes.len() as i32, "raw write");
        let s = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build();
        // SAFETY: fsync references no user memory.
        unsafe { self.ring.submission().push(&s).expect("queue has room") };
        assert_eq!(wait_one(&mut self.ring), 0, "raw fdatasync");
        self.pos += bytes.len() as u64;
        done();
    }
}
