//! What protocol sessions (POP3, IMAP) do with a group: read its store on the leader and
//! propose operations through its Raft log. A mutation is reported done only once it is
//! committed and applied; reads never block the apply path for longer than a lookup.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::ClientWriteError;

use super::Group;
use crate::mailstore::index::{MailboxIndex, MessageMeta};
use crate::mailstore::store::StoredMessage;
use crate::mailstore::{MailOp, MailRequest, MailResponse, MailboxName, OpId, StoreError, UserName};

/// Longest wait for an operation to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Parts of a large operation proposed ahead of the oldest one not yet committed: enough
/// to keep replication busy, few enough that a failed stream wastes little.
const PARTS_IN_FLIGHT_MAX: usize = 16;
/// Attempts to open a message file that a concurrent flag change keeps renaming.
const READ_ATTEMPTS_MAX: usize = 4;

/// Why an access failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("this node is not the leader of mailhost {group}")]
    NotLeader { group: String, leader: Option<u64> },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("message file: {0}")]
    Io(#[from] std::io::Error),
    /// The message's file fails its checksum or the disk cannot read it; a repair from a
    /// peer's copy is under way.
    #[error("message UID {uid} is damaged on this replica: {source}")]
    Corrupt { uid: u32, source: std::io::Error },
    #[error("operation not committed: {0}")]
    Raft(String),
    #[error("operation not committed within {0:?}")]
    Timeout(Duration),
    /// A majority of the group's disks are below their reserve (see `group::room`).
    #[error("the group's disks are below their reserve")]
    NoRoom,
}

/// What a committed entry produced.
type ClientWriteResult =
    Result<openraft::raft::ClientWriteResponse<super::MailConfig>, ClientWriteError<u64, openraft::BasicNode>>;

/// A committed operation: the log index that applied it and what applying it produced.
#[derive(Debug)]
pub struct Committed {
    pub index: u64,
    pub data: MailResponse,
}

impl Group {
    /// A copy of a mailbox's index, or `None` if the mailbox does not exist. Blocking.
    pub fn mailbox_index(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
    ) -> Result<Option<Arc<MailboxIndex>>, StoreError> {
        let store = self.sm.store();
        let mut store = store.lock().expect("store lock");
        store.mailbox_index(user, mailbox)
    }

    pub(crate) fn message_file(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        uid: u32,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let store = self.sm.store();
        let mut store = store.lock().expect("store lock");
        store.message_file(user, mailbox, uid)
    }

    /// The bytes of message `uid`, or `None` if it was expunged. Blocking; the file is
    /// read without holding the store, and checked against its checksum (a corrupt file is
    /// an error, never served, and is repaired from a peer's copy in the background).
    pub fn read_message(
        self: &Arc<Self>,
        user: &UserName,
        mailbox: &MailboxName,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, AccessError> {
        for _ in 0..READ_ATTEMPTS_MAX {
            let Some(file) = self.message_file(user, mailbox, uid)? else { return Ok(None) };
            match file.read() {
                Ok(bytes) => return Ok(Some(bytes)),
                // Renamed by a flag change after the lookup: look it up again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    let damaged = e.kind() == std::io::ErrorKind::InvalidData || e.raw_os_error() == Some(libc::EIO);
                    if damaged {
                        self.repair_later(user, mailbox, uid);
                        return Err(AccessError::Corrupt { uid, source: e });
                    }
                    return Err(e.into());
                }
            }
        }
        Err(std::io::Error::other(format!("message {uid} keeps moving")).into())
    }

    /// The header of message `meta` (up to and including the blank line that ends it), from
    /// memory if this node read it before, else from its checked file. `None` if it was
    /// expunged. Blocking on a miss.
    pub fn read_header(
        self: &Arc<Self>,
        user: &UserName,
        mailbox: &MailboxName,
        meta: &MessageMeta,
    ) -> Result<Option<Arc<[u8]>>, AccessError> {
        if let Some(header) = self.headers.get(user.as_str(), meta) {
            return Ok(Some(header));
        }
        let Some(bytes) = self.read_message(user, mailbox, meta.uid)? else { return Ok(None) };
        let header = crate::imap::header::split(&bytes).0;
        Ok(Some(self.headers.insert(user.as_str(), meta, header)))
    }

    /// The header fields SORT and THREAD read (see [`crate::imap::header::SORT_FIELDS`]) of
    /// each of `metas`, messages of `idx`: from memory, else from the mailbox's fields file
    /// (`fields_file`), else cut from the message's header and added to both. `None` for a
    /// message expunged meanwhile. Blocking on a miss.
    pub fn read_sort_fields(
        self: &Arc<Self>,
        user: &UserName,
        mailbox: &MailboxName,
        idx: &MailboxIndex,
        metas: &[&MessageMeta],
    ) -> Result<Vec<Option<Arc<[u8]>>>, AccessError> {
        use super::fields_file::{self, FileKey};
        let mut out: Vec<_> = metas.iter().map(|m| self.sort_fields.get(user.as_str(), m)).collect();
        if out.iter().all(Option::is_some) {
            return Ok(out);
        }
        let path = self.sm.store().lock().expect("store lock").layout().mailbox_dir(user, mailbox);
        let path = path.join(fields_file::FIELDS_FILE);
        // One miss path at a time per group: a file's records are in memory once, whatever
        // the number of sessions sorting (the global bound on what this costs).
        let _file = self.fields_file.lock().expect("fields file lock");
        let (on_disk, records) = fields_file::load(&path);
        let mut fresh = Vec::new();
        for (slot, meta) in out.iter_mut().zip(metas).filter(|(slot, _)| slot.is_none()) {
            let key = FileKey::of(meta);
            if let Some(fields) = on_disk.get(&key) {
                *slot = Some(self.sort_fields.insert(user.as_str(), meta, fields));
                continue;
            }
            let Some(header) = self.read_header(user, mailbox, meta)? else { continue };
            let fields = crate::imap::header::only_fields(&header, &crate::imap::header::SORT_FIELDS);
            *slot = Some(self.sort_fields.insert(user.as_str(), meta, &fields));
            fresh.push((key, fields));
        }
        if let Err(e) = self.keep_fields(&path, idx, (on_disk, records), &fresh) {
            tracing::warn!(group = %self.name, path = %path.display(), error = %e, "sort fields not kept on disk");
        }
        Ok(out)
    }

    /// Add `fresh` to the fields file at `path`, which held `on_disk` in `records` records:
    /// appended, or the whole file rewritten with only `idx`'s messages once most are dead.
    /// The caller holds `fields_file`.
    fn keep_fields(
        &self,
        path: &std::path::Path,
        idx: &MailboxIndex,
        (on_disk, records): (std::collections::HashMap<super::fields_file::FileKey, Vec<u8>>, usize),
        fresh: &[(super::fields_file::FileKey, Vec<u8>)],
    ) -> std::io::Result<()> {
        use super::fields_file::{self, FileKey};
        if !fields_file::mostly_dead(records + fresh.len(), idx.messages.len()) {
            let appended: Vec<(FileKey, &[u8])> = fresh.iter().map(|(k, f)| (k.clone(), &f[..])).collect();
            return fields_file::append(path, &appended);
        }
        let live: std::collections::HashSet<FileKey> = idx.messages.iter().map(FileKey::of).collect();
        let kept = on_disk.iter().filter(|(k, _)| live.contains(*k)).map(|(k, f)| (k, &f[..]));
        fields_file::rewrite(path, kept.chain(fresh.iter().map(|(k, f)| (k, &f[..]))))
    }

    /// How much `user`'s mail takes in every mailbox (see `mailstore::quota`). Blocking.
    pub fn usage(&self, user: &UserName) -> Result<crate::mailstore::quota::Usage, StoreError> {
        let store = self.sm.store();
        let mut store = store.lock().expect("store lock");
        let mut indexes = Vec::new();
        for mailbox in store.mailboxes(user) {
            indexes.extend(store.mailbox_index(user, &mailbox)?);
        }
        Ok(crate::mailstore::quota::Usage::of(indexes))
    }

    /// Commit `op` through the group's log and return what applying it produced.
    pub async fn propose(&self, op_id: OpId, op: MailOp) -> Result<MailResponse, AccessError> {
        self.write(MailRequest { op_id, op }).await.map(|c| c.data)
    }

    /// Commit `req` through the group's log: as one entry, or as parts (see
    /// `mailstore::staging`) if it is large; a small single-user write may share its entry
    /// with other users' (see `batch`). Returns the log index that applied it and what
    /// applying it produced.
    pub async fn write(&self, req: MailRequest) -> Result<Committed, AccessError> {
        if req.op.grows_store() && !self.has_room() {
            return Err(AccessError::NoRoom);
        }
        match tokio::time::timeout(COMMIT_TIMEOUT, self.write_entries(req)).await {
            Ok(r) => r,
            Err(_) => Err(AccessError::Timeout(COMMIT_TIMEOUT)),
        }
    }

    async fn write_entries(&self, req: MailRequest) -> Result<Committed, AccessError> {
        let sent_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let mut entries = req.into_entries(rand::random(), i64::try_from(sent_ms).unwrap_or(i64::MAX));
        if let [single] = &entries[..] {
            if let Some(user) = single.batch_user() {
                return self.batcher.commit(entries.pop().expect("one entry"), user).await;
            }
        }
        let mut in_flight = VecDeque::with_capacity(PARTS_IN_FLIGHT_MAX);
        for entry in entries {
            // Handed to Raft in order, so the parts are in the log in order (a leader
            // change in between leaves a gap, which fails the stream).
            let rx = self.raft.client_write_ff(entry).await.map_err(|e| AccessError::Raft(e.to_string()))?;
            in_flight.push_back(rx);
            if in_flight.len() >= PARTS_IN_FLIGHT_MAX {
                let part = in_flight.pop_front().expect("in flight");
                self.settle_part(part.await)?;
            }
        }
        // Every entry but the last is a part; the last answers for the whole request.
        let last = in_flight.pop_back().expect("at least one entry");
        while let Some(part) = in_flight.pop_front() {
            self.settle_part(part.await)?;
        }
        self.settle(last.await)
    }

    /// The outcome of one committed entry.
    fn settle(&self, r: Result<ClientWriteResult, impl std::fmt::Display>) -> Result<Committed, AccessError> {
        match r {
            Ok(Ok(resp)) => Ok(Committed { index: resp.log_id.index, data: resp.data }),
            Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                Err(AccessError::NotLeader { group: self.name.clone(), leader: f.leader_id })
            }
            Ok(Err(e)) => Err(AccessError::Raft(e.to_string())),
            Err(e) => Err(AccessError::Raft(format!("raft stopped: {e}"))),
        }
    }

    /// A part other than the last must have been staged.
    fn settle_part(&self, r: Result<ClientWriteResult, impl std::fmt::Display>) -> Result<(), AccessError> {
        match self.settle(r)?.data {
            MailResponse::Staged => Ok(()),
            MailResponse::Rejected(why) => Err(AccessError::Raft(format!("large operation not staged: {why}"))),
            other => Err(AccessError::Raft(format!("unexpected answer to a part: {other:?}"))),
        }
    }

    /// The mailhost `user`'s mail moved to, if it did (sessions must end: `BYE`; logins are
    /// refused with the target named, so a front can go there at once).
    /// Why `user` is locked as compromised, if they are (their sessions end, their logins
    /// are refused).
    pub fn lock_of(&self, user: &UserName) -> Option<String> {
        self.sm.store().lock().expect("store lock").lock_of(user.as_str()).map(str::to_string)
    }

    /// Resolves once `user` is locked (waits on every applied entry).
    pub async fn until_locked(&self, user: &UserName) {
        let mut changes = self.sm.subscribe();
        while self.lock_of(user).is_none() {
            if changes.changed().await.is_err() {
                // The state machine is gone: this future never resolves; the session ends otherwise.
                std::future::pending::<()>().await;
            }
        }
    }

    /// `read`'s output, unless `user` is locked first (`None` then): how a session waiting
    /// for its client's next command ends at once when its account is locked.
    pub async fn unless_locked<T>(&self, user: &UserName, read: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            out = read => Some(out),
            () = self.until_locked(user) => None,
        }
    }

    pub fn moved_to(&self, user: &UserName) -> Option<String> {
        let store = self.sm.store();
        let store = store.lock().expect("store lock");
        match store.user_state(user.as_str()) {
            crate::mailstore::UserState::MovedTo(target) => Some(target),
            _ => None,
        }
    }

    /// The current leader's node id, if known.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }
}
