//! Segment slot files: which exist, which are free, and preparing them ahead of need.
//!
//! A new slot file is created at full size and zero-filled with io_uring writes, then
//! fdatasync'ed together with its directory, so appends into it never change file metadata
//! (an fdatasync after an append then writes only data). A background thread prepares the
//! next slot while the current one fills, so rolling over rarely waits.
//!
//! A freed slot (after purge or truncation) is *dirty*: it still holds the purged entries'
//! bytes, which may be message bodies. It is reused as it is (its old records carry an old
//! sequence number and never validate again), so the log writes nothing extra in normal
//! running. When a purge must reach the disk (mail erased for good), [`SlotPool::scrub`]
//! zeroes every dirty slot on the background thread and marks it clean
//! ([`segment::CLEAN_MAGIC`]), and [`SlotPool::take_clean`] gives a roll a slot that holds
//! nothing old, so after a roll, a purge and a scrub no byte of a purged entry is left in
//! any slot file.
//!
//! Slot files have the size [`Options::segment_bytes`](crate::Options) had when they were
//! made. A log opened with another size keeps its live segments at the size they have (each
//! slot's capacity is its file's length) and removes every free slot of another size,
//! then each old segment once it is freed: the log comes to the new size as it turns over,
//! and no record is ever placed past the end its file was made with.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread;

use io_uring::{opcode, types, IoUring};
use tokio::sync::oneshot;

use crate::segment::{self, slot_file_name, SEGMENT_HEADER_LEN};
use crate::shared::Shared;
use crate::uring;

/// A slot ready to become the next segment.
pub(crate) struct SpareSegment {
    pub slot: u32,
}

/// Free slots kept for reuse at most (clean, dirty or being scrubbed); a slot freed beyond
/// them is removed, so the log's files follow what it holds rather than the most it ever
/// held (a burst, a follower that held purges back). Two: the next segment and one more.
pub(crate) const FREE_SLOTS_MAX: usize = 2;
/// Bytes per zero-fill write.
const FILL_CHUNK: usize = 1 << 20;
/// Zero-fill writes in flight when making a slot the writer waits for.
const CREATE_IN_FLIGHT: usize = 16;
/// Zero-fill writes in flight when scrubbing: gentler, appends share the disk.
const SCRUB_IN_FLIGHT: usize = 4;

/// Called once every scrub asked for so far has finished (or failed).
pub(crate) type ScrubDone = oneshot::Sender<()>;

/// Work for the preparer thread.
enum Job {
    Create(u32),
    Scrub(u32, Arc<File>),
    /// Tell the waiter: every job before this one is done.
    Notify(ScrubDone),
}

/// What the preparer thread finished.
enum Done {
    Created(u32, io::Result<File>),
    Scrubbed(u32, io::Result<()>),
}

/// All slot files of one log directory.
pub(crate) struct SlotPool {
    dir: PathBuf,
    files: HashMap<u32, Arc<File>>,
    /// Bytes each slot file holds (its length when found, or the size it was made with).
    capacity: HashMap<u32, u64>,
    /// The size of slots made now; free slots of another size are removed.
    segment_bytes: u64,
    /// Clean slots: all zero, ready for a new segment.
    free: Vec<u32>,
    /// Free slots that may hold bytes of an earlier life.
    dirty: Vec<u32>,
    next_slot: u32,
    next_seq: u64,
    jobs: Option<Sender<Job>>,
    done: Option<Receiver<Done>>,
    creating: bool,
    scrubbing: usize,
    /// Set by [`SlotPool::take_clean`] (a roll ahead of a purge that must reach the disk)
    /// until the next [`SlotPool::scrub`]: meanwhile no dirty slot is reused, so the slots
    /// the purge frees are all still free, and scrubbed, when the scrub comes.
    hold_dirty: bool,
}

impl SlotPool {
    /// `files`: every slot file found in `dir`; `free`: clean slots holding no live segment;
    /// `dirty`: free slots that may hold old bytes; `next_seq`: one above the highest
    /// segment sequence ever seen. Free slots whose size is not `segment_bytes` are removed.
    pub fn new(
        dir: PathBuf,
        files: HashMap<u32, Arc<File>>,
        free: Vec<u32>,
        dirty: Vec<u32>,
        next_seq: u64,
        segment_bytes: u64,
    ) -> io::Result<Self> {
        let next_slot = files.keys().max().map_or(0, |m| m + 1);
        let mut capacity = HashMap::with_capacity(files.len());
        for (slot, file) in &files {
            capacity.insert(*slot, file.metadata()?.len());
        }
        let mut pool = Self {
            dir,
            files,
            capacity,
            segment_bytes,
            free: Vec::new(),
            dirty: Vec::new(),
            next_slot,
            next_seq,
            jobs: None,
            done: None,
            creating: false,
            scrubbing: 0,
            hold_dirty: false,
        };
        for slot in free {
            if pool.keep_if_wanted(slot)? {
                pool.free.push(slot);
            }
        }
        for slot in dirty {
            if pool.keep_if_wanted(slot)? {
                pool.dirty.push(slot);
            }
        }
        Ok(pool)
    }

    /// Whether free `slot` is kept for reuse: it has the size of new slots and fewer than
    /// [`FREE_SLOTS_MAX`] others are free. If not, its file is removed (it holds no live
    /// entry; a removal a crash undoes is done again at the next open).
    fn keep_if_wanted(&mut self, slot: u32) -> io::Result<bool> {
        let spare = self.free.len() + self.dirty.len() + self.scrubbing + usize::from(self.creating);
        if self.capacity.get(&slot) == Some(&self.segment_bytes) && spare < FREE_SLOTS_MAX {
            return Ok(true);
        }
        self.files.remove(&slot);
        self.capacity.remove(&slot);
        match std::fs::remove_file(self.dir.join(slot_file_name(slot))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(false),
        }
    }

    /// The bytes slot `slot` holds: where a segment in it must end.
    pub fn capacity(&self, slot: u32) -> u64 {
        *self.capacity.get(&slot).expect("slot file is open")
    }

    /// Start the background preparer for `dir`.
    pub fn start_preparer(&mut self) -> io::Result<()> {
        let (dir, segment_bytes) = (self.dir.clone(), self.segment_bytes);
        let (tx, rx_jobs) = mpsc::channel::<Job>();
        let (tx_done, rx) = mpsc::channel();
        thread::Builder::new().name("raftlog-prep".into()).spawn(move || {
            let mut ring = IoUring::new(8);
            for job in rx_jobs {
                let done = match job {
                    Job::Create(slot) => Done::Created(
                        slot,
                        ring_or_err(&mut ring).and_then(|r| create_slot(r, &dir, slot, segment_bytes)),
                    ),
                    Job::Scrub(slot, file) => {
                        Done::Scrubbed(slot, ring_or_err(&mut ring).and_then(|r| scrub_slot(r, &file, segment_bytes)))
                    }
                    Job::Notify(waiter) => {
                        let _ = waiter.send(());
                        continue;
                    }
                };
                if tx_done.send(done).is_err() {
                    return;
                }
            }
        })?;
        self.jobs = Some(tx);
        self.done = Some(rx);
        Ok(())
    }

    /// Ask the preparer for a new slot now if none is free or on its way, so the first
    /// rollover (or the first append of a fresh log) does not wait for a zero-fill.
    pub fn prepare_ahead(&mut self) {
        let dirty_usable = !self.hold_dirty && !self.dirty.is_empty();
        if !self.free.is_empty() || dirty_usable || self.creating || self.scrubbing > 0 {
            return;
        }
        if let Some(tx) = &self.jobs {
            let next = self.next_slot;
            self.next_slot += 1;
            if tx.send(Job::Create(next)).is_ok() {
                self.creating = true;
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

    /// Give `slot` back; it is dirty until a scrub (or removed, if it is of another size
    /// than new slots or enough are free: a removal that fails leaves the file to the next
    /// open).
    pub fn release(&mut self, slot: u32) {
        debug_assert!(!self.free.contains(&slot) && !self.dirty.contains(&slot), "slot freed twice");
        match self.keep_if_wanted(slot) {
            Ok(true) => self.dirty.push(slot),
            Ok(false) => {}
            Err(e) => tracing::warn!(slot, error = %e, "a freed segment was not removed"),
        }
    }

    /// Zero every dirty slot in the background; `waiter` is told once they are clean (or
    /// their scrub failed: such a slot is left out of use). How many were sent.
    pub fn scrub(&mut self, waiter: ScrubDone) -> usize {
        self.hold_dirty = false;
        let Some(tx) = &self.jobs else {
            return 0;
        };
        let mut sent = 0;
        for slot in std::mem::take(&mut self.dirty) {
            let file = self.files.get(&slot).expect("slot file is open").clone();
            if tx.send(Job::Scrub(slot, file)).is_ok() {
                self.scrubbing += 1;
                sent += 1;
            } else {
                tracing::error!(slot, "segment preparer stopped: freed slot left unused");
            }
        }
        let _ = tx.send(Job::Notify(waiter));
        sent
    }

    /// A slot for a new segment: a clean one, a dirty one (its old bytes never validate),
    /// one the preparer is making or scrubbing, or one made now.
    pub fn take(&mut self, shared: &Shared) -> io::Result<SpareSegment> {
        self.collect()?;
        if self.free.is_empty() && !self.hold_dirty {
            if let Some(slot) = self.dirty.pop() {
                self.prepare_ahead();
                return Ok(SpareSegment { slot });
            }
        }
        self.clean_slot(shared)
    }

    /// A slot that holds nothing of an earlier life (for a roll that a purge must reach);
    /// dirty slots are held back until the next scrub.
    pub fn take_clean(&mut self, shared: &Shared) -> io::Result<SpareSegment> {
        self.hold_dirty = true;
        self.clean_slot(shared)
    }

    fn clean_slot(&mut self, shared: &Shared) -> io::Result<SpareSegment> {
        self.collect()?;
        let slot = loop {
            if let Some(slot) = self.free.pop() {
                break slot;
            }
            if self.creating || self.scrubbing > 0 {
                self.wait_one()?;
                continue;
            }
            let slot = self.next_slot;
            self.next_slot += 1;
            let mut ring = IoUring::new(8)?;
            let file = create_slot(&mut ring, &shared.dir, slot, self.segment_bytes)?;
            self.files.insert(slot, Arc::new(file));
            self.capacity.insert(slot, self.segment_bytes);
            break slot;
        };
        self.prepare_ahead();
        Ok(SpareSegment { slot })
    }

    /// Take in what the preparer finished, without waiting.
    fn collect(&mut self) -> io::Result<()> {
        loop {
            let Some(rx) = &self.done else { return Ok(()) };
            match rx.try_recv() {
                Ok(done) => self.finish(done)?,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return self.preparer_stopped(),
            }
        }
    }

    /// Wait for the preparer's next result.
    fn wait_one(&mut self) -> io::Result<()> {
        match self.done.as_ref().map(Receiver::recv) {
            Some(Ok(done)) => self.finish(done),
            _ => self.preparer_stopped(),
        }
    }

    fn preparer_stopped(&mut self) -> io::Result<()> {
        self.creating = false;
        self.scrubbing = 0;
        self.done = None;
        self.jobs = None;
        Err(io::Error::other("segment preparer stopped"))
    }

    fn finish(&mut self, done: Done) -> io::Result<()> {
        match done {
            Done::Created(slot, file) => {
                self.creating = false;
                self.files.insert(slot, Arc::new(file?));
                self.capacity.insert(slot, self.segment_bytes);
                self.free.push(slot);
            }
            Done::Scrubbed(slot, Ok(())) => {
                self.scrubbing -= 1;
                self.free.push(slot);
            }
            Done::Scrubbed(slot, Err(e)) => {
                // Never reused: its old bytes stay, but no new segment lands on them.
                self.scrubbing -= 1;
                tracing::error!(slot, error = %e, "scrubbing a freed segment failed: slot left unused");
            }
        }
        Ok(())
    }
}

fn ring_or_err(ring: &mut io::Result<IoUring>) -> io::Result<&mut IoUring> {
    ring.as_mut().map_err(|e| io::Error::new(e.kind(), e.to_string()))
}

/// Write zeros over `from..to` of `file`, `in_flight` chunks at a time.
fn fill_zeros(ring: &mut IoUring, file: &File, from: u64, to: u64, in_flight: usize) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    let zeros = vec![0u8; FILL_CHUNK];
    let mut others = Vec::new();
    let mut at = from;
    while at < to {
        let mut chunks = Vec::with_capacity(in_flight);
        while at < to && chunks.len() < in_flight {
            let n = ((to - at) as usize).min(FILL_CHUNK);
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
    Ok(())
}

/// Zero a freed slot whole and mark it clean. The zeros are durable before the mark, so
/// a crash in between leaves a slot that is scrubbed again at open.
fn scrub_slot(ring: &mut IoUring, file: &File, segment_bytes: u64) -> io::Result<()> {
    fill_zeros(ring, file, SEGMENT_HEADER_LEN as u64, segment_bytes, SCRUB_IN_FLIGHT)?;
    uring::sync(ring, file)?;
    uring::write_and_sync(ring, file, &[(0, &segment::clean_block())])
}

/// Create slot file `slot` at full size, zero-filled, marked clean and durable, including
/// its name.
pub(crate) fn create_slot(ring: &mut IoUring, dir: &Path, slot: u32, segment_bytes: u64) -> io::Result<File> {
    let path = dir.join(slot_file_name(slot));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let fd = types::Fd(file.as_raw_fd());
    let alloc = opcode::Fallocate::new(fd, segment_bytes).build().user_data(0);
    let mut others = Vec::new();
    // SAFETY: fallocate references no user memory.
    let res = unsafe { uring::run(ring, 0, &[alloc], &mut others)? };
    uring::check_ok(res[0])?;
    fill_zeros(ring, &file, SEGMENT_HEADER_LEN as u64, segment_bytes, CREATE_IN_FLIGHT)?;
    uring::write_and_sync(ring, &file, &[(0, &segment::clean_block())])?;
    let dir_file = File::open(dir)?;
    let entry = opcode::Fsync::new(types::Fd(dir_file.as_raw_fd())).build().user_data(0);
    // SAFETY: fsync references no user memory.
    let res = unsafe { uring::run(ring, 0, &[entry], &mut others)? };
    uring::check_ok(res[0])?;
    Ok(file)
}
