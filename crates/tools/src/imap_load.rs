//! A closed-loop IMAP load generator: `sessions` threads, each logged in as its own user
//! with one persistent connection, run a weighted mix of SELECT, FETCH (headers, whole
//! bodies), SEARCH, STORE, APPEND and EXPUNGE against its INBOX and time every command.
//! Messages it appends it later expunges, so mailbox sizes stay level. Works against any
//! IMAP4rev1 server with UIDPLUS (ours, Dovecot).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use crate::imap_client::Client;
use crate::stats::p50_p99;

/// What to run.
#[derive(Debug, Clone)]
pub struct Load {
    pub server: String,
    /// `(user, password)` per session.
    pub logins: Vec<(String, String)>,
    pub duration: Duration,
    pub append_bytes: usize,
    pub profile: Profile,
}

/// Which commands a session sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Reads, flag changes, appends and expunges, as a mail client's day.
    #[default]
    Mixed,
    /// A webmail listing folders sorted and threaded (SORT and THREAD with header fetches).
    SortThread,
}

/// Figures for one command kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommandStats {
    pub count: u64,
    pub errors: u64,
    /// The first refusal seen, for diagnosis.
    pub first_error: Option<String>,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadStats {
    pub commands: u64,
    pub errors: u64,
    pub seconds: f64,
    pub commands_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub by_command: BTreeMap<String, CommandStats>,
    /// Sessions that could not log in and select.
    pub failed_sessions: u64,
}

const MIX: &[(&str, u32)] = &[
    ("FETCH-HEADER", 30),
    ("FETCH-BODY", 20),
    ("SEARCH", 15),
    ("STORE", 15),
    ("APPEND", 10),
    ("EXPUNGE", 5),
    ("SELECT", 5),
];

const SORT_THREAD_MIX: &[(&str, u32)] =
    &[("SORT", 35), ("THREAD", 25), ("FETCH-HEADER", 25), ("SEARCH", 10), ("SELECT", 5)];

fn pick(rng: &mut impl Rng, profile: Profile) -> &'static str {
    let mix = match profile {
        Profile::Mixed => MIX,
        Profile::SortThread => SORT_THREAD_MIX,
    };
    let total: u32 = mix.iter().map(|m| m.1).sum();
    let mut x = rng.gen_range(0..total);
    for (name, w) in mix {
        if x < *w {
            return name;
        }
        x -= w;
    }
    mix[0].0
}

fn exists_of(data: &[u8]) -> Option<u32> {
    String::from_utf8_lossy(data).lines().find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
}

/// The message count after the untagged EXISTS/EXPUNGE responses in `data`.
fn track_exists(data: &[u8], mut exists: u32) -> u32 {
    for l in String::from_utf8_lossy(data).lines() {
        let Some(rest) = l.strip_prefix("* ") else { continue };
        if let Some(n) = rest.strip_suffix(" EXISTS").and_then(|n| n.parse().ok()) {
            exists = n;
        } else if rest.ends_with(" EXPUNGE") {
            exists = exists.saturating_sub(1);
        }
    }
    exists
}

/// One session's samples: per command, latencies, errors and the first refusal.
type Samples = BTreeMap<&'static str, (Vec<u64>, u64, Option<String>)>;

/// What one session runs: against which server, until when, its APPENDs' size and its mix.
struct Plan {
    until: Instant,
    append_bytes: usize,
    profile: Profile,
}

fn session(server: &str, user: &str, password: &str, plan: Plan) -> Option<Samples> {
    let Plan { until, append_bytes, profile } = plan;
    let mut c = Client::connect(server).ok()?;
    if !c.command(&format!("LOGIN \"{user}\" \"{password}\"")).ok()?.ok() {
        return None;
    }
    let sel = c.command("SELECT INBOX").ok()?;
    let mut exists = exists_of(&sel.data).unwrap_or(0);
    let mut rng = rand::thread_rng();
    let mut samples: Samples = BTreeMap::new();
    let mut appended: Vec<u32> = Vec::new();
    let body: String = "x".repeat(76) + "\r\n";
    let message = {
        let mut m = format!("From: load@example.org\r\nTo: {user}\r\nSubject: load test\r\n\r\n").into_bytes();
        while m.len() < append_bytes {
            m.extend_from_slice(body.as_bytes());
        }
        m
    };
    while Instant::now() < until {
        let kind = pick(&mut rng, profile);
        let n = if exists > 0 { rng.gen_range(1..=exists) } else { 0 };
        let started = Instant::now();
        let ok = match kind {
            "FETCH-HEADER" if n > 0 => c.command(&format!("FETCH {n} (UID FLAGS BODY.PEEK[HEADER])")),
            "FETCH-BODY" if n > 0 => c.command(&format!("FETCH {n} (BODY.PEEK[])")),
            "SEARCH" => c.command(if rng.gen_bool(0.5) { "SEARCH UNSEEN" } else { "SEARCH SUBJECT \"message 7\"" }),
            "SORT" => {
                c.command(if rng.gen_bool(0.5) { "SORT (REVERSE DATE) UTF-8 ALL" } else { "SORT (SUBJECT) UTF-8 ALL" })
            }
            "THREAD" => c.command(if rng.gen_bool(0.5) {
                "THREAD REFERENCES UTF-8 ALL"
            } else {
                "THREAD ORDEREDSUBJECT UTF-8 ALL"
            }),
            "STORE" if n > 0 => {
                let op = if rng.gen_bool(0.5) { "+" } else { "-" };
                c.command(&format!("STORE {n} {op}FLAGS (\\Seen)"))
            }
            "APPEND" => c.append("INBOX", "\\Seen", &message).inspect(|a| {
                if let Some(uid) = a.text.split("APPENDUID ").nth(1).and_then(|r| r.split([' ', ']']).nth(1)) {
                    appended.extend(uid.parse::<u32>().ok());
                }
            }),
            "EXPUNGE" if !appended.is_empty() => {
                let uid = appended.remove(0);
                c.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)")).and_then(|a| {
                    if a.ok() {
                        c.command(&format!("UID EXPUNGE {uid}"))
                    } else {
                        Ok(a)
                    }
                })
            }
            "SELECT" => c.command("SELECT INBOX").inspect(|a| {
                exists = exists_of(&a.data).unwrap_or(exists);
            }),
            _ => continue,
        };
        let us = started.elapsed().as_micros() as u64;
        if let Ok(a) = &ok {
            exists = track_exists(&a.data, exists);
        }
        let entry = samples.entry(kind).or_default();
        match ok {
            Ok(a) if a.ok() => entry.0.push(us),
            Ok(a) => {
                entry.1 += 1;
                entry.2.get_or_insert(a.text);
            }
            Err(e) => {
                entry.1 += 1;
                entry.2.get_or_insert(e.to_string());
                break;
            }
        }
    }
    // Leave the mailbox as it was found.
    for uid in appended {
        let _ = c.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
        let _ = c.command(&format!("UID EXPUNGE {uid}"));
    }
    let _ = c.command("LOGOUT");
    Some(samples)
}

/// Run `load` and gather its figures.
pub fn run(load: &Load) -> LoadStats {
    let started = Instant::now();
    let until = started + load.duration;
    let threads: Vec<_> = load
        .logins
        .iter()
        .cloned()
        .map(|(u, p)| {
            let server = load.server.clone();
            let plan = Plan { until, append_bytes: load.append_bytes, profile: load.profile };
            std::thread::spawn(move || session(&server, &u, &p, plan))
        })
        .collect();
    let mut stats = LoadStats::default();
    let mut all: Vec<u64> = Vec::new();
    let mut merged: Samples = BTreeMap::new();
    for t in threads {
        match t.join().ok().flatten() {
            Some(samples) => {
                for (k, (lat, err, first)) in samples {
                    let e = merged.entry(k).or_default();
                    e.0.extend(lat);
                    e.1 += err;
                    if e.2.is_none() {
                        e.2 = first;
                    }
                }
            }
            None => stats.failed_sessions += 1,
        }
    }
    stats.seconds = started.elapsed().as_secs_f64();
    for (k, (mut lat, errors, first_error)) in merged {
        all.extend_from_slice(&lat);
        let (p50, p99) = p50_p99(&mut lat);
        stats.commands += lat.len() as u64;
        stats.errors += errors;
        let s = CommandStats { count: lat.len() as u64, errors, first_error, p50_us: p50, p99_us: p99 };
        stats.by_command.insert(k.to_string(), s);
    }
    (stats.p50_us, stats.p99_us) = p50_p99(&mut all);
    stats.commands_per_sec = stats.commands as f64 / stats.seconds;
    stats
}

/// Open `logins.len()` connections, log in, select INBOX and IDLE in each; the clients stay
/// idle until dropped. Returns how many reached IDLE.
pub fn idle_connections(server: &str, logins: &[(String, String)]) -> (Vec<Client>, usize) {
    let mut clients = Vec::new();
    for (u, p) in logins {
        let Ok(mut c) = Client::connect(server) else { continue };
        let ready = c.command(&format!("LOGIN \"{u}\" \"{p}\"")).is_ok_and(|a| a.ok())
            && c.command("SELECT INBOX").is_ok_and(|a| a.ok())
            && c.idle().is_ok();
        if ready {
            clients.push(c);
        }
    }
    let n = clients.len();
    (clients, n)
}
