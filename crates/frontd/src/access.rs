//! Who may connect to which listener, in the spirit of tcpserver's rules file: the IP
//! rules of `[[smtp.rules]]`, each naming the listeners it guards (all of them when it
//! names none). For one listener the first rule whose network holds the client decides:
//! deny, or allow with the MX's own greet delay, blocklist skip and relay permission. The
//! rules in force are replaced whole when the configuration file changes or on SIGHUP; a
//! file that does not load keeps the old rules. The cluster's replicated block list
//! (addresses of snagged accounts, `mailctl block`) is refused on every listener. What
//! this must never do: serve a denied address on any listener a rule names, or fall back
//! to no rules on a bad reload.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use common::network::Network;

use crate::config::{Config, ConfigError, SmtpSection};

/// How often the configuration file is looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// A client-facing listener, as rules name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// SMTP from the Internet (port 25).
    Mx,
    /// Submission (587 and 465).
    Submission,
    Imap,
    Pop3,
    Sieve,
}

impl Listener {
    pub const ALL: [Listener; 5] = [Self::Mx, Self::Submission, Self::Imap, Self::Pop3, Self::Sieve];

    /// The name rules use (`smtp`, `submission`, `imap`, `pop3`, `sieve`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mx => "smtp",
            Self::Submission => "submission",
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
            Self::Sieve => "sieve",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// One IP rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub network: Network,
    pub deny: bool,
    pub skip_dnsbl: bool,
    pub greet_delay: Option<Duration>,
    pub relay: bool,
    /// The listeners it guards.
    pub listeners: Vec<Listener>,
}

/// What the rules say about a client address on one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Refuse the connection.
    pub denied: bool,
    /// MX: wait this long before the greeting.
    pub greet_delay: Duration,
    /// MX: ask the DNS blocklists about the client.
    pub check_dnsbl: bool,
    /// The client may send to remote domains without AUTH.
    pub relay: bool,
}

/// A set of rules, as one configuration file gave them.
#[derive(Debug, Clone)]
pub struct Rules {
    rules: Vec<Rule>,
    greet_delay: Duration,
}

impl Rules {
    pub fn new(smtp: &SmtpSection) -> Result<Self, ConfigError> {
        let invalid = |what: String| ConfigError::Invalid(what);
        let mut rules = Vec::with_capacity(smtp.rules.len());
        for r in &smtp.rules {
            let deny = match r.action.as_str() {
                "deny" => true,
                "allow" => false,
                other => return Err(invalid(format!("smtp rule action {other:?}: allow or deny"))),
            };
            let listeners = match &r.listeners {
                None => Listener::ALL.to_vec(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        Listener::parse(n).ok_or_else(|| {
                            invalid(format!("smtp rule listener {n:?}: smtp, submission, imap, pop3 or sieve"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            rules.push(Rule {
                network: r.network.parse().map_err(ConfigError::Invalid)?,
                deny,
                skip_dnsbl: r.skip_dnsbl,
                greet_delay: r.greet_delay_ms.map(Duration::from_millis),
                relay: r.relay && !deny,
                listeners,
            });
        }
        Ok(Self { rules, greet_delay: Duration::from_millis(smtp.greet_delay_ms) })
    }

    /// What the rules say about `ip` on `listener`.
    pub fn admission(&self, ip: IpAddr, listener: Listener) -> Admission {
        let rule = self.rules.iter().find(|r| r.listeners.contains(&listener) && r.network.contains(ip));
        Admission {
            denied: rule.is_some_and(|r| r.deny),
            greet_delay: rule.and_then(|r| r.greet_delay).unwrap_or(self.greet_delay),
            check_dnsbl: !rule.is_some_and(|r| r.skip_dnsbl),
            relay: rule.is_some_and(|r| r.relay),
        }
    }
}

/// The rules in force, and the file they come from.
#[derive(Debug)]
pub struct Access {
    path: Option<PathBuf>,
    rules: RwLock<Arc<Rules>>,
    /// The cluster's block list (snagged accounts' addresses, `mailctl block`): each
    /// network until when (unix seconds); refused on every listener.
    blocked: RwLock<Arc<Vec<(Network, i64)>>>,
    /// The file's modification time when it was last read.
    seen: Mutex<Option<SystemTime>>,
}

impl Access {
    /// Rules from `cfg`, reloaded from `path` (the file `cfg` came from) when it changes.
    pub fn new(cfg: &Config, path: Option<PathBuf>) -> Result<Self, ConfigError> {
        let seen = path.as_deref().and_then(modified);
        Ok(Self {
            path,
            rules: RwLock::new(Arc::new(Rules::new(&cfg.smtp)?)),
            blocked: RwLock::default(),
            seen: Mutex::new(seen),
        })
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.read().expect("rules lock").clone()
    }

    /// What the rules in force and the block list say about `ip` on `listener`.
    pub fn admission(&self, ip: IpAddr, listener: Listener) -> Admission {
        let mut admission = self.rules().admission(ip, listener);
        admission.denied |= self.is_blocked(ip);
        admission
    }

    /// Whether the block list holds `ip` now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let now_s = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.blocked.read().expect("blocks lock").iter().any(|(n, until_s)| *until_s > now_s && n.contains(ip))
    }

    /// Replace the block list with `entries` (entries that do not parse are skipped).
    pub fn set_blocks(&self, entries: &[common::security::BlockEntry]) {
        let parsed: Vec<(Network, i64)> =
            entries.iter().filter_map(|b| Some((b.network.parse().ok()?, b.until_s))).collect();
        *self.blocked.write().expect("blocks lock") = Arc::new(parsed);
    }

    /// Read the file again (SIGHUP); a file that does not load keeps the old rules.
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        *self.seen.lock().expect("seen lock") = modified(path);
        match Config::load(path).and_then(|cfg| Rules::new(&cfg.smtp)) {
            Ok(rules) => {
                let count = rules.rules.len();
                *self.rules.write().expect("rules lock") = Arc::new(rules);
                tracing::info!(path = %path.display(), rules = count, "IP rules reloaded");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "IP rules not reloaded; keeping the old ones")
            }
        }
    }

    /// Reload whenever the file's modification time changes; runs for the daemon's life.
    pub async fn watch(self: Arc<Self>) {
        let Some(path) = self.path.clone() else { return };
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let now = modified(&path);
            let changed = *self.seen.lock().expect("seen lock") != now;
            if changed && now.is_some() {
                self.reload();
            }
        }
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RuleSection;

    fn rule(network: &str, action: &str, skip: bool, delay: Option<u64>) -> RuleSection {
        RuleSection {
            network: network.into(),
            action: action.into(),
            skip_dnsbl: skip,
            greet_delay_ms: delay,
            relay: false,
            listeners: None,
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let smtp = SmtpSection {
            greet_delay_ms: 500,
            rules: vec![rule("10.1.0.0/16", "allow", true, Some(0)), rule("10.0.0.0/8", "deny", false, None)],
            ..SmtpSection::default()
        };
        let p = Rules::new(&smtp).unwrap();
        let a = p.admission("10.1.2.3".parse().unwrap(), Listener::Mx);
        assert_eq!((a.denied, a.greet_delay, a.check_dnsbl), (false, Duration::ZERO, false));
        assert!(p.admission("10.2.0.1".parse().unwrap(), Listener::Mx).denied);
        let other = p.admission("192.0.2.1".parse().unwrap(), Listener::Mx);
        assert_eq!((other.denied, other.greet_delay, other.check_dnsbl), (false, Duration::from_millis(500), true));
        let bad = SmtpSection { rules: vec![rule("10.0.0.0/8", "maybe", false, None)], ..SmtpSection::default() };
        assert!(Rules::new(&bad).is_err());
        let bad_listener =
            RuleSection { listeners: Some(vec!["ftp".into()]), ..rule("10.0.0.0/8", "deny", false, None) };
        assert!(Rules::new(&SmtpSection { rules: vec![bad_listener], ..SmtpSection::default() }).is_err());
    }

    /// Hole: a denied address was refused on port 25 only and served on submission.
    #[test]
    fn a_rule_guards_every_listener_it_names() {
        let everywhere = rule("192.0.2.0/24", "deny", false, None);
        let imap_only =
            RuleSection { listeners: Some(vec!["imap".into()]), ..rule("198.51.100.0/24", "deny", false, None) };
        let p = Rules::new(&SmtpSection { rules: vec![everywhere, imap_only], ..SmtpSection::default() }).unwrap();
        for l in Listener::ALL {
            assert!(p.admission("192.0.2.9".parse().unwrap(), l).denied, "{l:?}");
            let named = l == Listener::Imap;
            assert_eq!(p.admission("198.51.100.9".parse().unwrap(), l).denied, named, "{l:?}");
        }
    }

    #[test]
    fn blocked_addresses_are_refused_everywhere_until_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frontd.toml");
        std::fs::write(
            &path,
            "[directory]\nldif = \"u.ldif\"\n[backend]\nproxy_user = \"f\"\nproxy_password = \"p\"\n\
             [[groups]]\nname = \"g\"\nmembers = [{ id = 1 }]\n",
        )
        .unwrap();
        let access = Access::new(&Config::load(&path).unwrap(), None).unwrap();
        let entry = |network: &str, until_s| common::security::BlockEntry {
            network: network.into(),
            since_s: 0,
            until_s,
            reason: "phish".into(),
        };
        access.set_blocks(&[entry("192.0.2.9/32", i64::MAX), entry("198.51.100.0/24", 1), entry("nonsense", i64::MAX)]);
        for l in Listener::ALL {
            assert!(access.admission("192.0.2.9".parse().unwrap(), l).denied);
            assert!(!access.admission("192.0.2.10".parse().unwrap(), l).denied);
            assert!(!access.admission("198.51.100.1".parse().unwrap(), l).denied, "expired");
        }
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frontd.toml");
        let base = "[listen]\npop3 = \"127.0.0.1:1110\"\n[directory]\nldif = \"users.ldif\"\n\
                    [backend]\nproxy_user = \"frontd\"\nproxy_password = \"pw\"\n\
                    [[groups]]\nname = \"hermes\"\nmembers = [{ id = 1, pop3 = \"127.0.0.1:2110\" }]\n";
        std::fs::write(&path, base).unwrap();
        let access = Access::new(&Config::load(&path).unwrap(), Some(path.clone())).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(!access.admission(ip, Listener::Pop3).denied);
        let deny = "[[smtp.rules]]\nnetwork = \"192.0.2.0/24\"\naction = \"deny\"\nlisteners = [\"pop3\"]\n";
        std::fs::write(&path, format!("{base}{deny}")).unwrap();
        access.reload();
        assert!(access.admission(ip, Listener::Pop3).denied);
        std::fs::write(&path, "this is not toml [").unwrap();
        access.reload();
        assert!(access.admission(ip, Listener::Pop3).denied, "a broken file keeps the rules in force");
    }
}
