//! [`Log`]: the public, non-generic handle on one log directory. Appends go to the writer
//! thread; reads go straight to the files through the shared index.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::error::Error;
use crate::index::Index;
use crate::meta::Meta;
use crate::options::Options;
use crate::record::RecordId;
use crate::recovery::{self, OpenReport};
use crate::shared::{Record, Shared};
use crate::slots::SlotPool;
use crate::uring::EventFd;
use crate::writer::{self, DurableCallback, EntryIn, Request, Writer, WriterInit};

struct Inner {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Request>>>,
    efd: Arc<EventFd>,
    thread: Mutex<Option<JoinHandle<()>>>,
    meta: RwLock<Meta>,
    report: OpenReport,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel and waking the writer makes it finish in-flight I/O and exit.
        self.tx.lock().map(|mut tx| tx.take()).ok();
        self.efd.notify();
        if let Some(handle) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = handle.join();
        }
    }
}

/// A durable Raft log in one directory. Cheap to clone; the writer stops when the last
/// clone is dropped, after finishing in-flight I/O.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

/// A read-only view of a log that does not keep the writer alive.
#[derive(Clone)]
pub struct LogView {
    shared: Arc<Shared>,
}

impl LogView {
    /// Read and verify the entry at `index`; `Ok(None)` if the log does not hold it.
    pub fn read(&self, index: u64) -> Result<Option<Record>, Error> {
        self.shared.read(index)
    }

    /// `(first readable index, last id)`.
    pub fn bounds(&self) -> (u64, Option<RecordId>) {
        let idx = self.shared.index.read().expect("index lock");
        (idx.first_readable(), idx.last)
    }
}

impl Log {
    /// Open (creating if needed) the log in `dir`, recovering from any crash.
    ///
    /// A torn tail is truncated and reported in [`Log::open_report`]; damage before the tail
    /// fails with [`Error::Corrupt`] naming the file and offset.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Self, Error> {
        opts.validate().map_err(Error::Invalid)?;
        let dir = dir.as_ref().to_path_buf();
        let rec = recovery::recover(&dir)?;
        let active = rec.segments.last().map(|s| (s.slot, s.seq, s.next_index(), s.end));
        let next_index = rec.report.last.map(|l| l.index + 1);
        let index = Index { segments: rec.segments.into(), purged: rec.meta.purged, last: rec.report.last };
        let shared = Arc::new(Shared { dir: dir.clone(), opts: opts.clone(), index: RwLock::new(index) });
        let mut slots = SlotPool::new(dir.clone(), rec.files, rec.free, rec.dirty, rec.next_seq, opts.segment_bytes)
            .map_err(|e| Error::io(&dir, e))?;
        slots.start_preparer().map_err(|e| Error::io(&dir, e))?;
        slots.prepare_ahead();
        let efd = Arc::new(EventFd::new().map_err(|e| Error::io(&dir, e))?);
        let (tx, rx) = mpsc::channel();
        let init =
            WriterInit { active, next_index, slots, meta: rec.meta, meta_seq: rec.meta_seq, meta_file: rec.meta_file };
        let writer = Writer::new(shared.clone(), rx, efd.clone(), init).map_err(|e| Error::io(&dir, e))?;
        let thread = std::thread::Builder::new()
            .name("raftlog-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io(&dir, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                tx: Mutex::new(Some(tx)),
                efd,
                thread: Mutex::new(Some(thread)),
                meta: RwLock::new(rec.meta),
                report: rec.report,
            }),
        })
    }

    /// What recovery found when this log was opened.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    fn send(&self, req: Request) -> Result<(), Error> {
        let guard = self.inner.tx.lock().expect("tx lock");
        let Some(tx) = guard.as_ref() else {
            return Err(Error::Stopped);
        };
        if let Err(mpsc::SendError(req)) = tx.send(req) {
            writer::fail_request(req, "writer stopped");
            return Err(Error::Stopped);
        }
        drop(guard);
        self.inner.efd.notify();
        Ok(())
    }

    /// Start appending `entries` (consecutive, continuing the log). Returns once they are
    /// written and readable; `durable` is called once they are on disk (or on failure).
    pub async fn append(&self, entries: Vec<EntryIn>, durable: DurableCallback) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Append { entries, written: tx, durable })?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// [`Log::append`] for callers outside an async runtime.
    pub fn append_blocking(&self, entries: Vec<EntryIn>, durable: DurableCallback) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Append { entries, written: tx, durable })?;
        rx.blocking_recv().map_err(|_| Error::Stopped)?
    }

    /// Durably apply `update` to the metadata (vote, committed), after all earlier writes.
    pub async fn update_meta(&self, update: impl FnOnce(&mut Meta) + Send + Clone + 'static) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::SaveMeta { update: Box::new(update.clone()), done: tx })?;
        rx.await.map_err(|_| Error::Stopped)??;
        update(&mut self.inner.meta.write().expect("meta lock"));
        Ok(())
    }

    /// The current metadata.
    pub fn meta(&self) -> Meta {
        *self.inner.meta.read().expect("meta lock")
    }

    /// Remove entries from `index` on, durably.
    pub async fn truncate(&self, index: u64) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Truncate { index, done: tx })?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Forget entries up to and including `id`, and free whole segments below it.
    pub async fn purge(&self, id: RecordId) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Purge { id, done: tx })?;
        rx.await.map_err(|_| Error::Stopped)??;
        self.inner.meta.write().expect("meta lock").purged = Some(id);
        Ok(())
    }

    /// Start a new segment, in a slot that holds nothing old, for the entries to come;
    /// returns the last index the older segments hold (`None`: nothing to roll). Then purge
    /// up to it and [`Log::scrub`]: every segment that held an entry until the roll is
    /// zeroed — how a purge of mail is made to reach the log's files. Until the scrub, no
    /// freed slot is reused (see `slots`).
    pub async fn roll(&self) -> Result<Option<u64>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Roll { done: tx })?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Zero every freed segment slot (they keep their old bytes otherwise, and are reused
    /// as they are); returns once they are zero on disk.
    pub async fn scrub(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Scrub { done: tx })?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// A read-only view for concurrent readers.
    pub fn view(&self) -> LogView {
        LogView { shared: self.inner.shared.clone() }
    }

    /// Read and verify the entry at `index`.
    pub fn read(&self, index: u64) -> Result<Option<Record>, Error> {
        self.inner.shared.read(index)
    }

    /// `(first readable index, last id)`.
    pub fn bounds(&self) -> (u64, Option<RecordId>) {
        self.view().bounds()
    }

    /// Bytes of the records after `index` (framing included): what a snapshot at `index`
    /// leaves in the log.
    pub fn bytes_after(&self, index: u64) -> u64 {
        self.inner.shared.index.read().expect("index lock").bytes_after(index)
    }

    /// The highest index a purge may reach so the records after it hold at most `bytes`;
    /// `None` if the readable records already do.
    pub fn purge_point_keeping(&self, bytes: u64) -> Option<u64> {
        self.inner.shared.index.read().expect("index lock").purge_point_keeping(bytes)
    }

    /// Where the record of `index` lives: `(segment file, byte offset, frame length)`.
    /// For diagnostics and tools; the bytes there are only meaningful once verified.
    pub fn locate(&self, index: u64) -> Option<(PathBuf, u64, usize)> {
        let shared = &self.inner.shared;
        let (_, off, len, _, slot) = shared.index.read().expect("index lock").locate(index)?;
        Some((shared.segment_path(slot), off, len))
    }
}
