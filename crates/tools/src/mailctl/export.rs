//! `mailctl export USER DIR`: write a user's mail as a standard Maildir++ tree that Dovecot
//! serves with the same UIDVALIDITY and UIDs — each folder's `dovecot-uidlist` and
//! `dovecot-keywords`, file names carrying flags and keyword letters, mtimes set to the
//! internal dates, and the `subscriptions` file — while the user keeps working.
//!
//! The listing (UIDs, flags, keywords) is the state at one log index (one `UserMail`
//! answer); messages are immutable, so their bytes, fetched afterwards, are those of that
//! state, except for a message expunged in between, which is named, not silently left out.
//! Files are written to `tmp/` and renamed, 0600 in 0700 directories; an existing, non-empty
//! DIR is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::admin::{MailboxSummary, MessageSummary};
use indicatif::{ProgressBar, ProgressStyle};
use storaged::interchange::{filename, keywords, subscriptions, uidlist, Problem};

use super::admin::Admin;
use super::directory::UserDirectory;

/// Messages fetched per request at most, and bytes (the answer may stop earlier).
const FETCH_MESSAGES_MAX: usize = 256;
const FETCH_BYTES_MAX: u64 = 4 << 20;

/// What an export wrote.
#[derive(Debug, Default)]
pub struct ExportReport {
    pub user: String,
    pub folders: usize,
    pub messages: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
    pub elapsed: Duration,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "not exported as it stood: {p}")?;
        }
        write!(
            f,
            "exported {} messages ({} bytes) in {} folders of {} in {:.1} s; {} problems",
            self.messages,
            self.bytes,
            self.folders,
            self.user,
            self.elapsed.as_secs_f64(),
            self.problems.len()
        )
    }
}

/// Export `address`'s mail into `dest`.
pub async fn export(admin: &Admin, dir: &UserDirectory, address: &str, dest: &Path) -> anyhow::Result<ExportReport> {
    let started = Instant::now();
    let (user, group) = dir.locate(address).await?;
    prepare(dest)?;
    let mail = admin.user_mail(&group, &user).await?;
    let total: u64 = mail.mailboxes.iter().flat_map(|m| &m.messages).map(|m| m.size_bytes).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")?.progress_chars("=> "),
    );
    let mut report = ExportReport { user: user.clone(), ..Default::default() };
    for mb in &mail.mailboxes {
        bar.set_message(format!("exporting {}", mb.name));
        export_folder(admin, (&group, &user), mb, dest, &bar, &mut report).await?;
        report.folders += 1;
    }
    bar.finish_and_clear();
    let subscribed: Vec<String> = mail.mailboxes.iter().filter(|m| m.subscribed).map(|m| m.name.clone()).collect();
    write_file(dest, "subscriptions", subscriptions::write_dovecot(&subscribed).as_bytes(), None)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Make `dest` (0700), refusing one that holds anything.
fn prepare(dest: &Path) -> anyhow::Result<()> {
    if dest.exists() && fs::read_dir(dest)?.next().is_some() {
        bail!("{} is not empty: export into a new directory", dest.display());
    }
    make_maildir(dest)
}

fn make_maildir(dir: &Path) -> anyhow::Result<()> {
    for sub in ["", "cur", "new", "tmp"] {
        let path = dir.join(sub);
        if !path.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .with_context(|| format!("making {}", path.display()))?;
        }
    }
    Ok(())
}

/// The Maildir++ directory of a mailbox: DIR for INBOX, `DIR/.a.b` for `a/b`.
fn folder_dir(dest: &Path, mailbox: &str) -> PathBuf {
    if mailbox == "INBOX" {
        dest.to_path_buf()
    } else {
        dest.join(format!(".{}", mailbox.replace('/', ".")))
    }
}

async fn export_folder(
    admin: &Admin,
    (group, user): (&str, &str),
    mb: &MailboxSummary,
    dest: &Path,
    bar: &ProgressBar,
    report: &mut ExportReport,
) -> anyhow::Result<()> {
    let dir = folder_dir(dest, &mb.name);
    make_maildir(&dir)?;
    if mb.name != "INBOX" {
        write_file(&dir, "maildirfolder", b"", None)?;
    }
    let (letters, unlettered) = keyword_letters(&mb.messages);
    if !unlettered.is_empty() {
        let why = format!("keywords beyond Dovecot's 26 letters not carried: {}", unlettered.join(" "));
        report.problems.push(Problem::new(format!("{user} {}", mb.name), why));
    }
    let names: Vec<String> = letters.keys().cloned().collect();
    let mut listed: Vec<(u32, String)> = Vec::with_capacity(mb.messages.len());
    let mut pending: Vec<&MessageSummary> = mb.messages.iter().collect();
    while !pending.is_empty() {
        let take = chunk_len(&pending);
        let uids: Vec<u32> = pending[..take].iter().map(|m| m.uid).collect();
        let got = admin.fetch(group, user, &mb.name, &uids).await?;
        if got.is_empty() {
            bail!("{group} answered no message of {} ({} asked)", mb.name, uids.len());
        }
        let answered: BTreeMap<u32, Option<Vec<u8>>> = got.into_iter().collect();
        let mut rest = Vec::new();
        for m in pending {
            match answered.get(&m.uid) {
                None => rest.push(m),
                Some(None) => report.problems.push(Problem::new(
                    format!("{user} {} UID {}", mb.name, m.uid),
                    "expunged while the export ran: not exported",
                )),
                Some(Some(data)) => {
                    let base = format!("{}.M{}P{}.export,S={}", m.internal_date, m.uid, mb.uid_validity, data.len());
                    let kw: Vec<u8> = m.keywords.iter().filter_map(|k| letters.get(k).copied()).collect();
                    let name = filename::format(&base, m.flags, &kw);
                    write_file(&dir, &format!("cur/{name}"), data, Some(m.internal_date))?;
                    listed.push((m.uid, base));
                    report.messages += 1;
                    report.bytes += data.len() as u64;
                    bar.inc(m.size_bytes);
                }
            }
        }
        pending = rest;
    }
    let guid: [u8; 16] = rand::random();
    let list = uidlist::write(mb.uid_validity, mb.uid_next, guid, listed.iter().map(|(u, b)| (*u, b.as_str())));
    write_file(&dir, "dovecot-uidlist", list.as_bytes(), None)?;
    if !names.is_empty() {
        write_file(&dir, "dovecot-keywords", keywords::write(&names).as_bytes(), None)?;
    }
    Ok(())
}

/// How many of `pending` one fetch asks for.
fn chunk_len(pending: &[&MessageSummary]) -> usize {
    let mut bytes = 0;
    pending
        .iter()
        .take(FETCH_MESSAGES_MAX)
        .take_while(|m| {
            let first = bytes == 0;
            bytes += m.size_bytes;
            first || bytes <= FETCH_BYTES_MAX
        })
        .count()
}

/// The letter of each keyword of a folder (the 26 most used, in name order) and the
/// keywords left without one.
fn keyword_letters(messages: &[MessageSummary]) -> (BTreeMap<String, u8>, Vec<String>) {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for m in messages {
        for k in &m.keywords {
            *uses.entry(k.as_str()).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&str, usize)> = uses.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let lettered: BTreeSet<&str> = ranked.iter().take(keywords::LETTERS_MAX).map(|(k, _)| *k).collect();
    let letters = lettered.iter().enumerate().map(|(i, k)| (k.to_string(), i as u8)).collect();
    let rest = ranked.iter().skip(keywords::LETTERS_MAX).map(|(k, _)| k.to_string()).collect();
    (letters, rest)
}

/// Write `dir/name` through `tmp/` (0600), its mtime `mtime_s` if given.
fn write_file(dir: &Path, name: &str, data: &[u8], mtime_s: Option<i64>) -> anyhow::Result<()> {
    let tmp = dir.join("tmp").join(name.rsplit('/').next().unwrap_or(name));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data).with_context(|| format!("writing {}", tmp.display()))?;
    if let Some(t) = mtime_s {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        f.set_times(fs::FileTimes::new().set_modified(at).set_accessed(at))?;
    }
    drop(f);
    let path = dir.join(name);
    fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(uid: u32, keywords: &[&str]) -> MessageSummary {
        MessageSummary {
            uid,
            flags: 0,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            internal_date: 0,
            modseq: 1,
            size_bytes: 10,
            email_id: u64::from(uid),
            saved_s: 0,
        }
    }

    #[test]
    fn the_most_used_keywords_get_the_26_letters() {
        let mut messages: Vec<MessageSummary> = (0..30).map(|k| msg(k + 1, &[&format!("k{k:02}")])).collect();
        messages.push(msg(99, &["k05", "k29"]));
        let (letters, rest) = keyword_letters(&messages);
        assert_eq!(letters.len(), 26);
        assert!(letters.contains_key("k05") && letters.contains_key("k29"));
        assert_eq!(rest, vec!["k25", "k26", "k27", "k28"]);
        assert_eq!(letters["k00"], 0, "letters in name order");
    }

    #[test]
    fn folders_map_to_maildir_plus_plus() {
        let d = Path::new("/x");
        assert_eq!(folder_dir(d, "INBOX"), PathBuf::from("/x"));
        assert_eq!(folder_dir(d, "Archive/2024"), PathBuf::from("/x/.Archive.2024"));
    }
}
