//! What a front reports to its cluster in batches over the admin protocol (its scanning
//! fates, the recipients it refused): one loop that sends each batch under one operation
//! id until the group commits it, so a retry after a failover is applied once, while what
//! is gathered meanwhile waits for the next batch. Never decides what is reported.

use std::sync::Arc;
use std::time::Duration;

use common::admin::{AdminReply, AdminRequest};

use crate::queue::QueueClient;

/// Where and how often a front reports.
#[derive(Clone)]
pub struct Reporter {
    pub admin: Arc<QueueClient>,
    pub group: String,
    /// This run of this front (its host name and a random suffix, so two runs of one front
    /// never share operation ids).
    pub front: String,
    pub every: Duration,
}

impl Reporter {
    /// Every `every`, forever: take a batch (`take`; nothing to do if empty) and send it as
    /// `request(group, op_id, batch)` until the group answers `Done`. `what` names it in logs.
    pub async fn run<T: Clone>(
        self,
        what: &'static str,
        mut take: impl FnMut() -> Vec<T>,
        request: impl Fn(String, [u8; 16], Vec<T>) -> AdminRequest,
    ) {
        let mut tick = tokio::time::interval(self.every);
        let mut batch: Option<([u8; 16], Vec<T>)> = None;
        for seq in 0u64.. {
            tick.tick().await;
            let (op_id, rows) = batch.get_or_insert_with(|| (batch_id(what, &self.front, seq), take()));
            if rows.is_empty() {
                batch = None;
                continue;
            }
            let group = &self.group;
            match self.admin.call(group, request(group.clone(), *op_id, rows.clone())).await {
                Ok(AdminReply::Done) => batch = None,
                Ok(other) => tracing::warn!(%group, what, reply = %other, "report refused; kept for the next one"),
                Err(e) => tracing::warn!(%group, what, error = %e, "report not sent yet"),
            }
        }
    }
}

/// A batch's operation id: what it reports, this front's run and its sequence number.
fn batch_id(what: &str, front: &str, seq: u64) -> [u8; 16] {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update((what.len() as u64).to_le_bytes())
        .chain_update(what.as_bytes())
        .chain_update(front.as_bytes())
        .chain_update(seq.to_le_bytes())
        .finalize();
    digest[..16].try_into().expect("16 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_differ_by_report_front_and_sequence() {
        let ids = [
            batch_id("fates", "mx1-1", 0),
            batch_id("fates", "mx1-1", 1),
            batch_id("refusals", "mx1-1", 0),
            batch_id("fates", "mx1-2", 0),
        ];
        for (k, a) in ids.iter().enumerate() {
            assert!(ids[k + 1..].iter().all(|b| a != b));
        }
        assert_eq!(batch_id("fates", "mx1-1", 0), ids[0], "a retry has the same id");
    }
}
