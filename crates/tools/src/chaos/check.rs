//! The checker: after the faults heal it waits for every replica to apply the same log
//! and for the queues to drain, reads every user's INBOX through the front (IMAP on the
//! leader), compares the replicas' Maildir trees, and holds the history to its promises:
//! every acknowledged delivery and append present exactly once (an append at the UID it
//! was acknowledged with, under the same UIDVALIDITY), every acknowledged flag change
//! applied, nothing present that was never sent, replicas identical.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::admin::{AdminClient, AdminReply, AdminRequest};

use super::cluster::{Cluster, GROUPS, USERS};
use super::workload::{login, Event, History};

/// How long the cluster may take to settle after the last fault.
const SETTLE: Duration = Duration::from_secs(120);

/// What the run showed.
#[derive(Debug, Default)]
pub struct Report {
    pub deliveries_sent: usize,
    pub deliveries_acked: usize,
    pub appends_sent: usize,
    pub appends_acked: usize,
    pub flags_acked: usize,
    pub messages_read: usize,
    pub violations: Vec<String>,
}

/// One message as read back.
#[derive(Debug, Clone)]
struct Seen {
    uid: u32,
    flags: String,
    id: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

async fn ask(cluster: &Cluster, node: usize, request: &AdminRequest) -> Option<AdminReply> {
    let mut c = AdminClient::connect(&cluster.admin(node), &cluster.key(), Duration::from_secs(3)).await.ok()?;
    c.call(request, Duration::from_secs(10)).await.ok()
}

/// Wait until every group has a leader, all replicas applied the same index and the
/// queues are empty.
fn settle(cluster: &Cluster) -> Result<(), String> {
    let rt = runtime();
    let deadline = Instant::now() + SETTLE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let settled = rt.block_on(async {
            let mut applied: BTreeMap<&str, BTreeSet<Option<u64>>> = BTreeMap::new();
            let mut leaders: BTreeMap<&str, usize> = BTreeMap::new();
            for n in 1..=cluster.nodes() {
                let Some(AdminReply::Status(s)) = ask(cluster, n, &AdminRequest::Status).await else {
                    return Err(format!("node {n} does not answer"));
                };
                for g in s.groups {
                    let name = GROUPS.iter().find(|x| **x == g.name).copied().unwrap_or("?");
                    applied.entry(name).or_default().insert(g.applied_index);
                    if g.leader == Some(n as u64) {
                        leaders.insert(name, n);
                    }
                }
            }
            for g in GROUPS {
                let Some(leader) = leaders.get(g) else { return Err(format!("{g} has no leader")) };
                if applied.get(g).map_or(0, BTreeSet::len) != 1 {
                    return Err(format!("{g} replicas differ: {:?}", applied.get(g)));
                }
                match ask(cluster, *leader, &AdminRequest::List { group: g.into() }).await {
                    Some(AdminReply::Items(items)) if items.is_empty() => {}
                    Some(AdminReply::Items(items)) => return Err(format!("{g} queue holds {}", items.len())),
                    other => return Err(format!("{g} queue: {other:?}")),
                }
            }
            Ok(())
        });
        match settled {
            Ok(()) => return Ok(()),
            Err(why) => last = why,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("the cluster did not settle within {SETTLE:?}: {last}"))
}

/// Every message of `user`'s INBOX, and its UIDVALIDITY.
fn read_inbox(front_imap: &str, user: &str) -> Result<(u32, Vec<Seen>), String> {
    let (mut c, uid_validity) = login(front_imap, user).map_err(|e| format!("{user}: login: {e}"))?;
    let a = c
        .command("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        .map_err(|e| format!("{user}: fetch: {e}"))?;
    if !a.ok() {
        return Err(format!("{user}: fetch: {}", a.text));
    }
    let text = String::from_utf8_lossy(&a.data);
    let mut out: Vec<Seen> = Vec::new();
    for line in text.lines() {
        if line.starts_with("* ") && line.contains(" FETCH (") {
            let uid = line
                .split("UID ")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|u| u.parse().ok());
            let flags = line.split("FLAGS (").nth(1).and_then(|r| r.split(')').next()).unwrap_or("").to_string();
            out.push(Seen { uid: uid.unwrap_or(0), flags, id: String::new() });
        } else if line.to_ascii_lowercase().starts_with("message-id:") {
            if let (Some(last), Some(id)) = (out.last_mut(), line.split('<').nth(1).and_then(|r| r.split('>').next())) {
                last.id = id.to_string();
            }
        }
    }
    Ok((uid_validity, out))
}

/// Check the run.
pub fn check(cluster: &Cluster, history: &History) -> Report {
    let mut report = Report::default();
    let events = history.events();
    let mut sent: BTreeSet<String> = BTreeSet::new();
    for (_, e) in &events {
        match e {
            Event::Deliver { id, acked, .. } => {
                report.deliveries_sent += 1;
                report.deliveries_acked += usize::from(*acked);
                sent.insert(id.clone());
            }
            Event::Append { id, acked, .. } => {
                report.appends_sent += 1;
                report.appends_acked += usize::from(acked.is_some());
                sent.insert(id.clone());
            }
            Event::Flag { acked: true, .. } => report.flags_acked += 1,
            _ => {}
        }
    }
    if let Err(why) = settle(cluster) {
        report.violations.push(why);
        return report;
    }
    for (user, _) in USERS {
        let (uid_validity, seen) = match read_inbox(&cluster.front_imap[super::cluster::FRONTS - 1], user) {
            Ok(v) => v,
            Err(why) => {
                report.violations.push(why);
                continue;
            }
        };
        report.messages_read += seen.len();
        let mut by_id: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
        for s in &seen {
            by_id.entry(s.id.as_str()).or_default().push(s);
            if !sent.contains(&s.id) {
                report.violations.push(format!("{user}: uid {} holds {:?}, which was never sent", s.uid, s.id));
            }
        }
        let uids: Vec<u32> = seen.iter().map(|s| s.uid).collect();
        if uids.windows(2).any(|w| w[0] >= w[1]) {
            report.violations.push(format!("{user}: UIDs not strictly increasing: {uids:?}"));
        }
        for (_, e) in &events {
            match e {
                Event::Deliver { id, user: u, acked: true, .. } if u == user => {
                    let n = by_id.get(id.as_str()).map_or(0, Vec::len);
                    if n != 1 {
                        report.violations.push(format!("{user}: acknowledged delivery {id} present {n} times"));
                    }
                }
                Event::Append { id, user: u, acked: Some((uv, uid)), .. } if u == user => {
                    let found = by_id.get(id.as_str()).cloned().unwrap_or_default();
                    if found.len() != 1 || found[0].uid != *uid || *uv != uid_validity {
                        report.violations.push(format!(
                            "{user}: append {id} acknowledged as {uv}/{uid}, found {:?} under UIDVALIDITY {uid_validity}",
                            found.iter().map(|s| s.uid).collect::<Vec<_>>()
                        ));
                    }
                }
                Event::Flag { user: u, uid, keyword, acked: true, .. } if u == user => {
                    let has = seen.iter().any(|s| s.uid == *uid && s.flags.split_whitespace().any(|f| f == keyword));
                    if !has {
                        report.violations.push(format!("{user}: acknowledged {keyword} on uid {uid} missing"));
                    }
                }
                _ => {}
            }
        }
    }
    // Replicas hold identical Maildirs (file names carry UIDs' files and flags).
    for g in GROUPS {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let trees: Vec<_> = (1..=cluster.nodes()).map(|n| cluster.replica_files(n, g)).collect();
            if trees.windows(2).all(|w| w[0] == w[1]) {
                break;
            }
            if Instant::now() >= deadline {
                let sizes: Vec<usize> = trees.iter().map(|t| t.len()).collect();
                report.violations.push(format!("{g}: replicas differ (files per node {sizes:?})"));
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    report
}
