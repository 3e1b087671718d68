//! What an IMAP session needs from the mail store, as a trait: reads of the user's group
//! and proposals through its log. The server implements it over a [`Group`] (reads on the
//! leader, writes through Raft); tests implement it over a plain [`Store`].

use std::sync::{Arc, Mutex};

use crate::group::access::AccessError;
use crate::group::Group;
use crate::mailstore::index::{MailboxIndex, MessageMeta};
use crate::mailstore::metadata::Entries;
use crate::mailstore::{MailOp, MailResponse, MailboxName, OpId, Store, UserName};

/// Why a read or a proposal through the backend failed, as the session must answer it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// This node no longer leads the user's group: the session must end so the client
    /// reconnects (through the front) to the new leader.
    #[error("this node no longer leads the mailhost")]
    NotLeader { leader: Option<u64> },
    /// The message's stored copy is damaged here (and is being repaired from a peer).
    #[error("message UID {uid} cannot be read on this replica")]
    Corrupt { uid: u32 },
    /// A transient failure (a commit that timed out, a store I/O error): try again.
    #[error("{0}")]
    Unavailable(String),
    /// The group's disks are below their reserve: nothing that grows the store is taken.
    #[error("the mail system's storage is full; try again later")]
    NoRoom,
}

impl From<AccessError> for BackendError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotLeader { leader, .. } => Self::NotLeader { leader },
            AccessError::Corrupt { uid, .. } => Self::Corrupt { uid },
            AccessError::NoRoom => Self::NoRoom,
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<crate::mailstore::StoreError> for BackendError {
    fn from(e: crate::mailstore::StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// The store as one user's session sees it.
#[allow(async_fn_in_trait)]
pub trait Backend {
    fn mailboxes(&self, user: &UserName) -> Vec<MailboxName>;
    fn subscriptions(&self, user: &UserName) -> Vec<String>;
    fn index(&self, user: &UserName, mailbox: &MailboxName) -> Result<Option<Arc<MailboxIndex>>, BackendError>;
    fn message(&self, user: &UserName, mailbox: &MailboxName, uid: u32) -> Result<Option<Vec<u8>>, BackendError>;
    /// The header of message `meta` (through the blank line that ends it): what SEARCH on
    /// header fields and FETCH of ENVELOPE or `BODY[HEADER…]` read.
    fn header(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        meta: &MessageMeta,
    ) -> Result<Option<Arc<[u8]>>, BackendError> {
        let bytes = self.message(user, mailbox, meta.uid)?;
        Ok(bytes.map(|b| Arc::from(super::header::split(&b).0)))
    }
    /// The METADATA entries of `mailbox` (the user's server when empty); `None` if the
    /// mailbox does not exist.
    fn metadata(&self, user: &UserName, mailbox: &str) -> Result<Option<Entries>, BackendError>;
    /// The header fields that SORT and THREAD read ([`super::header::SORT_FIELDS`]) of each
    /// of `metas`, messages of `idx`, as headers: any field of them reads the same as in the
    /// whole header. `None` for a message expunged meanwhile.
    fn sort_fields(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        _idx: &MailboxIndex,
        metas: &[&MessageMeta],
    ) -> Result<Vec<Option<Arc<[u8]>>>, BackendError> {
        let cut = |h: Arc<[u8]>| Arc::from(super::header::only_fields(&h, &super::header::SORT_FIELDS));
        metas.iter().map(|meta| Ok(self.header(user, mailbox, meta)?.map(cut))).collect()
    }
    /// Commit `op`; `Err` means it was not (or may not have been) applied.
    async fn propose(&self, op_id: OpId, op: MailOp) -> Result<MailResponse, BackendError>;
    /// The first UID of `mailbox` no session had claimed as `\Recent`; with `take`, the
    /// caller claims everything in `index` (see [`super::recent`]).
    fn claim_recent(&self, user: &UserName, mailbox: &MailboxName, index: &MailboxIndex, take: bool) -> u32;
}

/// The server's backend: a group this node leads.
pub struct GroupBackend(pub Arc<Group>);

impl Backend for GroupBackend {
    fn mailboxes(&self, user: &UserName) -> Vec<MailboxName> {
        let store = self.0.sm.store();
        let store = store.lock().expect("store lock");
        store.mailboxes(user)
    }

    fn subscriptions(&self, user: &UserName) -> Vec<String> {
        let store = self.0.sm.store();
        let store = store.lock().expect("store lock");
        store.subscriptions(user)
    }

    fn metadata(&self, user: &UserName, mailbox: &str) -> Result<Option<Entries>, BackendError> {
        let store = self.0.sm.store();
        let mut store = store.lock().expect("store lock");
        Ok(store.metadata(user, mailbox)?)
    }
    fn index(&self, user: &UserName, mailbox: &MailboxName) -> Result<Option<Arc<MailboxIndex>>, BackendError> {
        // An Arc clone under the store lock: cheaper than handing the worker thread off.
        Ok(self.0.mailbox_index(user, mailbox)?)
    }

    fn message(&self, user: &UserName, mailbox: &MailboxName, uid: u32) -> Result<Option<Vec<u8>>, BackendError> {
        // Message files are small and usually in the page cache; a thread hand-off per read
        // (block_in_place) cost more than the read itself under load.
        Ok(self.0.read_message(user, mailbox, uid)?)
    }

    fn header(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        meta: &MessageMeta,
    ) -> Result<Option<Arc<[u8]>>, BackendError> {
        Ok(self.0.read_header(user, mailbox, meta)?)
    }

    fn sort_fields(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        idx: &MailboxIndex,
        metas: &[&MessageMeta],
    ) -> Result<Vec<Option<Arc<[u8]>>>, BackendError> {
        Ok(self.0.read_sort_fields(user, mailbox, idx, metas)?)
    }
    async fn propose(&self, op_id: OpId, op: MailOp) -> Result<MailResponse, BackendError> {
        Ok(self.0.propose(op_id, op).await?)
    }

    fn claim_recent(&self, user: &UserName, mailbox: &MailboxName, index: &MailboxIndex, take: bool) -> u32 {
        self.0.recent.claim(user, mailbox, index, take)
    }
}

/// A backend over a store without replication, applying proposals at once (tests, tools).
/// Clones share the store, as sessions of one node share its group.
#[derive(Clone)]
pub struct StoreBackend {
    pub store: Arc<Mutex<Store>>,
    next_index: Arc<Mutex<u64>>,
    recent: Arc<super::recent::RecentClaims>,
}

impl StoreBackend {
    pub fn new(store: Store) -> Self {
        Self { store: Arc::new(Mutex::new(store)), next_index: Arc::new(Mutex::new(1)), recent: Default::default() }
    }
}

impl Backend for StoreBackend {
    fn mailboxes(&self, user: &UserName) -> Vec<MailboxName> {
        self.store.lock().expect("store").mailboxes(user)
    }

    fn subscriptions(&self, user: &UserName) -> Vec<String> {
        self.store.lock().expect("store").subscriptions(user)
    }

    fn index(&self, user: &UserName, mailbox: &MailboxName) -> Result<Option<Arc<MailboxIndex>>, BackendError> {
        Ok(self.store.lock().expect("store").mailbox_index(user, mailbox)?)
    }
    fn metadata(&self, user: &UserName, mailbox: &str) -> Result<Option<Entries>, BackendError> {
        Ok(self.store.lock().expect("store").metadata(user, mailbox)?)
    }

    fn message(&self, user: &UserName, mailbox: &MailboxName, uid: u32) -> Result<Option<Vec<u8>>, BackendError> {
        let file = self.store.lock().expect("store").message_file(user, mailbox, uid)?;
        file.map(|f| f.read().map_err(|_| BackendError::Corrupt { uid })).transpose()
    }

    async fn propose(&self, op_id: OpId, op: MailOp) -> Result<MailResponse, BackendError> {
        let index = {
            let mut n = self.next_index.lock().expect("index");
            *n += 1;
            *n
        };
        let mut store = self.store.lock().expect("store");
        let resp = store.apply(index, &crate::mailstore::MailRequest { op_id, op })?;
        store.flush_files()?;
        Ok(resp)
    }

    fn claim_recent(&self, user: &UserName, mailbox: &MailboxName, index: &MailboxIndex, take: bool) -> u32 {
        self.recent.claim(user, mailbox, index, take)
    }
}
