//! Segment slot files: which exist, which are free, and preparing new ones ahead of need.
//!
//! A new slot file is created at full size and zero-filled with io_uring writes, then
//! fdatasync'ed together with its directory, so appends into it never change file metadata
//! (an fdatasync after an append then writes only data). A background thread prepares the
//! next slot while the current one fills, so rolling over rarely waits. Freed slots (after
//! purge or truncation) are reused as they are: their old records carry an old sequence
//! number and never validate again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;

use io_uring::{opcode, types, IoUring};

use crate::segment::slot_file_name;
use crate::shared::Shared;
use crate::uring;

/// A slot ready to become the next segment.
pub(crate) struct SpareSegment {
    pub slot: u32,
}

/// Bytes per zero-fill write.
const FILL_CHUNK: usize = 1 << 20;

/// All slot files of one log directory.
pub(crate) struct SlotPool {
    files: HashMap<u32, Arc<File>>,
    free: Vec<u32>,
    next_slot: u32,
    next_seq: u64,
    prep_tx: Option<Sender<u32>>,
    prep_rx: Option<Receiver<(u32, io::Result<File>)>>,
    prep_outstanding: bool,
}

impl SlotPool {
    /// `files`: every slot file found; `free`: those not holding a live segment;
    /// `next_seq`: one above the highest segment sequence ever seen.
    pub fn new(files: HashMap<u32, Arc<File>>, free: Vec<u32>, next_seq: u64) -> Self {
        let next_slot = files.keys().max().map_or(0, |m| m + 1);
        Self { files, free, next_slot, next_seq, prep_tx: None, prep_rx: None, prep_outstanding: false }
    }

    /// Start the background preparer for `dir`.
    pub fn start_preparer(&mut self, dir: PathBuf, segment_bytes: u64) -> io::Result<()> {
        let (tx, rx_req) = mpsc::channel::<u32>();
        let (tx_done, rx) = mpsc::channel();
        thread::Builder::new().name("raftlog-prep".into()).spawn(move || {
            let mut ring = match IoUring::new(8) {
                Ok(r) => r,
                Err(e) => {
                    for slot in rx_req {
                        let _ = tx_done.send((slot, Err(io::Error::new(e.kind(), e.to_string()))));
                    }
                    return;
                }
            };
            for slot in rx_req {
                let r = create_slot(&mut ring, &dir, slot, segment_bytes);
                if tx_done.send((slot, r)).is_err() {
                    return;
                }
            }
        })?;
        self.prep_tx = Some(tx);
        self.prep_rx = Some(rx);
        Ok(())
    }

    /// Ask the preparer for a spare now if no free slot is waiting, so the first rollover
    /// (or the first append of a fresh log) does not wait for a zero-fill.
    pub fn prepare_ahead(&mut self) {
        if self.free.is_empty() && !self.prep_outstanding {
            if let Some(tx) = &self.prep_tx {
                let next = self.next_slot;
                self.next_slot += 1;
                if tx.send(next).is_ok() {
                    self.prep_outstanding = true;
                }
            }
        }
    }

    /// The open file of `slot`.
    pub fn file(&self, slot: u32) -> Arc<File> {
        self.files.get(&slot).expect("slot file is open").clone()
    }

    /// A fresh sequence number for a segment that starts now.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Return `slot` to the free list.
    pub fn release(&mut self, slot: u32) {
        debug_assert!(!self.free.contains(&slot), "slot freed twice");
        self.free.push(slot);
    }

    /// A slot for a new segment: a free one, the prepared spare, or one made now.
    pub fn take(&mut self, shared: &Shared) -> io::Result<SpareSegment> {
        let slot = if let Some(slot) = self.free.pop() {
            slot
        } else if self.prep_outstanding {
            self.prep_outstanding = false;
            let (slot, file) = self
                .prep_rx
                .as_ref()
                .expect("preparer running")
                .recv()
                .map_err(|_| io::Error::other("segment preparer stopped"))?;
            self.files.insert(slot, Arc::new(file?));
            slot
        } else {
            let slot = self.next_slot;
            self.next_slot += 1;
            let mut ring = IoUring::new(8)?;
            let file = create_slot(&mut ring, &shared.dir, slot, shared.opts.segment_bytes)?;
            self.files.insert(slot, Arc::new(file));
            slot
        };
        self.prepare_ahead();
        Ok(SpareSegment { slot })
    }
}

/// Create slot file `slot` at full size, zero-filled and durable, including its name.
pub(crate) fn create_slot(ring: &mut IoUring, dir: &Path, slot: u32, segment_bytes: u64) -> io::Result<File> {
    let path = dir.join(slot_file_name(slot));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let fd = types::Fd(file.as_raw_fd());
    let alloc = opcode::Fallocate::new(fd, segment_bytes).build().user_data(0);
    let mut others = Vec::new();
    // SAFETY: fallocate references no user memory.
    let res = unsafe { uring::run(ring, 0, &[alloc], &mut others)? };
    uring::check_ok(res[0])?;
    let zeros = vec![0u8; FILL_CHUNK];
    let mut at = 0u64;
    // Fill in batches of up to 16 writes in flight.
    while at < segment_bytes {
        let mut chunks = Vec::with_capacity(16);
        while at < segment_bytes && chunks.len() < 16 {
            let n = ((segment_bytes - at) as usize).min(FILL_CHUNK);
            chunks.push((at, &zeros[..n]));
            at += n as u64;
        }
        let entries: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(k, (off, data))| {
                opcode::Write::new(fd, data.as_ptr(), data.len() as u32).offset(*off).build().user_data(k as u64)
            })
            .collect();
        // SAFETY: `zeros` outlives the call and `run` reaps every completion.
        let results = unsafe { uring::run(ring, 0, &entries, &mut others)? };
        for ((_, data), res) in chunks.iter().zip(results) {
            uring::check_full_write(res, data.len())?;
        }
    }
    uring::sync(ring, &file)?;
    let dir_file = File::open(dir)?;
    let entry = opcode::Fsync::new(types::Fd(dir_file.as_raw_fd())).build().user_data(0);
    // SAFETY: fsync references no user memory.
    let res = unsafe { uring::run(ring, 0, &[entry], &mut others)? };
    uring::check_ok(res[0])?;
    Ok(file)
}
