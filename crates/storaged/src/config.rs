//! The storaged TOML configuration, validated at load: every group this node serves lists
//! it as a member, names are sane, limits are bounded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// Addresses this node listens on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Internal Raft RPC (authenticated with the cluster key).
    pub raft: String,
    /// LMTP delivery.
    pub lmtp: String,
    /// POP3 (optional).
    pub pop3: Option<String>,
    /// IMAP (optional).
    pub imap: Option<String>,
    /// IMAP over implicit TLS (optional; needs `[tls]`).
    pub imaps: Option<String>,
    /// POP3 over implicit TLS (optional; needs `[tls]`).
    pub pop3s: Option<String>,
    /// The admin protocol (status, outbound queue; authenticated with the cluster key).
    pub admin: Option<String>,
    /// ManageSieve (optional; fronts proxy their clients here).
    #[serde(default)]
    pub sieve: Option<String>,
}

pub use common::config::{LoginPolicy, MetricsSection, TlsFiles};

/// The identity front nodes log in with on behalf of users (`[proxy]`): SASL PLAIN with the
/// user as authorization identity, Dovecot's master-user pattern.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub user: Option<String>,
    /// Its password hash, `{SCHEME}value`.
    pub password: Option<String>,
}

/// Protocol limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message over LMTP (and IMAP APPEND). The default is frontd's default SMTP
    /// limit (32 MiB) plus room for the headers the front adds.
    pub message_max_bytes: usize,
    pub recipients_max: usize,
    /// Concurrent connections per listener of LMTP, POP3 and ManageSieve.
    pub connections_max: usize,
    /// Concurrent IMAP connections: mail clients keep one or more open all day (IDLE),
    /// and a front passes every user of the node's groups here, so this is far above
    /// `connections_max`; an idle session costs a few KiB (`idle-bench`).
    pub imap_connections_max: usize,
    /// Memory for message headers kept per group for IMAP SEARCH and FETCH (0: none).
    pub header_cache_bytes: usize,
    /// Memory per group for the header fields SORT and THREAD read (0: none): about 450
    /// bytes a message, so the default keeps a 100,000-message mailbox's whole.
    pub sort_cache_bytes: usize,
    /// Space kept free on the data directory's disk: below it (on a majority of a group's
    /// voters) new mail and appends are refused for now (`452 4.3.1`, `NO [LIMIT]`) while
    /// reads, expunges and deletions go on; above it and a quarter they are taken again.
    pub disk_reserve_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            message_max_bytes: 34 << 20,
            recipients_max: 100,
            connections_max: 1024,
            imap_connections_max: 20_000,
            header_cache_bytes: 64 << 20,
            sort_cache_bytes: 64 << 20,
            disk_reserve_bytes: 512 << 20,
        }
    }
}

/// The quarantine the scanning stage fills (`[quarantine]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineSettings {
    /// How long a held message is kept (from its delivery) before it is expunged.
    pub retention_s: u64,
    /// How often each group's leader proposes the expiry.
    pub expire_every_s: u64,
    /// How often users with newly held mail get a digest of it (0: never).
    pub digest_every_s: u64,
}

impl Default for QuarantineSettings {
    fn default() -> Self {
        Self { retention_s: 30 * 86_400, expire_every_s: 3600, digest_every_s: 86_400 }
    }
}

/// How long expunged messages and deleted folders are kept for `mailctl restore`
/// (`[retention]`; see `mailstore::kept`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Seconds a kept message stays restorable (0: until the next purge).
    pub keep_s: u64,
    /// How often each group's leader proposes the purge (and stamps new sets).
    pub purge_every_s: u64,
    /// After a purge erased mail, each replica rolls its Raft log, snapshots and purges
    /// the log so the bytes leave the log and snapshot too (`group::scrub`) — at most this
    /// often: a snapshot reads the whole store.
    pub scrub_every_s: u64,
    /// On a backup node only (a learner `mailctl backup add-node` added): kept mail stays
    /// here at least this long, whatever the voters' `keep_s` (the purge entry's own
    /// retention applies when it is longer). Never set it on a voter: its replica would
    /// then keep what the others purge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_keep_s: Option<u64>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { keep_s: 30 * 86_400, purge_every_s: 3600, scrub_every_s: 86_400, backup_keep_s: None }
    }
}

/// Spam training from what users do (`[training]`): the leader of each group tells
/// rspamd's controller what moves into and out of Junk taught.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSettings {
    /// rspamd's controller, `host:port`; none: intents are recorded but not carried out.
    pub rspamd_controller: Option<String>,
    /// The controller's password, in a file (relative to this file's directory).
    pub password_file: Option<PathBuf>,
}

/// Raft timing and log compaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many entries since the last one...
    pub snapshot_every: u64,
    /// ...or once the entries since the last one hold this many bytes, whichever comes
    /// first: the log's size is bounded in bytes whatever the mail's size.
    pub snapshot_log_bytes: u64,
    /// Entries kept in the log behind a snapshot (for followers that lag a little)...
    pub keep_logs: u64,
    /// ...but never more bytes of them than this.
    pub keep_log_bytes: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 150,
            election_min_ms: 1000,
            election_max_ms: 2000,
            snapshot_every: 20_000,
            snapshot_log_bytes: 16 << 20,
            keep_logs: 2_000,
            keep_log_bytes: 4 << 20,
        }
    }
}

/// One member of a group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    pub raft: String,
    pub lmtp: String,
}

/// A Raft group (a mailhost).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    pub members: Vec<Member>,
}

/// Block volumes this node exports over ATA over Ethernet (`[aoe]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AoeConfig {
    /// The Ethernet interface to serve on (raw sockets: storaged needs CAP_NET_RAW).
    pub interface: String,
    /// Requests taken at once, advertised to initiators (at least 64).
    #[serde(default = "AoeConfig::default_buffer_count")]
    pub buffer_count: u16,
    pub exports: Vec<AoeExport>,
}

impl AoeConfig {
    fn default_buffer_count() -> u16 {
        64
    }
}

/// One exported volume: shelf.slot → a file or block device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AoeExport {
    pub shelf: u16,
    pub slot: u8,
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
    /// Bypass the page cache (`O_DIRECT`).
    #[serde(default)]
    pub direct: bool,
}

/// Site-wide Sieve (`[sieve]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SieveSettings {
    /// Where `include :global "NAME"` finds `NAME.sieve` (RFC 6609 §3.2); unset: global
    /// includes are missing (`:optional` ones are skipped, others keep mail in INBOX).
    pub global_dir: Option<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node_id: u64,
    pub data_dir: PathBuf,
    /// The shared secret of the cluster, or a file holding it (preferred).
    pub cluster_key: Option<String>,
    pub cluster_key_file: Option<PathBuf>,
    /// `address [group] [{SCHEME}hash]` per line: the users this node accepts mail for.
    pub users_file: Option<PathBuf>,
    pub listen: Listen,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub raft: RaftTuning,
    #[serde(default)]
    pub quarantine: QuarantineSettings,
    #[serde(default)]
    pub training: TrainingSettings,
    #[serde(default)]
    pub sieve: SieveSettings,
    #[serde(default)]
    pub auth: LoginPolicy,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Message tracking records kept per group (`mailctl trace`).
    #[serde(default)]
    pub tracking: crate::tracking::TrackingSettings,
    pub tls: Option<TlsFiles>,
    pub groups: Vec<GroupConfig>,
    pub aoe: Option<AoeConfig>,
}

impl Listen {
    /// The two listeners every node has; the others off.
    pub fn new(raft: impl Into<String>, lmtp: impl Into<String>) -> Self {
        Self {
            raft: raft.into(),
            lmtp: lmtp.into(),
            pop3: None,
            imap: None,
            imaps: None,
            pop3s: None,
            admin: None,
            sieve: None,
        }
    }
}

impl Config {
    /// A node with every optional setting at its default: what builders start from (see
    /// crate `clusterkit`), so a new setting with a default needs no edit anywhere else.
    pub fn new(node_id: u64, data_dir: impl Into<PathBuf>, listen: Listen, groups: Vec<GroupConfig>) -> Self {
        Self {
            node_id,
            data_dir: data_dir.into(),
            cluster_key: None,
            cluster_key_file: None,
            users_file: None,
            listen,
            limits: Limits::default(),
            raft: RaftTuning::default(),
            quarantine: QuarantineSettings::default(),
            training: TrainingSettings::default(),
            tracking: Default::default(),
            retention: RetentionSettings::default(),
            sieve: SieveSettings::default(),
            auth: LoginPolicy::default(),
            proxy: ProxyConfig::default(),
            metrics: MetricsSection::default(),
            tls: None,
            groups,
            aoe: None,
        }
    }

    /// The authenticator of the mail access protocols: `[auth]`'s policy and `[proxy]`.
    pub fn authenticator(&self) -> Result<crate::auth::Authenticator, ConfigError> {
        use crate::auth::{Authenticator, PasswordHash, ProxyCredential};
        let bad = |m: String| ConfigError::Invalid(format!("auth: {m}"));
        let proxy = match (&self.proxy.user, &self.proxy.password) {
            (None, None) => None,
            (Some(user), Some(hash)) => Some(ProxyCredential {
                user: user.clone(),
                password: PasswordHash::parse(hash).map_err(|e| bad(e.to_string()))?,
            }),
            _ => return Err(bad("[proxy]: set both user and password, or neither".into())),
        };
        Ok(Authenticator::new(proxy, self.auth.networks().map_err(bad)?, self.auth.throttling()))
    }

    /// The configuration as TOML, as [`Config::load`] reads it back.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a configuration always serializes")
    }
}

pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Config {
    /// Read and validate the file at `path`; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg: Config =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let tls_files = cfg.tls.as_mut().map(|t| [&mut t.cert_file, &mut t.key_file]).into_iter().flatten();
        let secrets = [
            &mut cfg.cluster_key_file,
            &mut cfg.users_file,
            &mut cfg.training.password_file,
            &mut cfg.sieve.global_dir,
            &mut cfg.metrics.token_file,
        ];
        for p in secrets.into_iter().flatten().chain(tls_files) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if cfg.data_dir.is_relative() {
            cfg.data_dir = base.join(&cfg.data_dir);
        }
        for e in cfg.aoe.iter_mut().flat_map(|a| a.exports.iter_mut()) {
            if e.path.is_relative() {
                e.path = base.join(&e.path);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.groups.is_empty() {
            return bad("no groups".into());
        }
        let mut names = BTreeSet::new();
        for g in &self.groups {
            if !valid_group_name(&g.name) {
                return bad(format!("group name {:?}: use a-z, 0-9 and '-'", g.name));
            }
            if !names.insert(&g.name) {
                return bad(format!("group {} listed twice", g.name));
            }
            if !g.members.iter().any(|m| m.id == self.node_id) {
                return bad(format!("node {} is not a member of group {}", self.node_id, g.name));
            }
            let ids: BTreeSet<u64> = g.members.iter().map(|m| m.id).collect();
            if ids.len() != g.members.len() {
                return bad(format!("group {} lists a member id twice", g.name));
            }
        }
        if self.cluster_key.is_none() == self.cluster_key_file.is_none() {
            return bad("set exactly one of cluster_key and cluster_key_file".into());
        }
        if self.retention.purge_every_s == 0 {
            return bad("retention.purge_every_s must be at least 1".into());
        }
        if let Err(why) = self.tracking.validate() {
            return bad(why);
        }
        if self.limits.message_max_bytes > crate::mailstore::store::MESSAGE_MAX {
            return bad(format!("limits.message_max_bytes above {}", crate::mailstore::store::MESSAGE_MAX));
        }
        self.authenticator()?;
        if self.tls.is_none() && (self.listen.imaps.is_some() || self.listen.pop3s.is_some()) {
            return bad("listen.imaps/pop3s need a [tls] section".into());
        }
        if let Some(aoe) = &self.aoe {
            if aoe.exports.is_empty() {
                return bad("aoe: no exports".into());
            }
            let mut seen = BTreeSet::new();
            for e in &aoe.exports {
                if e.shelf == 0xffff || e.slot == 0xff {
                    return bad(format!("aoe: {}.{} is the broadcast address", e.shelf, e.slot));
                }
                if !seen.insert((e.shelf, e.slot)) {
                    return bad(format!("aoe: {}.{} exported twice", e.shelf, e.slot));
                }
            }
        }
        if self.raft.election_min_ms <= self.raft.heartbeat_ms || self.raft.election_max_ms <= self.raft.election_min_ms
        {
            return bad("raft: need heartbeat < election_min < election_max".into());
        }
        Ok(())
    }

    /// The AoE target's options, if this node exports volumes.
    pub fn aoe_target(&self) -> Option<aoe::target::server::TargetOptions> {
        use aoe::target::server::{ExportSpec, TargetOptions};
        let a = self.aoe.as_ref()?;
        let exports = a
            .exports
            .iter()
            .map(|e| ExportSpec {
                major: e.shelf,
                minor: e.slot,
                path: e.path.clone(),
                read_only: e.read_only,
                direct: e.direct,
            })
            .collect();
        Some(TargetOptions { interface: a.interface.clone(), exports, buffer_count: a.buffer_count })
    }

    /// The cluster secret.
    pub fn cluster_secret(&self) -> Result<String, ConfigError> {
        match (&self.cluster_key, &self.cluster_key_file) {
            (Some(k), None) => Ok(k.clone()),
            (None, Some(p)) => {
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.clone(), source })
            }
            _ => Err(ConfigError::Invalid("cluster key".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let member = Member { id: 1, raft: "127.0.0.1:1".into(), lmtp: "127.0.0.1:2".into() };
        let group = GroupConfig { name: "hermes".into(), members: vec![member] };
        let mut cfg = Config::new(1, "data", Listen::new("127.0.0.1:1", "127.0.0.1:2"), vec![group]);
        cfg.cluster_key = Some("k".into());
        // The sections under test follow as text, the way an operator writes them.
        let text = format!("{}\n{extra}", cfg.to_toml());
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn a_built_configuration_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let member = Member { id: 1, raft: "127.0.0.1:1".into(), lmtp: "127.0.0.1:2".into() };
        let mut cfg = Config::new(
            1,
            "data",
            Listen { imap: Some("127.0.0.1:3".into()), ..Listen::new("127.0.0.1:1", "127.0.0.1:2") },
            vec![GroupConfig { name: "hermes".into(), members: vec![member] }],
        );
        cfg.cluster_key = Some("k".into());
        cfg.raft.snapshot_every = 50;
        cfg.auth.plaintext_networks = vec![];
        let path = dir.path().join("node.toml");
        std::fs::write(&path, cfg.to_toml()).unwrap();
        let back = Config::load(&path).unwrap();
        assert_eq!(back.listen.imap.as_deref(), Some("127.0.0.1:3"));
        assert_eq!((back.raft.snapshot_every, back.auth.plaintext_networks.len()), (50, 0));
        assert_eq!(back.groups[0].members[0].lmtp, "127.0.0.1:2");
        assert!(back.tls.is_none() && back.aoe.is_none());
    }

    #[test]
    fn aoe_exports_are_validated_and_resolved() {
        let export = |shelf: u32, slot: u32, more: &str| {
            format!("[[aoe.exports]]\nshelf = {shelf}\nslot = {slot}\npath = \"vol.img\"\n{more}")
        };
        let cfg = load(&format!("[aoe]\ninterface = \"eth1\"\n{}", export(3, 1, "direct = true"))).unwrap();
        let target = cfg.aoe_target().unwrap();
        assert_eq!((target.interface.as_str(), target.buffer_count), ("eth1", 64));
        let e = &target.exports[0];
        assert!((e.major, e.minor, e.direct, e.read_only) == (3, 1, true, false) && e.path.is_absolute());
        assert!(load("").unwrap().aoe_target().is_none());
        for bad in [
            "[aoe]\ninterface = \"eth1\"\nexports = []\n".to_string(),
            format!("[aoe]\ninterface = \"eth1\"\n{}", export(0xffff, 1, "")),
            format!("[aoe]\ninterface = \"eth1\"\n{}", export(3, 0xff, "")),
            format!("[aoe]\ninterface = \"eth1\"\n{}{}", export(3, 1, ""), export(3, 1, "read_only = true")),
        ] {
            assert!(matches!(load(&bad), Err(ConfigError::Invalid(_))), "{bad}");
        }
    }
}
