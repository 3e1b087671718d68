//! `mailctl import USER SRC`: bring an existing Maildir++ tree (Dovecot's or Courier's) into
//! the user's mailhost with its UIDVALIDITY, UIDs, flags, keywords, internal dates and
//! subscriptions, so clients that synced against the old server find the same mailboxes and
//! download nothing again.
//!
//! Each folder is planned ([`storaged::interchange::plan`]), then committed in
//! `ImportMessages` batches bounded in count and bytes (each with an id derived from the
//! folder and its UIDs, so a retried batch is filed once) and a `SyncMailbox` that sets the
//! folder's UIDNEXT to the source's; then the subscriptions (see [`subscribe`]). Resumable: a second run skips every UID the target
//! already has. A folder the target already holds under another UIDVALIDITY is not touched
//! (the user's own mail is never renumbered); every file not imported as it stood is named.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use storaged::interchange::plan::{plan, FolderPlan, Planned};
use storaged::interchange::Problem;
use storaged::mailstore::ops::ImportedMessage;
use storaged::mailstore::{MailOp, MailResponse, OpId};

use super::admin::Admin;
use super::directory::UserDirectory;
use super::maildir_tree::{self, TreeFolder};

/// Messages per import entry at most, and bytes (one larger message goes alone).
const BATCH_MESSAGES_MAX: usize = 256;
const BATCH_BYTES_MAX: u64 = 2 << 20;

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub user: String,
    pub group: String,
    pub folders: usize,
    pub messages: u64,
    pub bytes: u64,
    /// Messages the target already had (an earlier, interrupted run).
    pub already: u64,
    /// Messages given UIDs the source's lists did not name.
    pub new_uids: usize,
    pub problems: Vec<Problem>,
    pub elapsed: Duration,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "not imported as it stood: {p}")?;
        }
        let secs = self.elapsed.as_secs_f64().max(1e-6);
        write!(
            f,
            "imported {} messages ({} bytes) in {} folders for {} on {} in {secs:.1} s ({:.0} messages/s); \
             {} already there; {} given new UIDs; {} problems",
            self.messages,
            self.bytes,
            self.folders,
            self.user,
            self.group,
            self.messages as f64 / secs,
            self.already,
            self.new_uids,
            self.problems.len()
        )
    }
}

/// Import the tree at `src` for `address`.
pub async fn import(admin: &Admin, dir: &UserDirectory, address: &str, src: &Path) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let (user, group) = dir.locate(address).await?;
    let (folders, problems) = maildir_tree::folders(src)?;
    let target = admin.user_mail(&group, &user).await?;
    let mut report = ImportReport { user: user.clone(), group: group.clone(), problems, ..Default::default() };
    let fresh = chrono::Utc::now().timestamp() as u32;
    let mut work = Vec::new();
    for (k, folder) in folders.iter().enumerate() {
        let p = plan(&folder.source, fresh.wrapping_add(k as u32).max(1));
        report.problems.extend(p.problems.iter().cloned());
        let have = target.mailboxes.iter().find(|m| m.name == folder.name);
        if let Some(have) = have.filter(|h| h.uid_validity != p.uid_validity && !h.messages.is_empty()) {
            report.problems.push(Problem::new(
                folder.dir.display().to_string(),
                format!(
                    "{user}'s {} already holds {} messages under UIDVALIDITY {} (the source has {}): folder not imported",
                    folder.name,
                    have.messages.len(),
                    have.uid_validity,
                    p.uid_validity
                ),
            ));
            continue;
        }
        let from_uid = have.filter(|h| h.uid_validity == p.uid_validity).map_or(1, |h| h.uid_next);
        report.already += p.messages.iter().filter(|m| m.uid < from_uid).count() as u64;
        report.new_uids += p.new_uids;
        work.push((folder, p, from_uid));
    }
    let total: u64 = work
        .iter()
        .flat_map(|(_, p, from)| p.messages.iter().filter(move |m| m.uid >= *from))
        .map(|m| m.len_bytes)
        .sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")?.progress_chars("=> "),
    );
    for (folder, p, from_uid) in &work {
        bar.set_message(format!("importing {}", folder.name));
        import_folder(admin, (&user, &group), folder, p, *from_uid, &bar, &mut report).await?;
        report.folders += 1;
    }
    bar.finish_and_clear();
    let imported: Vec<String> = work.iter().map(|(f, _, _)| f.name.clone()).collect();
    subscribe(admin, (&user, &group), src, &imported, &mut report).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Commit one folder: its mailbox (with the source's UIDVALIDITY), its messages from
/// `from_uid` on, and its UIDNEXT.
async fn import_folder(
    admin: &Admin,
    (user, group): (&str, &str),
    folder: &TreeFolder,
    p: &FolderPlan,
    from_uid: u32,
    bar: &ProgressBar,
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    let todo: Vec<&Planned> = p.messages.iter().filter(|m| m.uid >= from_uid).collect();
    // An empty first batch makes the mailbox with the source's UIDVALIDITY.
    let mut batches: Vec<&[&Planned]> = vec![&[]];
    batches.extend(batches_of(&todo));
    for batch in batches {
        let mut messages = Vec::with_capacity(batch.len());
        for m in batch {
            let file = &folder.source.files[m.file];
            match read_message(&folder.paths[m.file]) {
                Ok(data) => {
                    report.bytes += data.len() as u64;
                    messages.push(ImportedMessage {
                        uid: m.uid,
                        flags: m.flags,
                        keywords: m.keywords.clone(),
                        internal_date: m.internal_date,
                        modseq: 0,
                        data,
                    });
                }
                Err(why) => report.problems.push(Problem::new(&file.path, why)),
            }
            bar.inc(m.len_bytes);
        }
        let op_id = batch_id(b"import", user, &folder.name, p.uid_validity, batch);
        let sent = messages.len() as u64;
        let op = MailOp::ImportMessages {
            user: user.into(),
            mailbox: folder.name.clone(),
            uid_validity: p.uid_validity,
            messages,
        };
        let imported = match admin.apply_once(group, op_id, op).await? {
            MailResponse::Imported { count, .. } => u64::from(count),
            other => bail!("{group} answered an import with {other:?}: is every node and mailctl the same version?"),
        };
        // The store skips UIDs below the mailbox's UIDNEXT: mail delivered meanwhile took them.
        if imported < sent {
            let why = format!(
                "{} of {sent} messages up to UID {} not imported: the mailbox took new mail meanwhile \
                 (import before mail is delivered here)",
                sent - imported,
                batch.last().map_or(0, |m| m.uid)
            );
            report.problems.push(Problem::new(folder.dir.display().to_string(), why));
        }
        report.messages += imported;
    }
    let sync = MailOp::SyncMailbox {
        user: user.into(),
        mailbox: folder.name.clone(),
        uid_validity: p.uid_validity,
        uid_next: p.next_uid,
        highest_modseq: 0,
        states: Vec::new(),
        expunged: Vec::new(),
    };
    admin.apply_once(group, batch_id(b"uidnext", user, &folder.name, p.uid_validity, &[]), sync).await?;
    Ok(())
}

/// A message file's bytes; why not, as a sentence.
fn read_message(path: &Path) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot be read ({e}): skipped"))?;
    let data = storaged::interchange::crlf(data);
    if data.is_empty() || data.len() > storaged::mailstore::store::MESSAGE_MAX {
        return Err(format!("{} bytes now: skipped", data.len()));
    }
    Ok(data)
}

/// Split messages into batches bounded in count and bytes.
fn batches_of<'a>(items: &'a [&'a Planned]) -> Vec<&'a [&'a Planned]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in items.iter().enumerate() {
        if i > start && (i - start >= BATCH_MESSAGES_MAX || bytes + m.len_bytes > BATCH_BYTES_MAX) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += m.len_bytes;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// The operation id of one batch: a retried batch is the same operation.
fn batch_id(kind: &[u8], user: &str, mailbox: &str, uid_validity: u32, batch: &[&Planned]) -> [u8; 16] {
    let first = batch.first().map_or(0, |m| m.uid);
    let last = batch.last().map_or(0, |m| m.uid);
    OpId::digest(&[
        kind,
        user.as_bytes(),
        mailbox.as_bytes(),
        &uid_validity.to_le_bytes(),
        &first.to_le_bytes(),
        &last.to_le_bytes(),
    ])
    .0
}

/// Subscribe the user to what the tree's subscription file names, and to the standard
/// folders it has (Sent, Drafts, Trash, Junk, Archive): every account here has those
/// subscribed from its first login, and a Dovecot that made them (`auto = subscribe`) lists
/// them subscribed without writing them to its file.
async fn subscribe(
    admin: &Admin,
    (user, group): (&str, &str),
    src: &Path,
    folders: &[String],
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    let mut names = maildir_tree::subscribed(src).unwrap_or_else(|p| {
        report.problems.push(p);
        Vec::new()
    });
    let standard = storaged::imap::session::SPECIAL_USE.iter().map(|(n, _)| n.to_string());
    names.extend(standard.filter(|n| folders.contains(n)));
    names.sort();
    names.dedup();
    for name in names {
        if storaged::mailstore::MailboxName::parse(&name).is_err() {
            report.problems.push(Problem::new(format!("subscription {name}"), "not a mailbox name the store takes"));
            continue;
        }
        let op = MailOp::Subscribe { user: user.into(), mailbox: name, subscribed: true };
        admin.apply_once(group, rand::random(), op).await?;
    }
    Ok(())
}

/// Fail when anything was not imported as it stood, so scripts notice.
pub fn verdict(report: &ImportReport) -> anyhow::Result<()> {
    if !report.problems.is_empty() {
        bail!("{} items of the source were not imported as they stood (listed above)", report.problems.len());
    }
    Ok(())
}
