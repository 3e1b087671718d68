//! Compromised-account defence at the front: every successful login is recorded in the
//! user's group (`common::logins`), the rules (`rules`) look at the history and at what
//! users submit, and an alarm snags the account (`snag`). Geo lookups are `geo`'s; the
//! replicated block list every listener enforces is polled into `crate::access`.
//! Recording never delays a login: it runs after the client is answered, so an unreachable
//! group costs the history one entry, never a login. What this must never do: block or
//! lock on a guess the rules did not make.

pub mod geo;
pub mod rules;
pub mod snag;

use common::clock::now_s;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::admin::{AdminReply, AdminRequest};
use common::logins::LoginRecord;
use directory::Account;

use crate::cluster::ClusterMap;
use crate::config::PhishSection;
use rules::{Alarm, Rules, Submission};
use snag::{Incident, Snagger};

/// Users whose submissions are counted at once (the least recently seen go first).
const COUNTED_USERS_MAX: usize = 16_384;
/// A user snagged this recently is not snagged again (one incident, one ticket).
const SNAG_QUIET: Duration = Duration::from_secs(300);

/// One user's submissions in the last hour: when, and how many spoofed recipients.
#[derive(Debug, Default)]
struct Hour {
    sent: VecDeque<(Instant, usize)>,
}

impl Hour {
    const SENT_MAX: usize = 100_000;

    fn add(&mut self, now: Instant, spoofed: usize) -> (u64, usize) {
        while self.sent.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) >= Duration::from_secs(3600)) {
            self.sent.pop_front();
        }
        if self.sent.len() >= Self::SENT_MAX {
            self.sent.pop_front();
        }
        self.sent.push_back((now, spoofed));
        (self.sent.len() as u64, self.sent.iter().map(|(_, s)| s).sum())
    }
}

/// The front's watch over its users.
#[derive(Debug)]
pub struct Watch {
    host: String,
    record: bool,
    rules: Rules,
    geo: Option<geo::Geo>,
    cluster: Arc<ClusterMap>,
    snagger: Snagger,
    counts: Mutex<(HashMap<String, Hour>, VecDeque<String>)>,
    recent_snags: Mutex<HashMap<String, Instant>>,
    /// Users locked cluster-wide (from the records, or snagged here).
    locked: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Users this front snagged whose lock the records did not show yet, and since when:
    /// a poll of the records that started before the lock was committed must not unlock
    /// them (see [`Watch::set_locked`]).
    snagged_here: Mutex<HashMap<String, Instant>>,
}

impl Watch {
    pub fn new(cfg: &PhishSection, host: &str, cluster: Arc<ClusterMap>, snagger: Snagger) -> Result<Self, String> {
        let geo = cfg.geo_database.as_deref().map(geo::Geo::open).transpose()?;
        Ok(Self {
            host: host.to_string(),
            record: cfg.record_logins,
            rules: Rules::new(cfg),
            geo,
            cluster,
            snagger,
            counts: Mutex::new((HashMap::new(), VecDeque::new())),
            recent_snags: Mutex::new(HashMap::new()),
            locked: Default::default(),
            snagged_here: Default::default(),
        })
    }

    /// The group `account` lives in.
    fn group_of(&self, account: &Account) -> Option<String> {
        self.cluster.group_name(account.mail_host.as_deref()?)
    }

    /// A successful login: record it (in `group`, the one the session was handed to; by
    /// default the directory's) and judge it, after the caller has answered the client.
    pub fn logged_in(
        self: &Arc<Self>,
        account: Arc<Account>,
        group: Option<String>,
        protocol: &'static str,
        ip: IpAddr,
    ) {
        if !self.record {
            return;
        }
        let Some(group) = group.filter(|g| !g.is_empty()).or_else(|| self.group_of(&account)) else { return };
        let watch = self.clone();
        tokio::spawn(async move { watch.record_and_judge(account, group, protocol, ip).await });
    }

    async fn record_and_judge(&self, account: Arc<Account>, group: String, protocol: &'static str, ip: IpAddr) {
        let place = self.geo.as_ref().map(|g| g.locate(ip)).unwrap_or_default();
        let record = LoginRecord {
            at_s: now_s(),
            protocol: protocol.into(),
            ip,
            country: place.country,
            continent: place.continent,
            location: place.location.map(|(lat, lon)| ((lat * 1e4) as i32, (lon * 1e4) as i32)),
            front: self.host.clone(),
        };
        let request = AdminRequest::RecordLogin {
            group: group.clone(),
            user: account.mail.clone(),
            op_id: rand::random(),
            record: record.clone(),
        };
        let history = match self.snagger.admin.call(&group, request).await {
            Ok(AdminReply::Logins(history)) => history,
            other => {
                tracing::warn!(user = account.mail, group, ?other, "login not recorded");
                return;
            }
        };
        if let Some(alarm) = self.rules.login(&history, &record) {
            self.snag(Incident { account, group, alarm, ip, message: None }).await;
        }
    }

    /// Judge a submitted message before it goes anywhere; `Some(alarm)` when it tripped a
    /// rule: the message is then held and the account snagged (the caller refuses it).
    pub async fn submission(
        &self,
        account: &Arc<Account>,
        ip: IpAddr,
        envelope_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Option<Alarm> {
        let header_from = crate::smtp::submission::from_addresses(message);
        let spoofed = header_from.iter().any(|a| !a.eq_ignore_ascii_case(envelope_from));
        let (messages_hour, spoofed_hour) = self.count(&account.mail, if spoofed { recipients.len() } else { 0 });
        let submission = Submission {
            envelope_from,
            header_from: &header_from,
            recipients: recipients.len(),
            spoofed_recipients_hour: spoofed_hour,
            messages_hour,
        };
        let alarm = self.rules.submission(&submission)?;
        let group = self.group_of(account)?;
        let held = (envelope_from.to_string(), recipients.to_vec(), message.to_vec());
        let incident = Incident { account: account.clone(), group, alarm: alarm.clone(), ip, message: Some(held) };
        self.snag(incident).await;
        Some(alarm)
    }

    /// The spam score the scanning stage gave a message `user` submitted: `Some(alarm)`
    /// when it trips the rule; the message is then held and the account snagged.
    pub async fn spam_score(
        &self,
        user: &str,
        ip: IpAddr,
        score: f64,
        (sender, recipients, message): (&str, &[String], &[u8]),
    ) -> Option<Alarm> {
        let alarm = self.rules.spam_score(score)?;
        let account = self.snagger.directory.lookup(user, directory::Purpose::Login).await.ok().flatten()?;
        let group = self.group_of(&account)?;
        let held = Some((sender.to_string(), recipients.to_vec(), message.to_vec()));
        self.snag(Incident { account, group, alarm: alarm.clone(), ip, message: held }).await;
        Some(alarm)
    }

    fn count(&self, user: &str, spoofed: usize) -> (u64, usize) {
        let mut guard = self.counts.lock().expect("counts lock");
        let (map, order) = &mut *guard;
        if !map.contains_key(user) {
            if order.len() >= COUNTED_USERS_MAX {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
            order.push_back(user.to_string());
        }
        map.entry(user.to_string()).or_default().add(Instant::now(), spoofed)
    }

    async fn snag(&self, incident: Incident) {
        {
            let mut recent = self.recent_snags.lock().expect("snags lock");
            let now = Instant::now();
            recent.retain(|_, at| now.saturating_duration_since(*at) < SNAG_QUIET);
            if recent.contains_key(&incident.account.mail) {
                return;
            }
            recent.insert(incident.account.mail.clone(), now);
        }
        self.snagged_here.lock().expect("snagged lock").insert(incident.account.mail.clone(), Instant::now());
        self.locked.write().expect("locked lock").insert(incident.account.mail.clone());
        self.snagger.snag(incident).await;
    }

    /// Whether `user` (their address) is locked cluster-wide.
    pub fn is_locked(&self, user: &str) -> bool {
        self.locked.read().expect("locked lock").contains(user)
    }

    /// The users locked cluster-wide, as the records say now, and those this front snagged
    /// that the records do not show yet (a poll may have read them before the lock was
    /// committed), for at most [`SNAG_QUIET`] if the lock never lands.
    pub fn set_locked(&self, users: Vec<String>) {
        let locked = merge_locks(users, &mut self.snagged_here.lock().expect("snagged lock"), SNAG_QUIET);
        *self.locked.write().expect("locked lock") = locked;
    }

    /// The snagger (for the block list's group and client).
    pub fn snagger(&self) -> &Snagger {
        &self.snagger
    }
}

/// The locked users: those of the `records`, and those snagged `here` that the records do
/// not show yet, for at most `hold`; a snag the records show is forgotten here, so a later
/// unlock in the records unlocks.
fn merge_locks(
    records: Vec<String>,
    here: &mut HashMap<String, Instant>,
    hold: Duration,
) -> std::collections::HashSet<String> {
    let mut locked: std::collections::HashSet<String> = records.into_iter().collect();
    here.retain(|user, at| !locked.contains(user) && at.elapsed() < hold);
    locked.extend(here.keys().cloned());
    locked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A poll of the records that read them before this front's lock was committed does
    /// not unlock the user; once the records show the lock, they alone decide.
    #[test]
    fn a_stale_poll_does_not_undo_a_snag_and_the_records_decide_after() {
        let mut here = HashMap::from([("tom@example.edu".to_string(), Instant::now())]);
        let hold = Duration::from_secs(300);
        assert!(merge_locks(vec![], &mut here, hold).contains("tom@example.edu"), "stale poll");
        assert!(merge_locks(vec!["tom@example.edu".into()], &mut here, hold).contains("tom@example.edu"));
        assert!(here.is_empty(), "confirmed by the records");
        assert!(merge_locks(vec![], &mut here, hold).is_empty(), "an unlock in the records unlocks");
        let mut old = HashMap::from([("eve@example.edu".to_string(), Instant::now())]);
        assert!(
            merge_locks(vec![], &mut old, Duration::ZERO).is_empty(),
            "a lock that never landed is held only so long"
        );
    }
}
