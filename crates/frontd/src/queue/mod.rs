//! The front's side of the replicated outbound queue: put messages on a group's queue
//! (the first queue group whose leader commits it), and the admin calls the runner and
//! `mailctl` make. Every call goes to the group's leader, found like logins are
//! ([`backend::with_leader`]); a retried enqueue carries the same operation id, so a
//! message is queued once even when an answer is lost.

pub mod bounce;
pub mod runner;

use std::sync::Arc;
use std::time::Duration;

use common::admin::{AdminClient, AdminReply, AdminRequest};
use common::rpc_channel::ClusterKey;

use crate::backend::{self, Attempt};
use crate::cluster::{ClusterMap, Protocol};

/// Why a queue call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("queue on {group}: {reason}")]
    Unavailable { group: String, reason: String },
    #[error("queue on {group} refused: {reason}")]
    Refused { group: String, reason: String },
}

/// Talks to the queues of the storage groups.
pub struct QueueClient {
    cluster: Arc<ClusterMap>,
    key: ClusterKey,
    /// Queue groups in order of preference.
    groups: Vec<String>,
    route_timeout: Duration,
}

impl std::fmt::Debug for QueueClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueClient").field("groups", &self.groups).finish_non_exhaustive()
    }
}

impl QueueClient {
    pub fn new(cluster: Arc<ClusterMap>, key: ClusterKey, groups: Vec<String>, route_timeout: Duration) -> Self {
        Self { cluster, key, groups, route_timeout }
    }

    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Send `request` to `group`'s leader; its answer (never `NotLeader`/`NoSuchGroup`).
    pub async fn call(&self, group: &str, request: AdminRequest) -> Result<AdminReply, QueueError> {
        let size = match &request {
            AdminRequest::Enqueue { message, .. } => message.len(),
            AdminRequest::Propose { op, .. } => op.len(),
            _ => 0,
        };
        let attempt_timeout = match &request {
            // A new node catches up (the node gives up after 9 minutes).
            AdminRequest::AddNode { .. } => Duration::from_secs(600),
            // Time to move the message at a modest 1 MB/s, plus the commit.
            _ => Duration::from_secs(30) + Duration::from_micros(size as u64),
        };
        let request = &request;
        let result = backend::with_leader(
            &self.cluster,
            group,
            Protocol::Admin,
            self.route_timeout,
            attempt_timeout,
            |member| {
                let key = &self.key;
                async move {
                    let addr = member.admin.clone().expect("candidates serve the admin protocol");
                    let mut client = match AdminClient::connect(&addr, key, backend::CONNECT_TIMEOUT).await {
                        Ok(c) => c,
                        Err(e) => return Attempt::Down(e.to_string()),
                    };
                    match client.call(request, attempt_timeout).await {
                        Ok(AdminReply::NotLeader { leader }) => Attempt::NotLeader(leader),
                        Ok(AdminReply::NoSuchGroup) => {
                            Attempt::Refused(format!("node {} does not serve it", member.id))
                        }
                        Ok(AdminReply::Failed(why)) => Attempt::Failed(why),
                        Ok(reply) => Attempt::Ok(reply),
                        Err(e) => Attempt::Down(e.to_string()),
                    }
                }
            },
        )
        .await;
        result.map_err(|e| QueueError::Unavailable { group: group.to_string(), reason: e.to_string() })
    }

    /// Queue a message on the first group that takes it; `(group, id)`.
    pub async fn enqueue(
        &self,
        sender: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<(String, u64), QueueError> {
        self.enqueue_keyed(sender, recipients, message, None).await
    }

    /// [`QueueClient::enqueue`] of a message a client may send again: with `key` (see
    /// `smtp::session::Envelope::retry_key`) a repeat that reaches the same queue group is
    /// recognised there and queued once.
    pub async fn enqueue_keyed(
        &self,
        sender: &str,
        recipients: &[String],
        message: &[u8],
        key: Option<[u8; 16]>,
    ) -> Result<(String, u64), QueueError> {
        let op_id: [u8; 16] = match key {
            Some(key) => {
                use sha2::Digest;
                let mut hash = sha2::Sha256::new();
                hash.update(b"queue-retry-key");
                hash.update(key);
                for r in recipients {
                    hash.update((r.len() as u64).to_le_bytes());
                    hash.update(r.as_bytes());
                }
                hash.finalize()[..16].try_into().expect("16 bytes")
            }
            None => rand::random(),
        };
        let mut last = QueueError::Unavailable { group: String::new(), reason: "no queue group".into() };
        for group in &self.groups {
            let request = AdminRequest::Enqueue {
                group: group.clone(),
                op_id,
                sender: sender.to_string(),
                recipients: recipients.to_vec(),
                message: message.to_vec(),
                key,
            };
            match self.call(group, request).await {
                Ok(AdminReply::Queued { id }) => return Ok((group.clone(), id)),
                Ok(AdminReply::Refused(reason)) => last = QueueError::Refused { group: group.clone(), reason },
                Ok(other) => last = QueueError::Unavailable { group: group.clone(), reason: other.to_string() },
                Err(e) => last = e,
            }
            tracing::warn!(group, error = %last, "queue unavailable; trying the next queue group");
        }
        Err(last)
    }
}
