//! `mailctl phish` and `mailctl block`: the postmaster's view of snagged accounts and of
//! the cluster's block list, both kept in the stats group's replicated records
//! (`common::security`). `phish release USER` undoes a snag: the account unlocked in its
//! group and in the directory with a new password (printed once), its held messages sent
//! on (or deleted), its tickets closed. The address stays blocked until `block remove`.

use common::admin::{AdminReply, AdminRequest};
use common::password::{Digest, PasswordHash};
use common::security::{BlockEntry, SecurityChange, Ticket};

use super::admin::Admin;
use super::directory::UserDirectory;

fn when(at_s: i64) -> String {
    chrono::DateTime::from_timestamp(at_s, 0)
        .map_or_else(|| at_s.to_string(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

fn records_group(admin: &Admin) -> anyhow::Result<String> {
    admin.front_config().stats_group().ok_or_else(|| anyhow::anyhow!("the front's configuration lists no group"))
}

async fn change(admin: &Admin, group: &str, change: SecurityChange) -> anyhow::Result<AdminReply> {
    let request = AdminRequest::Security { group: group.to_string(), op_id: rand::random(), change };
    match admin.call(group, request).await? {
        AdminReply::Refused(why) | AdminReply::Failed(why) => anyhow::bail!("{group}: {why}"),
        reply => Ok(reply),
    }
}

/// Every ticket, newest last.
pub async fn tickets(admin: &Admin) -> anyhow::Result<Vec<Ticket>> {
    let group = records_group(admin)?;
    match admin.call(&group, AdminRequest::Tickets { group: group.clone() }).await? {
        AdminReply::Tickets(t) => Ok(t),
        other => anyhow::bail!("{group}: {other}"),
    }
}

/// One line per ticket: id, time, state, user, rule, address.
pub fn render_tickets(tickets: &[Ticket]) -> String {
    let mut out = String::new();
    for t in tickets {
        let state = if t.closed.is_some() { "closed" } else { "open" };
        out += &format!("{:<8} {}  {state:<6} {:<32} {:<18} {}\n", t.id, when(t.at_s), t.user, t.rule, t.ip);
    }
    if out.is_empty() {
        out = "no tickets\n".into();
    }
    out
}

/// A user's tickets in full.
pub fn render_user(tickets: &[Ticket], user: &str) -> String {
    let mut out = String::new();
    for t in tickets.iter().filter(|t| t.user.eq_ignore_ascii_case(user)) {
        out += &format!(
            "ticket {} at {} from {} via {}\n  rule: {}\n  {}\n",
            t.id,
            when(t.at_s),
            t.ip,
            t.front,
            t.rule,
            t.detail
        );
        for (g, id) in &t.held {
            out += &format!("  held: {g}/{id}\n");
        }
        if let Some((at, note)) = &t.closed {
            out += &format!("  closed {}: {note}\n", when(*at));
        }
    }
    if out.is_empty() {
        out = format!("no tickets for {user}\n");
    }
    out
}

/// Undo the snag of `user`; the new password.
pub async fn release(admin: &Admin, dir: &UserDirectory, user: &str, delete_held: bool) -> anyhow::Result<String> {
    let (mail, host) = dir.locate(user).await?;
    let group = host;
    let password = format!("{:024x}", rand::random::<u128>() & ((1u128 << 96) - 1));
    let hash = PasswordHash::salted(Digest::Sha512, &password).to_stored();
    dir.modify(&mail, &[("accountStatus", Some("active")), ("mailPhishLock", None), ("userPassword", Some(&hash))])
        .await?;
    for g in [&group, &records_group(admin)?] {
        change(admin, g, SecurityChange::Lock { user: mail.clone(), reason: None }).await?;
    }
    // Logins before now no longer count against the account.
    let marker = common::logins::LoginRecord {
        at_s: chrono::Utc::now().timestamp(),
        protocol: common::logins::RELEASED.into(),
        ip: std::net::IpAddr::from([0, 0, 0, 0]),
        country: None,
        continent: None,
        location: None,
        front: "mailctl".into(),
    };
    let request =
        AdminRequest::RecordLogin { group: group.clone(), user: mail.clone(), op_id: rand::random(), record: marker };
    admin.call(&group, request).await?;
    let records = records_group(admin)?;
    let open: Vec<Ticket> =
        tickets(admin).await?.into_iter().filter(|t| t.user == mail && t.closed.is_none()).collect();
    for t in &open {
        for (g, id) in &t.held {
            let request = if delete_held {
                AdminRequest::Delete { group: g.clone(), ids: vec![*id] }
            } else {
                AdminRequest::Flush { group: g.clone(), ids: vec![*id] }
            };
            admin.call(g, request).await?;
        }
        let note = if delete_held { "released; held mail deleted" } else { "released; held mail sent" };
        change(admin, &records, SecurityChange::CloseTicket { id: t.id, note: note.into() }).await?;
    }
    Ok(password)
}

/// The networks blocked now.
pub async fn blocks(admin: &Admin) -> anyhow::Result<Vec<BlockEntry>> {
    let group = records_group(admin)?;
    match admin.call(&group, AdminRequest::Blocks { group: group.clone() }).await? {
        AdminReply::Blocks { blocks, .. } => Ok(blocks),
        other => anyhow::bail!("{group}: {other}"),
    }
}

pub fn render_blocks(blocks: &[BlockEntry]) -> String {
    let mut out = String::new();
    for b in blocks {
        out += &format!("{:<20} until {}  {}\n", b.network, when(b.until_s), b.reason);
    }
    if out.is_empty() {
        out = "no blocked networks\n".into();
    }
    out
}

/// Block `network` for `days`.
pub async fn block(admin: &Admin, network: &str, days: u64, reason: &str) -> anyhow::Result<()> {
    network.parse::<common::network::Network>().map_err(|e| anyhow::anyhow!(e))?;
    let now = chrono::Utc::now().timestamp();
    let until_s = now.saturating_add(days.saturating_mul(86_400) as i64);
    let group = records_group(admin)?;
    change(admin, &group, SecurityChange::Block { network: network.into(), until_s, reason: reason.into() }).await?;
    Ok(())
}

/// Remove `network` from the block list.
pub async fn unblock(admin: &Admin, network: &str) -> anyhow::Result<()> {
    let group = records_group(admin)?;
    change(admin, &group, SecurityChange::Unblock { network: network.into() }).await?;
    Ok(())
}
