//! A minimal in-memory key-value state machine for tests: applies `KvWrite`s, keeps a
//! running checksum of everything applied (so replicas can be compared), and snapshots as
//! bincode. Not durable by itself: on restart it is rebuilt from the log (and snapshots).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

/// A write: set `key` to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct KvWrite {
    pub key: u64,
    pub value: Vec<u8>,
}

/// What applying a write returns: the log index it was applied at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvApplied {
    pub index: u64,
}

openraft::declare_raft_types!(
    /// The test cluster's Raft types.
    pub KvConfig:
        D = KvWrite,
        R = KvApplied,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<KvConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The replicated state.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct KvState {
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
    pub data: BTreeMap<u64, Vec<u8>>,
    /// crc32c chained over every applied (index, key, value).
    pub digest: u32,
    pub applied_count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    state: KvState,
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshot_seq: u64,
}

/// Shared handle to the state machine.
#[derive(Debug, Clone, Default)]
pub struct KvStateMachine {
    inner: Arc<Mutex<Inner>>,
}

impl KvStateMachine {
    /// A copy of the current state.
    pub fn state(&self) -> KvState {
        self.inner.lock().expect("sm lock").state.clone()
    }
}

fn chain(digest: u32, index: u64, w: &KvWrite) -> u32 {
    let d = crc32c::crc32c_append(digest, &index.to_le_bytes());
    let d = crc32c::crc32c_append(d, &w.key.to_le_bytes());
    crc32c::crc32c_append(d, &w.value)
}

impl RaftSnapshotBuilder<KvConfig> for KvStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<KvConfig>, StorageError<u64>> {
        let mut inner = self.inner.lock().expect("sm lock");
        let bytes = bincode::serialize(&inner.state).map_err(|e| StorageIOError::read_state_machine(&e))?;
        inner.snapshot_seq += 1;
        let meta = SnapshotMeta {
            last_log_id: inner.state.last_applied,
            last_membership: inner.state.membership.clone(),
            snapshot_id: format!("{:?}-{}", inner.state.last_applied.map(|l| l.index), inner.snapshot_seq),
        };
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<KvConfig> for KvStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let inner = self.inner.lock().expect("sm lock");
        Ok((inner.state.last_applied, inner.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<KvApplied>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<KvConfig>> + Send,
    {
        let mut inner = self.inner.lock().expect("sm lock");
        let mut out = Vec::new();
        for entry in entries {
            let s = &mut inner.state;
            s.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(w) => {
                    s.digest = chain(s.digest, entry.log_id.index, &w);
                    s.applied_count += 1;
                    s.data.insert(w.key, w.value);
                }
                EntryPayload::Membership(m) => s.membership = StoredMembership::new(Some(entry.log_id), m),
            }
            out.push(KvApplied { index: entry.log_id.index });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let state: KvState = bincode::deserialize(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let mut inner = self.inner.lock().expect("sm lock");
        inner.state = state;
        inner.state.last_applied = meta.last_log_id;
        inner.state.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<KvConfig>>, StorageError<u64>> {
        let inner = self.inner.lock().expect("sm lock");
        Ok(inner
            .snapshot
            .as_ref()
            .map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes.clone())) }))
    }
}
