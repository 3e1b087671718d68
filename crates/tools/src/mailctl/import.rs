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
use super::imap_source::{ImapSource, ImapUrl, SourceMailbox};
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

/// One folder to import, whatever the source: its mailbox, where problems point, its
/// UIDVALIDITY and UIDNEXT, and its messages in UID order.
struct FolderJob {
    name: String,
    shown: String,
    uid_validity: u32,
    next_uid: u32,
    messages: Vec<Planned>,
    /// The first UID the target lacks.
    from_uid: u32,
}

/// Where the messages' bytes come from.
trait Bodies {
    /// The bytes of `batch` of folder `job` (its index among the jobs), or why not, each.
    fn read(&mut self, job: usize, batch: &[&Planned]) -> Vec<Result<Vec<u8>, (String, String)>>;
}

/// Files of a Maildir tree, read from disk.
struct MaildirBodies<'a>(&'a [&'a TreeFolder]);

impl Bodies for MaildirBodies<'_> {
    fn read(&mut self, job: usize, batch: &[&Planned]) -> Vec<Result<Vec<u8>, (String, String)>> {
        let folder = self.0[job];
        let read = |m: &&Planned| {
            read_message(&folder.paths[m.file]).map_err(|why| (folder.source.files[m.file].path.clone(), why))
        };
        batch.iter().map(read).collect()
    }
}

/// Messages of a live IMAP server, fetched a batch at a time.
struct ImapBodies<'a> {
    source: &'a mut ImapSource,
    mailboxes: Vec<SourceMailbox>,
    selected: Option<usize>,
}

impl Bodies for ImapBodies<'_> {
    fn read(&mut self, job: usize, batch: &[&Planned]) -> Vec<Result<Vec<u8>, (String, String)>> {
        let mb = &self.mailboxes[job];
        let what = |uid: u32| format!("{} UID {uid}", mb.wire);
        let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
        let opened = match self.selected {
            Some(open) if open == job => Ok(()),
            _ => self.source.select(mb).map(|()| self.selected = Some(job)),
        };
        let fetched = opened.and_then(|()| self.source.bodies(&uids));
        let mut fetched = match fetched {
            Ok(f) => f,
            Err(e) => return batch.iter().map(|m| Err((what(m.uid), format!("not fetched: {e:#}")))).collect(),
        };
        batch
            .iter()
            .map(|m| match fetched.remove(&m.uid).map(storaged::interchange::crlf) {
                Some(d) if !d.is_empty() && d.len() <= storaged::mailstore::store::MESSAGE_MAX => Ok(d),
                Some(d) => Err((what(m.uid), format!("{} bytes: skipped", d.len()))),
                None => Err((what(m.uid), "expunged on the old server meanwhile: skipped".into())),
            })
            .collect()
    }
}

/// Import the tree at `src` for `address`.
pub async fn import(admin: &Admin, dir: &UserDirectory, address: &str, src: &Path) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let (user, group) = dir.locate(address).await?;
    let (folders, problems) = maildir_tree::folders(src)?;
    let mut report = ImportReport { user: user.clone(), group: group.clone(), problems, ..Default::default() };
    let fresh = chrono::Utc::now().timestamp() as u32;
    let mut jobs = Vec::new();
    for (k, folder) in folders.iter().enumerate() {
        let p = plan(&folder.source, fresh.wrapping_add(k as u32).max(1));
        report.problems.extend(p.problems.iter().cloned());
        report.new_uids += p.new_uids;
        let FolderPlan { uid_validity, next_uid, messages, .. } = p;
        let shown = folder.dir.display().to_string();
        jobs.push(FolderJob { name: folder.name.clone(), shown, uid_validity, next_uid, messages, from_uid: 1 });
    }
    let refs: Vec<&TreeFolder> = folders.iter().collect();
    let imported = run_jobs(admin, (&user, &group), jobs, &mut MaildirBodies(&refs), &mut report).await?;
    let mut names = maildir_tree::subscribed(src).unwrap_or_else(|p| {
        report.problems.push(p);
        Vec::new()
    });
    // Every account here has the standard folders subscribed from its first login, and a
    // Dovecot that made them (`auto = subscribe`) lists them so without writing its file.
    let standard = storaged::imap::session::SPECIAL_USE.iter().map(|(n, _)| n.to_string());
    names.extend(standard.filter(|n| imported.contains(n)));
    subscribe(admin, (&user, &group), names, &mut report).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Import a live IMAP server's mailboxes for `address` (the old server's login and
/// password given), keeping UIDVALIDITY and UIDs wherever the target folder is new or
/// empty, with flags, keywords, internal dates and subscriptions.
pub async fn import_imap(
    admin: &Admin,
    dir: &UserDirectory,
    address: &str,
    (url, password, ca_file): (&ImapUrl, &str, &Path),
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let (user, group) = dir.locate(address).await?;
    let mut source = ImapSource::connect(url, password, ca_file)?;
    let mailboxes = source.mailboxes()?;
    let mut report = ImportReport { user: user.clone(), group: group.clone(), ..Default::default() };
    let (mut jobs, mut kept) = (Vec::new(), Vec::new());
    for mb in mailboxes {
        if storaged::mailstore::MailboxName::parse(&mb.name).is_err() {
            report.problems.push(Problem::new(&mb.wire, "not a mailbox name the store takes: skipped"));
            continue;
        }
        let (uid_validity, next_uid, messages) = source.listing(&mb)?;
        jobs.push(FolderJob {
            name: mb.name.clone(),
            shown: mb.wire.clone(),
            uid_validity,
            next_uid,
            messages,
            from_uid: 1,
        });
        kept.push(mb);
    }
    let subscribed = source.subscribed()?;
    let mut bodies = ImapBodies { source: &mut source, mailboxes: kept, selected: None };
    run_jobs(admin, (&user, &group), jobs, &mut bodies, &mut report).await?;
    subscribe(admin, (&user, &group), subscribed, &mut report).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Check each job against what the target holds, then commit them with progress; the
/// names of the folders imported.
async fn run_jobs(
    admin: &Admin,
    (user, group): (&str, &str),
    mut jobs: Vec<FolderJob>,
    bodies: &mut impl Bodies,
    report: &mut ImportReport,
) -> anyhow::Result<Vec<String>> {
    let target = admin.user_mail(group, user).await?;
    for job in &mut jobs {
        let have = target.mailboxes.iter().find(|m| m.name == job.name);
        if let Some(have) = have.filter(|h| h.uid_validity != job.uid_validity && !h.messages.is_empty()) {
            let why = format!(
                "{user}'s {} already holds {} messages under UIDVALIDITY {} (the source has {}): folder not imported",
                job.name,
                have.messages.len(),
                have.uid_validity,
                job.uid_validity
            );
            report.problems.push(Problem::new(&job.shown, why));
            job.from_uid = u32::MAX;
            continue;
        }
        job.from_uid = have.filter(|h| h.uid_validity == job.uid_validity).map_or(1, |h| h.uid_next);
        report.already += job.messages.iter().filter(|m| m.uid < job.from_uid).count() as u64;
    }
    let total: u64 =
        jobs.iter().flat_map(|j| j.messages.iter().filter(|m| m.uid >= j.from_uid)).map(|m| m.len_bytes).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")?.progress_chars("=> "),
    );
    let mut imported = Vec::new();
    for (k, job) in jobs.iter().enumerate().filter(|(_, j)| j.from_uid != u32::MAX) {
        bar.set_message(format!("importing {}", job.name));
        import_folder(admin, (user, group), (k, job), bodies, &bar, report).await?;
        report.folders += 1;
        imported.push(job.name.clone());
    }
    bar.finish_and_clear();
    Ok(imported)
}

/// Commit one folder: its mailbox (with the source's UIDVALIDITY), its messages from
/// `from_uid` on, and its UIDNEXT.
async fn import_folder(
    admin: &Admin,
    (user, group): (&str, &str),
    (k, job): (usize, &FolderJob),
    bodies: &mut impl Bodies,
    bar: &ProgressBar,
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    let todo: Vec<&Planned> = job.messages.iter().filter(|m| m.uid >= job.from_uid).collect();
    // An empty first batch makes the mailbox with the source's UIDVALIDITY.
    let mut batches: Vec<&[&Planned]> = vec![&[]];
    batches.extend(batches_of(&todo));
    for batch in batches {
        let mut messages = Vec::with_capacity(batch.len());
        for (m, read) in batch.iter().zip(bodies.read(k, batch)) {
            match read {
                Ok(data) => {
                    report.bytes += data.len() as u64;
                    let (flags, keywords, internal_date) = (m.flags, m.keywords.clone(), m.internal_date);
                    // A new EMAILID; the save date Dovecot kept is in its own index, not read.
                    messages.push(ImportedMessage {
                        uid: m.uid,
                        flags,
                        keywords,
                        internal_date,
                        modseq: 0,
                        email_id: 0,
                        saved_s: 0,
                        data,
                    });
                }
                Err((what, why)) => report.problems.push(Problem::new(what, why)),
            }
            bar.inc(m.len_bytes);
        }
        let op_id = batch_id(b"import", user, &job.name, job.uid_validity, batch);
        let sent = messages.len() as u64;
        let op = MailOp::ImportMessages {
            user: user.into(),
            mailbox: job.name.clone(),
            uid_validity: job.uid_validity,
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
            report.problems.push(Problem::new(&job.shown, why));
        }
        report.messages += imported;
    }
    let sync = MailOp::SyncMailbox {
        user: user.into(),
        mailbox: job.name.clone(),
        uid_validity: job.uid_validity,
        uid_next: job.next_uid,
        highest_modseq: 0,
        states: Vec::new(),
        expunged: Vec::new(),
    };
    admin.apply_once(group, batch_id(b"uidnext", user, &job.name, job.uid_validity, &[]), sync).await?;
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

/// Subscribe the user to `names` (store form), each one the store takes.
async fn subscribe(
    admin: &Admin,
    (user, group): (&str, &str),
    mut names: Vec<String>,
    report: &mut ImportReport,
) -> anyhow::Result<()> {
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
