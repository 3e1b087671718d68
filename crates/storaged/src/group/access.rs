//! What protocol sessions (POP3, IMAP) do with a group: read its store on the leader and
//! propose operations through its Raft log. A mutation is reported done only once it is
//! committed and applied; reads never block the apply path for longer than a lookup.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Group;
use crate::mailstore::index::MailboxIndex;
use crate::mailstore::{MailOp, MailRequest, MailResponse, MailboxName, OpId, StoreError, UserName};

/// Longest wait for an operation to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
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
    #[error("operation not committed: {0}")]
    Raft(String),
    #[error("operation not committed within {0:?}")]
    Timeout(Duration),
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

    fn message_file(&self, user: &UserName, mailbox: &MailboxName, uid: u32) -> Result<Option<PathBuf>, StoreError> {
        let store = self.sm.store();
        let mut store = store.lock().expect("store lock");
        store.message_file(user, mailbox, uid)
    }

    /// The bytes of message `uid`, or `None` if it was expunged. Blocking; the file is
    /// read without holding the store.
    pub fn read_message(
        &self,
        user: &UserName,
        mailbox: &MailboxName,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, AccessError> {
        for _ in 0..READ_ATTEMPTS_MAX {
            let Some(path) = self.message_file(user, mailbox, uid)? else { return Ok(None) };
            match std::fs::read(&path) {
                Ok(bytes) => return Ok(Some(bytes)),
                // Renamed by a flag change after the lookup: look it up again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(std::io::Error::other(format!("message {uid} keeps moving")).into())
    }

    /// Commit `op` through the group's log and return what applying it produced.
    pub async fn propose(&self, op_id: OpId, op: MailOp) -> Result<MailResponse, AccessError> {
        let req = MailRequest { op_id, op };
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(req)).await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => match e.forward_to_leader() {
                Some(f) => Err(AccessError::NotLeader { group: self.name.clone(), leader: f.leader_id }),
                None => Err(AccessError::Raft(e.to_string())),
            },
            Err(_) => Err(AccessError::Timeout(COMMIT_TIMEOUT)),
        }
    }

    /// The current leader's node id, if known.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }
}
