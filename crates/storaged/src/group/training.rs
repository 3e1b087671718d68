//! The leader's half of spam training: the intents the MOVE/COPY applies recorded
//! (`mailstore::training`) are read back after commit, each message is sent to rspamd's
//! controller (`/learnspam` or `/learnham`), and those done are retired by a committed
//! `TrainingDone`. A new leader finds what the old one left; rspamd itself refuses to learn
//! one message twice in one direction, so a retry after a failover teaches nothing twice.
//! It never blocks an IMAP reply: it runs beside them, a round a second.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::Group;
use crate::mailstore::{MailOp, MailRequest, MailboxName, OpId, UserName};

/// Intents carried out per round.
const ROUND_MAX: usize = 32;
const ROUND_EVERY: Duration = Duration::from_secs(1);
const LEARN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to teach.
#[derive(Clone)]
pub struct Teacher {
    pub controller: String,
    pub password: String,
}

/// While this node leads `group`, carry out its training intents.
pub async fn train_loop(group: Arc<Group>, teacher: Teacher) {
    let mut tick = tokio::time::interval(ROUND_EVERY);
    loop {
        tick.tick().await;
        if !group.is_leader(group.node_id) {
            continue;
        }
        let pending = group.sm.store().lock().expect("store lock").training_pending(ROUND_MAX);
        let mut done = Vec::new();
        for (id, intent) in pending {
            match learn(&group, &teacher, &intent).await {
                Ok(()) => done.push(id),
                Err(why) => {
                    tracing::warn!(group = %group.name, error = %why, "spam training paused; next round retries");
                    break;
                }
            }
        }
        if done.is_empty() {
            continue;
        }
        let ids: Vec<u8> = done.iter().flat_map(|id| id.to_le_bytes()).collect();
        let req =
            MailRequest { op_id: OpId::digest(&[b"training-done", &ids]), op: MailOp::TrainingDone { ids: done } };
        if let Err(e) = group.write(req).await {
            tracing::warn!(group = %group.name, error = %e, "training not recorded as done; it is retried");
        }
    }
}

/// Teach one message; `Ok` also when there is nothing to teach (the message is gone) or
/// rspamd knew it already.
async fn learn(
    group: &Arc<Group>,
    teacher: &Teacher,
    intent: &crate::mailstore::training::Intent,
) -> Result<(), String> {
    let (Ok(user), Ok(mailbox)) = (UserName::parse(&intent.user), MailboxName::parse(&intent.mailbox)) else {
        return Ok(());
    };
    let read = tokio::task::block_in_place(|| group.read_message(&user, &mailbox, intent.uid));
    let Some(message) = read.map_err(|e| e.to_string())? else { return Ok(()) };
    let path = if intent.spam { "/learnspam" } else { "/learnham" };
    let headers = [("password", teacher.password.clone())];
    let (status, body) =
        common::http::post(&teacher.controller, path, &headers, Bytes::from(message), LEARN_TIMEOUT, 64 * 1024)
            .await
            .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body);
    // 208: learned already (rspamd keeps what it learned per message).
    if status == 200 || status == 208 || text.contains("already learned") {
        tracing::info!(group = %group.name, user = %intent.user, spam = intent.spam, "spam filter trained");
        return Ok(());
    }
    Err(format!("rspamd controller answered {status}: {}", text.chars().take(200).collect::<String>()))
}
