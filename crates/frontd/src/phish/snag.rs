//! The response to a phished account ("snag", as the campus called it): a ticket in the
//! cluster's replicated records, the triggering message held in the queue, the account
//! locked in its group (every open session there ends) and in the directory (disabled,
//! marked, password scrambled), the source address blocked on every listener of every
//! front for the configured days, and the postmaster told (webhook, mail). Each step is
//! tried even when an earlier one failed, and every failure is logged: a half-snagged
//! account is better than a free one. What this must never do: log a password.

use common::clock::now_s;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::admin::{AdminReply, AdminRequest};
use common::password::{Digest, PasswordHash};
use common::security::SecurityChange;
use directory::{Account, Directory};

use super::rules::Alarm;
use crate::queue::QueueClient;

/// How long the webhook may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// What was seen, for the ticket.
#[derive(Debug, Clone)]
pub struct Incident {
    pub account: Arc<Account>,
    /// The user's group (their mailHost's).
    pub group: String,
    pub alarm: Alarm,
    pub ip: IpAddr,
    /// The message that tripped a submission rule, to hold: sender, recipients, bytes.
    pub message: Option<(String, Vec<String>, Vec<u8>)>,
}

/// Carries out snags.
#[derive(Debug)]
pub struct Snagger {
    pub admin: Arc<QueueClient>,
    pub directory: Directory,
    /// The LDAP identity that may lock accounts (none: the LDIF file is written).
    pub writer: Option<(String, String)>,
    /// The group holding blocks and tickets.
    pub records_group: String,
    /// Addresses never blocked (the site's relays).
    pub never_block: Vec<common::network::Network>,
    pub block_for: Duration,
    pub host: String,
    pub webhook: Option<String>,
    /// Where the ticket is mailed (through the queue).
    pub notify: Option<String>,
}

fn op_id() -> [u8; 16] {
    rand::random()
}

impl Snagger {
    async fn change(&self, group: &str, change: SecurityChange) -> Result<AdminReply, String> {
        let request = AdminRequest::Security { group: group.to_string(), op_id: op_id(), change };
        match self.admin.call(group, request).await {
            Ok(AdminReply::Refused(why) | AdminReply::Failed(why)) => Err(why),
            Ok(reply) => Ok(reply),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Snag: returns the ticket's id when it could be opened.
    pub async fn snag(&self, incident: Incident) -> Option<u64> {
        let user = incident.account.mail.clone();
        let held = self.hold(&incident).await;
        let open = SecurityChange::OpenTicket {
            user: user.clone(),
            rule: incident.alarm.rule().into(),
            detail: incident.alarm.describe(),
            ip: incident.ip.to_string(),
            front: self.host.clone(),
            held: held.iter().cloned().collect(),
        };
        let ticket = match self.change(&self.records_group, open).await {
            Ok(AdminReply::Opened { id }) => Some(id),
            other => {
                tracing::error!(user, ?other, "phish: the ticket could not be opened");
                None
            }
        };
        let marker = format!(
            "{} {} ticket {}",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            incident.alarm.rule(),
            ticket.map_or_else(|| "-".into(), |t| t.to_string())
        );
        // In the user's group (its sessions end) and in the records every front reads (its
        // logins and mail are refused at once, whatever a directory cache still says).
        for group in [&incident.group, &self.records_group] {
            let lock = SecurityChange::Lock { user: user.clone(), reason: Some(marker.clone()) };
            if let Err(why) = self.change(group, lock).await {
                tracing::error!(user, group, why, "phish: the account could not be locked");
            }
            if incident.group == self.records_group {
                break;
            }
        }
        self.lock_in_directory(&incident.account, &marker).await;
        self.block(incident.ip, &format!("phish {user}: {}", incident.alarm.rule())).await;
        tracing::warn!(user, ip = %incident.ip, rule = incident.alarm.rule(), detail = incident.alarm.describe(), ?ticket, ?held, "phish: account snagged");
        self.tell(&incident, ticket, held).await;
        ticket
    }

    /// Hold the triggering message in the queue of the user's group.
    async fn hold(&self, incident: &Incident) -> Option<(String, u64)> {
        let (sender, recipients, message) = incident.message.clone()?;
        let request = AdminRequest::EnqueueHeld {
            group: incident.group.clone(),
            op_id: op_id(),
            sender,
            recipients,
            message,
            reason: format!("phish: {}", incident.alarm.rule()),
        };
        match self.admin.call(&incident.group, request).await {
            Ok(AdminReply::Queued { id }) => Some((incident.group.clone(), id)),
            other => {
                tracing::error!(user = incident.account.mail, ?other, "phish: the message could not be held");
                None
            }
        }
    }

    /// Disable the account, mark it and scramble its password in the directory.
    async fn lock_in_directory(&self, account: &Account, marker: &str) {
        let scrambled = PasswordHash::salted(Digest::Sha512, &format!("{:032x}", rand::random::<u128>())).to_stored();
        let changes = [
            ("accountStatus", Some("disabled")),
            ("mailPhishLock", Some(marker)),
            ("userPassword", Some(scrambled.as_str())),
        ];
        let writer = self.writer.as_ref().map(|(dn, pw)| (dn.as_str(), pw.as_str()));
        if let Err(e) = self.directory.modify(account, writer, &changes).await {
            tracing::error!(user = account.mail, error = %e, "phish: the directory entry could not be locked");
        }
    }

    /// Block `ip` on every front, through the replicated block list (unless it is one of
    /// the site's relays).
    pub async fn block(&self, ip: IpAddr, reason: &str) {
        if self.never_block.iter().any(|n| n.contains(ip)) {
            tracing::warn!(%ip, "phish: the address is a relay of the site; not blocked");
            return;
        }
        let network = match ip {
            IpAddr::V4(_) => format!("{ip}/32"),
            IpAddr::V6(_) => format!("{ip}/128"),
        };
        let until_s = now_s().saturating_add(self.block_for.as_secs() as i64);
        let change = SecurityChange::Block { network, until_s, reason: reason.into() };
        if let Err(why) = self.change(&self.records_group, change).await {
            tracing::error!(%ip, why, "phish: the address could not be blocked");
        }
    }

    /// The webhook and the mail to the postmaster.
    async fn tell(&self, incident: &Incident, ticket: Option<u64>, held: Option<(String, u64)>) {
        let json = serde_json::json!({
            "ticket": ticket,
            "user": incident.account.mail,
            "rule": incident.alarm.rule(),
            "detail": incident.alarm.describe(),
            "ip": incident.ip.to_string(),
            "front": self.host,
            "held": held.as_ref().map(|(g, id)| format!("{g}/{id}")),
        });
        if let Some(url) = &self.webhook {
            let (address, path) = split_url(url);
            let body = bytes::Bytes::from(json.to_string());
            let headers = [("content-type", "application/json".to_string())];
            match common::http::post(address, path, &headers, body, WEBHOOK_TIMEOUT, 64 << 10).await {
                Ok((status, _)) if (200..300).contains(&status) => {}
                other => tracing::error!(url, ?other, "phish: the webhook did not take the ticket"),
            }
        }
        if let Some(to) = &self.notify {
            let text = format!(
                "From: <MAILER-DAEMON@{host}>\r\nTo: <{to}>\r\nSubject: phish: {user} locked ({rule})\r\n\
                 Auto-Submitted: auto-generated\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
                 The account {user} was locked and its address blocked.\r\n\r\n{detail}\r\n",
                host = self.host,
                user = incident.account.mail,
                rule = incident.alarm.rule(),
                detail = serde_json::to_string_pretty(&json).unwrap_or_default().replace('\n', "\r\n"),
            );
            if let Err(e) = self.admin.enqueue("", std::slice::from_ref(to), text.as_bytes()).await {
                tracing::error!(to, error = %e, "phish: the ticket could not be mailed");
            }
        }
    }
}

/// `http://host:port/path` (or `host:port/path`) as address and path.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn webhook_urls() {
        assert_eq!(super::split_url("http://127.0.0.1:8080/hooks/phish"), ("127.0.0.1:8080", "/hooks/phish"));
        assert_eq!(super::split_url("127.0.0.1:8080"), ("127.0.0.1:8080", "/"));
    }
}
