//! A storage node: the groups it serves, its users, and its listeners. Built from a
//! [`Config`]; `main` only parses arguments and calls [`run`].

use std::collections::HashMap;
use std::sync::Arc;

use common::auth::ClusterKey;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::{Config, Limits};
use crate::group::Group;
use crate::users::UserDb;

/// What connection handlers need.
pub struct Node {
    pub id: u64,
    pub host: String,
    pub groups: HashMap<String, Arc<Group>>,
    /// The users file as last loaded; SIGHUP reloads it (a bad file keeps the old one).
    pub users: std::sync::RwLock<Arc<UserDb>>,
    pub auth: Authenticator,
    pub limits: Limits,
    /// The certificate for STARTTLS/STLS and implicit TLS, if configured.
    pub tls: Option<crate::tls::Tls>,
    /// Set when the node begins to shut down; long-lived sessions say BYE.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

/// Start everything the configuration describes and serve until a listener fails.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let key = ClusterKey::from_secret(&cfg.cluster_secret()?);
    let group_names: Vec<String> = cfg.groups.iter().map(|g| g.name.clone()).collect();
    if cfg.users_file.is_none() {
        tracing::warn!("no users_file: accepting mail for any valid user name into group {}", group_names[0]);
    }
    let users = load_users(&cfg)?;
    tracing::info!(node = cfg.node_id, users = users.len(), groups = ?group_names, "starting storaged");
    let raft_listener = TcpListener::bind(&cfg.listen.raft).await?;
    let lmtp_listener = TcpListener::bind(&cfg.listen.lmtp).await?;
    let pop3_listener = bind_optional(cfg.listen.pop3.as_deref()).await?;
    let imap_listener = bind_optional(cfg.listen.imap.as_deref()).await?;
    let imaps_listener = bind_optional(cfg.listen.imaps.as_deref()).await?;
    let pop3s_listener = bind_optional(cfg.listen.pop3s.as_deref()).await?;
    let admin_listener = bind_optional(cfg.listen.admin.as_deref()).await?;
    let tls = match &cfg.tls {
        Some(t) => Some(crate::tls::Tls::load(&t.cert_file, &t.key_file)?),
        None => None,
    };
    let mut groups = HashMap::new();
    let mut rafts = HashMap::new();
    for gcfg in &cfg.groups {
        let g = Group::open(&cfg, gcfg, key.clone()).await?;
        rafts.insert(g.name.clone(), g.raft.clone());
        groups.insert(g.name.clone(), g);
    }
    let raft_server = tokio::spawn(crate::raft::serve(raft_listener, Arc::new(rafts), key.clone()));
    let node = Arc::new(Node {
        id: cfg.node_id,
        host: format!("storaged-{}", cfg.node_id),
        groups,
        users: std::sync::RwLock::new(Arc::new(users)),
        auth: cfg.auth.authenticator()?,
        limits: cfg.limits.clone(),
        tls,
        stopping: tokio::sync::watch::Sender::new(false),
    });
    tokio::spawn(reload_users_on_hangup(cfg.clone(), node.clone()));
    let lmtp_server = tokio::spawn(crate::lmtp::serve(lmtp_listener, node.clone()));
    let pop3_server = tokio::spawn(serve_optional(pop3_listener, node.clone(), |l, n| crate::pop3::serve(l, n, false)));
    let pop3s_server =
        tokio::spawn(serve_optional(pop3s_listener, node.clone(), |l, n| crate::pop3::serve(l, n, true)));
    let imap_server = tokio::spawn(serve_optional(imap_listener, node.clone(), |l, n| crate::imap::serve(l, n, false)));
    let imaps_server =
        tokio::spawn(serve_optional(imaps_listener, node.clone(), |l, n| crate::imap::serve(l, n, true)));
    let admin_server =
        tokio::spawn(serve_optional(admin_listener, node.clone(), move |l, n| crate::admin::serve(l, n, key)));
    tokio::select! {
        r = raft_server => r??,
        r = admin_server => r??,
        r = lmtp_server => r??,
        r = pop3_server => r??,
        r = imap_server => r??,
        r = pop3s_server => r??,
        r = imaps_server => r??,
        _ = shutdown_signal() => {
            tracing::info!("shutting down: checkpointing");
            node.stopping.send_replace(true);
            for g in node.groups.values() {
                let sm = g.sm.clone();
                let r = tokio::task::spawn_blocking(move || sm.checkpoint_if_dirty()).await?;
                if let Err(e) = r {
                    tracing::error!(group = %g.name, error = %e, "final checkpoint failed");
                }
                let _ = g.raft.shutdown().await;
            }
        }
    }
    Ok(())
}

impl Node {
    /// The current user database.
    pub fn users(&self) -> Arc<UserDb> {
        self.users.read().expect("users lock").clone()
    }
}

fn load_users(cfg: &Config) -> Result<UserDb, crate::users::UserDbError> {
    let group_names: Vec<String> = cfg.groups.iter().map(|g| g.name.clone()).collect();
    match &cfg.users_file {
        Some(path) => {
            let default = (group_names.len() == 1).then(|| group_names[0].as_str());
            UserDb::load(path, &group_names, default)
        }
        None => Ok(UserDb::open(&group_names[0])),
    }
}

/// On SIGHUP, read the users file again; keep serving the old one if the new one is bad.
async fn reload_users_on_hangup(cfg: Config, node: Arc<Node>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
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

async fn bind_optional(addr: Option<&str>) -> std::io::Result<Option<TcpListener>> {
    match addr {
        Some(a) => TcpListener::bind(a).await.map(Some),
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
