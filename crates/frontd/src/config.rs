//! The frontd TOML configuration, validated at load: listeners, TLS files, the directory,
//! the proxy credential for the storage nodes, login policy and the cluster map (which
//! storage nodes serve which mailhost group). Secrets may come from files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use directory::LdapConfig;
use serde::{Deserialize, Serialize};

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where frontd listens; every listener is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub imap: Option<String>,
    pub imaps: Option<String>,
    pub pop3: Option<String>,
    pub pop3s: Option<String>,
    /// SMTP for the Internet (MX, port 25 style): no AUTH.
    pub smtp: Option<String>,
    /// Submission with STARTTLS (587 style): AUTH required.
    pub submission: Option<String>,
    /// Submission over implicit TLS (465 style).
    pub submissions: Option<String>,
    /// ManageSieve (RFC 5804, port 4190 style, STARTTLS).
    #[serde(default)]
    pub sieve: Option<String>,
}

/// SMTP policy shared by the SMTP listeners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    /// Domains whose users live here; anything else is relaying, allowed only to
    /// authenticated users and `rules` with `relay = true` (through the `[queue]`).
    pub local_domains: Vec<String>,
    /// Domains collapsed into another before lookup (`mail.example.edu` → `example.edu`).
    pub domain_aliases: std::collections::BTreeMap<String, String>,
    pub message_max_bytes: usize,
    pub recipients_max: usize,
    /// MX only: wait this long before the greeting; clients that talk first are dropped.
    pub greet_delay_ms: u64,
    /// MX only: DNS blocklists asked about every client (`zen.spamhaus.org` style zones).
    pub dnsbl_zones: Vec<String>,
    /// Resolvers for the blocklists, `IP:port` (the system's when empty).
    pub dns_servers: Vec<String>,
    /// MX only: HELO/EHLO names refused (`*` wildcards).
    pub helo_deny: Vec<String>,
    /// MX only: envelope senders refused (`*` wildcards).
    pub mail_from_deny: Vec<String>,
    /// Per-network rules for the listeners each names; the first whose network holds the
    /// client decides (reloaded when the file changes or on SIGHUP).
    pub rules: Vec<RuleSection>,
    /// The mailbox `postmaster` and `postmaster@` each local domain are delivered to
    /// (RFC 5321 §4.5.1); by default `postmaster@` the first local domain.
    pub postmaster: Option<String>,
    /// Message bodies held in memory by every SMTP connection together (`452 4.3.1` when
    /// full; big messages leave the last eighth to small ones).
    pub body_memory_max_bytes: usize,
    /// ... by the connections of one client address together.
    pub body_memory_per_address_max_bytes: usize,
    /// DATA/BDAT transactions one client address may have open at once.
    pub transactions_per_address_max: usize,
    /// Longest a DATA/BDAT transfer may take, from `354` (or the first BDAT) to its end.
    pub data_time_max_s: u64,
    /// Slowest a transfer may be on average once `data_rate_grace_s` have passed.
    pub data_rate_min_bytes_per_s: u64,
    pub data_rate_grace_s: u64,
    /// Submission: what to do with a message whose From (or Sender) is not one of the
    /// authenticated user's addresses: `refuse` (`550 5.7.1`) or `sender` (send it with a
    /// `Sender:` field naming the user).
    pub submission_from: String,
}

/// One IP rule of the MX.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// `10.0.0.0/8`, `192.0.2.7`, `::1/128`.
    pub network: String,
    /// `allow` or `deny`.
    pub action: String,
    /// Do not ask the blocklists about these clients.
    #[serde(default)]
    pub skip_dnsbl: bool,
    /// A greet delay of their own.
    pub greet_delay_ms: Option<u64>,
    /// These clients may send to remote domains without AUTH (needs `[queue]`).
    #[serde(default)]
    pub relay: bool,
    /// The listeners the rule guards (`smtp`, `submission`, `imap`, `pop3`, `sieve`); all
    /// of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<String>>,
}

impl Default for SmtpSection {
    fn default() -> Self {
        Self {
            local_domains: Vec::new(),
            domain_aliases: Default::default(),
            message_max_bytes: 32 << 20,
            recipients_max: 100,
            greet_delay_ms: 0,
            dnsbl_zones: Vec::new(),
            dns_servers: Vec::new(),
            helo_deny: Vec::new(),
            mail_from_deny: Vec::new(),
            rules: Vec::new(),
            postmaster: None,
            body_memory_max_bytes: 128 << 20,
            body_memory_per_address_max_bytes: 40 << 20,
            transactions_per_address_max: 32,
            data_time_max_s: 900,
            data_rate_min_bytes_per_s: 1024,
            data_rate_grace_s: 60,
            submission_from: "refuse".into(),
        }
    }
}

/// The scanning stage (`[scan]`): ClamAV and rspamd between the end of DATA and the reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanSection {
    /// clamd's socket: a path (`/run/clamav/clamd.ctl`) or `host:port`; none: no virus scan.
    pub clamd: Option<String>,
    /// rspamd's normal worker, `host:port`; none: no spam score.
    pub rspamd: Option<String>,
    /// Longest wait for each scanner's verdict on one message.
    pub timeout_ms: u64,
    /// For users whose directory entry names no `mailSpamPolicy`: `tag`, `junk`,
    /// `quarantine` or `reject`.
    pub spam_action: String,
    /// ... no `mailSpamThreshold`: scores at or above it are spam.
    pub spam_threshold: f64,
    /// Larger messages are not scored (marked so): spam is small, and scoring a 30 MiB
    /// message costs seconds (SpamAssassin's own default limit is 500 KiB).
    pub spam_max_bytes: usize,
    /// How often the fates counted are reported to the cluster's tally.
    pub report_every_s: u64,
    /// The MX listener.
    pub mx: ListenerScan,
    /// Submission (587 and 465); its spam score is recorded, never acted on.
    pub submission: ListenerScan,
}

/// What one kind of listener scans for, and what it does when a scanner does not answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerScan {
    pub virus: bool,
    pub spam: bool,
    /// `tempfail` (`451 4.7.1`, the sender tries later) or `accept` (delivered with a header
    /// saying it was not scanned).
    pub unavailable: String,
}

impl Default for ListenerScan {
    fn default() -> Self {
        Self { virus: true, spam: true, unavailable: "tempfail".into() }
    }
}

impl Default for ScanSection {
    fn default() -> Self {
        Self {
            clamd: None,
            rspamd: None,
            timeout_ms: 30_000,
            spam_action: "junk".into(),
            spam_threshold: 6.0,
            spam_max_bytes: 8 << 20,
            report_every_s: 10,
            mx: ListenerScan::default(),
            submission: ListenerScan::default(),
        }
    }
}

impl ScanSection {
    fn validate(&self) -> Result<(), String> {
        if directory::SpamAction::parse(&self.spam_action).is_none() {
            return Err(format!("[scan] spam_action {:?}: tag, junk, quarantine or reject", self.spam_action));
        }
        if !(-10_000.0..=10_000.0).contains(&self.spam_threshold) {
            return Err("[scan] spam_threshold must be a score within +-10000".into());
        }
        for (name, l) in [("mx", &self.mx), ("submission", &self.submission)] {
            if !matches!(l.unavailable.as_str(), "tempfail" | "accept") {
                return Err(format!("[scan.{name}] unavailable {:?}: tempfail or accept", l.unavailable));
            }
        }
        if self.timeout_ms == 0 || self.report_every_s == 0 {
            return Err("[scan] timeout_ms and report_every_s must be positive".into());
        }
        Ok(())
    }
}

/// Compromised-account defence (`[phish]`): the login history, the rules that find a
/// phished account, and what is done then. Every rule is on by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhishSection {
    /// Record every successful login in the user's group (their history, `lastlogin`).
    pub record_logins: bool,
    /// A MaxMind-format country or city database (GeoLite2, DB-IP); none: no geo rules.
    pub geo_database: Option<PathBuf>,
    /// Where users are at home: these continents (MaxMind codes) and these countries.
    pub home_continents: Vec<String>,
    pub home_countries: Vec<String>,
    /// A login away from home within this many hours of one at home trips the rule.
    pub window_h: u64,
    pub geo_velocity: bool,
    /// Two logins further apart than this speed allows (km/h; needs a city database).
    pub travel_kmh_max: u32,
    pub impossible_travel: bool,
    /// Submission: envelope sender not the From address, to more recipients than this in
    /// one message or in an hour.
    pub bulk_recipients_max: usize,
    pub bulk_spoofing: bool,
    /// Submission: messages per user per hour.
    pub outbound_per_hour_max: u64,
    pub outbound_volume: bool,
    /// Submission: the scanning stage's spam score at or above this.
    pub outbound_spam_score: f64,
    pub outbound_spam: bool,
    /// How long the source address of a snag stays blocked on every listener.
    pub block_days: u64,
    /// POSTed a JSON ticket for every snag, if set (`http://host:port/path`).
    pub webhook: Option<String>,
    /// Mailed a ticket for every snag (through the queue), if set.
    pub notify: Option<String>,
    /// With an LDAP directory: the identity that may lock accounts, and its password in a
    /// file (default: the directory's own bind identity).
    pub ldap_admin_dn: Option<String>,
    pub ldap_admin_password_file: Option<PathBuf>,
    /// How often the cluster's block list is read.
    pub blocks_poll_ms: u64,
    /// Addresses a snag never blocks: the site's own relays (webmail, list servers), whose
    /// block would shut out every user behind them. The account is still locked.
    pub never_block: Vec<String>,
}

impl Default for PhishSection {
    fn default() -> Self {
        Self {
            record_logins: true,
            geo_database: None,
            home_continents: vec!["NA".into()],
            home_countries: Vec::new(),
            window_h: 8,
            geo_velocity: true,
            travel_kmh_max: 1000,
            impossible_travel: true,
            bulk_recipients_max: 100,
            bulk_spoofing: true,
            outbound_per_hour_max: 1000,
            outbound_volume: true,
            outbound_spam_score: 15.0,
            outbound_spam: true,
            block_days: 30,
            webhook: None,
            notify: None,
            ldap_admin_dn: None,
            ldap_admin_password_file: None,
            blocks_poll_ms: 500,
            never_block: vec!["127.0.0.1/32".into(), "::1/128".into()],
        }
    }
}

/// DKIM signing of submitted mail (`[dkim]`): a key per domain of the From address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimSection {
    pub keys: Vec<DkimKeySection>,
}

/// One signing key (`[[dkim.keys]]`), as `mailctl dkim keygen` makes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeySection {
    /// The signing domain (`d=`); mail whose From address is in it is signed.
    pub domain: String,
    /// The selector (`s=`): the key is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// The RSA private key, PEM (PKCS#1 or PKCS#8).
    pub key_file: PathBuf,
}

/// The certificate clients see (STARTTLS, STLS, implicit TLS); re-read on SIGHUP.
pub use common::config::{MetricsSection, TlsFiles};

/// An LDAP directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    pub url: String,
    pub base: String,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    #[serde(default)]
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub user_filter: Option<String>,
    #[serde(default)]
    pub bind_auth: bool,
    #[serde(default = "default_cache_ttl_s")]
    pub cache_ttl_s: u64,
    #[serde(default = "default_ldap_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_ldap_connections")]
    pub connections: usize,
}

fn default_cache_ttl_s() -> u64 {
    30
}
fn default_ldap_timeout_ms() -> u64 {
    5000
}
fn default_ldap_connections() -> usize {
    4
}

/// The directory: an LDIF file or an LDAP server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    pub ldif: Option<PathBuf>,
    pub ldap: Option<LdapSection>,
}

/// How frontd logs in on the storage nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// The proxy identity the storage nodes accept (their `[proxy] user`).
    pub proxy_user: String,
    /// Its password in clear (the storage nodes keep only a hash), or in a file.
    pub proxy_password: Option<String>,
    pub proxy_password_file: Option<PathBuf>,
    /// How long to look for a group's leader before a temporary failure.
    #[serde(default = "default_route_timeout_ms")]
    pub route_timeout_ms: u64,
    /// The storage nodes' shared secret (their `cluster_key_file`): LMTP delivery proves it
    /// (`AUTH X-MAILSTORE-CLUSTER`), and the queue and admin protocols are keyed with it.
    pub cluster_key_file: Option<PathBuf>,
}

fn default_route_timeout_ms() -> u64 {
    10_000
}

/// Login policy (`[auth]`, the same section as the storage nodes').
pub use common::config::LoginPolicy;

/// One storage node's addresses within a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    pub id: u64,
    pub imap: Option<String>,
    pub pop3: Option<String>,
    pub lmtp: Option<String>,
    /// The node's admin listener (status, outbound queue).
    pub admin: Option<String>,
    /// The node's ManageSieve listener.
    #[serde(default)]
    pub sieve: Option<String>,
}

/// The outbound queue: mail that cannot be delivered at once (recipients on several
/// mailhosts, a mailhost down, remote domains) is queued on a storage group and delivered
/// by the queue runner of any front.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// The cluster secret, to speak the storage nodes' admin protocol.
    pub cluster_key_file: PathBuf,
    /// Groups whose queues this front fills and runs, in order of preference (all if empty).
    pub groups: Vec<String>,
    /// A message not delivered after this long is bounced.
    pub lifetime_s: u64,
    /// Retries back off exponentially from `retry_min_s` to `retry_max_s`.
    pub retry_min_s: u64,
    pub retry_max_s: u64,
    /// How long a runner holds the messages it took before another may try them.
    pub lease_s: u32,
    /// How often the runner asks each queue for due messages.
    pub poll_ms: u64,
    /// Run the queue runner in this front (at least one front must).
    pub runner: bool,
    /// Next hops for remote domains, `domain = "host:port"`; `"*"` sends everything else
    /// to one smarthost. Domains without a route go to their MX hosts.
    pub routes: std::collections::BTreeMap<String, String>,
    /// The port of MX hosts.
    pub mx_port: u16,
    /// Outbound connections to one domain at once.
    pub domain_connections_max: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            cluster_key_file: PathBuf::new(),
            groups: Vec::new(),
            lifetime_s: 5 * 24 * 3600,
            retry_min_s: 60,
            retry_max_s: 3600,
            lease_s: 300,
            poll_ms: 1000,
            runner: true,
            routes: Default::default(),
            mx_port: 25,
            domain_connections_max: 4,
        }
    }
}

/// A mailhost group and its members.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    pub name: String,
    pub members: Vec<MemberSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Client connections per listener at once.
    pub connections_max: usize,
    /// Connections from one client address at once (all listeners together).
    pub connections_per_address_max: usize,
    /// Logged-in sessions of one user at once (IMAP and POP3 together).
    pub sessions_per_user_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { connections_max: 10_000, connections_per_address_max: 200, sessions_per_user_max: 50 }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The name in greetings.
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default)]
    pub listen: Listen,
    pub tls: Option<TlsFiles>,
    pub directory: DirectorySection,
    pub backend: BackendSection,
    #[serde(default)]
    pub auth: LoginPolicy,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub smtp: SmtpSection,
    #[serde(default)]
    pub scan: ScanSection,
    #[serde(default, skip_serializing_if = "DkimSection::is_empty")]
    pub dkim: DkimSection,
    #[serde(default)]
    pub phish: PhishSection,
    #[serde(default, skip_serializing_if = "MetricsSection::is_off")]
    pub metrics: MetricsSection,
    pub queue: Option<QueueSection>,
    pub groups: Vec<GroupSection>,
}

fn default_host() -> String {
    "frontd".into()
}

impl DkimSection {
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl DirectorySection {
    /// An LDIF file.
    pub fn ldif(path: impl Into<PathBuf>) -> Self {
        Self { ldif: Some(path.into()), ldap: None }
    }
}

impl LdapSection {
    /// A server at `url` with entries under `base`, every other setting at its default.
    pub fn new(url: impl Into<String>, base: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            base: base.into(),
            bind_dn: None,
            bind_password_file: None,
            starttls: false,
            ca_file: None,
            user_filter: None,
            bind_auth: false,
            cache_ttl_s: default_cache_ttl_s(),
            timeout_ms: default_ldap_timeout_ms(),
            connections: default_ldap_connections(),
        }
    }
}

impl BackendSection {
    /// Logging in as `proxy_user` (its password still to be set), the other settings default.
    pub fn new(proxy_user: impl Into<String>) -> Self {
        Self {
            proxy_user: proxy_user.into(),
            proxy_password: None,
            proxy_password_file: None,
            route_timeout_ms: default_route_timeout_ms(),
            cluster_key_file: None,
        }
    }
}

impl Config {
    /// A front with every optional setting at its default (no listeners): what builders
    /// start from (crate `clusterkit`), so a new setting with a default needs no other edit.
    pub fn new(directory: DirectorySection, backend: BackendSection, groups: Vec<GroupSection>) -> Self {
        Self {
            host: default_host(),
            listen: Listen::default(),
            tls: None,
            directory,
            backend,
            auth: LoginPolicy::default(),
            limits: Limits::default(),
            smtp: SmtpSection::default(),
            scan: ScanSection::default(),
            dkim: DkimSection::default(),
            phish: PhishSection::default(),
            metrics: MetricsSection::default(),
            queue: None,
            groups,
        }
    }

    /// The configuration as TOML, as [`Config::load`] reads it back.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a configuration always serializes")
    }
}

fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

impl Config {
    /// Read and validate `path`; relative paths inside are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg: Config =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = &mut self.tls {
            fix(&mut t.cert_file);
            fix(&mut t.key_file);
        }
        if let Some(p) = &mut self.directory.ldif {
            fix(p);
        }
        if let Some(l) = &mut self.directory.ldap {
            l.bind_password_file.iter_mut().for_each(fix);
            l.ca_file.iter_mut().for_each(fix);
        }
        self.backend.proxy_password_file.iter_mut().for_each(fix);
        self.dkim.keys.iter_mut().for_each(|k| fix(&mut k.key_file));
        self.phish.geo_database.iter_mut().for_each(fix);
        self.phish.ldap_admin_password_file.iter_mut().for_each(fix);
        self.metrics.token_file.iter_mut().for_each(fix);
        self.backend.cluster_key_file.iter_mut().for_each(fix);
        if let Some(q) = &mut self.queue {
            if !q.cluster_key_file.as_os_str().is_empty() {
                fix(&mut q.cluster_key_file);
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |s: String| Err(ConfigError::Invalid(s));
        match (&self.directory.ldif, &self.directory.ldap) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => return invalid("[directory] needs exactly one of ldif = \"file\" or [directory.ldap]".into()),
        }
        if self.backend.proxy_password.is_some() == self.backend.proxy_password_file.is_some() {
            return invalid("[backend] needs exactly one of proxy_password or proxy_password_file".into());
        }
        if (self.listen.imaps.is_some() || self.listen.pop3s.is_some() || self.listen.submissions.is_some())
            && self.tls.is_none()
        {
            return invalid("implicit TLS listeners need [tls]".into());
        }
        if self.smtp_listeners() && self.smtp.local_domains.is_empty() {
            return invalid("SMTP listeners need [smtp] local_domains".into());
        }
        let smtp = &self.smtp;
        if smtp.body_memory_max_bytes < (16 << 20) || smtp.transactions_per_address_max == 0 {
            return invalid(
                "[smtp] body_memory_max_bytes must be at least 16 MiB, transactions_per_address_max at least 1".into(),
            );
        }
        if smtp.body_memory_per_address_max_bytes < smtp.message_max_bytes
            || smtp.body_memory_max_bytes < smtp.body_memory_per_address_max_bytes
        {
            return invalid(
                "[smtp] needs message_max_bytes <= body_memory_per_address_max_bytes <= body_memory_max_bytes".into(),
            );
        }
        self.scan.validate().map_err(ConfigError::Invalid)?;
        if !matches!(smtp.submission_from.as_str(), "refuse" | "sender") {
            return invalid(format!("[smtp] submission_from {:?}: refuse or sender", smtp.submission_from));
        }
        if self.groups.is_empty() {
            return invalid("no [[groups]]: frontd has nowhere to route users".into());
        }
        for (i, g) in self.groups.iter().enumerate() {
            if self.groups[..i].iter().any(|o| o.name.eq_ignore_ascii_case(&g.name)) {
                return invalid(format!("group {} listed twice", g.name));
            }
            if g.members.is_empty() {
                return invalid(format!("group {} has no members", g.name));
            }
        }
        if self.smtp_listeners() && self.cluster_key_file().is_none() {
            return invalid(
                "SMTP listeners deliver over the storage nodes' LMTP: [backend] needs cluster_key_file".into(),
            );
        }
        if let Some(q) = &self.queue {
            if self.cluster_key_file().is_none() {
                return invalid("[queue] needs a cluster key: [backend] cluster_key_file".into());
            }
            for g in &q.groups {
                if !self.groups.iter().any(|o| o.name.eq_ignore_ascii_case(g)) {
                    return invalid(format!("[queue] group {g} is not in [[groups]]"));
                }
            }
            let queue_groups = self.queue_groups();
            for g in self.groups.iter().filter(|g| queue_groups.contains(&g.name.to_ascii_lowercase())) {
                if g.members.iter().all(|m| m.admin.is_none()) {
                    return invalid(format!("[queue] group {} has no member with an admin address", g.name));
                }
            }
            if q.retry_min_s == 0 || q.retry_max_s < q.retry_min_s || q.lease_s == 0 || q.poll_ms == 0 {
                return invalid("[queue] needs 0 < retry_min_s <= retry_max_s, lease_s > 0, poll_ms > 0".into());
            }
        } else if self.smtp.rules.iter().any(|r| r.relay) {
            return invalid("[smtp] rules with relay = true need a [queue]".into());
        }
        for n in self.auth.plaintext_networks.iter().chain(&self.phish.never_block) {
            n.parse::<common::network::Network>().map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// The identity snags write the LDAP directory as: `[phish]`'s, else the directory's
    /// own bind identity; none for an LDIF directory.
    pub fn phish_writer(&self) -> Result<Option<(String, String)>, ConfigError> {
        let Some(ldap) = &self.directory.ldap else { return Ok(None) };
        let (dn, file) = match (&self.phish.ldap_admin_dn, &self.phish.ldap_admin_password_file) {
            (Some(dn), Some(file)) => (dn.clone(), file.clone()),
            _ => match (&ldap.bind_dn, &ldap.bind_password_file) {
                (Some(dn), Some(file)) => (dn.clone(), file.clone()),
                _ => return Ok(None),
            },
        };
        Ok(Some((dn, read_secret(&file)?)))
    }

    /// The proxy password, from the file if configured there.
    pub fn proxy_password(&self) -> Result<String, ConfigError> {
        match (&self.backend.proxy_password, &self.backend.proxy_password_file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(f)) => read_secret(f),
            (None, None) => Err(ConfigError::Invalid("no proxy password".into())),
        }
    }

    /// The groups whose queues this front uses, lower case, in order of preference.
    pub fn queue_groups(&self) -> Vec<String> {
        match &self.queue {
            None => Vec::new(),
            Some(q) if q.groups.is_empty() => self.groups.iter().map(|g| g.name.to_ascii_lowercase()).collect(),
            Some(q) => q.groups.iter().map(|g| g.to_ascii_lowercase()).collect(),
        }
    }

    /// The group whose replicated state holds the cluster's fate tally: the first queue
    /// group, else the first group (every front and `mailctl report` agree on it).
    pub fn stats_group(&self) -> Option<String> {
        self.queue_groups().into_iter().next().or_else(|| self.groups.first().map(|g| g.name.to_ascii_lowercase()))
    }

    /// Whether any SMTP listener is configured (they deliver over LMTP).
    pub fn smtp_listeners(&self) -> bool {
        [&self.listen.smtp, &self.listen.submission, &self.listen.submissions].iter().any(|l| l.is_some())
    }

    /// The cluster key file: `[backend]`'s, else the one an older configuration names in
    /// `[queue]`.
    fn cluster_key_file(&self) -> Option<&Path> {
        let queue = self.queue.as_ref().map(|q| q.cluster_key_file.as_path()).filter(|p| !p.as_os_str().is_empty());
        self.backend.cluster_key_file.as_deref().or(queue)
    }

    /// The storage nodes' shared secret (LMTP, queue and admin protocols), if configured.
    pub fn cluster_secret(&self) -> Result<Option<String>, ConfigError> {
        self.cluster_key_file().map(read_secret).transpose()
    }

    /// The LDAP settings, if the directory is LDAP.
    pub fn ldap(&self) -> Result<Option<LdapConfig>, ConfigError> {
        let Some(l) = &self.directory.ldap else { return Ok(None) };
        let mut c = LdapConfig::new(&l.url, &l.base);
        c.bind_dn = l.bind_dn.clone();
        c.bind_password = l.bind_password_file.as_deref().map(read_secret).transpose()?;
        c.starttls = l.starttls;
        c.ca_file = l.ca_file.clone();
        if let Some(f) = &l.user_filter {
            c.user_filter = f.clone();
        }
        c.bind_auth = l.bind_auth;
        c.cache_ttl = Duration::from_secs(l.cache_ttl_s);
        c.timeout = Duration::from_millis(l.timeout_ms);
        c.connections = l.connections.clamp(1, 64);
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [listen]
        imap = "127.0.0.1:1143"
        [directory]
        ldif = "users.ldif"
        [backend]
        proxy_user = "frontd"
        proxy_password = "pw"
        [[groups]]
        name = "hermes"
        members = [{ id = 1, imap = "127.0.0.1:2143" }]
    "#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frontd.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn a_minimal_config_loads_with_paths_relative_to_it() {
        let c = load(MINIMAL).unwrap();
        assert!(c.directory.ldif.unwrap().ends_with("users.ldif"));
        assert_eq!(c.auth.failures_max, 10);
    }

    #[test]
    fn mistakes_are_refused() {
        assert!(load(&MINIMAL.replace("ldif = \"users.ldif\"", "")).is_err(), "no directory");
        assert!(load(&MINIMAL.replace("proxy_password = \"pw\"", "")).is_err(), "no proxy password");
        assert!(load(&MINIMAL.replace("imap = \"127.0.0.1:1143\"", "imaps = \"127.0.0.1:1993\"")).is_err(), "TLS");
        assert!(load(&MINIMAL.replace("members = [{ id = 1, imap = \"127.0.0.1:2143\" }]", "members = []")).is_err());
        assert!(load(&format!("{MINIMAL}\n[auth]\nplaintext_networks = [\"nonsense\"]\n")).is_err());
        assert!(load(&format!("{MINIMAL}\nbogus = 1\n")).is_err(), "unknown keys");
    }
}
