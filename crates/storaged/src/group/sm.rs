//! The openraft state machine of a mailhost group: applies committed entries to the
//! [`Store`], checkpoints, and builds/installs snapshots as archive files.
//!
//! Directory layout of a group: `mail/` (the store tree), `snapshots/` (see
//! `group::snapshots`: the current snapshot as a hard-link mirror of the store,
//! `incoming-*.snap` archives while receiving). Store I/O is blocking and runs under
//! `block_in_place`.

// openraft's StorageError is large; it is the trait's error type, not ours to box.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use tokio::fs::File;

use super::snapshot_data::{SnapshotData, TreeStream};
use super::snapshots::{Current, Snapshots};
use crate::mailstore::snapshot;
use crate::mailstore::{MailRequest, MailResponse, Store};
use crate::tracking::{Tracker, TrackingSettings};

openraft::declare_raft_types!(
    /// Raft types of a mailhost group.
    pub MailConfig:
        D = MailRequest,
        R = MailResponse,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<MailConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Shared handle on a group's store.
#[derive(Clone)]
pub struct MailStateMachine {
    store: Arc<Mutex<Store>>,
    /// Serializes checkpoints so they finish in the order they were prepared.
    checkpointing: Arc<Mutex<()>>,
    /// Held by whatever writes the store's tree (applying entries, a repair's rename) and
    /// by a snapshot's settle, which needs the tree still. The store lock is not what
    /// holds the tree still: settling lists every directory (seconds on a store of ten
    /// thousand users), and sessions that read the store from the runtime's threads would
    /// wait that long, starving Raft's heartbeats into an election. Order: this, then the
    /// store.
    tree: Arc<Mutex<()>>,
    group_dir: PathBuf,
    group: String,
    /// The current snapshot (a link tree of the store) and its directory.
    snapshots: Arc<Snapshots>,
    incoming_seq: Arc<AtomicU64>,
    /// The file each snapshot being received is written to, by its descriptor: transfers
    /// may overlap (a retransmission), and each install must read its own archive.
    incoming: Arc<Mutex<std::collections::HashMap<std::os::fd::RawFd, PathBuf>>>,
    /// Bumped (to the last applied index) whenever applied state changes; sessions wait on it.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// The highest log index whose effects are durable (checkpointed or installed); the raft
    /// log purges nothing above it.
    durable: Arc<tokio::sync::watch::Sender<u64>>,
    /// An apply failed (disk full, EIO): the in-memory store may hold part of an entry
    /// whose files never reached the disk, so nothing may be checkpointed or snapshotted
    /// from it again. Raft stops on the error; the node exits and restarts from disk.
    failed: Arc<std::sync::atomic::AtomicBool>,
    /// The last index whose entry erased mail for good (`Store::take_erased`): the group's
    /// scrub task then makes those bytes leave the log and snapshot (`group::scrub`).
    erased: Arc<tokio::sync::watch::Sender<u64>>,
    /// The message-tracking records of this replica (`crate::tracking`).
    tracker: Arc<Mutex<Tracker>>,
    /// A backup's own retention of kept mail (`Store::set_keep_floor`), kept across
    /// snapshot installs.
    keep_floor_s: u64,
    /// This node's disk: while it is below its reserve, no new snapshot is built (its
    /// directories and links take some space, and Raft stops on the error if it runs
    /// out). Checkpoints go on: they are small, and they let the log be purged, which
    /// frees space.
    disk: Option<Arc<crate::disk::DiskWatch>>,
    /// Where apply times are counted.
    metrics: Option<Arc<crate::metrics::NodeMetrics>>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

impl MailStateMachine {
    /// Open the state machine of group `group` under `group_dir`, tracking as by default.
    pub fn open(group_dir: &Path, group: &str) -> Result<Self, crate::mailstore::StoreError> {
        Self::open_tracking(group_dir, group, TrackingSettings::default())
    }

    /// Open the state machine of group `group` under `group_dir`, keeping its tracking
    /// records in `group_dir/tracking` as `tracking` says.
    pub fn open_tracking(
        group_dir: &Path,
        group: &str,
        tracking: TrackingSettings,
    ) -> Result<Self, crate::mailstore::StoreError> {
        let mail = group_dir.join("mail");
        let old = group_dir.join("mail.old");
        // An install interrupted between its two renames left the old tree aside.
        if !mail.exists() && old.exists() {
            let _ = std::fs::rename(&old, &mail);
        }
        let _ = std::fs::remove_dir_all(&old);
        let _ = std::fs::remove_dir_all(group_dir.join("mail.incoming"));
        let snapshots = Snapshots::open(&group_dir.join("snapshots"))
            .map_err(|source| crate::mailstore::StoreError::Io { context: "snapshots dir".into(), source })?;
        let store = Store::open(&mail, group)?;
        let durable = store.last_applied.map_or(0, |l| l.index);
        let tracker = Tracker::open(group_dir.join("tracking"), tracking)
            .map_err(|source| crate::mailstore::StoreError::Io { context: "tracking dir".into(), source })?;
        Ok(Self {
            store: Arc::new(Mutex::new(store)),
            checkpointing: Arc::new(Mutex::new(())),
            tree: Arc::new(Mutex::new(())),
            group_dir: group_dir.to_path_buf(),
            group: group.to_string(),
            snapshots: Arc::new(snapshots),
            incoming_seq: Arc::new(AtomicU64::new(0)),
            incoming: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            durable: Arc::new(tokio::sync::watch::Sender::new(durable)),
            failed: Arc::default(),
            erased: Arc::new(tokio::sync::watch::Sender::new(0)),
            tracker: Arc::new(Mutex::new(tracker)),
            keep_floor_s: 0,
            disk: None,
            metrics: None,
        })
    }

    /// Keep kept mail on this replica at least `keep_s` (a backup node's
    /// `[retention] backup_keep_s`).
    /// Defer snapshots while `disk` is below its reserve.
    pub fn with_disk(mut self, disk: Arc<crate::disk::DiskWatch>) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Count apply times in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::NodeMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_keep_floor(mut self, keep_s: u64) -> Self {
        self.keep_floor_s = keep_s;
        self.store.lock().expect("store lock").set_keep_floor(keep_s);
        self
    }

    /// Where this replica keeps the group's tracking records.
    pub fn tracking_dir(&self) -> PathBuf {
        self.tracker.lock().expect("tracker lock").dir().to_path_buf()
    }

    /// Write down the tracking records of what was just applied. A failure costs records,
    /// never the replica: it is logged and the entries stay applied.
    fn write_tracked(&self, records: Vec<common::tracking::TrackRecord>) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.tracker.lock().expect("tracker lock").append(&records) {
            tracing::warn!(group = %self.group, error = %e, lost = records.len(), "message tracking records not written");
        }
    }

    /// Make sure the current snapshot covers the log's purged prefix (`purged`, from the
    /// raft log). A crash between an installed snapshot's checkpoint and its recording
    /// leaves the snapshot older than the purged log, which openraft refuses at start: the
    /// store holds the data (it applied at least that far), so the snapshot is rebuilt from
    /// it. A store that did not apply the purged entries lost them: refuse to start.
    /// Blocking; call before Raft starts.
    pub fn reconcile_snapshot(&self, purged: Option<u64>) -> Result<(), crate::mailstore::StoreError> {
        let Some(purged) = purged else { return Ok(()) };
        let current = self.snapshots.meta().and_then(|m| m.last_log_id).map(|l| l.index);
        if current.is_some_and(|c| c >= purged) {
            return Ok(());
        }
        let applied = self.store.lock().expect("store lock").last_applied.map(|l| l.index);
        if applied.is_none_or(|a| a < purged) {
            return Err(crate::mailstore::StoreError::State(format!(
                "the log is purged up to {purged} but the store applied only {applied:?} and the snapshot covers {current:?}: \
                 this replica lost data; remove its group directory so it catches up from its peers"
            )));
        }
        tracing::warn!(group = %self.group, purged, ?applied, ?current, "snapshot behind the purged log: rebuilding it");
        self.build_current().map_err(|e| crate::mailstore::StoreError::State(e.to_string()))?;
        Ok(())
    }

    /// The durable point, for the raft log's purge gate.
    pub fn durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.durable.subscribe()
    }

    fn made_durable(&self, applied: Option<LogId<u64>>) {
        let index = applied.map_or(0, |l| l.index);
        self.durable.send_if_modified(|d| {
            let raise = index > *d;
            *d = (*d).max(index);
            raise
        });
    }

    /// A receiver that sees every change of the applied state (for IMAP IDLE).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A receiver that sees each applied entry that erased mail for good (its index).
    pub fn erasures(&self) -> tokio::sync::watch::Receiver<u64> {
        self.erased.subscribe()
    }

    /// The store, for readers (IMAP, tests) and the checkpoint task.
    pub fn store(&self) -> Arc<Mutex<Store>> {
        self.store.clone()
    }

    /// Hold the store's tree still (see `tree`): take it before the store lock to write
    /// into the tree outside an apply. Blocking.
    pub fn hold_tree(&self) -> std::sync::MutexGuard<'_, ()> {
        self.tree.lock().expect("tree lock")
    }

    /// Checkpoint if anything was applied since the last one; the filesystem sync runs
    /// without holding the store. Blocking.
    pub fn checkpoint_if_dirty(&self) -> Result<(), crate::mailstore::StoreError> {
        let _order = self.checkpointing.lock().expect("checkpoint lock");
        self.refuse_if_failed()?;
        let (pending, applied) = {
            let mut store = self.store.lock().expect("store lock");
            if store.unchecked == 0 {
                return Ok(());
            }
            (store.prepare_checkpoint()?, store.last_applied)
        };
        if let Err(e) = self.tracker.lock().expect("tracker lock").sync() {
            tracing::warn!(group = %self.group, error = %e, "message tracking records not synced");
        }
        let result = pending.finish();
        match &result {
            Ok(()) => self.made_durable(applied),
            // Try again next time.
            Err(_) => self.store.lock().expect("store lock").unchecked += 1,
        }
        result
    }

    fn refuse_if_failed(&self) -> Result<(), crate::mailstore::StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            let source = std::io::Error::other("an earlier apply failed; the store must be reopened from disk");
            return Err(crate::mailstore::StoreError::Io { context: "checkpoint".into(), source });
        }
        Ok(())
    }

    /// Size of the current snapshot's archive (what a new replica is sent), if there is one.
    pub fn snapshot_bytes(&self) -> Option<u64> {
        self.snapshots.archive_bytes()
    }

    /// Checkpoint the store and make it the current snapshot: a hard-link mirror, linked
    /// while the store applies and settled to the checkpointed state while no entry applies
    /// (the tree held still, so it is one state; the store lock is held only to prepare
    /// the checkpoint, and sessions go on reading meanwhile); the checkpoint's sync and
    /// state file, and the snapshot's own sync, come after. Blocking.
    fn build_current(&self) -> Result<SnapshotMeta<u64, BasicNode>, StorageError<u64>> {
        let _order = self.checkpointing.lock().expect("checkpoint lock");
        self.refuse_if_failed().map_err(sm_err)?;
        let started = std::time::Instant::now();
        let root = self.store.lock().expect("store lock").layout().root().to_path_buf();
        let draft = self.snapshots.draft(&root).map_err(sm_err)?;
        let drafted = started.elapsed();
        let (pending, meta, staged, settled) = {
            let _still = self.hold_tree();
            let (pending, meta) = {
                let mut store = self.store.lock().expect("store lock");
                let pending = store.prepare_checkpoint().map_err(sm_err)?;
                let last = store.last_applied;
                let meta = SnapshotMeta {
                    last_log_id: last,
                    last_membership: store.membership.clone(),
                    snapshot_id: format!("{}-{}", self.group, last.map_or(0, |l| l.index)),
                };
                (pending, meta)
            };
            let (staged, settled) = self.snapshots.settle(draft, meta.clone(), &root).map_err(sm_err)?;
            (pending, meta, staged, settled)
        };
        let held = started.elapsed() - drafted;
        let changes = pending.changes();
        if let Err(e) = pending.finish() {
            // Try again at the next checkpoint.
            self.store.lock().expect("store lock").unchecked += 1;
            return Err(sm_err(e));
        }
        self.made_durable(meta.last_log_id);
        staged.refresh(&root, &changes).map_err(sm_err)?;
        let finished_at = started.elapsed();
        self.snapshots.publish(staged).map_err(sm_err)?;
        tracing::info!(
            group = %self.group,
            snapshot = %meta.snapshot_id,
            link_ms = drafted.as_millis(),
            held_ms = held.as_millis(),
            settled_added = settled.added,
            settled_removed = settled.removed,
            settled_dirs = settled.dirs,
            checked_dirs = settled.checked,
            checkpoint_ms = (finished_at - drafted - held).as_millis(),
            publish_ms = (started.elapsed() - finished_at).as_millis(),
            "snapshot built"
        );
        Ok(meta)
    }

    /// The current snapshot, for openraft.
    fn current_snapshot(&self) -> Result<Option<Snapshot<MailConfig>>, StorageError<u64>> {
        match self.snapshots.current() {
            None => Ok(None),
            Some(Current::Tree(dir)) => Ok(Some(Snapshot {
                meta: dir.meta().clone(),
                snapshot: Box::new(SnapshotData::Tree(TreeStream::new(dir))),
            })),
            Some(Current::Archive { meta, path }) => {
                let file = std::fs::File::open(path).map_err(snap_err)?;
                Ok(Some(Snapshot { meta, snapshot: Box::new(SnapshotData::File(File::from_std(file))) }))
            }
        }
    }
}

impl RaftSnapshotBuilder<MailConfig> for MailStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MailConfig>, StorageError<u64>> {
        if self.disk.as_ref().is_some_and(|d| d.low()) {
            // openraft ignores a snapshot no newer than the one it has; the schedule
            // (`snapshot_schedule`) asks again once the disk has room.
            if let Some(current) = self.get_current_snapshot().await? {
                tracing::warn!(group = %self.group, snapshot = %current.meta.snapshot_id, "disk below its reserve: snapshot deferred, the last one stands");
                return Ok(current);
            }
        }
        tokio::task::block_in_place(|| self.build_current())?;
        self.current_snapshot()?.ok_or_else(|| snap_err("the snapshot just built is gone"))
    }
}

impl RaftStateMachine<MailConfig> for MailStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let store = self.store.lock().expect("store lock");
        Ok((store.last_applied, store.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MailResponse>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<MailConfig>> + Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let started = std::time::Instant::now();
        let applied = tokio::task::block_in_place(|| {
            let _writing = self.hold_tree();
            let mut store = self.store.lock().expect("store lock");
            let mut out = Vec::with_capacity(entries.len());
            for entry in entries {
                let index = entry.log_id.index;
                let resp = match &entry.payload {
                    EntryPayload::Blank => {
                        store.unchecked += 1;
                        MailResponse::None
                    }
                    EntryPayload::Normal(req) => store.apply(index, req).map_err(sm_err)?,
                    EntryPayload::Membership(m) => {
                        store.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                        store.unchecked += 1;
                        MailResponse::None
                    }
                };
                store.last_applied = Some(entry.log_id);
                out.push(resp);
            }
            store.flush_files().map_err(sm_err)?;
            self.changes.send_replace(store.last_applied.map_or(0, |l| l.index));
            if store.take_erased() {
                self.erased.send_replace(store.last_applied.map_or(0, |l| l.index));
            }
            // Written before the store is released, so no checkpoint can record these
            // entries as durable before their records are on their way to disk.
            self.write_tracked(store.take_tracked());
            Ok(out)
        });
        if let Some(m) = &self.metrics {
            m.applied(started.elapsed());
        }
        if let Err(e) = &applied {
            self.failed.store(true, Ordering::SeqCst);
            tracing::error!(group = %self.group, error = %e, "apply failed; this replica stops");
        }
        applied
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError<u64>> {
        let n = self.incoming_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.group_dir.join("snapshots").join(format!("incoming-{n}.snap"));
        let file =
            File::options().read(true).write(true).create(true).truncate(true).open(&path).await.map_err(snap_err)?;
        self.incoming.lock().expect("incoming lock").insert(std::os::fd::AsRawFd::as_raw_fd(&file), path);
        Ok(Box::new(SnapshotData::File(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<u64>> {
        let SnapshotData::File(mut file) = *snapshot else {
            return Err(snap_err(format!("snapshot {} is not a received archive", meta.snapshot_id)));
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let incoming = self.incoming.lock().expect("incoming lock").remove(&fd).ok_or_else(|| {
            snap_err(format!("snapshot {} was not received through this state machine", meta.snapshot_id))
        })?;
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(snap_err)?;
        file.sync_all().await.map_err(snap_err)?;
        drop(file);
        tokio::task::block_in_place(|| -> Result<(), StorageError<u64>> {
            let staged = self.group_dir.join("mail.incoming");
            let _ = std::fs::remove_dir_all(&staged);
            snapshot::install(&incoming, &staged).map_err(snap_err)?;
            // Linked before the store is held: the installed tree becomes the store as is.
            let draft = self.snapshots.draft(&staged).map_err(snap_err)?;
            // No checkpoint of the old tree may finish into the new one.
            let _order = self.checkpointing.lock().expect("checkpoint lock");
            let _replacing = self.hold_tree();
            let mut store = self.store.lock().expect("store lock");
            let mail = self.group_dir.join("mail");
            let old = self.group_dir.join("mail.old");
            // A backup keeps the kept sets its longer retention still holds.
            if self.keep_floor_s > 0 {
                let carried = crate::mailstore::kept::carry_sets(&mail, &staged).map_err(snap_err)?;
                tracing::info!(group = %self.group, carried, "kept sets carried into the installed snapshot");
            }
            std::fs::rename(&mail, &old).map_err(snap_err)?;
            std::fs::rename(&staged, &mail).map_err(snap_err)?;
            let mut fresh = Store::open(&mail, &self.group).map_err(snap_err)?;
            fresh.set_keep_floor(self.keep_floor_s);
            fresh.last_applied = meta.last_log_id;
            fresh.membership = meta.last_membership.clone();
            fresh.checkpoint().map_err(snap_err)?;
            *store = fresh;
            self.made_durable(meta.last_log_id);
            let (staged, _) = self.snapshots.settle(draft, meta.clone(), store.layout().root()).map_err(snap_err)?;
            drop(store);
            let _ = std::fs::remove_dir_all(&old);
            self.changes.send_replace(meta.last_log_id.map_or(0, |l| l.index));
            self.snapshots.publish(staged).map_err(snap_err)?;
            let _ = std::fs::remove_file(&incoming);
            Ok(())
        })?;
        tracing::info!(group = %self.group, snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MailConfig>>, StorageError<u64>> {
        self.current_snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn blank(index: u64) -> Entry<MailConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
    }

    /// Entry `index` of a busy group: deliveries to three users, flag changes (renames) and
    /// expunges (removals), so files come, change name and go.
    fn mail(index: u64) -> Entry<MailConfig> {
        use crate::mailstore::{FlagMode, MailOp, MailRequest, OpId};
        let user = format!("u{}", index % 3);
        let uid = (index / 4) as u32;
        let op = match index % 5 {
            0 => MailOp::Store {
                user,
                mailbox: "INBOX".into(),
                uids: vec![uid],
                mode: FlagMode::Add,
                flags: 1,
                keywords: vec![],
                unchanged_since: None,
            },
            1 => MailOp::Expunge { user, mailbox: "INBOX".into(), uids: vec![uid / 2] },
            _ => MailOp::Deliver {
                recipients: vec![user],
                internal_date: index as i64,
                message: format!("Subject: {index}\r\n\r\nbody {index}\r\n").into_bytes(),
            },
        };
        let mut op_id = [0; 16];
        op_id[..8].copy_from_slice(&index.to_le_bytes());
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(MailRequest { op_id: OpId(op_id), op }),
        }
    }

    async fn archive_of(snapshot: Snapshot<MailConfig>) -> Vec<u8> {
        let (mut data, mut bytes) = (snapshot.snapshot, Vec::new());
        tokio::io::AsyncReadExt::read_to_end(&mut *data, &mut bytes).await.unwrap();
        bytes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_linked_while_the_store_applies_is_the_store_at_its_index() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sm = MailStateMachine::open(&tmp.path().join("busy"), "hermes").unwrap();
        sm.apply((1..=3000).map(mail).collect::<Vec<_>>()).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        let applier = tokio::spawn(async move {
            for index in 3001..=9000 {
                sm.apply(vec![mail(index)]).await.unwrap();
            }
        });
        let mut snapshots = Vec::new();
        for _ in 0..4 {
            snapshots.push(builder.build_snapshot().await.unwrap());
        }
        applier.await.unwrap();

        // The same entries applied by a replica that builds while nothing else runs.
        let mut quiet = MailStateMachine::open(&tmp.path().join("quiet"), "hermes").unwrap();
        let mut applied = 0;
        for snapshot in snapshots {
            let index = snapshot.meta.last_log_id.unwrap().index;
            assert!(index >= applied, "snapshots go forward");
            quiet.apply((applied + 1..=index).map(mail).collect::<Vec<_>>()).await.unwrap();
            applied = index;
            let reference = quiet.build_snapshot().await.unwrap();
            assert_eq!(reference.meta.last_log_id, snapshot.meta.last_log_id);
            let (ours, theirs) = (archive_of(snapshot).await, archive_of(reference).await);
            assert!(
                ours == theirs,
                "the snapshot at {index} is the store at {index} ({} vs {} bytes)",
                ours.len(),
                theirs.len()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tree_held_still_stops_applies_but_not_readers() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sm = MailStateMachine::open(tmp.path(), "hermes").unwrap();
        sm.apply((1..=30).map(mail).collect::<Vec<_>>()).await.unwrap();
        // What a snapshot's settle holds while it lists every directory, from a thread of
        // its own as a snapshot build does.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, holding) = std::sync::mpsc::channel();
        let holder = {
            let sm = sm.clone();
            std::thread::spawn(move || {
                let _still = sm.hold_tree();
                held.send(()).unwrap();
                released.recv().unwrap();
            })
        };
        holding.recv().unwrap();
        assert!(sm.store().try_lock().is_ok(), "readers must get the store while the tree is held");
        let mut writer = sm.clone();
        let (done, applied) = std::sync::mpsc::channel();
        let applier = tokio::spawn(async move {
            writer.apply(vec![mail(31)]).await.unwrap();
            done.send(()).unwrap();
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(applied.try_recv().is_err(), "an entry was applied while the tree was held still");
        assert!(sm.store().try_lock().is_ok(), "a waiting apply must not hold the store");
        release.send(()).unwrap();
        holder.join().unwrap();
        applier.await.unwrap();
        assert!(applied.try_recv().is_ok());
        assert_eq!(sm.store().lock().unwrap().last_applied.map(|l| l.index), Some(31));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn no_snapshot_is_built_while_the_disk_is_below_its_reserve() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = Arc::new(crate::disk::DiskWatch::default());
        let mut sm = MailStateMachine::open(tmp.path(), "hermes").unwrap().with_disk(disk.clone());
        sm.apply(vec![blank(1)]).await.unwrap();
        assert_eq!(sm.build_snapshot().await.unwrap().meta.snapshot_id, "hermes-1");
        sm.apply(vec![blank(2)]).await.unwrap();
        disk.observe(10, 1000);
        assert!(disk.low());
        let deferred = sm.build_snapshot().await.unwrap();
        assert_eq!(deferred.meta.snapshot_id, "hermes-1", "the last one stands");
        assert_eq!(sm.snapshots.meta().unwrap().snapshot_id, "hermes-1");
        disk.observe(1 << 30, 1000);
        assert_eq!(sm.build_snapshot().await.unwrap().meta.snapshot_id, "hermes-2", "built once there is room");
    }
}
