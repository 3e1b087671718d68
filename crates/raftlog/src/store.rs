//! openraft 0.9 storage-v2 adaptor: [`RaftLogStore`] implements `RaftLogStorage` on a
//! [`Log`], and [`RaftLogStoreReader`] implements `RaftLogReader` on a [`LogView`].
//!
//! Entries map to records one to one: the log id goes into the record header, normal
//! payloads are rkyv archives ([`LogPayload`]), membership entries are bincode. This module
//! owns the translation only; it must not buffer entries or change durability semantics.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, LogState, Membership, OptionalSend, RaftLogReader, RaftTypeConfig,
    StorageError, StorageIOError, Vote,
};

use crate::error::Error;
use crate::log::{Log, LogView};
use crate::meta::StoredVote;
use crate::payload::LogPayload;
use crate::record::{EntryKind, RecordId};
use crate::shared::Record;
use crate::writer::EntryIn;

/// Entries returned by one `limited_get_log_entries` call: bounds replication batches.
const READ_BATCH_MAX: u64 = 4096;

fn to_log_id(id: RecordId) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(id.term, id.node), id.index)
}

fn to_record_id(id: &LogId<u64>) -> RecordId {
    RecordId { term: id.leader_id.term, node: id.leader_id.node_id, index: id.index }
}

fn encode_entry<C>(entry: &Entry<C>) -> Result<EntryIn, Error>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: LogPayload,
{
    let mut payload = Vec::new();
    let kind = match &entry.payload {
        EntryPayload::Blank => EntryKind::Blank,
        EntryPayload::Normal(d) => {
            d.encode(&mut payload)?;
            EntryKind::Normal
        }
        EntryPayload::Membership(m) => {
            payload = bincode::serialize(m).map_err(|e| Error::Invalid(format!("membership encode: {e}")))?;
            EntryKind::Membership
        }
    };
    Ok(EntryIn { id: to_record_id(&entry.log_id), kind, payload })
}

fn decode_entry<C>(record: &Record) -> Result<Entry<C>, Error>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: LogPayload,
{
    let payload = match record.header.kind {
        EntryKind::Blank => EntryPayload::Blank,
        EntryKind::Normal => EntryPayload::Normal(C::D::decode(record.payload())?),
        EntryKind::Marker => {
            return Err(Error::Invalid(format!("index {} points at a marker, not an entry", record.header.id.index)));
        }
        EntryKind::Membership => {
            let m: Membership<u64, C::Node> = bincode::deserialize(record.payload())
                .map_err(|e| Error::Invalid(format!("membership decode at {}: {e}", record.header.id.index)))?;
            EntryPayload::Membership(m)
        }
    };
    Ok(Entry { log_id: to_log_id(record.header.id), payload })
}

// openraft's own error type is large; boxing it is not ours to choose.
#[allow(clippy::result_large_err)]
fn read_range<C>(view: &LogView, range: impl RangeBounds<u64>, max: u64) -> Result<Vec<Entry<C>>, StorageError<u64>>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: LogPayload,
{
    let (first, last) = view.bounds();
    let Some(last) = last else {
        return Ok(Vec::new());
    };
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    }
    .max(first);
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    read_span(view, start, end.min(last.index.saturating_add(1)).min(start.saturating_add(max)), Gap::Skip)
}

/// The entries from `start` on (up to `end`, exclusive, and at most `max`) that follow one
/// another without a gap: none if `start` was purged. openraft's replication sends what this
/// returns as the entries right after `start - 1`; a leader that has just stepped down may
/// still be reading while its log is purged as a follower's, and entries from a later index
/// would be appended by the follower in the wrong places (openraft 0.9 only `debug_assert`s
/// that they follow). Given nothing, it sends a heartbeat instead.
#[allow(clippy::result_large_err)]
fn read_following<C>(view: &LogView, start: u64, end: u64, max: u64) -> Result<Vec<Entry<C>>, StorageError<u64>>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: LogPayload,
{
    let (first, last) = view.bounds();
    let Some(last) = last.filter(|_| start >= first) else {
        return Ok(Vec::new());
    };
    read_span(view, start, end.min(last.index.saturating_add(1)).min(start.saturating_add(max)), Gap::Stop)
}

/// What [`read_span`] does at an index the log does not hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gap {
    Skip,
    Stop,
}

/// The entries at `start..end`.
#[allow(clippy::result_large_err)]
fn read_span<C>(view: &LogView, start: u64, end: u64, gap: Gap) -> Result<Vec<Entry<C>>, StorageError<u64>>
where
    C: RaftTypeConfig<NodeId = u64>,
    C::D: LogPayload,
{
    let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
    for index in start..end {
        match view.read(index) {
            Ok(Some(rec)) => {
                out.push(decode_entry::<C>(&rec).map_err(|e| StorageIOError::read_log_at_index(index, &e))?)
            }
            Ok(None) if gap == Gap::Stop => break,
            Ok(None) => {}
            Err(e) => return Err(StorageIOError::read_log_at_index(index, &e).into()),
        }
    }
    Ok(out)
}

/// openraft log storage on a [`Log`]. The node id type is `u64`.
pub struct RaftLogStore<C> {
    log: Log,
    committed: Option<RecordId>,
    /// The state machine's durable point (see [`RaftLogStore::with_purge_gate`]).
    purge_gate: Option<tokio::sync::watch::Receiver<u64>>,
    /// Told how long each append took (see [`AppendObserver`]).
    observer: Option<Arc<dyn AppendObserver>>,
    _config: PhantomData<C>,
}

/// Told the time of every append: from the call until its entries are written (in the
/// page cache, readable) and until they are durable (fdatasync done). For metrics; it
/// is called on the log's completion path and must return at once.
pub trait AppendObserver: Send + Sync + 'static {
    fn written(&self, elapsed: std::time::Duration);
    fn durable(&self, elapsed: std::time::Duration);
}

/// Longest a purge waits for the state machine to make the purged entries durable; past
/// it the purge fails (a storage error stops Raft loudly rather than lose entries).
pub const PURGE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(600);

impl<C> RaftLogStore<C> {
    pub fn new(log: Log) -> Self {
        Self { log, committed: None, purge_gate: None, observer: None, _config: PhantomData }
    }

    /// Report each append's latency to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn AppendObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Hold every purge until `durable` (the highest log index the state machine has made
    /// durable: checkpointed, or installed from a snapshot) reaches the purged entry.
    /// openraft 0.9 issues the purge that follows a snapshot install without waiting for
    /// the install; without the gate a crash between the two leaves the log purged past
    /// everything the state machine kept.
    pub fn with_purge_gate(mut self, durable: tokio::sync::watch::Receiver<u64>) -> Self {
        self.purge_gate = Some(durable);
        self
    }

    /// The underlying log.
    pub fn log(&self) -> &Log {
        &self.log
    }
}

/// Concurrent reader for replication tasks.
pub struct RaftLogStoreReader<C> {
    view: LogView,
    _config: PhantomData<C>,
}

impl<C> Clone for RaftLogStoreReader<C> {
    fn clone(&self) -> Self {
        Self { view: self.view.clone(), _config: PhantomData }
    }
}

impl<C> RaftLogReader<C> for RaftLogStoreReader<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    C::D: LogPayload,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<u64>> {
        read_range::<C>(&self.view, range, u64::MAX)
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<C::Entry>, StorageError<u64>> {
        read_following::<C>(&self.view, start, end, READ_BATCH_MAX)
    }
}

impl<C> RaftLogReader<C> for RaftLogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    C::D: LogPayload,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<u64>> {
        read_range::<C>(&self.log.view(), range, u64::MAX)
    }
}

impl<C> RaftLogStorage<C> for RaftLogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    C::D: LogPayload,
{
    type LogReader = RaftLogStoreReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        let (_, last) = self.log.bounds();
        let purged = self.log.meta().purged;
        Ok(LogState { last_purged_log_id: purged.map(to_log_id), last_log_id: last.map(to_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        RaftLogStoreReader { view: self.log.view(), _config: PhantomData }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let stored = StoredVote { term: vote.leader_id.term, node: vote.leader_id.node_id, committed: vote.committed };
        self.log.update_meta(move |m| m.vote = Some(stored)).await.map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.log.meta().vote.map(|v| {
            if v.committed {
                Vote::new_committed(v.term, v.node)
            } else {
                Vote::new(v.term, v.node)
            }
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        // Kept in memory only: the state machine's applied id is the durable restart point,
        // and an fdatasync per commit advance would double the sync load for no safety gain.
        let id = committed.as_ref().map(to_record_id);
        self.committed = id;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.committed.map(to_log_id))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        for entry in entries {
            batch.push(encode_entry::<C>(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?);
        }
        let started = std::time::Instant::now();
        let observer = self.observer.clone();
        let durable = Box::new(move |r: io::Result<()>| {
            if let Some(o) = observer {
                o.durable(started.elapsed());
            }
            callback.log_io_completed(r)
        });
        self.log.append(batch, durable).await.map_err(|e| StorageIOError::write_logs(&e))?;
        if let Some(o) = &self.observer {
            o.written(started.elapsed());
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.log.truncate(log_id.index).await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        if let Some(gate) = &mut self.purge_gate {
            let index = log_id.index;
            match tokio::time::timeout(PURGE_WAIT_MAX, gate.wait_for(|durable| *durable >= index)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => {
                    let why = format!("purge up to {index}: the state machine never made it durable");
                    return Err(StorageIOError::write_logs(&std::io::Error::other(why)).into());
                }
            }
        }
        self.log.purge(to_record_id(&log_id)).await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
