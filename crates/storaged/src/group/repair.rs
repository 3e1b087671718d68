//! Repair of a replica's damaged message file from a peer: when a read finds a file that
//! fails its checksum (or the disk returns EIO for it), a background task asks the group's
//! other members for their copy over the authenticated Raft RPC channel, checks the bytes
//! against this replica's own index checksum, and replaces the file atomically (a new file
//! in the Maildir's `tmp/`, fsynced, renamed over the bad one). Until then the message is
//! refused, never served.
//!
//! This module must never write bytes that fail the checksum, and never touches a message
//! that is not damaged. One repair per message at a time; at most [`REPAIRS_MAX`] at once.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::rpc_channel::Channel;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::{Group, MailConfig};
use crate::mailstore::{MailboxName, UserName};
use crate::raft::rpc::{self, GroupReply, GroupRequest, RaftReply, RaftRequest, MAX_FRAME_BYTES};

/// Repairs running at once on one group replica (a dying disk must not start thousands).
const REPAIRS_MAX: usize = 16;
/// Longest one peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a repair did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("message expunged")]
    Expunged,
    #[error("the message predates checksums: no copy can be verified")]
    Unverifiable,
    #[error("the message changed during the repair")]
    Changed,
    /// Every peer was asked; the last one's problem.
    #[error("no peer has a good copy ({0})")]
    NoGoodCopy(String),
    #[error("store: {0}")]
    Store(#[from] crate::mailstore::StoreError),
    #[error("writing the repaired file: {0}")]
    Io(#[from] std::io::Error),
    #[error("message file outside a Maildir")]
    OutsideMaildir,
    #[error("repair task failed: {0}")]
    Task(String),
}

/// Why one peer gave no copy.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("channel: {0}")]
    Frame(#[from] common::frame::FrameError),
    #[error("codec: {0}")]
    Codec(#[from] rpc::CodecError),
    /// The peer answered with its own error.
    #[error("{0}")]
    Remote(String),
    #[error("unexpected reply {0}")]
    Unexpected(String),
}

/// The messages being repaired: (user, mailbox, uid).
#[derive(Default)]
pub struct Repairs(Mutex<HashSet<(String, String, u32)>>);

impl Group {
    /// Start repairing message `uid` from a peer, unless that is already under way.
    pub(crate) fn repair_later(self: &Arc<Self>, user: &UserName, mailbox: &MailboxName, uid: u32) {
        let key = (user.to_string(), mailbox.to_string(), uid);
        {
            let mut running = self.repairs.0.lock().expect("repairs lock");
            if running.len() >= REPAIRS_MAX || !running.insert(key.clone()) {
                return;
            }
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let group = self.clone();
        let (user, mailbox) = (user.clone(), mailbox.clone());
        rt.spawn(async move {
            match group.repair(&user, &mailbox, uid).await {
                Ok(node) => tracing::warn!(group = %group.name, %user, %mailbox, uid, from = node, "message file repaired from a peer's copy"),
                Err(why) => tracing::error!(group = %group.name, %user, %mailbox, uid, error = %why, "message file could not be repaired"),
            }
            group.repairs.0.lock().expect("repairs lock").remove(&key);
        });
    }

    /// Fetch a good copy from some peer and put it in place; the peer's id.
    async fn repair(&self, user: &UserName, mailbox: &MailboxName, uid: u32) -> Result<u64, RepairError> {
        let want = self.message_file(user, mailbox, uid)?.ok_or(RepairError::Expunged)?.crc32c;
        if want == 0 {
            return Err(RepairError::Unverifiable);
        }
        let mut last = String::from("no peers");
        for (id, member) in self.members.iter().filter(|(id, _)| **id != self.node_id) {
            let bytes = match tokio::time::timeout(PEER_TIMEOUT, self.fetch(&member.raft, user, mailbox, uid)).await {
                Ok(Ok(Some(bytes))) => bytes,
                Ok(Ok(None)) => {
                    last = format!("node {id} does not hold it");
                    continue;
                }
                Ok(Err(e)) => {
                    last = format!("node {id}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("node {id} timed out");
                    continue;
                }
            };
            if crc32c::crc32c(&bytes) != want {
                last = format!("node {id}'s copy does not match this replica's checksum");
                continue;
            }
            let (user, mailbox) = (user.clone(), mailbox.clone());
            let this = self.sm.clone();
            let placed = tokio::task::spawn_blocking(move || place(&this, &user, &mailbox, uid, &bytes, want))
                .await
                .map_err(|e| RepairError::Task(e.to_string()))?;
            return placed.map(|()| *id);
        }
        Err(RepairError::NoGoodCopy(last))
    }

    /// Ask the member at `raft` for its copy.
    async fn fetch(
        &self,
        raft: &str,
        user: &UserName,
        mailbox: &MailboxName,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, PeerError> {
        let stream = TcpStream::connect(raft).await?;
        let mut stream = BufReader::new(stream);
        let mut ch = Channel::connect(&mut stream, &self.key).await?;
        let request: GroupRequest<MailConfig> = GroupRequest {
            group: self.name.clone(),
            from: self.node_id,
            session: rand::random(),
            seq: 1,
            request: RaftRequest::ReadMessage { user: user.to_string(), mailbox: mailbox.to_string(), uid },
        };
        ch.write(&mut stream, &rpc::encode(&request)?).await?;
        let reply = ch.read(&mut stream, MAX_FRAME_BYTES).await?;
        match rpc::decode::<GroupReply<MailConfig>>(&reply)?.reply {
            // The wire carries the peer's error as text (nodes of other versions agree on it).
            RaftReply::Message(m) => m.map(|m| m.map(serde_bytes::ByteBuf::into_vec)).map_err(PeerError::Remote),
            other => Err(PeerError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// Replace the file of message `uid` by `bytes` (already checked against `crc32c`). The
/// new file is written and synced first; the rename happens under the store lock, which
/// applies hold too, so a flag change can neither rename the file in between nor be undone,
/// and with the tree held (`MailStateMachine::hold_tree`), so no snapshot settles across it.
fn place(
    sm: &super::MailStateMachine,
    user: &UserName,
    mailbox: &MailboxName,
    uid: u32,
    bytes: &[u8],
    crc32c: u32,
) -> Result<(), RepairError> {
    let store = sm.store();
    let lookup = |store: &mut crate::mailstore::Store| match store.message_file(user, mailbox, uid)? {
        Some(file) if file.crc32c == crc32c => Ok(file.path),
        Some(_) => Err(RepairError::Changed),
        None => Err(RepairError::Expunged),
    };
    let path = lookup(&mut store.lock().expect("store lock"))?;
    let maildir = path.parent().and_then(|d| d.parent()).ok_or(RepairError::OutsideMaildir)?;
    let tmp = maildir.join("tmp").join(format!("repair.{uid}.{}", rand::random::<u64>()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_data()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    let _writing = sm.hold_tree();
    let mut store = store.lock().expect("store lock");
    let renamed = lookup(&mut store).and_then(|path| Ok(std::fs::rename(&tmp, path)?));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}
