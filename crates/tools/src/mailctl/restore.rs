//! `mailctl restore`: bring back what a user expunged or a folder they deleted, from the
//! kept sets of their mailhost (`storaged::mailstore::kept`). Lists the kept messages the
//! leader holds, chooses by folder, time and Message-ID, and commits the restore in
//! batches (each a `RestoreKept` entry with an id derived from the batch, so a retried
//! batch is filed once), with progress. Restored messages get new UIDs in their folder (or
//! the one `--into` names), the same bytes, flags, keywords and internal date.
//!
//! `--from-backup NODE` restores a user's whole mail from a backup node's replica (a
//! learner, `mailctl backup add-node`) when the voters lost theirs: every mailbox with its
//! UIDVALIDITY, UIDs, flags and bytes, added to what the group holds now, never replacing
//! it (a mailbox the group holds again under another UIDVALIDITY is left alone and named).

use anyhow::bail;
use common::admin::{AdminReply, AdminRequest, KeptItem, ReplicaRead};
use indicatif::{ProgressBar, ProgressStyle};
use storaged::mailstore::ops::NewMessage;
use storaged::mailstore::{MailOp, MailResponse};

use super::admin::Admin;
use super::directory::UserDirectory;
use super::mover::{copy_round, Copied, CopyMode, Source};

/// Messages per restore entry.
const BATCH: usize = 200;

/// Which kept messages to restore.
#[derive(Debug, Default, Clone)]
pub struct Choice {
    pub folder: Option<String>,
    /// Only messages kept since (unix seconds); those not yet stamped count as now.
    pub since_s: Option<i64>,
    pub message_id: Option<String>,
}

impl Choice {
    fn takes(&self, item: &KeptItem) -> bool {
        !item.restored
            && self.folder.as_ref().is_none_or(|f| item.mailbox.eq_ignore_ascii_case(f))
            && self.since_s.is_none_or(|since| item.kept_since_s.is_none_or(|t| t >= since))
            && self
                .message_id
                .as_ref()
                .is_none_or(|id| item.message_id.trim_matches(['<', '>']) == id.trim_matches(['<', '>']))
    }
}

/// The user's kept messages (on the leader of their mailhost).
pub async fn kept(
    admin: &Admin,
    dir: &UserDirectory,
    address: &str,
) -> anyhow::Result<(String, String, Vec<KeptItem>)> {
    let (user, group) = dir.locate(address).await?;
    match admin.call(&group, AdminRequest::Kept { group: group.clone(), user: user.clone() }).await? {
        AdminReply::Kept { items, truncated } => {
            if truncated {
                eprintln!("{user} has more kept messages than one listing holds; restore in parts (--folder, --since)");
            }
            Ok((user, group, items))
        }
        other => bail!("{group}: {other}"),
    }
}

/// A listing for people.
pub fn render(items: &[KeptItem]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for i in items {
        let since = i.kept_since_s.and_then(|s| chrono::DateTime::from_timestamp(s, 0));
        let since = since.map_or_else(|| "just now".to_string(), |t| t.format("%F %T").to_string());
        let how = match (i.user_deleted, i.folder_deleted) {
            (true, _) => "user deleted",
            (false, true) => "folder deleted",
            (false, false) => "expunged",
        };
        let restored = if i.restored { " (restored)" } else { "" };
        let _ = writeln!(
            out,
            "{since}  {:<20} {how:<14} {:>8} B  {}  {}{restored}",
            i.mailbox, i.size, i.message_id, i.subject
        );
    }
    out
}

/// Restore what `choice` selects; how many were restored.
pub async fn restore(
    admin: &Admin,
    dir: &UserDirectory,
    address: &str,
    choice: &Choice,
    into: Option<&str>,
) -> anyhow::Result<u32> {
    let (user, group, items) = kept(admin, dir, address).await?;
    let chosen: Vec<(String, String)> =
        items.iter().filter(|i| choice.takes(i)).map(|i| (i.set.clone(), i.file.clone())).collect();
    if chosen.is_empty() {
        bail!("nothing of {user}'s kept mail matches (mailctl restore {address} --list shows what there is)");
    }
    let bar = ProgressBar::new(chosen.len() as u64);
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")?.progress_chars("=> "));
    bar.set_message(format!("restoring {user}"));
    let mut restored = 0;
    for batch in chosen.chunks(BATCH) {
        let op_id = batch_id(&user, batch, into);
        let op = MailOp::RestoreKept {
            user: user.clone(),
            items: batch.to_vec(),
            into: into.map(str::to_string),
            now_s: common::clock::now_s(),
        };
        match admin.apply_once(&group, op_id, op).await? {
            MailResponse::Restored { count } => restored += count,
            other => bail!("{group} answered a restore with {other:?}: is every node and mailctl the same version?"),
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(restored)
}

/// The admin address of backup node `node`, from the cluster map.
fn backup_admin(admin: &Admin, node: u64) -> anyhow::Result<String> {
    admin.node_admin(node).ok_or_else(|| {
        anyhow::anyhow!("node {node} is not in the front's cluster map: list it (with its admin address) in [[groups]]")
    })
}

/// The user's kept messages as backup node `node`'s replica holds them.
pub async fn kept_on_backup(
    admin: &Admin,
    dir: &UserDirectory,
    address: &str,
    node: u64,
) -> anyhow::Result<(String, Vec<KeptItem>)> {
    let (user, group) = dir.locate(address).await?;
    let items = kept_on_node(admin, (&user, &group), node).await?;
    Ok((user, items))
}

/// The kept messages of `user` of `group` on node `node`'s own replica.
async fn kept_on_node(admin: &Admin, (user, group): (&str, &str), node: u64) -> anyhow::Result<Vec<KeptItem>> {
    let request = AdminRequest::FromReplica(ReplicaRead::Kept { group: group.into(), user: user.into() });
    match admin.call_node(&backup_admin(admin, node)?, &request).await? {
        AdminReply::Kept { items, .. } => Ok(items),
        other => bail!("node {node}: {other}"),
    }
}

/// Restore kept messages `choice` selects from backup node `node`'s sets (mail the
/// voters purged or lost): each appended with its flags, keywords and date to its folder
/// (made if missing) or `into`, with new UIDs. The backup is read only, so it cannot mark
/// them restored: a second run files them again. How many were filed.
pub async fn kept_from_backup(
    admin: &Admin,
    dir: &UserDirectory,
    (address, node): (&str, u64),
    choice: &Choice,
    into: Option<&str>,
) -> anyhow::Result<u32> {
    let (user, group) = dir.locate(address).await?;
    let items = kept_on_node(admin, (&user, &group), node).await?;
    let chosen: Vec<(String, String)> =
        items.iter().filter(|i| choice.takes(i)).map(|i| (i.set.clone(), i.file.clone())).collect();
    if chosen.is_empty() {
        bail!("nothing of {user}'s kept mail on backup node {node} matches (--list --from-backup {node} shows it)");
    }
    let node_admin = backup_admin(admin, node)?;
    let mut folders: std::collections::BTreeSet<String> =
        admin.user_mail(&group, &user).await?.mailboxes.into_iter().map(|m| m.name).collect();
    let bar = ProgressBar::new(chosen.len() as u64);
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")?.progress_chars("=> "));
    bar.set_message(format!("restoring {user} from backup node {node}"));
    let (mut restored, mut pending) = (0u32, chosen.as_slice());
    while !pending.is_empty() {
        let batch = &pending[..pending.len().min(BATCH)];
        let request = ReplicaRead::KeptFiles { group: group.clone(), user: user.clone(), items: batch.to_vec() };
        let files = match admin.call_node(&node_admin, &AdminRequest::FromReplica(request)).await? {
            AdminReply::KeptFiles(files) if !files.is_empty() => files,
            other => bail!("backup node {node}: {other}"),
        };
        let answered = files.len();
        let mut by_folder: std::collections::BTreeMap<String, Vec<NewMessage>> = Default::default();
        for f in files {
            let Some(data) = f.bytes else { continue };
            let folder =
                into.map_or_else(|| if f.mailbox.is_empty() { "INBOX".into() } else { f.mailbox }, str::to_string);
            let message = NewMessage {
                flags: f.flags,
                keywords: f.keywords,
                internal_date: f.internal_date,
                data: data.into_vec(),
            };
            by_folder.entry(folder).or_default().push(message);
        }
        for (folder, messages) in by_folder {
            if folders.insert(folder.clone()) {
                admin
                    .apply_once(
                        &group,
                        rand::random(),
                        MailOp::CreateMailbox { user: user.clone(), mailbox: folder.clone() },
                    )
                    .await?;
            }
            let count = messages.len() as u32;
            let op_id = batch_id(&format!("backup {user}"), &batch[..answered], Some(&folder));
            admin
                .apply_once(
                    &group,
                    op_id,
                    MailOp::AppendMany { user: user.clone(), mailbox: folder, messages, now_s: common::clock::now_s() },
                )
                .await?;
            restored += count;
        }
        bar.inc(answered as u64);
        pending = &pending[answered..];
    }
    bar.finish_and_clear();
    Ok(restored)
}

/// Copy the user's mail from backup node `node`'s replica into their group, adding what
/// the group lacks.
pub async fn from_backup(admin: &Admin, dir: &UserDirectory, address: &str, node: u64) -> anyhow::Result<Copied> {
    let (user, group) = dir.locate(address).await?;
    let source = Source::Replica { group: group.clone(), node_admin: backup_admin(admin, node)? };
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")?);
    let copied = copy_round(admin, &user, (&source, &group), CopyMode::Fill, &bar).await?;
    bar.finish_and_clear();
    Ok(copied)
}

/// The operation id of one batch: a retried batch is the same operation.
fn batch_id(user: &str, batch: &[(String, String)], into: Option<&str>) -> [u8; 16] {
    let mut parts: Vec<&[u8]> = vec![b"restore", user.as_bytes(), into.unwrap_or("").as_bytes()];
    for (set, file) in batch {
        parts.push(set.as_bytes());
        parts.push(file.as_bytes());
    }
    storaged::mailstore::OpId::digest(&parts).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(mailbox: &str, since: Option<i64>, id: &str, restored: bool) -> KeptItem {
        KeptItem {
            origin: None,
            set: "5".into(),
            file: "f".into(),
            mailbox: mailbox.into(),
            folder_deleted: false,
            user_deleted: false,
            kept_since_s: since,
            flags: 0,
            keywords: vec![],
            internal_date: 0,
            size: 1,
            message_id: id.into(),
            subject: String::new(),
            restored,
        }
    }

    #[test]
    fn a_choice_selects_by_folder_time_and_message_id() {
        let all = Choice::default();
        assert!(all.takes(&item("INBOX", None, "<a@x>", false)));
        assert!(!all.takes(&item("INBOX", None, "<a@x>", true)), "restored once is enough");
        let c = Choice { folder: Some("inbox".into()), since_s: Some(100), message_id: Some("a@x".into()) };
        assert!(c.takes(&item("INBOX", Some(100), "<a@x>", false)));
        assert!(c.takes(&item("INBOX", None, "<a@x>", false)), "not stamped yet: kept just now");
        assert!(!c.takes(&item("INBOX", Some(99), "<a@x>", false)));
        assert!(!c.takes(&item("Sent", Some(100), "<a@x>", false)));
        assert!(!c.takes(&item("INBOX", Some(100), "<b@x>", false)));
    }
}
