//! The writer thread: the only code that writes or syncs log files: small writes at once
//! with pwrite(2), large writes and every sync through one io_uring ring.
//!
//! Appends are pipelined and group-committed. Each append becomes one write per segment it
//! touches; when its writes complete (in request order) it is published to the index and the
//! appender is told it is readable. Whenever no fdatasync is in flight and published appends
//! wait for durability, one fdatasync per dirty file is issued for all of them together;
//! their durability callbacks fire when those syncs complete. A sync only covers writes that
//! had completed before it was submitted, so ordering holds without linked entries.
//!
//! Control operations (save meta, truncate, purge, roll) run only when no append I/O is in flight,
//! so every write reaches the disk in request order, as openraft requires. Any I/O error
//! poisons the log: after a failed fdatasync the page cache state is unknown, so nothing is
//! retried and every later request fails.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use io_uring::{opcode, types, IoUring};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::index::Seg;
use crate::meta::{self, Meta};
use crate::record::{self, EntryKind, RecordId};
use crate::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::shared::Shared;
use crate::slots::{SlotPool, SpareSegment};
use crate::uring::{self, EventFd};

/// Called once the entries of an append are durable (or the log failed).
pub type DurableCallback = Box<dyn FnOnce(io::Result<()>) + Send>;

/// One entry to append: its log id, kind and encoded payload.
#[derive(Debug)]
pub struct EntryIn {
    pub id: RecordId,
    pub kind: EntryKind,
    pub payload: Vec<u8>,
}

/// A request to the writer thread.
pub(crate) enum Request {
    Append { entries: Vec<EntryIn>, written: oneshot::Sender<Result<(), Error>>, durable: DurableCallback },
    SaveMeta { update: Box<dyn FnOnce(&mut Meta) + Send>, done: oneshot::Sender<Result<(), Error>> },
    Truncate { index: u64, done: oneshot::Sender<Result<(), Error>> },
    Purge { id: RecordId, done: oneshot::Sender<Result<(), Error>> },
    Roll { done: oneshot::Sender<Result<Option<u64>, Error>> },
    Scrub { done: crate::slots::ScrubDone },
}

const TAG_SHIFT: u32 = 56;
const TAG_EVENTFD: u64 = 1 << TAG_SHIFT;
const TAG_WRITE: u64 = 2 << TAG_SHIFT;
const TAG_SYNC: u64 = 3 << TAG_SHIFT;
const TAG_CONTROL: u64 = 4 << TAG_SHIFT;
const TAG_MARKER: u64 = 5 << TAG_SHIFT;
const TAG_IDLE_TIMER: u64 = 6 << TAG_SHIFT;
/// How long the log must stay idle before a marker is written: under steady load the next
/// batch vouches for the previous one, and no marker write gets in its way.
const MARKER_IDLE_MS: u64 = 10;
const ID_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Requests taken from the channel per loop turn: bounds the staging work between reaps.
const DRAIN_MAX: usize = 4096;
/// fdatasync batches in flight at once.
const SYNCS_IN_FLIGHT_MAX: usize = 4;
/// Writes up to this many bytes are made at once on the writer thread, larger ones
/// through the ring (see `Writer::start_write`).
const INLINE_WRITE_BYTES_MAX: usize = 256 * 1024;
/// Bytes per zeroing write when truncating.
const ZERO_CHUNK: usize = 1 << 20;

/// The segment currently being appended to.
#[derive(Debug, Clone, Copy)]
struct Active {
    slot: u32,
    seq: u64,
    next_index: u64,
    pos: u64,
}

/// One write in flight. `buf` is owned here until its completion is reaped.
struct WriteOp {
    append: u64,
    fd: types::Fd,
    buf: Vec<u8>,
    offset: u64,
    done: usize,
}

/// Where one entry of an append goes.
#[derive(Debug, Clone, Copy)]
struct Placement {
    slot: u32,
    seq: u64,
    new_segment: bool,
    offset: u32,
    frame_len: u32,
    id: RecordId,
}

struct PendingAppend {
    writes_left: usize,
    written: Option<oneshot::Sender<Result<(), Error>>>,
    durable: DurableCallback,
    placements: Vec<Placement>,
}

struct SyncBatch {
    left: usize,
    callbacks: Vec<DurableCallback>,
    durable_next: u64,
    error: Option<io::Error>,
}

pub(crate) struct Writer {
    ring: IoUring,
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    efd: Arc<EventFd>,
    efd_buf: Box<[u8; 8]>,
    queue: VecDeque<Request>,
    ops: HashMap<u64, WriteOp>,
    next_op: u64,
    next_append: u64,
    inflight: VecDeque<(u64, PendingAppend)>,
    unsynced: Vec<DurableCallback>,
    unsynced_next: u64,
    dirty: Vec<u32>,
    /// Sync batches in flight, oldest first; completed strictly in this order.
    syncs: VecDeque<(u64, SyncBatch)>,
    next_sync: u64,
    active: Option<Active>,
    /// Index the next appended entry must have; `None` for a log that never held one.
    next_index: Option<u64>,
    /// One past the highest index known durable: the hint framed into new records.
    durable_next: u64,
    slots: SlotPool,
    meta: Meta,
    meta_seq: u64,
    meta_file: File,
    poisoned: Option<String>,
    shutdown: bool,
    /// The marker record being written, owned here until its completion is reaped.
    marker_buf: Option<Vec<u8>>,
    /// Durable hint carried by the last marker written.
    marker_hint: u64,
    /// The idle timer's timespec; the kernel reads it at submission. Boxed so its address
    /// is stable, and declared after `ring` so it outlives it.
    idle_timespec: Box<types::Timespec>,
    idle_timer_armed: bool,
    idle_timer_fired: bool,
}

/// State recovered by `open`, handed to the writer.
pub(crate) struct WriterInit {
    pub active: Option<(u32, u64, u64, u64)>,
    pub next_index: Option<u64>,
    pub slots: SlotPool,
    pub meta: Meta,
    pub meta_seq: u64,
    pub meta_file: File,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, rx: Receiver<Request>, efd: Arc<EventFd>, init: WriterInit) -> io::Result<Self> {
        let ring = IoUring::new(shared.opts.ring_entries)?;
        let durable_next = init.next_index.unwrap_or(0);
        Ok(Self {
            ring,
            shared,
            rx,
            efd,
            efd_buf: Box::new([0u8; 8]),
            queue: VecDeque::new(),
            ops: HashMap::new(),
            next_op: 0,
            next_append: 0,
            inflight: VecDeque::new(),
            unsynced: Vec::new(),
            unsynced_next: 0,
            dirty: Vec::new(),
            syncs: VecDeque::new(),
            next_sync: 0,
            active: init.active.map(|(slot, seq, next_index, pos)| Active { slot, seq, next_index, pos }),
            next_index: init.next_index,
            durable_next,
            slots: init.slots,
            meta: init.meta,
            meta_seq: init.meta_seq,
            meta_file: init.meta_file,
            poisoned: None,
            shutdown: false,
            marker_buf: None,
            marker_hint: durable_next,
            idle_timespec: Box::new(types::Timespec::new().nsec((MARKER_IDLE_MS * 1_000_000) as u32)),
            idle_timer_armed: false,
            idle_timer_fired: false,
        })
    }

    fn path_of(&self, slot: u32) -> PathBuf {
        self.shared.segment_path(slot)
    }

    fn arm_eventfd(&mut self) -> io::Result<()> {
        let entry = opcode::Read::new(self.efd.fd(), self.efd_buf.as_mut_ptr(), 8).build().user_data(TAG_EVENTFD);
        // SAFETY: `efd_buf` is a boxed field of `self`, alive and unmoved until the thread
        // exits; the loop never exits with this read outstanding except by dropping the ring
        // first (field order: `ring` drops before `efd_buf`).
        unsafe { uring::push(&mut self.ring, &entry) }
    }

    /// The thread body.
    pub fn run(mut self) {
        if let Err(e) = self.arm_eventfd() {
            self.poison(format!("cannot arm eventfd: {e}"));
        }
        loop {
            self.start_queued();
            self.maybe_sync();
            self.maybe_mark();
            if self.shutdown && self.queue.is_empty() && self.is_idle() && self.marker_buf.is_none() {
                break;
            }
            // Interruptions are retried; a broken ring aborts (buffers are in flight).
            ::uring::wait(&mut self.ring, 1);
            let cqes: Vec<(u64, i32)> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
            for (ud, res) in cqes {
                self.on_completion(ud, res);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.inflight.is_empty() && self.unsynced.is_empty() && self.syncs.is_empty()
    }

    fn on_completion(&mut self, ud: u64, res: i32) {
        match ud & !ID_MASK {
            TAG_EVENTFD => self.on_eventfd(res),
            TAG_WRITE => self.on_write(ud & ID_MASK, res),
            TAG_SYNC => self.on_sync(ud & ID_MASK, res),
            TAG_MARKER => self.on_marker(res),
            TAG_IDLE_TIMER => {
                // -ETIME is the normal expiry.
                self.idle_timer_armed = false;
                self.idle_timer_fired = true;
            }
            other => unreachable!("completion with unknown tag {other:#x}"),
        }
    }

    fn on_eventfd(&mut self, res: i32) {
        if res < 0 && -res != libc::EINTR {
            self.poison(format!("eventfd read failed: {}", io::Error::from_raw_os_error(-res)));
        }
        for _ in 0..DRAIN_MAX {
            match self.rx.try_recv() {
                Ok(req) => self.queue.push_back(req),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.shutdown = true;
                    break;
                }
            }
        }
        if !self.shutdown {
            if let Err(e) = self.arm_eventfd() {
                self.poison(format!("cannot re-arm eventfd: {e}"));
            }
        }
        if self.queue.len() >= DRAIN_MAX {
            // More may be waiting: make sure we come back without another notify.
            self.efd.notify();
        }
    }

    fn start_queued(&mut self) {
        // A marker write covers the place of the next record: nothing else may write there
        // (or truncate) until it has completed.
        if self.marker_buf.is_some() {
            return;
        }
        while let Some(front) = self.queue.front() {
            let is_append = matches!(front, Request::Append { .. });
            if !is_append && !self.is_idle() {
                return;
            }
            let req = self.queue.pop_front().expect("front exists");
            match req {
                Request::Append { entries, written, durable } => self.stage_append(entries, written, durable),
                Request::SaveMeta { update, done } => {
                    let r = self.save_meta(update);
                    let _ = done.send(r);
                }
                Request::Truncate { index, done } => {
                    let r = self.truncate(index);
                    let _ = done.send(r);
                }
                Request::Purge { id, done } => {
                    let r = self.purge(id);
                    let _ = done.send(r);
                }
                Request::Roll { done } => {
                    let r = self.roll();
                    let _ = done.send(r);
                }
                Request::Scrub { done } => {
                    self.slots.scrub(done);
                }
            }
        }
    }

    fn check_poisoned(&self) -> Result<(), Error> {
        match &self.poisoned {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, why: String) {
        tracing::error!(reason = %why, "raftlog poisoned");
        if self.poisoned.is_none() {
            self.poisoned = Some(why);
        }
    }

    // ---- appends --------------------------------------------------------------------

    fn stage_append(
        &mut self,
        mut entries: Vec<EntryIn>,
        written: oneshot::Sender<Result<(), Error>>,
        durable: DurableCallback,
    ) {
        // Entries at or below the purge point are already covered by the state machine;
        // storing them would put purged history back in the log. They are accepted and dropped.
        if let Some(p) = self.meta.purged {
            entries.retain(|e| e.id.index > p.index);
        }
        if let Err(e) = self.check_poisoned().and_then(|()| self.validate_append(&entries)) {
            let msg = e.to_string();
            let _ = written.send(Err(e));
            durable(Err(io::Error::other(msg)));
            return;
        }
        let append_id = self.next_append;
        self.next_append += 1;
        let mut pieces: Vec<(u32, u64, Vec<u8>)> = Vec::new();
        let mut placements = Vec::with_capacity(entries.len());
        for e in &entries {
            let flen = record::frame_len(e.payload.len()) as u64;
            let needs_new = match self.active {
                None => true,
                Some(a) => a.pos + flen > self.slots.capacity(a.slot) || a.next_index != e.id.index,
            };
            let mut new_segment = false;
            if needs_new {
                match self.slots.take(&self.shared) {
                    Ok(spare) => {
                        let SpareSegment { slot, .. } = spare;
                        let seq = self.slots.next_seq();
                        let header = SegmentHeader { seq, first_index: e.id.index }.encode();
                        pieces.push((slot, 0, header));
                        self.active =
                            Some(Active { slot, seq, next_index: e.id.index, pos: SEGMENT_HEADER_LEN as u64 });
                        new_segment = true;
                    }
                    Err(err) => {
                        self.poison(format!("cannot prepare a segment: {err}"));
                        let _ = written.send(Err(Error::Poisoned(err.to_string())));
                        durable(Err(err));
                        return;
                    }
                }
            }
            let a = self.active.as_mut().expect("active segment");
            let continue_piece =
                matches!(pieces.last(), Some((slot, off, buf)) if *slot == a.slot && off + buf.len() as u64 == a.pos);
            if !continue_piece {
                pieces.push((a.slot, a.pos, Vec::new()));
            }
            let buf = &mut pieces.last_mut().expect("piece").2;
            record::encode(buf, a.seq, e.id, self.durable_next, e.kind, &e.payload);
            placements.push(Placement {
                slot: a.slot,
                seq: a.seq,
                new_segment,
                offset: a.pos as u32,
                frame_len: flen as u32,
                id: e.id,
            });
            a.pos += flen;
            a.next_index += 1;
        }
        self.next_index = entries.last().map(|e| e.id.index + 1).or(self.next_index);
        let mut op_ids = Vec::with_capacity(pieces.len());
        for (slot, offset, buf) in pieces {
            let fd = types::Fd(self.slots.file(slot).as_raw_fd());
            let op_id = self.next_op;
            self.next_op += 1;
            self.ops.insert(op_id, WriteOp { append: append_id, fd, buf, offset, done: 0 });
            op_ids.push(op_id);
        }
        self.inflight.push_back((
            append_id,
            PendingAppend { writes_left: op_ids.len(), written: Some(written), durable, placements },
        ));
        if op_ids.is_empty() {
            // Nothing to write: complete in order behind earlier appends.
            self.publish_ready();
        }
        for op_id in op_ids {
            self.start_write(op_id);
        }
    }

    /// Start write `op_id`: a small one at once on this thread, a large one through the
    /// ring. A buffered write of a few KiB into the page cache takes microseconds, while
    /// the ring hands a buffered ext4 write to a kernel worker and back (`raftlog-bench`,
    /// 1 KiB entries, 16 appenders: 14 % more durable entries a second inline); a large
    /// one inline would hold this thread from reaping the syncs that finish meanwhile.
    fn start_write(&mut self, op_id: u64) {
        let op = self.ops.get(&op_id).expect("op exists");
        if op.buf.len() <= INLINE_WRITE_BYTES_MAX {
            let res = self.write_inline(op_id);
            self.on_write(op_id, res);
        } else if let Err(e) = self.submit_write(op_id) {
            self.poison(format!("cannot submit write: {e}"));
        }
    }

    /// Write what is left of op `op_id` with pwrite(2); the result as a completion's
    /// (bytes written, or a negated errno).
    fn write_inline(&self, op_id: u64) -> i32 {
        let op = self.ops.get(&op_id).expect("op exists");
        let rest = &op.buf[op.done..];
        let offset = op.offset + op.done as u64;
        fail::fail_point!("raftlog::torn-write", |_| crate::faults::torn_write_and_abort(op.fd.0, offset, rest));
        // SAFETY: `op.fd` is an open segment file of the pool and `rest` a live buffer of
        // `rest.len()` bytes owned by `self.ops`; pwrite only reads from it.
        let n = unsafe { libc::pwrite(op.fd.0, rest.as_ptr().cast(), rest.len(), offset as libc::off_t) };
        if n < 0 {
            -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
        } else {
            i32::try_from(n).expect("a write of at most INLINE_WRITE_BYTES_MAX")
        }
    }

    fn validate_append(&self, entries: &[EntryIn]) -> Result<(), Error> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if let Some(next) = self.next_index {
            if first.id.index != next {
                return Err(Error::Invalid(format!(
                    "append at index {} leaves a hole: next is {next}",
                    first.id.index
                )));
            }
        }
        let max = self.shared.opts.max_payload_bytes as usize;
        for (k, e) in entries.iter().enumerate() {
            if e.id.index != first.id.index + k as u64 {
                return Err(Error::Invalid("entries of one append are not consecutive".into()));
            }
            if e.payload.len() > max {
                return Err(Error::Invalid(format!(
                    "entry {} payload {} bytes exceeds {max}",
                    e.id.index,
                    e.payload.len()
                )));
            }
        }
        Ok(())
    }

    fn submit_write(&mut self, op_id: u64) -> io::Result<()> {
        let op = self.ops.get(&op_id).expect("op exists");
        let rest = &op.buf[op.done..];
        // Power loss in the middle of a write (storage-fault tests only): half of it reaches
        // the file, and the process dies before anything else happens.
        fail::fail_point!("raftlog::torn-write", |_| {
            crate::faults::torn_write_and_abort(op.fd.0, op.offset + op.done as u64, rest)
        });
        let entry = opcode::Write::new(op.fd, rest.as_ptr(), rest.len() as u32)
            .offset(op.offset + op.done as u64)
            .build()
            .user_data(TAG_WRITE | op_id);
        // SAFETY: the buffer is owned by `self.ops[op_id]`, whose heap allocation is neither
        // freed nor reallocated until this op's completion is reaped in `on_write`.
        unsafe { uring::push(&mut self.ring, &entry) }
    }

    fn on_write(&mut self, op_id: u64, res: i32) {
        let res = crate::faults::eio_at("raftlog::write-eio", res);
        let op = self.ops.get_mut(&op_id).expect("completion for a known op");
        if res < 0 {
            let err = io::Error::from_raw_os_error(-res);
            let append = op.append;
            self.ops.remove(&op_id);
            self.poison(format!("write failed: {err}"));
            self.finish_write(append);
            return;
        }
        op.done += res as usize;
        if res == 0 || op.done < op.buf.len() {
            if res == 0 {
                let append = op.append;
                self.ops.remove(&op_id);
                self.poison("write made no progress".into());
                self.finish_write(append);
            } else if let Err(e) = self.submit_write(op_id) {
                self.poison(format!("cannot resubmit short write: {e}"));
            }
            return;
        }
        let append = op.append;
        self.ops.remove(&op_id);
        self.finish_write(append);
    }

    fn finish_write(&mut self, append: u64) {
        let pending = self
            .inflight
            .iter_mut()
            .find(|(id, _)| *id == append)
            .map(|(_, p)| p)
            .expect("write belongs to an in-flight append");
        pending.writes_left -= 1;
        self.publish_ready();
    }

    /// Publish appends whose writes are all complete, strictly in request order.
    fn publish_ready(&mut self) {
        while self.inflight.front().is_some_and(|(_, p)| p.writes_left == 0) {
            let (_, mut p) = self.inflight.pop_front().expect("front exists");
            if let Some(why) = self.poisoned.clone() {
                if let Some(w) = p.written.take() {
                    let _ = w.send(Err(Error::Poisoned(why.clone())));
                }
                (p.durable)(Err(io::Error::other(why)));
                continue;
            }
            self.publish(&p.placements);
            if let Some(last) = p.placements.last() {
                self.unsynced_next = self.unsynced_next.max(last.id.index + 1);
            }
            for pl in &p.placements {
                if !self.dirty.contains(&pl.slot) {
                    self.dirty.push(pl.slot);
                }
            }
            if let Some(w) = p.written.take() {
                let _ = w.send(Ok(()));
            }
            self.unsynced.push(p.durable);
        }
    }

    fn publish(&self, placements: &[Placement]) {
        let mut index = self.shared.index.write().expect("index lock");
        for pl in placements {
            if pl.new_segment {
                index.segments.push_back(Seg {
                    slot: pl.slot,
                    file: self.slots.file(pl.slot),
                    seq: pl.seq,
                    first_index: pl.id.index,
                    offsets: Vec::new(),
                    end: SEGMENT_HEADER_LEN as u64,
                });
            }
            let seg = index.segments.back_mut().expect("a segment to publish into");
            assert_eq!(seg.seq, pl.seq, "placement belongs to the newest segment");
            assert_eq!(seg.next_index(), pl.id.index, "published entries are consecutive");
            seg.offsets.push(pl.offset);
            seg.end = u64::from(pl.offset) + u64::from(pl.frame_len);
            index.last = Some(pl.id);
        }
    }

    /// Issue one fdatasync per dirty file for every published, unsynced append. Up to
    /// [`SYNCS_IN_FLIGHT_MAX`] batches may be in flight, so appends that arrive while a sync
    /// runs do not wait for it to finish before their own sync starts; completions are still
    /// reported strictly in batch order.
    fn maybe_sync(&mut self) {
        if self.syncs.len() >= SYNCS_IN_FLIGHT_MAX || self.unsynced.is_empty() {
            return;
        }
        let slots: Vec<u32> = std::mem::take(&mut self.dirty);
        let id = self.next_sync;
        self.next_sync += 1;
        let mut batch = SyncBatch {
            left: 0,
            callbacks: std::mem::take(&mut self.unsynced),
            durable_next: self.unsynced_next,
            error: None,
        };
        for slot in slots {
            let entry = opcode::Fsync::new(types::Fd(self.slots.file(slot).as_raw_fd()))
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(TAG_SYNC | id);
            // SAFETY: fsync references no user memory; the file stays open in the pool.
            match unsafe { uring::push(&mut self.ring, &entry) } {
                Ok(()) => batch.left += 1,
                Err(e) => batch.error = Some(e),
            }
        }
        self.syncs.push_back((id, batch));
        self.complete_synced_in_order();
    }

    fn on_sync(&mut self, id: u64, res: i32) {
        let res = crate::faults::eio_at("raftlog::sync-eio", res);
        let batch = self
            .syncs
            .iter_mut()
            .find(|(b, _)| *b == id)
            .map(|(_, b)| b)
            .expect("sync completion for a batch in flight");
        if res < 0 && batch.error.is_none() {
            batch.error = Some(io::Error::from_raw_os_error(-res));
        }
        batch.left -= 1;
        self.complete_synced_in_order();
    }

    fn complete_synced_in_order(&mut self) {
        while self.syncs.front().is_some_and(|(_, b)| b.left == 0) {
            let (_, batch) = self.syncs.pop_front().expect("front");
            self.complete_sync(batch);
        }
    }

    fn complete_sync(&mut self, batch: SyncBatch) {
        if let Some(e) = &batch.error {
            self.poison(format!("fdatasync failed: {e}"));
        }
        let result = match &self.poisoned {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        };
        if result.is_ok() {
            self.durable_next = self.durable_next.max(batch.durable_next);
        }
        for cb in batch.callbacks {
            cb(result.clone().map_err(io::Error::other));
        }
    }

    /// When the log has stayed idle for [`MARKER_IDLE_MS`] with durable entries that no
    /// later record vouches for, write a marker at the tail carrying the durable hint. Not
    /// synced: it is evidence for recovery (corruption in the last batch is then detected
    /// rather than taken for a torn write), not a durability point, so it costs no
    /// fdatasync. At shutdown it is written at once.
    fn maybe_mark(&mut self) {
        let fired = std::mem::take(&mut self.idle_timer_fired);
        if self.marker_buf.is_some()
            || self.poisoned.is_some()
            || !self.queue.is_empty()
            || !self.is_idle()
            || self.durable_next <= self.marker_hint
        {
            return;
        }
        let Some(a) = self.active else { return };
        if a.next_index != self.durable_next || a.pos + record::HEADER_LEN as u64 > self.slots.capacity(a.slot) {
            return;
        }
        if !fired && !self.shutdown {
            self.arm_idle_timer();
            return;
        }
        let mut buf = Vec::with_capacity(record::HEADER_LEN);
        let id = RecordId { term: 0, node: 0, index: a.next_index };
        record::encode(&mut buf, a.seq, id, self.durable_next, EntryKind::Marker, &[]);
        let entry = opcode::Write::new(types::Fd(self.slots.file(a.slot).as_raw_fd()), buf.as_ptr(), buf.len() as u32)
            .offset(a.pos)
            .build()
            .user_data(TAG_MARKER);
        // SAFETY: `buf`'s heap allocation moves into `self.marker_buf` unchanged and is only
        // dropped in `on_marker`, after this write's completion is reaped.
        match unsafe { uring::push(&mut self.ring, &entry) } {
            Ok(()) => {
                self.marker_buf = Some(buf);
                self.marker_hint = self.durable_next;
            }
            Err(e) => self.poison(format!("cannot submit marker write: {e}")),
        }
    }

    fn arm_idle_timer(&mut self) {
        if self.idle_timer_armed {
            return;
        }
        let entry =
            opcode::Timeout::new(&*self.idle_timespec as *const types::Timespec).build().user_data(TAG_IDLE_TIMER);
        // SAFETY: the timespec is boxed in `self`, declared after the ring, so it stays valid
        // for as long as the ring can read it.
        match unsafe { uring::push(&mut self.ring, &entry) } {
            Ok(()) => self.idle_timer_armed = true,
            Err(e) => tracing::warn!(error = %e, "cannot arm the idle timer; no marker this time"),
        }
    }

    fn on_marker(&mut self, res: i32) {
        let buf = self.marker_buf.take().expect("marker completion with a marker in flight");
        if let Err(e) = uring::check_full_write(res, buf.len()) {
            self.poison(format!("marker write failed: {e}"));
        }
    }

    // ---- control operations (run only when idle) --------------------------------------

    /// Run write/fsync entries synchronously on the main ring, keeping the eventfd armed.
    fn run_control(&mut self, writes: &[(types::Fd, u64, &[u8])], syncs: &[types::Fd]) -> io::Result<()> {
        let mut entries = Vec::with_capacity(writes.len());
        for (k, (fd, offset, data)) in writes.iter().enumerate() {
            entries.push(
                opcode::Write::new(*fd, data.as_ptr(), data.len() as u32)
                    .offset(*offset)
                    .build()
                    .user_data(TAG_CONTROL | k as u64),
            );
        }
        let mut others = Vec::new();
        // SAFETY: `writes` borrows every buffer for the duration of this call, and `run`
        // reaps all their completions before returning.
        let results = unsafe { uring::run(&mut self.ring, TAG_CONTROL, &entries, &mut others) };
        self.replay(others);
        for ((_, _, data), res) in writes.iter().zip(results?) {
            uring::check_full_write(res, data.len())?;
        }
        let entries: Vec<_> = syncs
            .iter()
            .enumerate()
            .map(|(k, fd)| {
                opcode::Fsync::new(*fd).flags(types::FsyncFlags::DATASYNC).build().user_data(TAG_CONTROL | k as u64)
            })
            .collect();
        let mut others = Vec::new();
        // SAFETY: fsync references no user memory.
        let results = unsafe { uring::run(&mut self.ring, TAG_CONTROL, &entries, &mut others) };
        self.replay(others);
        for res in results? {
            uring::check_ok(res)?;
        }
        Ok(())
    }

    fn replay(&mut self, others: Vec<(u64, i32)>) {
        for (ud, res) in others {
            self.on_completion(ud, res);
        }
    }

    fn save_meta(&mut self, update: Box<dyn FnOnce(&mut Meta) + Send>) -> Result<(), Error> {
        self.check_poisoned()?;
        let mut next = self.meta;
        update(&mut next);
        self.write_meta(next)
    }

    fn write_meta(&mut self, next: Meta) -> Result<(), Error> {
        let seq = self.meta_seq + 1;
        let block = meta::encode_slot(&next, seq);
        let fd = types::Fd(self.meta_file.as_raw_fd());
        let r = self.run_control(&[(fd, meta::slot_offset(seq), &block)], &[fd]);
        if let Err(e) = r {
            self.poison(format!("meta write failed: {e}"));
            return Err(Error::io(self.shared.meta_path(), e));
        }
        self.meta_seq = seq;
        self.meta = next;
        Ok(())
    }

    fn truncate(&mut self, index: u64) -> Result<(), Error> {
        self.check_poisoned()?;
        let (zero_ranges, freed, new_last) = {
            let idx = self.shared.index.read().expect("index lock");
            if idx.last.is_none_or(|l| index > l.index) {
                return Ok(());
            }
            if index < idx.first_readable() {
                return Err(Error::Invalid(format!("truncate at {index} below the purged point")));
            }
            let k = idx.find(index).expect("index within the log is located");
            let mut zero_ranges: Vec<(u32, u64, u64)> = Vec::new();
            let mut freed = Vec::new();
            for seg in idx.segments.iter().skip(k + 1) {
                zero_ranges.push((seg.slot, 0, SEGMENT_HEADER_LEN as u64));
                freed.push(seg.slot);
            }
            let seg = &idx.segments[k];
            if index == seg.first_index {
                zero_ranges.push((seg.slot, 0, SEGMENT_HEADER_LEN as u64));
                freed.push(seg.slot);
            } else {
                let (off, _) = seg.locate(index).expect("located");
                // Include a marker that may sit just past the last record.
                let marker_end = (seg.end + record::HEADER_LEN as u64).min(self.slots.capacity(seg.slot));
                zero_ranges.push((seg.slot, off, marker_end));
            }
            let new_last = if index == 0 || index <= idx.first_readable() {
                idx.purged
            } else {
                Some(self.shared.read_id(&idx, index - 1)?)
            };
            (zero_ranges, freed, new_last)
        };
        let zeros = vec![0u8; ZERO_CHUNK];
        let mut writes = Vec::new();
        let mut syncs = Vec::new();
        for (slot, from, to) in &zero_ranges {
            let fd = types::Fd(self.slots.file(*slot).as_raw_fd());
            let mut at = *from;
            while at < *to {
                let n = ((*to - at) as usize).min(ZERO_CHUNK);
                writes.push((fd, at, &zeros[..n]));
                at += n as u64;
            }
            if !syncs.iter().any(|f: &types::Fd| f.0 == fd.0) {
                syncs.push(fd);
            }
        }
        if let Err(e) = self.run_control(&writes, &syncs) {
            self.poison(format!("truncate failed: {e}"));
            return Err(Error::io(self.path_of(zero_ranges[0].0), e));
        }
        let mut idx = self.shared.index.write().expect("index lock");
        idx.segments.retain(|s| !freed.contains(&s.slot));
        if let Some(seg) = idx.segments.back_mut() {
            if seg.next_index() > index {
                let keep = (index - seg.first_index) as usize;
                seg.end = u64::from(seg.offsets[keep]);
                seg.offsets.truncate(keep);
            }
        }
        idx.last = new_last;
        self.active =
            idx.segments.back().map(|s| Active { slot: s.slot, seq: s.seq, next_index: s.next_index(), pos: s.end });
        drop(idx);
        for slot in freed {
            self.slots.release(slot);
        }
        self.next_index = Some(index);
        self.durable_next = self.durable_next.min(index);
        self.marker_hint = self.marker_hint.min(index);
        Ok(())
    }

    fn purge(&mut self, id: RecordId) -> Result<(), Error> {
        self.check_poisoned()?;
        if self.meta.purged.is_some_and(|p| p.index >= id.index) {
            return Ok(());
        }
        let mut next = self.meta;
        next.purged = Some(id);
        self.write_meta(next)?;
        let freed: Vec<u32> = {
            let mut idx = self.shared.index.write().expect("index lock");
            idx.purged = Some(id);
            if idx.last.is_none_or(|l| l.index < id.index) {
                idx.last = Some(id);
                self.next_index = Some(id.index + 1);
            }
            let mut freed = Vec::new();
            // Keep the newest segment: it is the append target even if fully purged.
            while idx.segments.len() > 1 && idx.segments[1].first_index <= id.index + 1 {
                freed.push(idx.segments.pop_front().expect("front").slot);
            }
            freed
        };
        // Freed segments keep their headers: recovery drops segments wholly below the
        // durable purge point, and a slot is only reused after that point was written.
        for slot in freed {
            self.slots.release(slot);
        }
        Ok(())
    }
}

impl Writer {
    /// Start a new, empty segment now, so that a purge up to the last index frees every
    /// segment holding an entry (the newest segment is never freed). Returns that last
    /// index, or `None` when there was nothing to roll away from (no entry, or the newest
    /// segment is already empty).
    fn roll(&mut self) -> Result<Option<u64>, Error> {
        self.check_poisoned()?;
        let (Some(active), Some(next_index)) = (self.active, self.next_index) else {
            return Ok(None);
        };
        if active.pos == SEGMENT_HEADER_LEN as u64 {
            return Ok(None);
        }
        debug_assert_eq!(active.next_index, next_index, "the active segment ends the log");
        let SpareSegment { slot } = match self.slots.take_clean(&self.shared) {
            Ok(spare) => spare,
            Err(e) => {
                self.poison(format!("cannot prepare a segment: {e}"));
                return Err(Error::Poisoned(e.to_string()));
            }
        };
        let seq = self.slots.next_seq();
        let header = SegmentHeader { seq, first_index: next_index }.encode();
        let file = self.slots.file(slot);
        let fd = types::Fd(file.as_raw_fd());
        if let Err(e) = self.run_control(&[(fd, 0, &header)], &[fd]) {
            self.poison(format!("segment header write failed: {e}"));
            return Err(Error::io(self.path_of(slot), e));
        }
        let end = SEGMENT_HEADER_LEN as u64;
        let seg = Seg { slot, file, seq, first_index: next_index, offsets: Vec::new(), end };
        self.shared.index.write().expect("index lock").segments.push_back(seg);
        self.active = Some(Active { slot, seq, next_index, pos: end });
        Ok(Some(next_index - 1))
    }
}

/// Fail a request that will never run.
pub(crate) fn fail_request(req: Request, why: &str) {
    match req {
        Request::Append { written, durable, .. } => {
            let _ = written.send(Err(Error::Poisoned(why.to_string())));
            durable(Err(io::Error::other(why.to_string())));
        }
        Request::SaveMeta { done, .. } | Request::Truncate { done, .. } | Request::Purge { done, .. } => {
            let _ = done.send(Err(Error::Poisoned(why.to_string())));
        }
        Request::Roll { done } => {
            let _ = done.send(Err(Error::Poisoned(why.to_string())));
        }
        // Dropping the waiter tells the caller the scrub did not happen.
        Request::Scrub { .. } => {}
    }
}
