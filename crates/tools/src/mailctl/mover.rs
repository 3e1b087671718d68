//! `mailctl move USER TARGET`: an online move of one user's mail to another mailhost.
//!
//! 1. **Bulk copy** while the user keeps working: every mailbox is imported on the target
//!    in UID order with its UIDVALIDITY, UIDs, flags, keywords, internal dates and MODSEQs.
//! 2. **Catch-up** rounds copy what arrived meanwhile and make flags, expunges, UIDNEXT and
//!    HIGHESTMODSEQ match (`SyncMailbox`), until a round finds little to do.
//! 3. **Freeze**: the source refuses the user's writes with a temporary failure (MTAs and
//!    the front's queue retry deliveries; IMAP clients get `NO` and retry), a final
//!    catch-up, then the **flip**: the target is made active, the directory's `mailHost`
//!    names the target, and the source marks the user moved (open sessions get `BYE`
//!    and reconnect through the front to the target).
//! 4. The command returns at the flip, saying so. The source copy is kept for a **grace
//!    period** (sessions still open there finish); `--wait` waits it out and deletes the
//!    copy, `--finish USER OLD` deletes it later, and a grace of 0 deletes it at once.
//!
//! Every step is idempotent, so an interrupted move is resumed by running it again;
//! `--rollback` before the flip unfreezes the source and deletes the partial copy. It
//! never deletes the source before the directory names the target.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use common::admin::{AdminReply, AdminRequest, MailboxSummary, ReplicaRead, UserMail};
use indicatif::{ProgressBar, ProgressStyle};
use storaged::mailstore::ops::{ImportedMessage, MetadataChange};
use storaged::mailstore::{FlagState, MailOp, MailResponse, UserState};

use super::admin::Admin;
use super::directory::UserDirectory;

/// Messages per import at most, and bytes (the frame and a commit stay small).
const BATCH_MESSAGES_MAX: usize = 256;
/// How long each step waits for a group without a leader: a copy runs for minutes or
/// hours, and an election or a node's restart in that time is ordinary, not a reason to stop
/// (an interrupted move resumes, but only when someone runs it again).
pub const LEADER_WAIT: Duration = Duration::from_secs(120);
const BATCH_BYTES_MAX: u64 = 2 << 20;
/// Catch-up rounds before freezing at most; a round with fewer new messages than
/// `CALM_MESSAGES` ends them early.
const CATCH_UP_ROUNDS_MAX: usize = 5;
const CALM_MESSAGES: u64 = 20;

/// What a move did.
#[derive(Debug, Default, Clone)]
pub struct MoveReport {
    pub user: String,
    pub source: String,
    pub target: String,
    pub messages: u64,
    pub bytes: u64,
    /// Kept messages copied (restorable on the target as they were on the source).
    pub kept: u64,
    pub bulk: Duration,
    /// Of those, copied by the bulk copy (the first round).
    pub bulk_messages: u64,
    pub bulk_bytes: u64,
    pub catch_up_rounds: usize,
    pub freeze: Duration,
    pub source_deleted: bool,
}

impl std::fmt::Display for MoveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.bulk.as_secs_f64().max(1e-6);
        let (rate, per_s) = (self.bulk_bytes as f64 / secs / 1e6, self.bulk_messages as f64 / secs);
        write!(
            f,
            "moved {} from {} to {}: {} messages, {} bytes, {} kept messages; bulk copy {:.2} s ({rate:.2} MB/s, {per_s:.0} messages/s); {} catch-up round(s); freeze window {} ms; source copy {}",
            self.user,
            self.source,
            self.target,
            self.messages,
            self.bytes,
            self.kept,
            secs,
            self.catch_up_rounds,
            self.freeze.as_millis(),
            if self.source_deleted { "deleted" } else { "kept" }
        )
    }
}

/// Before the flip, the copy shows bytes; once it is done, a spinner says what happens.
fn spinner(bar: &ProgressBar, message: String) {
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"));
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
}

/// Counts of one copy round.
#[derive(Debug, Default, Clone)]
pub struct Copied {
    pub messages: u64,
    pub bytes: u64,
    /// Kept messages (expunged, in deleted folders) a move copied.
    pub kept: u64,
    /// Mailboxes a filling copy left alone: the target holds other mail under them.
    pub skipped: Vec<String>,
}

/// Where a copy reads a user's mail: a group (its leader answers), or one node's own
/// replica of a group (a backup's copy, for `mailctl restore --from-backup`).
#[derive(Debug, Clone)]
pub(super) enum Source {
    Group(String),
    Replica { group: String, node_admin: String },
}

impl Source {
    fn group(&self) -> &str {
        match self {
            Source::Group(g) | Source::Replica { group: g, .. } => g,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Group(g) => f.write_str(g),
            Source::Replica { group, node_admin } => write!(f, "{group} on {node_admin}"),
        }
    }
}

/// What a copy may do to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyMode {
    /// Make the target the source's copy: replace a mailbox made again, expunge and
    /// delete what the source no longer has (a move).
    Mirror,
    /// Add what the target lacks and never remove anything (a restore into a group that
    /// may already hold new mail).
    Fill,
}

impl Admin {
    /// Ask `source` (a group's leader, or one node's replica) a read.
    async fn read(&self, source: &Source, request: AdminRequest) -> anyhow::Result<AdminReply> {
        match source {
            Source::Group(g) => self.call(g, request).await,
            Source::Replica { node_admin, .. } => {
                let read = ReplicaRead::of(request).ok_or_else(|| anyhow::anyhow!("not a read a replica answers"))?;
                self.call_node(node_admin, &AdminRequest::FromReplica(read)).await
            }
        }
    }

    pub(super) async fn user_mail(&self, group: &str, user: &str) -> anyhow::Result<UserMail> {
        self.user_mail_from(&Source::Group(group.into()), user).await
    }

    pub(super) async fn user_mail_from(&self, source: &Source, user: &str) -> anyhow::Result<UserMail> {
        let request = AdminRequest::UserMail { group: source.group().into(), user: user.into() };
        match self.read(source, request).await? {
            AdminReply::UserMail(m) => Ok(m),
            other => bail!("{source}: {other}"),
        }
    }

    /// Commit `op` on `group`; a refusal is an error.
    async fn apply(&self, group: &str, op: MailOp) -> anyhow::Result<MailResponse> {
        self.apply_once(group, rand::random(), op).await
    }

    /// Commit `op` under `op_id`: a retry with the same id is answered from the first
    /// commit, never applied twice.
    pub(super) async fn apply_once(&self, group: &str, op_id: [u8; 16], op: MailOp) -> anyhow::Result<MailResponse> {
        let request = AdminRequest::Propose { group: group.into(), op_id, op: common::admin::encode(&op) };
        match self.call(group, request).await? {
            AdminReply::Applied(bytes) => match common::admin::decode::<MailResponse>(&bytes)? {
                MailResponse::Rejected(why) => bail!("{group} refused {}: {why}", op_name(&op)),
                resp => Ok(resp),
            },
            AdminReply::Refused(why) => bail!("{group} refused {}: {why}", op_name(&op)),
            other => bail!("{group}: {other}"),
        }
    }

    pub(super) async fn fetch(
        &self,
        group: &str,
        user: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> anyhow::Result<Vec<(u32, Option<Vec<u8>>)>> {
        self.fetch_from(&Source::Group(group.into()), user, mailbox, uids).await
    }

    async fn fetch_from(
        &self,
        source: &Source,
        user: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> anyhow::Result<Vec<(u32, Option<Vec<u8>>)>> {
        let request = AdminRequest::FetchMessages {
            group: source.group().into(),
            user: user.into(),
            mailbox: mailbox.into(),
            uids: uids.to_vec(),
        };
        match self.read(source, request).await? {
            AdminReply::Messages(m) if !m.is_empty() || uids.is_empty() => {
                Ok(m.into_iter().map(|(uid, b)| (uid, b.map(serde_bytes::ByteBuf::into_vec))).collect())
            }
            other => bail!("{source}: {other}"),
        }
    }
}

fn op_name(op: &MailOp) -> &'static str {
    match op {
        MailOp::ImportMessages { .. } => "an import",
        MailOp::SyncMailbox { .. } => "a mailbox sync",
        MailOp::SetUserState { .. } => "a user state change",
        MailOp::DeleteUser { .. } => "the deletion",
        MailOp::DeleteMailbox { .. } => "a mailbox deletion",
        MailOp::ImportKept { .. } => "a kept-mail import",
        _ => "an operation",
    }
}

/// One round: copy what the target lacks, then make every mailbox's state match (in
/// `Fill` mode: add, never remove).
pub(super) async fn copy_round(
    admin: &Admin,
    user: &str,
    (source, target): (&Source, &str),
    mode: CopyMode,
    bar: &ProgressBar,
) -> anyhow::Result<Copied> {
    let src = admin.user_mail_from(source, user).await?;
    let tgt = admin.user_mail(target, user).await?;
    let mut existing: BTreeMap<String, MailboxSummary> =
        tgt.mailboxes.into_iter().map(|m| (m.name.clone(), m)).collect();
    let mut copied = Copied::default();
    for mb in &src.mailboxes {
        let mut have = existing.remove(&mb.name);
        if have.as_ref().is_some_and(|t| t.uid_validity != mb.uid_validity && !t.messages.is_empty()) {
            if mode == CopyMode::Fill {
                copied.skipped.push(mb.name.clone());
                continue;
            }
            // Deleted and created again on the source since the last round.
            admin.apply(target, MailOp::DeleteMailbox { user: user.into(), mailbox: mb.name.clone() }).await?;
            have = None;
        }
        let start = have.as_ref().map_or(0, |t| t.uid_next);
        let todo: Vec<_> = mb.messages.iter().filter(|m| m.uid >= start).collect();
        bar.inc_length(todo.iter().map(|m| m.size_bytes).sum());
        if todo.is_empty() && have.is_none() {
            // An empty mailbox still has to exist, with its UIDVALIDITY.
            import(admin, target, user, mb, Vec::new()).await?;
        }
        for batch in batches(&todo) {
            let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
            let mut bodies = BTreeMap::new();
            let mut left = uids.as_slice();
            while !left.is_empty() {
                let got = admin.fetch_from(source, user, &mb.name, left).await?;
                let n = got.len();
                bodies.extend(got);
                left = &left[n..];
            }
            let messages: Vec<ImportedMessage> = batch
                .iter()
                .filter_map(|m| {
                    let data = bodies.remove(&m.uid).flatten()?; // expunged meanwhile
                    Some(ImportedMessage {
                        uid: m.uid,
                        flags: m.flags,
                        keywords: m.keywords.clone(),
                        internal_date: m.internal_date,
                        modseq: m.modseq,
                        email_id: m.email_id,
                        saved_s: m.saved_s,
                        data,
                    })
                })
                .collect();
            let bytes: u64 = messages.iter().map(|m| m.data.len() as u64).sum();
            copied.messages += messages.len() as u64;
            copied.bytes += bytes;
            import(admin, target, user, mb, messages).await?;
            bar.inc(batch.iter().map(|m| m.size_bytes).sum());
            bar.set_message(format!("{} {} messages", mb.name, copied.messages));
        }
        // Flags, keywords and MODSEQs of the messages the target had, and expunges.
        let states: Vec<FlagState> = match &have {
            None => Vec::new(),
            Some(t) => {
                let theirs: BTreeMap<u32, _> = t.messages.iter().map(|m| (m.uid, m)).collect();
                mb.messages
                    .iter()
                    .filter(|m| {
                        theirs
                            .get(&m.uid)
                            .is_some_and(|o| o.flags != m.flags || o.keywords != m.keywords || o.modseq != m.modseq)
                    })
                    .map(|m| FlagState { uid: m.uid, flags: m.flags, keywords: m.keywords.clone(), modseq: m.modseq })
                    .collect()
            }
        };
        let present: std::collections::BTreeSet<u32> = mb.messages.iter().map(|m| m.uid).collect();
        let expunged: Vec<u32> = match mode {
            CopyMode::Mirror => {
                have.iter().flat_map(|t| t.messages.iter().map(|m| m.uid)).filter(|u| !present.contains(u)).collect()
            }
            CopyMode::Fill => Vec::new(),
        };
        admin
            .apply(
                target,
                MailOp::SyncMailbox {
                    user: user.into(),
                    mailbox: mb.name.clone(),
                    uid_validity: mb.uid_validity,
                    uid_next: mb.uid_next,
                    highest_modseq: mb.highest_modseq,
                    states,
                    expunged,
                },
            )
            .await?;
        if mb.subscribed != have.as_ref().is_some_and(|t| t.subscribed) {
            let op = MailOp::Subscribe { user: user.into(), mailbox: mb.name.clone(), subscribed: mb.subscribed };
            admin.apply(target, op).await?;
        }
        let theirs = have.as_ref().map_or(&[][..], |t| t.metadata.as_slice());
        sync_metadata(admin, target, user, &mb.name, &mb.metadata, theirs).await?;
    }
    sync_metadata(admin, target, user, "", &src.server_metadata, &tgt.server_metadata).await?;
    let scripts = (&src.scripts[..], &src.active_script);
    sync_scripts(admin, target, user, scripts, (&tgt.scripts, &tgt.active_script), mode).await?;
    sync_logins(admin, source, target, user).await?;
    if src.retention_s != tgt.retention_s && (mode == CopyMode::Mirror || tgt.retention_s.is_none()) {
        admin.apply(target, MailOp::SetRetention { user: user.into(), keep_s: src.retention_s }).await?;
    }
    if mode == CopyMode::Fill {
        return Ok(copied);
    }
    if let Source::Group(group) = source {
        copied.kept = super::kept_copy::copy_kept(admin, user, (group, target)).await?;
    }
    // Mailboxes deleted on the source since an earlier round.
    for gone in existing.keys().filter(|n| n.as_str() != "INBOX") {
        admin.apply(target, MailOp::DeleteMailbox { user: user.into(), mailbox: gone.clone() }).await?;
    }
    Ok(copied)
}

/// `user`'s login history on `source`.
async fn logins(admin: &Admin, source: &Source, user: &str) -> anyhow::Result<Vec<common::logins::LoginRecord>> {
    let request = AdminRequest::Logins { group: source.group().to_string(), user: user.to_string() };
    match admin.read(source, request).await? {
        AdminReply::Logins(h) => Ok(h),
        other => anyhow::bail!("login history on {source}: {other}"),
    }
}

/// Give the target the source's login history (records it has already are kept once).
async fn sync_logins(admin: &Admin, source: &Source, target: &str, user: &str) -> anyhow::Result<()> {
    let theirs = logins(admin, &Source::Group(target.into()), user).await?;
    for record in logins(admin, source, user).await?.into_iter().filter(|r| !theirs.contains(r)) {
        let request = AdminRequest::RecordLogin {
            group: target.to_string(),
            user: user.to_string(),
            op_id: rand::random(),
            record,
        };
        match admin.call(target, request).await? {
            AdminReply::Logins(_) => {}
            other => anyhow::bail!("login history on {target}: {other}"),
        }
    }
    Ok(())
}

/// Make the target's Sieve scripts and active script those of the source.
type ScriptSet<'a> = (&'a [(String, String)], &'a Option<String>);

async fn sync_scripts(
    admin: &Admin,
    target: &str,
    user: &str,
    src: ScriptSet<'_>,
    tgt: ScriptSet<'_>,
    mode: CopyMode,
) -> anyhow::Result<()> {
    for (name, text) in src.0 {
        if !tgt.0.iter().any(|(n, t)| n == name && t == text) {
            let op = MailOp::PutScript { user: user.into(), name: name.clone(), script: text.clone() };
            admin.apply(target, op).await?;
        }
    }
    if src.1 != tgt.1 && (mode == CopyMode::Mirror || tgt.1.is_none()) {
        let op = MailOp::SetActiveScript { user: user.into(), name: src.1.clone() };
        admin.apply(target, op).await?;
    }
    if mode == CopyMode::Fill {
        return Ok(());
    }
    for (gone, _) in tgt.0.iter().filter(|(n, _)| !src.0.iter().any(|(s, _)| s == n)) {
        admin.apply(target, MailOp::DeleteScript { user: user.into(), name: gone.clone() }).await?;
    }
    Ok(())
}

/// Make the target's METADATA entries of `mailbox` (`""`: the user's server) equal the
/// source's: set what differs, remove what the source no longer has.
async fn sync_metadata(
    admin: &Admin,
    target: &str,
    user: &str,
    mailbox: &str,
    ours: &[(String, serde_bytes::ByteBuf)],
    theirs: &[(String, serde_bytes::ByteBuf)],
) -> anyhow::Result<()> {
    let wanted: BTreeMap<&str, &[u8]> = ours.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let have: BTreeMap<&str, &[u8]> = theirs.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let set = wanted
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| MetadataChange { name: k.to_string(), value: Some(v.to_vec()) });
    let removed =
        have.keys().filter(|k| !wanted.contains_key(*k)).map(|k| MetadataChange { name: k.to_string(), value: None });
    let entries: Vec<MetadataChange> = set.chain(removed).collect();
    if !entries.is_empty() {
        admin.apply(target, MailOp::SetMetadata { user: user.into(), mailbox: mailbox.into(), entries }).await?;
    }
    Ok(())
}

async fn import(
    admin: &Admin,
    target: &str,
    user: &str,
    mb: &MailboxSummary,
    messages: Vec<ImportedMessage>,
) -> anyhow::Result<()> {
    let op =
        MailOp::ImportMessages { user: user.into(), mailbox: mb.name.clone(), uid_validity: mb.uid_validity, messages };
    admin.apply(target, op).await.map(drop)
}

/// Split messages into import batches bounded in count and bytes.
fn batches<'a, T: HasSize>(items: &'a [&'a T]) -> Vec<&'a [&'a T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, m) in items.iter().enumerate() {
        if i > start && (i - start >= BATCH_MESSAGES_MAX || bytes + m.size() > BATCH_BYTES_MAX) {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += m.size();
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

trait HasSize {
    fn size(&self) -> u64;
}

impl HasSize for common::admin::MessageSummary {
    fn size(&self) -> u64 {
        self.size_bytes
    }
}

/// Move `address` to mailhost `target`, flipping its `mailHost` in `dir`.
/// Move the user at `address` to `target`; returns at the flip, or with `wait` once the
/// source copy was kept for `grace` and deleted (at once when `grace` is zero).
pub async fn move_user(
    admin: &Admin,
    dir: &UserDirectory,
    address: &str,
    target: &str,
    (grace, wait): (Duration, bool),
) -> anyhow::Result<MoveReport> {
    let target = target.to_lowercase();
    let (user, source) = dir.locate(address).await?;
    let mut report =
        MoveReport { user: user.clone(), source: source.clone(), target: target.clone(), ..MoveReport::default() };
    if !admin.has_group(&target) {
        bail!(
            "no mailhost {target} in the cluster map; the mailhosts are {} (mailctl group add makes a new one)",
            admin.group_names().join(", ")
        );
    }
    if source == target {
        bail!("{user} already lives on {target} (to finish an interrupted move's cleanup, run `mailctl move --cleanup {user} OLD_MAILHOST`)");
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
            .expect("valid template"),
    );
    let from = Source::Group(source.clone());
    let started = Instant::now();
    let mut copied = copy_round(admin, &user, (&from, &target), CopyMode::Mirror, &bar).await?;
    report.bulk = started.elapsed();
    (report.bulk_messages, report.bulk_bytes) = (copied.messages, copied.bytes);
    for round in 1..=CATCH_UP_ROUNDS_MAX {
        report.catch_up_rounds = round;
        let c = copy_round(admin, &user, (&from, &target), CopyMode::Mirror, &bar).await?;
        copied.messages += c.messages;
        copied.bytes += c.bytes;
        copied.kept += c.kept;
        if c.messages < CALM_MESSAGES {
            break;
        }
    }
    // Freeze, last catch-up, flip.
    spinner(&bar, format!("{user} is frozen on {source}: last catch-up and flip to {target}"));
    admin.apply(&source, MailOp::SetUserState { user: user.clone(), state: UserState::Frozen }).await?;
    let frozen = Instant::now();
    let flip = async {
        let c = copy_round(admin, &user, (&from, &target), CopyMode::Mirror, &bar).await?;
        copied.messages += c.messages;
        copied.bytes += c.bytes;
        copied.kept += c.kept;
        admin.apply(&target, MailOp::SetUserState { user: user.clone(), state: UserState::Active }).await?;
        dir.set_mail_host(&user, &target).await?;
        admin
            .apply(&source, MailOp::SetUserState { user: user.clone(), state: UserState::MovedTo(target.clone()) })
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = flip.await {
        bar.abandon();
        return Err(e.context(format!(
            "the move stopped while {user} was frozen on {source}; run it again to finish, or --rollback"
        )));
    }
    report.freeze = frozen.elapsed();
    bar.finish_and_clear();
    report.messages = copied.messages;
    report.bytes = copied.bytes;
    report.kept = copied.kept;
    if grace.is_zero() || wait {
        if !grace.is_zero() {
            let bar = ProgressBar::new_spinner();
            let why = format!("flipped; keeping the copy on {source} for {} s, then deleting it", grace.as_secs());
            spinner(&bar, format!("{why} (Ctrl-C keeps it: `mailctl move --finish {user} {source}` later)"));
            tokio::time::sleep(grace).await;
            bar.finish_and_clear();
        }
        cleanup(admin, &user, &source, &target).await?;
        report.source_deleted = true;
    }
    Ok(report)
}

/// Delete the source copy of a user whose move flipped to `target`.
pub async fn cleanup(admin: &Admin, user: &str, source: &str, target: &str) -> anyhow::Result<()> {
    let src = admin.user_mail(source, user).await?;
    if src.state != format!("moved to {target}") {
        bail!("{user} on {source} is {}, not moved to {target}: not deleting it", src.state);
    }
    admin.apply(source, MailOp::DeleteUser { user: user.into() }).await.map(drop)
}

/// `--cleanup`: delete the copy on `old` of a user the directory already places elsewhere.
pub async fn cleanup_moved(admin: &Admin, dir: &UserDirectory, address: &str, old: &str) -> anyhow::Result<String> {
    let old = old.to_lowercase();
    let (user, now) = dir.locate(address).await?;
    if now == old {
        bail!("{user} still lives on {old}");
    }
    cleanup(admin, &user, &old, &now).await?;
    Ok(format!("deleted the copy of {user} on {old} (it lives on {now})"))
}

/// Undo an unfinished move: unfreeze the source and delete the partial target copy. Refused
/// once the directory names the target (move the user back instead).
pub async fn rollback(admin: &Admin, dir: &UserDirectory, address: &str, target: &str) -> anyhow::Result<()> {
    let target = target.to_lowercase();
    let (user, source) = dir.locate(address).await?;
    if source == target {
        bail!("{user} already lives on {target}: move it back instead");
    }
    admin.apply(&source, MailOp::SetUserState { user: user.clone(), state: UserState::Active }).await?;
    admin.apply(&target, MailOp::DeleteUser { user: user.clone() }).await?;
    Ok(())
}

/// A planned move: user, from, to, bytes.
pub type PlannedMove = (String, String, String, u64);

/// Moves that even out bytes per group, greedily: while some user of the fullest group is
/// smaller than the gap to the emptiest one, move the largest such user there.
pub fn propose_moves(per_group: &BTreeMap<String, u64>, mut users: Vec<(String, String, u64)>) -> Vec<PlannedMove> {
    let mut load = per_group.clone();
    let mut moves = Vec::new();
    users.sort_by_key(|u| std::cmp::Reverse(u.2));
    for _ in 0..users.len() {
        let (Some((hi, hi_b)), Some((lo, lo_b))) = (
            load.iter().max_by_key(|e| e.1).map(|(g, b)| (g.clone(), *b)),
            load.iter().min_by_key(|e| e.1).map(|(g, b)| (g.clone(), *b)),
        ) else {
            break;
        };
        let gap = hi_b - lo_b;
        let Some(pos) = users.iter().position(|u| u.1 == hi && u.2 > 0 && u.2 < gap) else { break };
        let (user, from, bytes) = users.remove(pos);
        *load.get_mut(&from).expect("known") -= bytes;
        *load.get_mut(&lo).expect("known") += bytes;
        moves.push((user, from, lo, bytes));
    }
    moves
}

/// Per group, the bytes of its users' mail, and moves that would even them out.
pub async fn plan(
    admin: &Admin,
    dir: &UserDirectory,
) -> anyhow::Result<(BTreeMap<String, u64>, Vec<(String, String, String, u64)>)> {
    let mut per_group: BTreeMap<String, u64> = admin.group_names().into_iter().map(|g| (g, 0)).collect();
    let mut users: Vec<(String, String, u64)> = Vec::new();
    for account in dir.accounts().await? {
        let Some(host) = account.mail_host.as_deref().map(str::to_lowercase) else { continue };
        if !per_group.contains_key(&host) {
            continue;
        }
        let mail = admin.user_mail(&host, &account.mail.to_lowercase()).await?;
        let bytes: u64 = mail.mailboxes.iter().flat_map(|m| &m.messages).map(|m| m.size_bytes).sum();
        *per_group.get_mut(&host).expect("known") += bytes;
        users.push((account.mail.to_lowercase(), host, bytes));
    }
    let moves = propose_moves(&per_group, users);
    Ok((per_group, moves))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_evens_out_groups_and_stops_when_no_move_helps() {
        let per_group: BTreeMap<String, u64> =
            [("a".to_string(), 100), ("b".to_string(), 10), ("c".to_string(), 0)].into();
        let users = vec![
            ("u1".to_string(), "a".to_string(), 60),
            ("u2".to_string(), "a".to_string(), 30),
            ("u3".to_string(), "a".to_string(), 10),
            ("u4".to_string(), "b".to_string(), 10),
        ];
        let moves = propose_moves(&per_group, users);
        assert_eq!(moves[0], ("u1".into(), "a".into(), "c".into(), 60), "the biggest user that fits the gap");
        let mut load = per_group.clone();
        for (_, from, to, bytes) in &moves {
            *load.get_mut(from).unwrap() -= bytes;
            *load.get_mut(to).unwrap() += bytes;
        }
        let spread = load.values().max().unwrap() - load.values().min().unwrap();
        assert!(spread < 100, "more even than before: {load:?}");
        assert!(propose_moves(&[("a".to_string(), 5)].into(), vec![("u".into(), "a".into(), 5)]).is_empty());
    }
}
