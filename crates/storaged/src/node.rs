//! A storage node: the groups it serves, its users, and its listeners. Built from a
//! [`Config`]; `main` only parses arguments and calls [`run`].

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use common::rpc_channel::ClusterKey;
use tokio::net::TcpListener;

use crate::auth::{Authenticator, Login, LoginError, PlainCredentials, ProxyHints};
use crate::config::{Config, ConfigError, GroupConfig, Limits};
use crate::group::{Group, GroupError};
use crate::metrics::NodeMetrics;
use crate::raft::Groups;
use crate::users::{UserDb, UserDbError};

/// Groups created at runtime (`mailctl group add`), kept here so a restart opens them too.
const ADDED_GROUPS_FILE: &str = "groups.added.toml";

/// The file listing groups created at runtime.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AddedGroups {
    #[serde(default)]
    groups: Vec<GroupConfig>,
}

/// Why a node cannot start, stopped serving, or refused to create a group.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Users(#[from] UserDbError),
    #[error(transparent)]
    Tls(#[from] common::tls::TlsError),
    #[error("listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error("{}: {source}", path.display())]
    AddedGroups { path: PathBuf, source: io::Error },
    #[error("{}: {reason}", path.display())]
    AddedGroupsSyntax { path: PathBuf, reason: String },
    #[error("group name {0:?}: use a-z, 0-9 and '-'")]
    BadGroupName(String),
    #[error("node {node} is not a member of {group}")]
    NotAMember { node: u64, group: String },
    #[error("a member id is listed twice")]
    DuplicateMember,
    #[error("the /metrics endpoint: {0}")]
    Metrics(String),
    #[error("{service} stopped: {source}")]
    Stopped { service: &'static str, source: io::Error },
    #[error("{service} task failed: {source}")]
    Task { service: &'static str, source: tokio::task::JoinError },
}

/// A listener task's end as the node's error: it only ends on a failure.
fn stopped(service: &'static str, end: Result<io::Result<()>, tokio::task::JoinError>) -> Result<(), NodeError> {
    end.map_err(|source| NodeError::Task { service, source })?.map_err(|source| NodeError::Stopped { service, source })
}

impl Node {
    /// The sender rewriting of mail users' filters forward (shared with the fronts through
    /// the cluster key).
    pub fn srs(&self) -> common::srs::Srs {
        common::srs::Srs::new(self.key.srs_key())
    }

    /// Where `include :global` scripts are (`[sieve] global_dir`).
    pub fn sieve_global_dir(&self) -> Option<&std::path::Path> {
        self.cfg.sieve.global_dir.as_deref()
    }
}

/// What connection handlers need.
pub struct Node {
    pub id: u64,
    pub host: String,
    /// The groups this node serves; `mailctl group add` adds to it at runtime.
    groups: RwLock<HashMap<String, Arc<Group>>>,
    rafts: Groups<crate::group::MailConfig>,
    cfg: Config,
    key: ClusterKey,
    /// The users file as last loaded; SIGHUP reloads it (a bad file keeps the old one).
    pub users: std::sync::RwLock<Arc<UserDb>>,
    pub auth: Authenticator,
    pub limits: Limits,
    /// The certificate for STARTTLS/STLS and implicit TLS, if configured.
    pub tls: Option<crate::tls::Tls>,
    /// Set when the node begins to shut down; long-lived sessions say BYE.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Users' Sieve scripts, compiled (see `lmtp::filter`).
    pub sieve_programs: crate::lmtp::filter::ProgramCache,
    /// What `/metrics` reports.
    pub metrics: Arc<NodeMetrics>,
    /// Whether the data directory's disk has room.
    pub disk: Arc<crate::disk::DiskWatch>,
}

/// Start everything the configuration describes and serve until a listener fails.
pub async fn run(mut cfg: Config) -> Result<(), NodeError> {
    let key = ClusterKey::from_secret(&cfg.cluster_secret()?);
    for added in load_added_groups(&cfg)? {
        if !cfg.groups.iter().any(|g| g.name == added.name) {
            cfg.groups.push(added);
        }
    }
    let group_names: Vec<String> = cfg.groups.iter().map(|g| g.name.clone()).collect();
    if cfg.users_file.is_none() {
        tracing::info!("no users_file: serving only the users the fronts' directory names");
    }
    let users = load_users(&cfg)?;
    tracing::info!(node = cfg.node_id, users = users.len(), groups = ?group_names, "starting storaged");
    // Registered before anything listens: a SIGHUP must never meet the default action (exit).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let raft_listener = bind(&cfg.listen.raft).await?;
    let lmtp_listener = bind(&cfg.listen.lmtp).await?;
    let pop3_listener = bind_optional(cfg.listen.pop3.as_deref()).await?;
    let imap_listener = bind_optional(cfg.listen.imap.as_deref()).await?;
    let imaps_listener = bind_optional(cfg.listen.imaps.as_deref()).await?;
    let pop3s_listener = bind_optional(cfg.listen.pop3s.as_deref()).await?;
    let admin_listener = bind_optional(cfg.listen.admin.as_deref()).await?;
    let sieve_listener = bind_optional(cfg.listen.sieve.as_deref()).await?;
    let tls = match &cfg.tls {
        Some(t) => Some(crate::tls::Tls::load(&t.cert_file, &t.key_file)?),
        None => None,
    };
    let metrics = Arc::new(NodeMetrics::default());
    let disk = Arc::new(crate::disk::DiskWatch::default());
    tokio::spawn(crate::disk::watch(disk.clone(), cfg.data_dir.clone(), cfg.limits.disk_reserve_bytes));
    let mut groups = HashMap::new();
    let mut rafts = HashMap::new();
    for gcfg in &cfg.groups {
        let g = Group::open(&cfg, gcfg, key.clone(), (metrics.clone(), disk.clone())).await?;
        rafts.insert(g.name.clone(), g.served());
        groups.insert(g.name.clone(), g);
    }
    let rafts: Groups<crate::group::MailConfig> = Arc::new(RwLock::new(rafts));
    let node = Arc::new(Node {
        id: cfg.node_id,
        host: format!("storaged-{}", cfg.node_id),
        groups: RwLock::new(groups),
        rafts,
        cfg: cfg.clone(),
        key: key.clone(),
        users: std::sync::RwLock::new(Arc::new(users)),
        auth: cfg.authenticator()?,
        limits: cfg.limits.clone(),
        tls,
        stopping: tokio::sync::watch::Sender::new(false),
        sieve_programs: Default::default(),
        metrics: metrics.clone(),
        disk,
    });
    let registry = metrics.registry(Arc::downgrade(&node), cfg.data_dir.clone());
    cfg.metrics.start(registry).await.map_err(|e| NodeError::Metrics(e.to_string()))?;
    let raft_server =
        tokio::spawn(crate::raft::serve(raft_listener, node.rafts.clone(), key.clone(), node.clone(), metrics.clone()));
    tokio::spawn(reload_users_on_hangup(hangups, cfg.clone(), node.clone()));
    let lmtp_server = tokio::spawn(crate::lmtp::serve(lmtp_listener, node.clone()));
    let pop3_server = tokio::spawn(serve_optional(pop3_listener, node.clone(), |l, n| crate::pop3::serve(l, n, false)));
    let pop3s_server =
        tokio::spawn(serve_optional(pop3s_listener, node.clone(), |l, n| crate::pop3::serve(l, n, true)));
    let imap_server = tokio::spawn(serve_optional(imap_listener, node.clone(), |l, n| crate::imap::serve(l, n, false)));
    let imaps_server =
        tokio::spawn(serve_optional(imaps_listener, node.clone(), |l, n| crate::imap::serve(l, n, true)));
    let admin_server =
        tokio::spawn(serve_optional(admin_listener, node.clone(), move |l, n| crate::admin::serve(l, n, key)));
    let sieve_server = tokio::spawn(serve_optional(sieve_listener, node.clone(), crate::managesieve::serve));
    // The AoE target runs its own io_uring loop on a thread of its own; it looks at
    // `aoe_stop` every 100 ms.
    let aoe_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let aoe_target = match cfg.aoe_target() {
        Some(options) => {
            let stop = aoe_stop.clone();
            tracing::info!(interface = %options.interface, exports = options.exports.len(), "serving AoE");
            Some(tokio::task::spawn_blocking(move || aoe::target::server::run(&options, stop)))
        }
        None => None,
    };
    let aoe_server = async move {
        match aoe_target {
            Some(t) => t.await,
            None => std::future::pending().await,
        }
    };
    common::daemon::ready();
    tokio::select! {
        r = aoe_server => stopped("AoE target", r)?,
        r = raft_server => stopped("Raft listener", r)?,
        r = admin_server => stopped("admin listener", r)?,
        r = lmtp_server => stopped("LMTP listener", r)?,
        r = pop3_server => stopped("POP3 listener", r)?,
        r = imap_server => stopped("IMAP listener", r)?,
        r = pop3s_server => stopped("POP3S listener", r)?,
        r = imaps_server => stopped("IMAPS listener", r)?,
        r = sieve_server => stopped("ManageSieve listener", r)?,
        _ = shutdown_signal() => {
            tracing::info!("shutting down: checkpointing");
            common::daemon::stopping();
            node.stopping.send_replace(true);
            aoe_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for g in node.all_groups() {
                let sm = g.sm.clone();
                match tokio::task::spawn_blocking(move || sm.checkpoint_if_dirty()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(group = %g.name, error = %e, "final checkpoint failed"),
                    Err(e) => tracing::error!(group = %g.name, error = %e, "final checkpoint failed"),
                }
                let _ = g.raft.shutdown().await;
            }
        }
    }
    Ok(())
}

impl crate::raft::MessageFiles for Node {
    fn read(
        &self,
        group: &str,
        user: &str,
        mailbox: &str,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, crate::raft::server::ReadError> {
        use crate::raft::server::ReadError;
        let group = self.group(group).ok_or_else(|| ReadError::NotServed(group.to_string()))?;
        let user = crate::mailstore::UserName::parse(user).map_err(|e| ReadError::BadName(e.to_string()))?;
        let mailbox = crate::mailstore::MailboxName::parse(mailbox).map_err(|e| ReadError::BadName(e.to_string()))?;
        Ok(group.read_message(&user, &mailbox, uid)?)
    }

    fn disk_room(&self) -> bool {
        !self.disk.low()
    }
}

impl Node {
    /// The cluster's shared secret (what internal listeners such as LMTP require).
    pub fn cluster_key(&self) -> &ClusterKey {
        &self.key
    }

    /// The group named `name`, if this node serves it.
    pub fn group(&self, name: &str) -> Option<Arc<Group>> {
        self.groups.read().expect("groups lock").get(name).cloned()
    }

    pub fn serves(&self, name: &str) -> bool {
        self.groups.read().expect("groups lock").contains_key(name)
    }

    /// Every group this node serves, by name.
    pub fn all_groups(&self) -> Vec<Arc<Group>> {
        let mut all: Vec<Arc<Group>> = self.groups.read().expect("groups lock").values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Start serving a new group (`mailctl group add`): open its replica here, remember it
    /// across restarts; its lowest-numbered member initializes it. Idempotent.
    pub async fn create_group(&self, gcfg: GroupConfig) -> Result<(), NodeError> {
        if self.serves(&gcfg.name) {
            return Ok(());
        }
        if !crate::config::valid_group_name(&gcfg.name) {
            return Err(NodeError::BadGroupName(gcfg.name));
        }
        if !gcfg.members.iter().any(|m| m.id == self.id) {
            return Err(NodeError::NotAMember { node: self.id, group: gcfg.name });
        }
        let ids: std::collections::BTreeSet<u64> = gcfg.members.iter().map(|m| m.id).collect();
        if ids.len() != gcfg.members.len() {
            return Err(NodeError::DuplicateMember);
        }
        let mut added = load_added_groups(&self.cfg)?;
        if !added.iter().any(|g| g.name == gcfg.name) {
            added.push(gcfg.clone());
            save_added_groups(&self.cfg, added)?;
        }
        let group = Group::open(&self.cfg, &gcfg, self.key.clone(), (self.metrics.clone(), self.disk.clone())).await?;
        tracing::info!(group = %gcfg.name, members = ?ids, "group created");
        self.rafts.write().expect("groups lock").insert(group.name.clone(), group.served());
        self.groups.write().expect("groups lock").insert(group.name.clone(), group);
        Ok(())
    }

    /// Check a login from `peer`. A front names the user's mailhost in its hints; a login
    /// with the proxy identity but without hints (an operator, or a conformance run, straight
    /// at the node) is served from the one group here that holds the user's mail.
    pub async fn authenticate(
        &self,
        protocol: &'static str,
        peer: std::net::IpAddr,
        tls: bool,
        hints: &ProxyHints,
        creds: &PlainCredentials,
    ) -> Result<Login, LoginError> {
        let users = self.users();
        let mut hints = hints.clone();
        if hints.mailhost.is_none() && !creds.authzid.is_empty() && users.resolve(&creds.authzid).is_none() {
            hints.mailhost = self.mailhost_holding(&creds.authzid);
        }
        let login = self.auth.login(&users, peer, tls, &hints, creds).await;
        self.metrics.logins.count(protocol, login.is_ok());
        login
    }

    /// The one group served here that holds `user`'s mail, if exactly one does.
    fn mailhost_holding(&self, user: &str) -> Option<String> {
        let user = crate::mailstore::UserName::parse(user).ok()?;
        let mut holders =
            self.all_groups().into_iter().filter(|g| g.sm.store().lock().expect("store lock").holds(&user));
        match (holders.next(), holders.next()) {
            (Some(g), None) => Some(g.name.clone()),
            _ => None,
        }
    }

    /// The current user database.
    pub fn users(&self) -> Arc<UserDb> {
        self.users.read().expect("users lock").clone()
    }
}

fn load_added_groups(cfg: &Config) -> Result<Vec<GroupConfig>, NodeError> {
    let path = cfg.data_dir.join(ADDED_GROUPS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match toml::from_str::<AddedGroups>(&text) {
            Ok(added) => Ok(added.groups),
            Err(e) => Err(NodeError::AddedGroupsSyntax { path, reason: e.to_string() }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(NodeError::AddedGroups { path, source }),
    }
}

/// Write the groups created at runtime, durably (a crash leaves the old file or the new).
fn save_added_groups(cfg: &Config, groups: Vec<GroupConfig>) -> Result<(), NodeError> {
    let path = cfg.data_dir.join(ADDED_GROUPS_FILE);
    let text = toml::to_string(&AddedGroups { groups })
        .map_err(|e| NodeError::AddedGroupsSyntax { path: path.clone(), reason: e.to_string() })?;
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&cfg.data_dir)?.sync_all()
    };
    write().map_err(|source| NodeError::AddedGroups { path: path.clone(), source })
}

fn load_users(cfg: &Config) -> Result<UserDb, crate::users::UserDbError> {
    let group_names: Vec<String> = cfg.groups.iter().map(|g| g.name.clone()).collect();
    match &cfg.users_file {
        Some(path) => {
            let default = (group_names.len() == 1).then(|| group_names[0].as_str());
            UserDb::load(path, &group_names, default)
        }
        None => Ok(UserDb::default()),
    }
}

/// On SIGHUP, read the users file again; keep serving the old one if the new one is bad.
async fn reload_users_on_hangup(hangups: std::io::Result<tokio::signal::unix::Signal>, cfg: Config, node: Arc<Node>) {
    let Ok(mut hup) = hangups else {
        tracing::warn!("cannot watch SIGHUP: the users file will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        match load_users(&cfg) {
            Ok(db) => {
                tracing::info!(users = db.len(), "users file reloaded");
                *node.users.write().expect("users lock") = Arc::new(db);
            }
            Err(e) => tracing::error!(error = %e, "users file not reloaded; keeping the previous one"),
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr).await.map_err(|source| NodeError::Listen { addr: addr.to_string(), source })
}

async fn bind_optional(addr: Option<&str>) -> Result<Option<TcpListener>, NodeError> {
    match addr {
        Some(a) => bind(a).await.map(Some),
        None => Ok(None),
    }
}

/// Run `serve` on `listener` if there is one; otherwise never finish.
async fn serve_optional<F, Fut>(listener: Option<TcpListener>, node: Arc<Node>, serve: F) -> std::io::Result<()>
where
    F: FnOnce(TcpListener, Arc<Node>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    match listener {
        Some(l) => serve(l, node).await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
