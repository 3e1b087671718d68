//! Routing deliveries (the library the SMTP listeners use): each recipient is resolved in
//! the directory (primary or alternate address, any case, `user+tag@` as `user@`), checked
//! (status, `mailSizeMax`), grouped by `mailHost`, and delivered over LMTP to each group's
//! leader as the account's primary address, with the group named (`XMAILHOST=`) and what the
//! directory says of the account's delivery (`XUSER=`: quota, forwarding, auto-reply). The result
//! is one SMTP-style reply per recipient, in order: `250` only once the storage group has
//! committed the message. Never delivers to a group the directory did not name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::rpc_channel::ClusterKey;
use directory::{Account, AccountStatus, Directory, Purpose};
use smtp_client::{dot_stuff_parts, ClientError, Connection, Deadlines, Dialect, Envelope, Reply};

use crate::backend::{self, Attempt, RouteError};
use crate::cluster::{ClusterMap, Protocol};

/// Longest wait for a storage node's reply to one command.
const LMTP_REPLY_WAIT: Duration = Duration::from_secs(30);

/// Where a recipient's mail goes, or the reply that refuses it.
#[derive(Debug, Clone)]
pub enum Resolution {
    Local { account: Arc<Account>, group: String },
    Refused(String),
}

/// Where in a mailbox a delivery is filed (the scanning stage decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Folder {
    Inbox,
    /// The user's Junk folder (made with `\Junk` if missing).
    Junk,
    /// The user's quarantine.
    Quarantine,
}

impl Folder {
    /// The LMTP `RCPT` parameter naming it (none for INBOX).
    fn rcpt_param(self) -> &'static str {
        match self {
            Folder::Inbox => "",
            Folder::Junk => " XFOLDER=Junk",
            Folder::Quarantine => " XFOLDER=Quarantine",
        }
    }
}

/// One message on its way to a group: the envelope sender, where it is filed, and the
/// dot-stuffed body.
#[derive(Clone, Copy)]
struct Parcel<'a> {
    from: &'a str,
    folder: Folder,
    stuffed: &'a [u8],
}

/// Delivers messages to the storage groups.
#[derive(Debug)]
pub struct Router {
    directory: Directory,
    cluster: Arc<ClusterMap>,
    /// What the storage nodes' LMTP requires (`AUTH X-MAILSTORE-CLUSTER`); without it every
    /// delivery is a temporary failure.
    key: Option<ClusterKey>,
    route_timeout: Duration,
}

impl Router {
    pub fn new(
        directory: Directory,
        cluster: Arc<ClusterMap>,
        key: Option<ClusterKey>,
        route_timeout: Duration,
    ) -> Self {
        Self { directory, cluster, key, route_timeout }
    }

    /// Resolve one recipient address (RCPT time: unknown users get `550 5.1.1`).
    pub async fn resolve(&self, address: &str) -> Resolution {
        let refuse = |r: String| Resolution::Refused(r);
        let account = match self.directory.lookup(address, Purpose::Delivery).await {
            Ok(Some(a)) => a,
            Ok(None) => return refuse(format!("550 5.1.1 <{address}> no such user")),
            Err(e) => {
                tracing::warn!(address, error = %e, "recipient lookup failed");
                return refuse(format!("451 4.4.3 <{address}> directory unavailable, try again later"));
            }
        };
        match account.status {
            AccountStatus::Active | AccountStatus::NoAccess => {}
            AccountStatus::Disabled => {
                return refuse(format!("450 4.2.1 <{address}> mailbox disabled, try again later"))
            }
            AccountStatus::Deleted => return refuse(format!("550 5.2.1 <{address}> mailbox deleted")),
        }
        let Some(host) = account.mail_host.as_deref() else {
            tracing::error!(user = %account.mail, "directory entry has no mailHost; fix the directory");
            return refuse(format!("451 4.3.0 <{address}> mailbox temporarily unavailable"));
        };
        let Some(group) = self.cluster.group_name(host) else {
            tracing::error!(user = %account.mail, mail_host = host, "mailHost names no group of this cluster; fix the directory or the cluster map");
            return refuse(format!("451 4.3.0 <{address}> mailbox temporarily unavailable"));
        };
        Resolution::Local { account, group }
    }

    /// Deliver `message` (CRLF lines, not dot-stuffed) from `from` to `recipients`; one
    /// reply per recipient, in order. Addresses of one mailbox get one copy, filed in `folder`.
    /// The message is `parts` one after the other (a header block and the rest, say): they
    /// are joined only in the dot-stuffed copy the LMTP client sends.
    pub async fn deliver(&self, from: &str, recipients: &[String], parts: &[&[u8]], folder: Folder) -> Vec<String> {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let mut replies: Vec<Option<String>> = vec![None; recipients.len()];
        // group → mailbox → the recipient indexes it answers for.
        let mut by_group: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
        // mailbox → what its storage node must know of it (`XUSER=`; empty when nothing).
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (i, address) in recipients.iter().enumerate() {
            match self.resolve(address).await {
                Resolution::Refused(r) => replies[i] = Some(r),
                Resolution::Local { account, .. }
                    if account.message_size_max_bytes.is_some_and(|max| size as u64 > max) =>
                {
                    replies[i] = Some(format!("552 5.3.4 <{address}> message too big for this recipient"));
                }
                Resolution::Local { account, group } => {
                    let rules = account.recipient_rules();
                    let param = if rules.is_default() { String::new() } else { format!(" XUSER={}", rules.to_param()) };
                    params.insert(account.mail.clone(), param);
                    by_group.entry(group).or_default().entry(account.mail.clone()).or_default().push(i);
                }
            }
        }
        let stuffed = dot_stuff_parts(parts);
        let parcel = Parcel { from, folder, stuffed: &stuffed };
        // Mailboxes whose group said they moved (the directory answer was stale): tried once
        // more on the group named, so the mail does not wait for a retry.
        let mut moved: BTreeMap<String, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
        for (group, mailboxes) in by_group {
            let boxes: Vec<String> = mailboxes.keys().cloned().collect();
            let answers = self.deliver_to_group(&group, &boxes, &params, parcel).await;
            for (mailbox, answer) in boxes.iter().zip(answers) {
                if let Some(target) = self.moved_elsewhere(&answer, &group) {
                    moved.entry(target).or_default().insert(mailbox.clone(), mailboxes[mailbox].clone());
                }
                for i in &mailboxes[mailbox] {
                    replies[*i] = Some(answer.clone());
                }
            }
        }
        for (group, mailboxes) in moved {
            tracing::info!(group, mailboxes = mailboxes.len(), "mailboxes moved; delivering to their new mailhost");
            let boxes: Vec<String> = mailboxes.keys().cloned().collect();
            let answers = self.deliver_to_group(&group, &boxes, &params, parcel).await;
            for (mailbox, answer) in boxes.iter().zip(answers) {
                for i in &mailboxes[mailbox] {
                    replies[*i] = Some(answer.clone());
                }
            }
        }
        replies.into_iter().map(|r| r.expect("every recipient answered")).collect()
    }

    /// The group a temporary "moved" refusal from `group` names, if it is another group of
    /// this cluster.
    fn moved_elsewhere(&self, answer: &str, group: &str) -> Option<String> {
        if !answer.starts_with("451") {
            return None;
        }
        let target = self.cluster.group_name(common::admin::moved_target(answer)?)?;
        (target != group).then_some(target)
    }

    /// One LMTP transaction on `group`'s leader; one reply per mailbox (`params`: each
    /// mailbox's own `RCPT` parameters).
    async fn deliver_to_group(
        &self,
        group: &str,
        mailboxes: &[String],
        params: &BTreeMap<String, String>,
        parcel: Parcel<'_>,
    ) -> Vec<String> {
        let each: Vec<String> = mailboxes.iter().map(|m| params.get(m).cloned().unwrap_or_default()).collect();
        let each = each.as_slice();
        let Some(key) = &self.key else {
            tracing::error!(
                group,
                "no cluster key: the storage nodes' LMTP cannot be used; set [backend] cluster_key_file"
            );
            return vec![
                format!("451 4.3.0 mailhost {group} temporarily unavailable, try again later");
                mailboxes.len()
            ];
        };
        // Time to move the message at a modest 1 MB/s, plus the commit.
        let attempt_timeout = LMTP_REPLY_WAIT + Duration::from_micros(parcel.stuffed.len() as u64);
        let deadlines =
            Deadlines { connect: backend::CONNECT_TIMEOUT, reply: LMTP_REPLY_WAIT, data_end: attempt_timeout };
        let result =
            backend::with_leader(&self.cluster, group, Protocol::Lmtp, self.route_timeout, attempt_timeout, |member| {
                let cluster = &self.cluster;
                async move {
                    let addr = member.lmtp.clone().expect("candidates serve LMTP");
                    match lmtp_transaction(&addr, key, deadlines, group, (mailboxes, each), parcel).await {
                        Ok(outcome) => outcome.map_hint(|a| cluster.member_by_address(group, Protocol::Lmtp, &a)),
                        Err(e) => Attempt::Down(e.to_string()),
                    }
                }
            })
            .await;
        match result {
            Ok(replies) => replies,
            Err(e) => {
                if matches!(e, RouteError::UnknownGroup(_) | RouteError::Refused(_)) {
                    tracing::error!(group, error = %e, "delivery refused by the cluster map or the storage node");
                }
                let text = format!("451 4.3.0 mailhost {group} temporarily unavailable, try again later");
                vec![text; mailboxes.len()]
            }
        }
    }
}

/// What an LMTP transaction gave before it is mapped onto [`Attempt`].
enum LmtpOutcome {
    Done(Vec<String>),
    /// `451 ... not the leader ...; leader is ADDR` (the address, if named).
    NotLeader(Option<String>),
}

impl LmtpOutcome {
    fn map_hint(self, id_of: impl Fn(String) -> Option<u64>) -> Attempt<Vec<String>> {
        match self {
            Self::Done(r) => Attempt::Ok(r),
            Self::NotLeader(addr) => Attempt::NotLeader(addr.and_then(id_of)),
        }
    }
}

/// Whether a storage node's `RCPT` reply says it does not lead the group.
fn is_not_leader(reply: &Reply) -> bool {
    reply.code == 451 && reply.message.contains("not the leader")
}

/// `leader is ADDR` in a not-the-leader reply.
fn leader_address(reply: &str) -> Option<String> {
    let rest = &reply[reply.find("leader is ")? + "leader is ".len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ';').collect();
    (!addr.is_empty()).then_some(addr)
}

/// One LMTP transaction with the storage node at `addr`, as a cluster member.
async fn lmtp_transaction(
    addr: &str,
    key: &ClusterKey,
    deadlines: Deadlines,
    group: &str,
    (mailboxes, each): (&[String], &[String]),
    parcel: Parcel<'_>,
) -> Result<LmtpOutcome, ClientError> {
    let (mut conn, _) = Connection::open(addr, deadlines).await?;
    conn.hello(Dialect::Lmtp, "frontd").await?;
    conn.authenticate_cluster(key).await?;
    let rcpt_params = format!(" XMAILHOST={group}{}", parcel.folder.rcpt_param());
    let envelope = Envelope {
        from: parcel.from,
        mail_params: "",
        recipients: mailboxes,
        rcpt_params: &rcpt_params,
        rcpt_params_each: each,
    };
    let t = conn.transaction(Dialect::Lmtp, &envelope, parcel.stuffed, is_not_leader).await?;
    conn.quit().await;
    if t.stopped {
        let refusal = t.rcpts.last().expect("stopped at a RCPT");
        return Ok(LmtpOutcome::NotLeader(leader_address(&refusal.message)));
    }
    Ok(LmtpOutcome::Done(t.per_recipient(Dialect::Lmtp).iter().map(Reply::last_line).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_replies_name_the_leader() {
        let r = "451 4.3.0 <a@b> not the leader for mailhost hermes; leader is 127.0.0.1:2401";
        assert_eq!(leader_address(r).as_deref(), Some("127.0.0.1:2401"));
        assert_eq!(leader_address("451 4.3.0 <a@b> not the leader; no leader elected yet, retry shortly"), None);
    }
}
