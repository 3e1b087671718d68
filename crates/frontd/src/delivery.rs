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

/// Longest wait for the replies that end the data (the group's commit), besides the time to
/// send the message: a leader silent that long is presumed paused or gone, and the same
/// transaction goes to the group again (the same bytes and key: the group's operation ids
/// make it one delivery however many times it arrives).
const COMMIT_WAIT: Duration = Duration::from_secs(8);
/// How long a delivery whose outcome is unknown (the body went out, no answer came) keeps
/// trying the group before the client hears `451`: a client told `451` retries, and a
/// message that did commit would then arrive twice. RFC 5321 §4.5.3.2.6 gives the client
/// 10 minutes for this answer.
const UNKNOWN_OUTCOME_PATIENCE: Duration = Duration::from_secs(120);

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

/// One message on its way to a group: the envelope sender, where it is filed, the
/// dot-stuffed body, and the `MAIL` parameters (` XMSGKEY=`: what makes a client's retry the
/// same delivery).
#[derive(Clone, Copy)]
struct Parcel<'a> {
    from: &'a str,
    folder: Folder,
    stuffed: &'a [u8],
    mail_params: &'a str,
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
        self.deliver_keyed(from, recipients, parts, folder, None).await
    }

    /// [`Router::deliver`] of a message a client may send again: with `key` (see
    /// `smtp::session::Envelope::retry_key`) the storage groups recognise the repeat.
    pub async fn deliver_keyed(
        &self,
        from: &str,
        recipients: &[String],
        parts: &[&[u8]],
        folder: Folder,
        key: Option<[u8; 16]>,
    ) -> Vec<String> {
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
        let mail_params = key.map(|k| format!(" XMSGKEY={}", hex(&k))).unwrap_or_default();
        let parcel = Parcel { from, folder, stuffed: &stuffed, mail_params: &mail_params };
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
        let data_end = COMMIT_WAIT + Duration::from_micros(parcel.stuffed.len() as u64);
        let reply = backend::GREETING_TIMEOUT;
        let deadlines = Deadlines { connect: backend::CONNECT_TIMEOUT, reply, data_end };
        let attempt_timeout = backend::CONNECT_TIMEOUT + 6 * reply + data_end;
        let unknown = std::sync::atomic::AtomicBool::new(false);
        let route = |timeout| {
            backend::with_leader(&self.cluster, group, Protocol::Lmtp, timeout, attempt_timeout, |member| {
                let (cluster, unknown) = (&self.cluster, &unknown);
                async move {
                    let addr = member.lmtp.clone().expect("candidates serve LMTP");
                    let transaction = lmtp_transaction(&addr, key, deadlines, group, (mailboxes, each), parcel);
                    let stalled = stalled_member(cluster, group, member.id, &addr);
                    let done = tokio::select! {
                        done = transaction => done,
                        () = stalled => {
                            unknown.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Attempt::Down(format!("{addr}: stopped answering mid-transaction"));
                        }
                    };
                    match done {
                        Ok(outcome) => outcome.map_hint(|a| cluster.member_by_address(group, Protocol::Lmtp, &a)),
                        Err(Failed { error, outcome_unknown }) => {
                            if outcome_unknown {
                                unknown.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            // Only silence makes a member suspect (see `Attempt::Failed`).
                            match error {
                                ClientError::Timeout { .. } => Attempt::Down(error.to_string()),
                                _ => Attempt::Failed(error.to_string()),
                            }
                        }
                    }
                }
            })
        };
        let mut result = route(self.route_timeout).await;
        if result.is_err() && unknown.load(std::sync::atomic::Ordering::Relaxed) {
            // Answering 451 now could make the client deliver a committed message again.
            tracing::warn!(group, "a delivery's outcome is unknown; waiting for the group to answer");
            result = route(UNKNOWN_OUTCOME_PATIENCE).await;
        }
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

/// How long a transaction may wait on its member before the member is checked: a commit
/// takes milliseconds, an election about two seconds.
const STALL_CHECK_AFTER: Duration = backend::GREETING_TIMEOUT;
/// How often a stalled member is checked again.
const STALL_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Resolves once member `id` of `group`, at LMTP address `addr`, that a transaction is
/// waiting on has gone silent: another attempt found it silent (it is suspect), or it does
/// not greet a new connection in time (its process is paused or gone while its kernel still
/// holds the connection open). Never resolves while it answers. A paused leader's
/// transactions are then retried elsewhere at once (their outcome unknown, so by retry
/// key) instead of after the whole data deadline; without it every client caught in DATA
/// with the paused leader waited 8 s.
async fn stalled_member(cluster: &crate::cluster::ClusterMap, group: &str, id: u64, addr: &str) {
    tokio::time::sleep(STALL_CHECK_AFTER).await;
    loop {
        if cluster.is_suspect(group, id) {
            return;
        }
        let probe = Deadlines::all(backend::GREETING_TIMEOUT);
        if let Err(ClientError::Timeout { .. }) = Connection::open(addr, probe).await {
            cluster.mark_down(group, id);
            return;
        }
        tokio::time::sleep(STALL_CHECK_EVERY).await;
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

/// Why an LMTP transaction gave no answer, and whether the message may have been
/// delivered all the same (it failed once the transaction had begun).
struct Failed {
    error: ClientError,
    outcome_unknown: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One LMTP transaction with the storage node at `addr`, as a cluster member.
async fn lmtp_transaction(
    addr: &str,
    key: &ClusterKey,
    deadlines: Deadlines,
    group: &str,
    (mailboxes, each): (&[String], &[String]),
    parcel: Parcel<'_>,
) -> Result<LmtpOutcome, Failed> {
    let before = |error| Failed { error, outcome_unknown: false };
    let (mut conn, _) = Connection::open(addr, deadlines).await.map_err(before)?;
    let extensions = conn.hello(Dialect::Lmtp, "frontd").await.map_err(before)?;
    // A node of an older version does not know the key: it would refuse the parameter.
    let keyed = extensions.iter().any(|e| e == "XMSGKEY");
    conn.authenticate_cluster(key).await.map_err(before)?;
    let rcpt_params = format!(" XMAILHOST={group}{}", parcel.folder.rcpt_param());
    let envelope = Envelope {
        from: parcel.from,
        mail_params: if keyed { parcel.mail_params } else { "" },
        recipients: mailboxes,
        rcpt_params: &rcpt_params,
        rcpt_params_each: each,
    };
    let t = conn
        .transaction(Dialect::Lmtp, &envelope, parcel.stuffed, is_not_leader)
        .await
        .map_err(|error| Failed { error, outcome_unknown: true })?;
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
