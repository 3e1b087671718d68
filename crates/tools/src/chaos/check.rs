//! The checker: after the faults heal it waits for every replica to apply the same log
//! and for the queues to drain, reads every user's INBOX through the front (IMAP on the
//! leader), compares the replicas' Maildir trees, and holds the history to its promises:
//! every acknowledged delivery and append present exactly once (an append at the UID it
//! was acknowledged with, under the same UIDVALIDITY, or where an acknowledged MOVE put it),
//! acknowledged expunges gone and their UIDs never reused, every acknowledged flag change
//! applied (and carried by a move), nothing present that was never sent, replicas identical.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::admin::{AdminClient, AdminReply, AdminRequest};

use super::cluster::{Cluster, GROUPS, USERS};
use super::workload::{examine, Event, History, ARCHIVE};

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
    pub expunges_acked: usize,
    pub moves_acked: usize,
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

/// Every message of `user`'s `mailbox`, and its UIDVALIDITY.
fn read_mailbox(front_imap: &str, user: &str, mailbox: &str) -> Result<(u32, Vec<Seen>), String> {
    let (mut c, uid_validity) = examine(front_imap, user, mailbox).map_err(|e| format!("{user}: {mailbox}: {e}"))?;
    let a = c
        .command("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        .map_err(|e| format!("{user}: {mailbox}: fetch: {e}"))?;
    if !a.ok() {
        return Err(format!("{user}: {mailbox}: fetch: {}", a.text));
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

/// One mailbox as read back.
struct Mailbox {
    uid_validity: u32,
    seen: Vec<Seen>,
}

impl Mailbox {
    fn with_id(&self, id: &str) -> Vec<&Seen> {
        self.seen.iter().filter(|s| s.id == id).collect()
    }

    fn at(&self, uid: u32) -> Option<&Seen> {
        self.seen.iter().find(|s| s.uid == uid)
    }
}

/// What became of an appended message after its append, by what the history says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Kept,
    Expunged { acked: bool },
    Moved { acked: Option<(u32, u32)> },
}

/// A problem with acknowledged append `id` (`uv`/`uid` in INBOX), given what happened to
/// it later.
fn appended(inbox: &Mailbox, archive: &Mailbox, id: &str, uv: u32, uid: u32, fate: Fate) -> Option<String> {
    let in_inbox = inbox.with_id(id);
    let at_uid = uv == inbox.uid_validity && in_inbox.len() == 1 && in_inbox[0].uid == uid;
    let in_archive = archive.with_id(id);
    let ok = match fate {
        Fate::Kept => at_uid,
        Fate::Expunged { acked: true } => in_inbox.is_empty() && in_archive.is_empty(),
        Fate::Expunged { acked: false } => at_uid || in_inbox.is_empty(),
        Fate::Moved { acked: Some((auv, auid)) } => {
            in_inbox.is_empty() && auv == archive.uid_validity && in_archive.len() == 1 && in_archive[0].uid == auid
        }
        Fate::Moved { acked: None } => at_uid || (in_inbox.is_empty() && in_archive.len() == 1),
    };
    let uids = |v: &[&Seen]| v.iter().map(|s| s.uid).collect::<Vec<_>>();
    (!ok).then(|| {
        format!(
            "append {id} acknowledged as {uv}/{uid}, then {fate:?}; found INBOX {:?} (UIDVALIDITY {}), {ARCHIVE} {:?}",
            uids(&in_inbox),
            inbox.uid_validity,
            uids(&in_archive)
        )
    })
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
            Event::Expunge { acked: true, .. } => report.expunges_acked += 1,
            Event::Move { acked: Some(_), .. } => report.moves_acked += 1,
            _ => {}
        }
    }
    if let Err(why) = settle(cluster) {
        report.violations.push(why);
        return report;
    }
    let front = &cluster.front_imap[super::cluster::FRONTS - 1];
    for (user, _) in USERS {
        let read =
            |mailbox| read_mailbox(front, user, mailbox).map(|(uid_validity, seen)| Mailbox { uid_validity, seen });
        let (inbox, archive) = match (read("INBOX"), read(ARCHIVE)) {
            (Ok(i), Ok(a)) => (i, a),
            (Err(why), _) | (_, Err(why)) => {
                report.violations.push(why);
                continue;
            }
        };
        report.messages_read += inbox.seen.len() + archive.seen.len();
        let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, mailbox) in [("INBOX", &inbox), (ARCHIVE, &archive)] {
            for s in &mailbox.seen {
                *copies.entry(s.id.as_str()).or_default() += 1;
                if !sent.contains(&s.id) {
                    report.violations.push(format!("{user}: {name} uid {} holds {:?}, never sent", s.uid, s.id));
                }
            }
            let uids: Vec<u32> = mailbox.seen.iter().map(|s| s.uid).collect();
            if uids.windows(2).any(|w| w[0] >= w[1]) {
                report.violations.push(format!("{user}: {name} UIDs not strictly increasing: {uids:?}"));
            }
        }
        for (id, n) in &copies {
            if *n > 1 {
                report.violations.push(format!("{user}: {id} present {n} times across INBOX and {ARCHIVE}"));
            }
        }
        // What happened to each appended INBOX uid after its append.
        let mut fates: BTreeMap<u32, Fate> = BTreeMap::new();
        for (_, e) in &events {
            match e {
                Event::Expunge { user: u, uid, acked } if u == user => {
                    fates.insert(*uid, Fate::Expunged { acked: *acked });
                }
                Event::Move { user: u, uid, acked, .. } if u == user => {
                    fates.insert(*uid, Fate::Moved { acked: *acked });
                }
                _ => {}
            }
        }
        for (_, e) in &events {
            let problem = match e {
                Event::Deliver { id, user: u, acked: true, .. } if u == user => {
                    let n = inbox.with_id(id).len();
                    (n != 1).then(|| format!("acknowledged delivery {id} present {n} times in INBOX"))
                }
                Event::Append { id, user: u, acked: Some((uv, uid)), .. } if u == user => {
                    let fate = fates.get(uid).copied().unwrap_or(Fate::Kept);
                    appended(&inbox, &archive, id, *uv, *uid, fate)
                }
                Event::Flag { user: u, uid, keyword, acked: true, .. } if u == user => {
                    let has = |s: &Seen| s.flags.split_whitespace().any(|f| f == keyword);
                    let copy = match fates.get(uid) {
                        Some(Fate::Moved { acked: Some((_, new)) }) => archive.at(*new),
                        _ => inbox.at(*uid),
                    };
                    copy.filter(|s| !has(s))
                        .map(|s| format!("acknowledged {keyword} on uid {uid} missing: {:?}", s.flags))
                }
                Event::Expunge { user: u, uid, acked: true } if u == user => {
                    inbox.at(*uid).map(|s| format!("uid {uid} was expunged but holds {:?} (a reused UID)", s.id))
                }
                _ => None,
            };
            report.violations.extend(problem.map(|p| format!("{user}: {p}")));
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
