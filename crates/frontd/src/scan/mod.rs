//! The scanning stage between the end of DATA and the reply: ClamAV's verdict for the
//! whole message, rspamd's score, and, for each recipient, the fate their spam policy
//! gives it. It owns the scanners' clients and the listeners' scanning policies; it never
//! delivers (the SMTP edge does, `crate::smtp::scanned`) and never treats a scanner that
//! did not answer as a clean verdict: such mail is deferred, or delivered marked unscanned
//! where the listener says so.

pub mod clamd;
pub mod fates;
pub mod headers;
pub mod policy;
pub mod rspamd;

use std::time::Duration;

use bytes::Bytes;
use directory::{SpamAction, SpamPolicy};

use crate::config::{ListenerScan, ScanSection};
use crate::smtp::session::Mode;
use clamd::{AvVerdict, Clamd};
use headers::{SpamStamp, Stamp, VirusStamp};
use policy::{Decision, Fate, SiteSpamPolicy};
use rspamd::{Rspamd, SpamReport};

/// What one listener scans for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerPolicy {
    pub virus: bool,
    pub spam: bool,
    /// Deliver marked unscanned when a scanner does not answer (otherwise `451`).
    pub accept_unscanned: bool,
}

impl From<&ListenerScan> for ListenerPolicy {
    fn from(l: &ListenerScan) -> Self {
        Self { virus: l.virus, spam: l.spam, accept_unscanned: l.unavailable == "accept" }
    }
}

/// The antivirus part of a verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum VirusResult {
    Clean,
    /// No verdict (clamd down, slow, or refusing), and why.
    Unscanned(String),
    /// Not scanned here (no clamd configured, or the listener does not ask).
    Off,
}

/// The spam part of a verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum SpamResult {
    Scored(SpamReport),
    Unscanned(String),
    /// Not scored on purpose (a message above `spam_max_bytes`), and why.
    Skipped(String),
    Off,
}

/// What the scanners said about a message that may be delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub virus: VirusResult,
    pub spam: SpamResult,
    /// Spam scores act on recipients here (the MX); elsewhere they are only recorded.
    pub spam_acts: bool,
}

/// The scan's outcome for the whole message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Refuse the message for every recipient with this reply.
    Refuse {
        reply: String,
        fate: Fate,
    },
    Pass(Verdict),
}

/// The scanners and the policies of the stage.
#[derive(Debug)]
pub struct Scanner {
    clamd: Option<Clamd>,
    rspamd: Option<Rspamd>,
    site: SiteSpamPolicy,
    spam_max_bytes: usize,
    mx: ListenerPolicy,
    submission: ListenerPolicy,
}

impl Scanner {
    /// The stage `[scan]` describes (validated at load).
    pub fn new(section: &ScanSection) -> Self {
        let timeout = Duration::from_millis(section.timeout_ms);
        Self {
            clamd: section.clamd.as_deref().map(|a| Clamd::new(clamd::Address::parse(a), timeout)),
            rspamd: section.rspamd.clone().map(|a| Rspamd::new(a, timeout)),
            site: SiteSpamPolicy {
                action: SpamAction::parse(&section.spam_action).unwrap_or(SpamAction::Junk),
                threshold_centi: (section.spam_threshold * 100.0).round() as i32,
            },
            spam_max_bytes: section.spam_max_bytes,
            mx: (&section.mx).into(),
            submission: (&section.submission).into(),
        }
    }

    /// One line for the log at start: what is scanned with what.
    pub fn describe(&self) -> String {
        let clamd = self.clamd.as_ref().map_or("off".to_string(), |c| c.address().to_string());
        let rspamd = self.rspamd.as_ref().map_or("off", |r| r.address());
        format!("clamd {clamd}, rspamd {rspamd}")
    }

    fn listener(&self, mode: Mode) -> ListenerPolicy {
        match mode {
            Mode::Mx => self.mx,
            Mode::Submission => self.submission,
        }
    }

    /// Scan `message` (as it will be stored, our fields already taken out) arriving on a
    /// listener of `mode`. Both scanners are asked at once.
    pub async fn scan(&self, mode: Mode, envelope: &rspamd::Envelope<'_>, message: &Bytes) -> Outcome {
        let policy = self.listener(mode);
        let virus = async {
            match (&self.clamd, policy.virus) {
                (Some(c), true) => match c.scan(message).await {
                    Ok(AvVerdict::Clean) => Ok(VirusResult::Clean),
                    Ok(AvVerdict::Virus(name)) => Err(name),
                    Err(e) => Ok(VirusResult::Unscanned(e.to_string())),
                },
                _ => Ok(VirusResult::Off),
            }
        };
        let spam = async {
            match (&self.rspamd, policy.spam) {
                (Some(_), true) if message.len() > self.spam_max_bytes => {
                    SpamResult::Skipped(format!("over {} bytes", self.spam_max_bytes))
                }
                (Some(r), true) => match r.check(envelope, message.clone()).await {
                    Ok(report) => SpamResult::Scored(report),
                    Err(e) => SpamResult::Unscanned(e.to_string()),
                },
                _ => SpamResult::Off,
            }
        };
        let (virus, spam) = tokio::join!(virus, spam);
        let verdict = match virus {
            Err(name) => {
                // Past clamd's limits (files, depth, size) is not a virus, but as unsafe.
                let reply = if name.starts_with("Heuristics.Limits.Exceeded") {
                    format!("554 5.7.1 message rejected: too complex to scan ({name})")
                } else {
                    format!("554 5.7.1 message rejected: virus {name}")
                };
                return Outcome::Refuse { reply, fate: Fate::RejectedVirus(name) };
            }
            Ok(virus) => Verdict { virus, spam, spam_acts: mode == Mode::Mx },
        };
        let unscanned = matches!(verdict.virus, VirusResult::Unscanned(_))
            || (verdict.spam_acts && matches!(verdict.spam, SpamResult::Unscanned(_)));
        if unscanned && !policy.accept_unscanned {
            let reply = "451 4.7.1 message could not be scanned, try again later".to_string();
            return Outcome::Refuse { reply, fate: Fate::TempFailed };
        }
        Outcome::Pass(verdict)
    }

    /// One recipient's decision (none when the message has no score that acts here).
    pub fn decide(&self, verdict: &Verdict, user: SpamPolicy) -> Option<Decision> {
        match &verdict.spam {
            SpamResult::Scored(report) if verdict.spam_acts => Some(policy::decide(report, user, self.site)),
            _ => None,
        }
    }
}

/// The fate of a recipient's copy given its decision (and whether anything was unscanned).
pub fn fate(verdict: &Verdict, decision: Option<&Decision>) -> Fate {
    match decision {
        Some(d) => d.fate(),
        None if matches!(verdict.virus, VirusResult::Unscanned(_))
            || (verdict.spam_acts && matches!(verdict.spam, SpamResult::Unscanned(_))) =>
        {
            Fate::Unscanned
        }
        None => Fate::Clean,
    }
}

/// The header fields for a copy with `decision` (our own fields of the sender's already
/// taken out of the message).
pub fn stamp(host: &str, envelope_from: &str, verdict: &Verdict, decision: Option<&Decision>) -> String {
    let virus = match &verdict.virus {
        VirusResult::Clean => VirusStamp::Clean,
        VirusResult::Unscanned(why) => VirusStamp::Unscanned(why),
        VirusResult::Off => VirusStamp::Off,
    };
    let spam = match (&verdict.spam, decision) {
        (SpamResult::Scored(report), Some(d)) => SpamStamp::Scored { report, threshold: d.threshold, spam: d.spam },
        (SpamResult::Unscanned(why), _) if verdict.spam_acts => SpamStamp::Unscanned(why),
        (SpamResult::Skipped(why), _) if verdict.spam_acts => SpamStamp::Skipped(why),
        _ => SpamStamp::Off,
    };
    headers::render(&Stamp { host, envelope_from, virus, spam })
}
