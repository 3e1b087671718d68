//! `mailctl quarantine`: what the scanning stage held back for a user (their `Quarantine`
//! mailbox), through the admin port of the user's mailhost: list, show, release (a move to
//! INBOX committed as one operation under an id derived from the message, so a retry
//! after a failover is answered from the first commit and never releases twice) and
//! delete. It never touches another mailbox than the quarantine.

use anyhow::{bail, Context};
use common::admin::MailboxSummary;
use storaged::mailstore::digest::header;
use storaged::mailstore::{MailOp, MailResponse, OpId};

use super::admin::Admin;
use super::directory::UserDirectory;

const QUARANTINE: &str = "Quarantine";
/// Messages listed at most (the newest).
const LISTED_MAX: usize = 500;

/// A user's quarantine: their primary address, mailhost and the mailbox (if any).
async fn quarantine_of(
    admin: &Admin,
    dir: &UserDirectory,
    address: &str,
) -> anyhow::Result<(String, String, Option<MailboxSummary>)> {
    let (user, group) = dir.locate(address).await?;
    let mail = admin.user_mail(&group, &user).await?;
    let held = mail.mailboxes.into_iter().find(|m| m.name == QUARANTINE);
    Ok((user, group, held))
}

/// One line per held message: id (UID), when it arrived, its score, sender and subject.
pub async fn list(admin: &Admin, dir: &UserDirectory, address: &str) -> anyhow::Result<String> {
    let (user, group, held) = quarantine_of(admin, dir, address).await?;
    let Some(held) = held.filter(|m| !m.messages.is_empty()) else {
        return Ok(format!("{user}: quarantine is empty\n"));
    };
    let newest: Vec<_> = held.messages.iter().rev().take(LISTED_MAX).collect();
    let uids: Vec<u32> = newest.iter().map(|m| m.uid).collect();
    let bodies = admin.fetch(&group, &user, QUARANTINE, &uids).await?;
    let mut out = format!(
        "{user}: {} held on {group}\nID      RECEIVED (UTC)       SCORE   FROM / SUBJECT\n",
        held.messages.len()
    );
    for (m, (_, body)) in newest.iter().zip(bodies) {
        let body = body.unwrap_or_default();
        let when = chrono::DateTime::from_timestamp(m.internal_date, 0)
            .map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M").to_string());
        out.push_str(&format!(
            "{:<7} {when:<20} {:>6}  {} / {}\n",
            m.uid,
            header(&body, "X-Spam-Score"),
            header(&body, "From"),
            header(&body, "Subject")
        ));
    }
    Ok(out)
}

/// The whole held message `uid`.
pub async fn show(admin: &Admin, dir: &UserDirectory, address: &str, uid: u32) -> anyhow::Result<Vec<u8>> {
    let (user, group, _) = quarantine_of(admin, dir, address).await?;
    let mut found = admin.fetch(&group, &user, QUARANTINE, &[uid]).await?;
    found.pop().and_then(|(_, b)| b).with_context(|| format!("{user} has no held message {uid}"))
}

/// The message's identity across retries: the user, the quarantine's UIDVALIDITY and UID.
fn op_id(what: &str, user: &str, held: &MailboxSummary, uid: u32) -> [u8; 16] {
    OpId::digest(&[what.as_bytes(), user.as_bytes(), &held.uid_validity.to_le_bytes(), &uid.to_le_bytes()]).0
}

/// Move held message `uid` to INBOX.
pub async fn release(admin: &Admin, dir: &UserDirectory, address: &str, uid: u32) -> anyhow::Result<String> {
    let (user, group, held) = quarantine_of(admin, dir, address).await?;
    let Some(held) = held else { bail!("{user} has no quarantine") };
    let op = MailOp::Move {
        user: user.clone(),
        from: QUARANTINE.into(),
        to: "INBOX".into(),
        uids: vec![uid],
        now_s: common::clock::now_s(),
    };
    match admin.apply_once(&group, op_id("release", &user, &held, uid), op).await? {
        MailResponse::Copied { pairs, .. } => match pairs.first() {
            Some((_, new)) => Ok(format!("released {uid} to {user}'s INBOX (uid {new})")),
            None => bail!("{user} has no held message {uid}"),
        },
        MailResponse::Rejected(why) => bail!("refused: {why}"),
        _ => bail!("the node gave an unexpected answer: is every node and mailctl the same version?"),
    }
}

/// Expunge held message `uid`.
pub async fn delete(admin: &Admin, dir: &UserDirectory, address: &str, uid: u32) -> anyhow::Result<String> {
    let (user, group, held) = quarantine_of(admin, dir, address).await?;
    let Some(held) = held.filter(|m| m.messages.iter().any(|m| m.uid == uid)) else {
        bail!("{user} has no held message {uid}")
    };
    let op = MailOp::Expunge { user: user.clone(), mailbox: QUARANTINE.into(), uids: vec![uid] };
    admin.apply_once(&group, op_id("delete", &user, &held, uid), op).await?;
    Ok(format!("deleted held message {uid} of {user}"))
}
