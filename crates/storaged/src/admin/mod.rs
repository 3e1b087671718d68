//! The admin listener: answers [`AdminRequest`]s from front nodes and `mailctl` over a
//! cluster-key channel — node and group status, the outbound queue of each group, the
//! reads and operations of user moves, and membership changes (`membership`).
//! Queue changes go through the group's Raft log like mail; this module never touches the
//! store's files except to read a queued body. Requests are answered one at a time per
//! connection; a frame that fails authentication or decoding closes the connection.

use common::clock::now_s;
use std::path::Path;
use std::sync::Arc;

use common::admin::{
    self, AdminReply, AdminRequest, GroupStatus, MailboxSummary, MessageSummary, NodeStatus, UserMail,
};
use common::frame::FrameError;
use common::rpc_channel::{Channel, ClusterKey};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use crate::group::access::AccessError;
use crate::group::Group;
use crate::mailstore::{MailOp, MailResponse, MailboxName, OpId, UserName, UserState};
use crate::node::Node;

mod membership;

/// Admin connections served at once; more wait in the listen backlog.
const CONNECTIONS_MAX: usize = 64;
/// Directory entries a disk-usage walk visits at most (status stays cheap on huge groups).
const DU_ENTRIES_MAX: usize = 1_000_000;

/// Serve admin requests on `listener` until it fails.
pub async fn serve(listener: TcpListener, node: Arc<Node>, key: ClusterKey) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("semaphore never closed");
        let (stream, peer) = listener.accept().await?;
        let node = node.clone();
        let key = key.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(stream, &node, &key).await {
                tracing::debug!(%peer, error = %e, "admin connection ended");
            }
            drop(permit);
        });
    }
}

async fn serve_conn(stream: TcpStream, node: &Node, key: &ClusterKey) -> Result<(), FrameError> {
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let mut ch = Channel::accept(&mut stream, key).await?;
    loop {
        let body = match ch.read(&mut stream, admin::FRAME_MAX_BYTES).await {
            Ok(b) => b,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let request: AdminRequest = admin::decode(&body)
            .map_err(|e| FrameError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let reply = handle(node, request).await;
        ch.write(&mut stream, &admin::encode(&reply)).await?;
    }
}

/// `user`'s login history on this replica.
fn logins(group: &Group, user: &str) -> AdminReply {
    let Ok(user) = UserName::parse(user) else { return AdminReply::Refused("not a user name".into()) };
    let dir = group.sm.store().lock().expect("store lock").layout().user_dir(&user);
    match crate::mailstore::logins::load(&dir) {
        Ok(history) => AdminReply::Logins(history),
        Err(e) => AdminReply::Failed(format!("login history: {e}")),
    }
}

/// Kept messages listed at most per answer.
const KEPT_LIST_MAX: usize = 100_000;

/// `user`'s kept mail on this replica, with each message's Message-ID and Subject.
async fn kept(group: &Group, user: String) -> AdminReply {
    let Ok(user) = UserName::parse(&user) else { return AdminReply::Refused("not a user name".into()) };
    let user_dir = group.sm.store().lock().expect("store lock").layout().user_dir(&user);
    let listed = tokio::task::spawn_blocking(move || crate::mailstore::kept::list(&user_dir, KEPT_LIST_MAX)).await;
    match listed {
        Ok(Ok((items, truncated))) => AdminReply::Kept { items, truncated },
        Ok(Err(e)) => AdminReply::Failed(format!("kept mail: {e}")),
        Err(e) => AdminReply::Failed(format!("kept mail: {e}")),
    }
}

/// Kept messages `items` of `user` with their bytes, stopping after [`FETCH_BYTES_MAX`].
async fn kept_files(group: &Group, user: String, items: Vec<(String, String)>) -> AdminReply {
    let Ok(user) = UserName::parse(&user) else { return AdminReply::Refused("not a user name".into()) };
    let user_dir = group.sm.store().lock().expect("store lock").layout().user_dir(&user);
    let read =
        tokio::task::spawn_blocking(move || crate::mailstore::kept::read_files(&user_dir, &items, FETCH_BYTES_MAX));
    match read.await {
        Ok(Ok(files)) => AdminReply::KeptFiles(files),
        Ok(Err(e)) => AdminReply::Failed(format!("kept mail: {e}")),
        Err(e) => AdminReply::Failed(format!("kept mail: {e}")),
    }
}

/// The tracking records of every group on this node that `query` selects.
async fn trace(node: &Node, query: common::tracking::TraceQuery) -> AdminReply {
    let dirs: Vec<_> = node.all_groups().iter().map(|g| g.sm.tracking_dir()).collect();
    let searched = tokio::task::spawn_blocking(move || {
        let (mut records, mut truncated) = (Vec::new(), false);
        for dir in dirs {
            let (found, more) = crate::tracking::search(&dir, &query)?;
            records.extend(found);
            truncated |= more;
        }
        if records.len() > common::tracking::RESULTS_MAX {
            records.truncate(common::tracking::RESULTS_MAX);
            truncated = true;
        }
        Ok::<_, std::io::Error>((records, truncated))
    })
    .await;
    match searched {
        Ok(Ok((records, truncated))) => AdminReply::Trace { records, truncated },
        Ok(Err(e)) => AdminReply::Failed(format!("reading tracking records: {e}")),
        Err(e) => AdminReply::Failed(format!("tracking search: {e}")),
    }
}

/// Answer a read from this node's own replica of its group, whoever leads (see
/// [`AdminRequest::FromReplica`]); nothing else is answered this way.
async fn from_replica(node: &Node, request: AdminRequest) -> AdminReply {
    let Some(shared) = request.group().and_then(|g| node.group(g)) else { return AdminReply::NoSuchGroup };
    let group = &*shared;
    match request {
        AdminRequest::UserMail { user, .. } => user_mail(group, &user),
        AdminRequest::FetchMessages { user, mailbox, uids, .. } => fetch(&shared, &user, &mailbox, &uids),
        AdminRequest::Kept { user, .. } => kept(group, user).await,
        AdminRequest::KeptFiles { user, items, .. } => kept_files(group, user, items).await,
        AdminRequest::Logins { user, .. } => logins(group, &user),
        _ => AdminReply::Refused("a replica answers only UserMail, FetchMessages, Kept, KeptFiles and Logins".into()),
    }
}

/// Answer one request.
pub async fn handle(node: &Node, request: AdminRequest) -> AdminReply {
    if let AdminRequest::CreateGroup { group, members } = request {
        let members =
            members.into_iter().map(|m| crate::config::Member { id: m.id, raft: m.raft, lmtp: m.lmtp }).collect();
        return match node.create_group(crate::config::GroupConfig { name: group, members }).await {
            Ok(()) => AdminReply::Done,
            Err(why) => AdminReply::Refused(why.to_string()),
        };
    }
    if let AdminRequest::Trace(query) = request {
        return trace(node, query.bounded()).await;
    }
    if let AdminRequest::FromReplica(read) = request {
        return from_replica(node, read.into_request()).await;
    }
    let Some(group_name) = request.group().map(str::to_string) else {
        return AdminReply::Status(status(node).await);
    };
    let Some(shared) = node.group(&group_name) else { return AdminReply::NoSuchGroup };
    let group = &*shared;
    if !group.is_leader(node.id) {
        return AdminReply::NotLeader { leader: group.leader() };
    }
    // A proposed operation is answered with the store's whole response.
    let raw = matches!(request, AdminRequest::Propose { .. });
    let (op_id, op) = match request {
        AdminRequest::Status
        | AdminRequest::CreateGroup { .. }
        | AdminRequest::Trace(_)
        | AdminRequest::FromReplica(_) => {
            unreachable!("answered above")
        }
        AdminRequest::AddBackup { id, raft, .. } => return membership::add_backup(group, id, raft).await,
        AdminRequest::Read { id, .. } => return read_body(group, id).await,
        AdminRequest::List { .. } => {
            let store = group.sm.store();
            let items = store.lock().expect("store lock").queue().items().cloned().collect();
            return AdminReply::Items(items);
        }
        AdminRequest::UserMail { user, .. } => return user_mail(group, &user),
        AdminRequest::Fates { .. } => return AdminReply::Fates(group.sm.store().lock().expect("store lock").fates()),
        AdminRequest::CountFates { op_id, counts, .. } => (OpId(op_id), MailOp::CountFates { counts }),
        AdminRequest::Logins { user, .. } => return logins(group, &user),
        AdminRequest::Kept { user, .. } => return kept(group, user).await,
        AdminRequest::KeptFiles { user, items, .. } => return kept_files(group, user, items).await,
        AdminRequest::Blocks { .. } => {
            let store = group.sm.store();
            let store = store.lock().expect("store lock");
            let security = store.security();
            let locked = security.locked.iter().map(|(u, _)| u.clone()).collect();
            return AdminReply::Blocks { blocks: security.blocks_at(now_s()), locked };
        }
        AdminRequest::Tickets { .. } => {
            return AdminReply::Tickets(group.sm.store().lock().expect("store lock").security().tickets.clone())
        }
        AdminRequest::Security { op_id, change, .. } => (OpId(op_id), MailOp::Security { change, now_s: now_s() }),
        AdminRequest::EnqueueHeld { op_id, sender, recipients, message, reason, .. } => {
            (OpId(op_id), MailOp::EnqueueHeld { sender, recipients, created_s: now_s(), message, reason })
        }
        AdminRequest::RecordLogin { user, op_id, record, .. } => {
            let record = record.bounded();
            let op = MailOp::RecordLogin {
                user: user.clone(),
                at_s: record.at_s,
                protocol: record.protocol,
                ip: record.ip.to_string(),
                country: record.country,
                continent: record.continent,
                location: record.location,
                front: record.front,
            };
            return match group.propose(OpId(op_id), op).await {
                Ok(MailResponse::Rejected(why)) => AdminReply::Refused(why.to_string()),
                Ok(_) => logins(group, &user),
                Err(AccessError::NotLeader { leader, .. }) => AdminReply::NotLeader { leader },
                Err(e) => AdminReply::Failed(e.to_string()),
            };
        }
        AdminRequest::FetchMessages { user, mailbox, uids, .. } => return fetch(&shared, &user, &mailbox, &uids),
        AdminRequest::AddNode { id, raft, .. } => return membership::add_node(group, id, raft).await,
        AdminRequest::RemoveNode { id, force, .. } => return membership::remove_node(group, id, force).await,
        AdminRequest::Propose { op_id, op, .. } => match admin::decode::<MailOp>(&op) {
            Ok(op) => (OpId(op_id), op),
            Err(e) => return AdminReply::Refused(format!("not a mail operation: {e}")),
        },
        AdminRequest::Enqueue { op_id, sender, recipients, message, key: None, .. } => {
            (OpId(op_id), MailOp::Enqueue { sender, recipients, created_s: now_s(), message })
        }
        AdminRequest::Enqueue { op_id, sender, recipients, message, key: Some(key), .. } => {
            (OpId(op_id), MailOp::EnqueueKeyed { sender, recipients, created_s: now_s(), key, message })
        }
        // A claim is a fresh decision each time: never deduplicated. Nothing due: no entry
        // (runners poll every second; an idle queue must not grow the log).
        AdminRequest::Claim { holder, lease_s, max, .. } => {
            let now = now_s();
            if !group.sm.store().lock().expect("store lock").queue().has_due(now) {
                return AdminReply::Items(Vec::new());
            }
            (OpId(rand::random()), MailOp::QueueClaim { holder, now_s: now, lease_s, max })
        }
        AdminRequest::Record { id, holder, outcome, .. } => (
            OpId(rand::random()),
            MailOp::QueueAttempt {
                id,
                holder,
                at_s: now_s(),
                delivered: outcome.delivered,
                failed: outcome.failed,
                retry_at_s: outcome.retry_at_s,
                error: outcome.error,
                tried: outcome.tried,
            },
        ),
        AdminRequest::Delete { ids, .. } => (OpId(rand::random()), MailOp::QueueDrop { ids, at_s: now_s() }),
        AdminRequest::FrontRefusals { op_id, refusals, .. } => (OpId(op_id), MailOp::FrontRefusals { refusals }),
        AdminRequest::Flush { ids, .. } => (OpId(rand::random()), MailOp::QueueFlush { ids, now_s: now_s() }),
    };
    match group.propose(op_id, op).await {
        Ok(resp) if raw => AdminReply::Applied(admin::encode(&resp)),
        Ok(MailResponse::Queued { id }) => AdminReply::Queued { id },
        Ok(MailResponse::Opened { id }) => AdminReply::Opened { id },
        Ok(MailResponse::Claimed(items)) => AdminReply::Items(items),
        Ok(MailResponse::Rejected(why)) => AdminReply::Refused(why.to_string()),
        Ok(_) => AdminReply::Done,
        Err(AccessError::NotLeader { leader, .. }) => AdminReply::NotLeader { leader },
        Err(e) => AdminReply::Failed(e.to_string()),
    }
}

/// Frame budget for message bytes in one answer.
const FETCH_BYTES_MAX: u64 = 16 << 20;

fn user_mail(group: &Group, user: &str) -> AdminReply {
    let Ok(user) = UserName::parse(user) else { return AdminReply::Refused(format!("bad user name {user:?}")) };
    let store = group.sm.store();
    let mut store = store.lock().expect("store lock");
    let state = match store.user_state(user.as_str()) {
        UserState::Active => "active".to_string(),
        UserState::Frozen => "frozen".to_string(),
        UserState::MovedTo(g) => format!("moved to {g}"),
    };
    let subscribed = store.subscriptions(&user);
    // Every entry a move must carry; a damaged file fails the move rather than drop them.
    let metadata_of = |store: &mut crate::mailstore::Store, mailbox: &str| -> Result<Vec<_>, String> {
        let entries = store.metadata(&user, mailbox).map_err(|e| e.to_string())?.unwrap_or_default();
        Ok(entries.iter().map(|(k, v)| (k.to_string(), serde_bytes::ByteBuf::from(v.to_vec()))).collect())
    };
    let server_metadata = match metadata_of(&mut store, "") {
        Ok(m) => m,
        Err(e) => return AdminReply::Failed(e),
    };
    let mut mailboxes = Vec::new();
    for name in store.mailboxes(&user) {
        let idx = match store.mailbox_index(&user, &name) {
            Ok(Some(idx)) => idx,
            Ok(None) => continue,
            Err(e) => return AdminReply::Failed(e.to_string()),
        };
        let metadata = match metadata_of(&mut store, name.as_str()) {
            Ok(m) => m,
            Err(e) => return AdminReply::Failed(e),
        };
        mailboxes.push(MailboxSummary {
            metadata,
            name: name.as_str().to_string(),
            uid_validity: idx.uid_validity,
            uid_next: idx.uid_next,
            highest_modseq: idx.highest_modseq,
            subscribed: subscribed.iter().any(|s| s == name.as_str()),
            messages: idx
                .messages
                .iter()
                .map(|m| MessageSummary {
                    uid: m.uid,
                    flags: m.flags,
                    keywords: m.keywords.clone(),
                    internal_date: m.internal_date,
                    modseq: m.modseq,
                    size_bytes: m.size,
                    email_id: m.email_id(idx.uid_validity),
                    saved_s: m.saved_s,
                })
                .collect(),
        });
    }
    let home = store.layout().user_dir(&user);
    drop(store);
    let retention_s = crate::mailstore::kept::user_retention(&home);
    let (scripts, active_script) = match user_scripts(&home) {
        Ok(found) => found,
        Err(e) => return AdminReply::Failed(format!("Sieve scripts: {e}")),
    };
    AdminReply::UserMail(UserMail { state, mailboxes, server_metadata, scripts, active_script, retention_s })
}

/// Every Sieve script of a user (a move carries them) and the active one's name.
type Scripts = (Vec<(String, String)>, Option<String>);

fn user_scripts(home: &std::path::Path) -> Result<Scripts, crate::mailstore::scripts::ScriptError> {
    use crate::mailstore::scripts;
    let mut out = Vec::new();
    let mut active = None;
    for info in scripts::list(home)? {
        if let Some(text) = scripts::read(home, &info.name)? {
            if info.active {
                active = Some(info.name.clone());
            }
            out.push((info.name, text));
        }
    }
    Ok((out, active))
}

fn fetch(group: &Arc<Group>, user: &str, mailbox: &str, uids: &[u32]) -> AdminReply {
    let (Ok(user), Ok(mailbox)) = (UserName::parse(user), MailboxName::parse(mailbox)) else {
        return AdminReply::Refused("bad user or mailbox name".into());
    };
    let mut out = Vec::new();
    let mut bytes = 0u64;
    for uid in uids {
        let read = tokio::task::block_in_place(|| group.read_message(&user, &mailbox, *uid));
        match read {
            Ok(data) => {
                bytes += data.as_ref().map_or(0, |d| d.len() as u64);
                out.push((*uid, data.map(serde_bytes::ByteBuf::from)));
            }
            Err(e) => return AdminReply::Failed(e.to_string()),
        }
        if bytes >= FETCH_BYTES_MAX {
            break;
        }
    }
    AdminReply::Messages(out)
}

async fn read_body(group: &Group, id: u64) -> AdminReply {
    let (path, key) = {
        let store = group.sm.store();
        let store = store.lock().expect("store lock");
        (store.queue().body_path(id), store.queue().key(id))
    };
    let Some(path) = path else { return AdminReply::Message(None) };
    match tokio::fs::read(&path).await {
        Ok(bytes) => match key {
            Some(key) => AdminReply::KeyedMessage { body: serde_bytes::ByteBuf::from(bytes), key },
            None => AdminReply::Message(Some(bytes)),
        },
        // Delivered and removed since the lookup.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AdminReply::Message(None),
        Err(e) => AdminReply::Failed(format!("queued message {id}: {e}")),
    }
}

async fn status(node: &Node) -> NodeStatus {
    let all = node.all_groups();
    let mut groups = Vec::with_capacity(all.len());
    for g in all {
        let name = &g.name;
        let m = g.raft.metrics().borrow().clone();
        let (root, queued) = {
            let store = g.sm.store();
            let store = store.lock().expect("store lock");
            (store.layout().root().to_path_buf(), store.queue().len() as u64)
        };
        let group_dir = root.parent().map(Path::to_path_buf).unwrap_or_else(|| root.clone());
        let (disk_bytes, users) =
            tokio::task::spawn_blocking(move || (disk_usage(&group_dir), count_dirs(&root.join("users"))))
                .await
                .unwrap_or((0, 0));
        groups.push(GroupStatus {
            name: name.clone(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            voters: m.membership_config.voter_ids().collect(),
            learners: m.membership_config.membership().learner_ids().collect(),
            replication: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, log)| (*id, log.map(|l| l.index))).collect())
                .unwrap_or_default(),
            disk_bytes,
            users,
            queued,
            has_room: g.has_room(),
        });
    }
    NodeStatus { node_id: node.id, groups, disk_low: node.disk.low(), disk_free_bytes: node.disk.free_bytes() }
}

/// Bytes of the regular files under `dir` (bounded walk).
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            visited += 1;
            if visited > DU_ENTRIES_MAX {
                return total;
            }
            match e.metadata() {
                Ok(md) if md.is_dir() => stack.push(e.path()),
                Ok(md) => total += md.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn count_dirs(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|it| it.flatten().filter(|e| e.path().is_dir()).count() as u64).unwrap_or(0)
}
