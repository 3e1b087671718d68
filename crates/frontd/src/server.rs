//! The I/O edge of frontd: listeners, TLS (reloaded on SIGHUP), the per-connection loops
//! that feed the pure pre-login state machines, and the hand-over to a storage node once
//! a login succeeds. Holds no mail state; any number of fronts may run side by side.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::line::{read_line_within, Line};
use common::sasl::PlainCredentials;
use common::tls::{Conn, Stream, Tls};
use directory::{Directory, LdapDirectory, LdifDirectory};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::access::{Access, Listener};
use crate::backend::{self, Backend, ProxyCredential, RouteError};
use crate::cluster::{ClusterMap, Protocol};
use crate::config::{Config, ConfigError, SmtpSection, TlsFiles};
use crate::delivery::Router;
use crate::login::{Gate, Offer, PreLogin, Refusal, Step};
use crate::sessions::{SessionCounts, Slot};
use crate::smtp::session::Mode;
use crate::{imap, managesieve, pop3, smtp, splice};

/// How long a client may take to log in.
const LOGIN_TIME_MAX: Duration = Duration::from_secs(180);
/// Commands a client may send before logging in.
const PREAUTH_COMMANDS_MAX: usize = 64;
/// How often the storage nodes' IMAP capabilities are re-read.
const CAPABILITY_REFRESH: Duration = Duration::from_secs(60);
/// How long a client's greeting may wait for the first node to tell its capabilities.
const CAPABILITY_WAIT_MAX: Duration = Duration::from_secs(5);

/// Why frontd could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("directory: {0}")]
    Directory(String),
    #[error(transparent)]
    Tls(#[from] common::tls::TlsError),
    #[error("listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("the /metrics endpoint: {0}")]
    Metrics(std::io::Error),
}

/// Everything a connection needs.
pub struct Front {
    pub host: String,
    pub gate: Gate,
    pub cluster: Arc<ClusterMap>,
    pub proxy: ProxyCredential,
    /// Deliveries to the groups (SMTP).
    pub router: Arc<Router>,
    /// The outbound queue, if configured.
    pub queue: Option<Arc<crate::queue::QueueClient>>,
    queue_runner: Option<Arc<crate::queue::runner::Runner>>,
    pub smtp: SmtpSection,
    /// The IP rules of every listener, reloaded when the configuration file changes.
    pub access: Arc<Access>,
    pub smtp_policy: crate::smtp::policy::Policy,
    /// What a submitted message's From may say.
    pub from_policy: crate::smtp::submission::FromPolicy,
    /// DKIM keys for submitted mail.
    pub dkim: crate::dkim::Signers,
    /// Login history, phish rules and snags (with a cluster key).
    pub phish: Option<Arc<crate::phish::Watch>>,
    blocks_poll: Duration,
    /// Reverses SRS addresses of forwarded mail (with the cluster key).
    pub srs: Option<common::srs::Srs>,
    /// The scanning stage, when a scanner is configured.
    pub scanner: Option<Arc<crate::scan::Scanner>>,
    /// The fates it decided, until reported.
    pub fates: Arc<crate::scan::fates::Tally>,
    /// The recipients its SMTP listeners refused, until reported.
    pub refusals: Arc<crate::smtp::refusals::Refusals>,
    /// Where fates and refusals are reported: the stats group, over the admin protocol
    /// (with a cluster key).
    stats: Option<(Arc<crate::queue::QueueClient>, String)>,
    report_fates_every: Duration,
    tls_files: Option<TlsFiles>,
    tls: RwLock<Option<Arc<Tls>>>,
    /// The storage nodes' IMAP capabilities (without TLS/AUTH items).
    node_capabilities: RwLock<String>,
    per_address: Arc<SessionCounts<IpAddr>>,
    /// The memory SMTP bodies are held in, shared by every connection.
    pub body_memory: Arc<crate::smtp::memory::BodyMemory>,
    per_user: Arc<SessionCounts<String>>,
    /// What `/metrics` reports.
    pub metrics: Arc<crate::metrics::FrontMetrics>,
}

impl Front {
    /// A front for `cfg`; its IP rules are reloaded from `path` when it changes.
    pub fn new(cfg: &Config, path: Option<std::path::PathBuf>) -> Result<Self, StartError> {
        let directory = open_directory(cfg)?;
        let gate =
            Gate::new(directory.clone(), cfg.auth.networks().map_err(ConfigError::Invalid)?, cfg.auth.throttling());
        let tls = cfg.tls.as_ref().map(|f| Tls::load(&f.cert_file, &f.key_file).map(Arc::new)).transpose()?;
        let cluster = Arc::new(ClusterMap::new(&cfg.groups));
        let route_timeout = Duration::from_millis(cfg.backend.route_timeout_ms);
        let key = cfg.cluster_secret()?.map(|secret| common::rpc_channel::ClusterKey::from_secret(&secret));
        let router = Arc::new(Router::new(directory.clone(), cluster.clone(), key.clone(), route_timeout));
        let queue = key.clone().filter(|_| cfg.queue.is_some()).map(|key| {
            Arc::new(crate::queue::QueueClient::new(cluster.clone(), key, cfg.queue_groups(), route_timeout))
        });
        let scanning = cfg.scan.clamd.is_some() || cfg.scan.rspamd.is_some();
        // Fates and refusals go to the stats group over the admin protocol (keyed like the
        // queue).
        let stats = match (&key, cfg.stats_group()) {
            (Some(key), Some(group)) => {
                let admin =
                    crate::queue::QueueClient::new(cluster.clone(), key.clone(), vec![group.clone()], route_timeout);
                Some((Arc::new(admin), group))
            }
            _ => None,
        };
        let metrics = Arc::new(crate::metrics::FrontMetrics::default());
        let queue_runner = match (&queue, &cfg.queue) {
            (Some(client), Some(settings)) if settings.runner => Some(Arc::new(crate::queue::runner::Runner {
                queue: client.clone(),
                router: router.clone(),
                outbound: Arc::new(crate::outbound::Outbound::new(&cfg.host, settings, &cfg.smtp.dns_servers)?),
                settings: settings.clone(),
                local_domains: cfg.smtp.local_domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
                host: cfg.host.clone(),
                holder: format!("{}-{:08x}", cfg.host, rand::random::<u32>()),
                metrics: metrics.clone(),
            })),
            _ => None,
        };
        let srs = key.as_ref().map(|key| common::srs::Srs::new(key.srs_key()));
        let phish = key.as_ref().map(|k| phish_watch(cfg, &directory, &cluster, k, route_timeout).map(Arc::new));
        let phish = phish.transpose()?;
        Ok(Self {
            metrics,
            host: cfg.host.clone(),
            srs,
            router,
            queue,
            queue_runner,
            smtp: cfg.smtp.clone(),
            access: Arc::new(Access::new(cfg, path)?),
            smtp_policy: crate::smtp::policy::Policy::new(&cfg.smtp)?,
            from_policy: crate::smtp::submission::FromPolicy::parse(&cfg.smtp.submission_from),
            dkim: crate::dkim::Signers::load(&cfg.dkim)?,
            phish,
            blocks_poll: Duration::from_millis(cfg.phish.blocks_poll_ms.max(100)),
            scanner: scanning.then(|| Arc::new(crate::scan::Scanner::new(&cfg.scan))),
            fates: Arc::default(),
            refusals: Arc::default(),
            stats,
            report_fates_every: Duration::from_secs(cfg.scan.report_every_s),
            gate,
            cluster,
            proxy: ProxyCredential {
                user: cfg.backend.proxy_user.clone(),
                password: cfg.proxy_password()?,
                route_timeout: Duration::from_millis(cfg.backend.route_timeout_ms),
            },
            tls_files: cfg.tls.clone(),
            tls: RwLock::new(tls),
            node_capabilities: RwLock::new(String::new()),
            per_address: SessionCounts::new(cfg.limits.connections_per_address_max.max(1)),
            body_memory: crate::smtp::memory::BodyMemory::new(body_limits(&cfg.smtp)),
            per_user: SessionCounts::new(cfg.limits.sessions_per_user_max.max(1)),
        })
    }

    pub fn tls(&self) -> Option<Arc<Tls>> {
        self.tls.read().expect("tls lock").clone()
    }

    /// Whether a certificate is configured.
    pub fn has_tls(&self) -> bool {
        self.tls_files.is_some()
    }

    /// Re-read the certificate and key (SIGHUP); a bad pair is refused and the old stays.
    pub fn reload_tls(&self) {
        let Some(files) = &self.tls_files else { return };
        match Tls::load(&files.cert_file, &files.key_file) {
            Ok(tls) => {
                *self.tls.write().expect("tls lock") = Some(Arc::new(tls));
                tracing::info!("TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; keeping the old one"),
        }
    }

    /// Ask any storage node for its IMAP capabilities; whether one answered.
    pub async fn learn_capabilities(&self) -> bool {
        for group in self.cluster.group_names() {
            for member in self.cluster.candidates(group, Protocol::Imap, None) {
                let Some(addr) = member.address(Protocol::Imap) else { continue };
                if let Ok(Some(caps)) = tokio::time::timeout(Duration::from_secs(2), greeting_of(addr)).await {
                    *self.node_capabilities.write().expect("caps lock") = caps;
                    return true;
                }
            }
        }
        tracing::warn!("no storage node answered for its IMAP capabilities");
        false
    }

    /// The nodes' capabilities; asked for now (bounded) if no node has answered yet, so a
    /// client never sees a shorter list than the node it will be handed to.
    async fn node_capabilities(&self) -> String {
        let known = self.node_capabilities.read().expect("caps lock").clone();
        if !known.is_empty() {
            return known;
        }
        let deadline = tokio::time::Instant::now() + CAPABILITY_WAIT_MAX;
        while tokio::time::Instant::now() < deadline {
            if tokio::time::timeout_at(deadline, self.learn_capabilities()).await == Ok(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.node_capabilities.read().expect("caps lock").clone()
    }

    /// Check a login: the gate's word, and no account the phish records say is locked
    /// (whatever a directory cache still says).
    pub async fn check_login(
        &self,
        listener: Listener,
        ip: IpAddr,
        tls: bool,
        creds: &PlainCredentials,
    ) -> Result<Arc<directory::Account>, Refusal> {
        let checked = self.gate.login(ip, tls, creds).await.and_then(|account| {
            if self.phish.as_ref().is_some_and(|w| w.is_locked(&account.mail)) {
                tracing::warn!(user = %account.mail, %ip, "login of a locked account refused");
                return Err(Refusal::Disabled);
            }
            Ok(account)
        });
        self.metrics.logins.count(listener.name(), checked.is_ok());
        checked
    }

    /// Route a checked account: its group's leader, logged in for it.
    async fn route(
        &self,
        protocol: Protocol,
        account: &directory::Account,
        peer: SocketAddr,
    ) -> Result<Backend, Refusal> {
        let (mail, mail_host) = (account.mail.as_str(), account.mail_host.as_deref());
        let session = backend::SessionFacts { client_ip: peer.ip(), rules: account.recipient_rules() };
        let temporary = || Refusal::Unavailable("your mailbox is temporarily unavailable, try again later".into());
        let Some(host) = mail_host else {
            tracing::error!(user = mail, "directory entry has no mailHost; fix the directory");
            return Err(temporary());
        };
        let Some(group) = self.cluster.group_name(host) else {
            tracing::error!(
                user = mail,
                mail_host = host,
                "mailHost names no group of this cluster; fix the directory or the cluster map"
            );
            return Err(temporary());
        };
        let opened = match backend::open(&self.cluster, &self.proxy, protocol, &group, mail, &session).await {
            // The directory answer predates a move (a cache, a replica): follow the node's
            // word once, to a mailhost of this cluster.
            Err(RouteError::Moved(target)) => match self.cluster.group_name(&target) {
                Some(moved) if moved != group => {
                    tracing::info!(user = mail, from = group, to = moved, "the mailbox moved; following it");
                    backend::open(&self.cluster, &self.proxy, protocol, &moved, mail, &session).await
                }
                _ => Err(RouteError::Moved(target)),
            },
            other => other,
        };
        opened.map_err(|e| {
            tracing::error!(user = mail, group, error = %e, "cannot open the user's mailhost");
            temporary()
        })
    }
}

/// How much SMTP bodies may hold in memory, all connections and per client address.
fn body_limits(smtp: &SmtpSection) -> crate::smtp::memory::Limits {
    crate::smtp::memory::Limits {
        total_max_bytes: smtp.body_memory_max_bytes,
        per_address_max_bytes: smtp.body_memory_per_address_max_bytes,
        transactions_per_address_max: smtp.transactions_per_address_max,
    }
}

/// The directory `cfg` names: its LDIF file or its LDAP server.
fn open_directory(cfg: &Config) -> Result<Directory, StartError> {
    let unusable = |e: &dyn std::fmt::Display| StartError::Directory(e.to_string());
    Ok(match (&cfg.directory.ldif, cfg.ldap()?) {
        (Some(path), _) => Directory::Ldif(Arc::new(LdifDirectory::open(path).map_err(|e| unusable(&e))?)),
        (None, Some(ldap)) => Directory::Ldap(Arc::new(LdapDirectory::new(ldap).map_err(|e| unusable(&e))?)),
        (None, None) => unreachable!("validated: one directory"),
    })
}

/// The front's watch over its users, writing the records to the stats group.
fn phish_watch(
    cfg: &Config,
    directory: &Directory,
    cluster: &Arc<ClusterMap>,
    key: &common::rpc_channel::ClusterKey,
    route_timeout: Duration,
) -> Result<crate::phish::Watch, StartError> {
    let mut groups = cfg.queue_groups();
    if groups.is_empty() {
        groups = cfg.groups.iter().map(|g| g.name.to_ascii_lowercase()).collect();
    }
    let admin = Arc::new(crate::queue::QueueClient::new(cluster.clone(), key.clone(), groups, route_timeout));
    let snagger = crate::phish::snag::Snagger {
        admin,
        directory: directory.clone(),
        writer: cfg.phish_writer()?,
        records_group: cfg.stats_group().unwrap_or_default(),
        never_block: cfg.phish.never_block.iter().filter_map(|n| n.parse().ok()).collect(),
        block_for: Duration::from_secs(cfg.phish.block_days.saturating_mul(86_400)),
        host: cfg.host.clone(),
        webhook: cfg.phish.webhook.clone(),
        notify: cfg.phish.notify.clone(),
    };
    crate::phish::Watch::new(&cfg.phish, &cfg.host, cluster.clone(), snagger)
        .map_err(|e| ConfigError::Invalid(format!("[phish] geo_database {e}")).into())
}

/// Keep the listeners' block list in step with the cluster's, every `every`.
async fn poll_blocks(front: Arc<Front>, watch: Arc<crate::phish::Watch>, every: Duration) {
    let snagger = watch.snagger();
    let group = snagger.records_group.clone();
    loop {
        match snagger.admin.call(&group, common::admin::AdminRequest::Blocks { group: group.clone() }).await {
            Ok(common::admin::AdminReply::Blocks { blocks, locked }) => {
                front.access.set_blocks(&blocks);
                watch.set_locked(locked);
            }
            other => tracing::debug!(group, ?other, "block list not read"),
        }
        tokio::time::sleep(every).await;
    }
}

async fn greeting_of(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    while !buf[..got].contains(&b'\n') && got < buf.len() {
        let n = s.read(&mut buf[got..]).await.ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let _ = s.write_all(b"x LOGOUT\r\n").await;
    imap::greeting_capabilities(&String::from_utf8_lossy(&buf[..got]))
}

/// A client-facing protocol.
#[derive(Debug, Clone, Copy)]
enum Service {
    Imap,
    Pop3,
    Sieve,
    Smtp(Mode),
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Self::Imap => "IMAP",
            Self::Pop3 => "POP3",
            Self::Sieve => "ManageSieve",
            Self::Smtp(_) => "SMTP",
        }
    }

    /// The listener kind IP rules name.
    fn listener(self) -> Listener {
        match self {
            Self::Imap => Listener::Imap,
            Self::Pop3 => Listener::Pop3,
            Self::Sieve => Listener::Sieve,
            Self::Smtp(Mode::Mx) => Listener::Mx,
            Self::Smtp(Mode::Submission) => Listener::Submission,
        }
    }

    /// The line for a client whose address a rule denies.
    fn denied_line(self) -> &'static [u8] {
        match self {
            Self::Imap => b"* BYE access from your address is denied\r\n",
            Self::Pop3 => b"-ERR access from your address is denied\r\n",
            Self::Sieve => b"BYE \"access from your address is denied\"\r\n",
            Self::Smtp(_) => b"554 5.7.1 access from your address is denied\r\n",
        }
    }

    /// The line for a client over the listener's connection limit.
    fn busy_line(self) -> &'static [u8] {
        match self {
            Self::Imap => b"* BYE [UNAVAILABLE] too many connections\r\n",
            Self::Pop3 => b"-ERR [SYS/TEMP] too many connections\r\n",
            Self::Sieve => b"BYE (TRYLATER) \"too many connections\"\r\n",
            Self::Smtp(_) => b"421 4.3.2 too many connections, try later\r\n",
        }
    }

    /// The line for a client whose address has too many connections open.
    fn busy_address_line(self) -> &'static [u8] {
        match self {
            Self::Imap => b"* BYE [UNAVAILABLE] too many connections from your address\r\n",
            Self::Pop3 => b"-ERR [SYS/TEMP] too many connections from your address\r\n",
            Self::Sieve => b"BYE (TRYLATER) \"too many connections from your address\"\r\n",
            Self::Smtp(_) => b"421 4.7.0 too many connections from your address\r\n",
        }
    }
}

/// Start every configured listener and serve until SIGTERM or SIGINT.
pub async fn run(cfg: Config, path: Option<std::path::PathBuf>) -> Result<(), StartError> {
    let front = Arc::new(Front::new(&cfg, path)?);
    cfg.metrics.start(front.metrics.registry()).await.map_err(StartError::Metrics)?;
    let max = cfg.limits.connections_max;
    let bind = |addr: &String| {
        let addr = addr.clone();
        async move { TcpListener::bind(&addr).await.map_err(|source| StartError::Listen { addr, source }) }
    };
    // Registered before anything is served: a signal must never meet the default action.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    let mut tasks = tokio::task::JoinSet::new();
    for (addr, service, implicit) in [
        (&cfg.listen.imap, Service::Imap, false),
        (&cfg.listen.imaps, Service::Imap, true),
        (&cfg.listen.pop3, Service::Pop3, false),
        (&cfg.listen.pop3s, Service::Pop3, true),
        (&cfg.listen.smtp, Service::Smtp(Mode::Mx), false),
        (&cfg.listen.submission, Service::Smtp(Mode::Submission), false),
        (&cfg.listen.submissions, Service::Smtp(Mode::Submission), true),
        (&cfg.listen.sieve, Service::Sieve, false),
    ] {
        let Some(addr) = addr else { continue };
        let listener = bind(addr).await?;
        tracing::info!(%addr, ?service, implicit_tls = implicit, "listening");
        let front = front.clone();
        tasks.spawn(common::accept::serve(listener, max, service.name(), service.busy_line(), move |stream, peer| {
            let front = front.clone();
            async move {
                let listener = service.listener().name();
                if front.access.admission(peer.ip(), service.listener()).denied {
                    tracing::info!(%peer, listener, "client denied by an IP rule");
                    front.metrics.refused(listener, "ip-rule");
                    let mut stream = stream;
                    // With implicit TLS a plain line would be noise to the client: just close.
                    if !implicit {
                        let _ = stream.write_all(service.denied_line()).await;
                    }
                    return Ok(());
                }
                let Some(_address_slot) = front.per_address.try_acquire(peer.ip()) else {
                    tracing::warn!(%peer, "connection limit of the address reached");
                    front.metrics.refused(listener, "address-limit");
                    let mut stream = stream;
                    let _ = stream.write_all(service.busy_address_line()).await;
                    return Ok(());
                };
                front.metrics.sessions.opened(listener);
                match service {
                    Service::Imap => {
                        let caps = front.node_capabilities().await;
                        // Moved in: the login phase frees it; the session never needs it.
                        let session = move |offer| imap::PreAuth::new(offer, &caps);
                        let client = Accepted { stream, peer, implicit_tls: implicit, protocol: Protocol::Imap };
                        proxied(client, &front, session, read_imap_command).await
                    }
                    Service::Pop3 => {
                        let client = Accepted { stream, peer, implicit_tls: implicit, protocol: Protocol::Pop3 };
                        proxied(client, &front, pop3::PreAuth::new, read_pop3_line).await
                    }
                    Service::Sieve => {
                        let (new, read) = (managesieve::PreAuth::new, read_sieve_command);
                        let client = Accepted { stream, peer, implicit_tls: implicit, protocol: Protocol::Sieve };
                        proxied(client, &front, new, read).await
                    }
                    // Boxed: an SMTP session's state is large, and every idle IMAP
                    // connection's task would otherwise be as large as it.
                    Service::Smtp(mode) => {
                        Box::pin(smtp::server::connection(stream, peer, front, mode, implicit)).await
                    }
                }
            }
        }));
    }
    match &front.scanner {
        Some(scanner) => tracing::info!(scanners = %scanner.describe(), "scanning stage on"),
        None if cfg.smtp_listeners() => tracing::warn!("no [scan] clamd or rspamd: SMTP mail is delivered unscanned"),
        None => {}
    }
    if let Some((admin, group)) = front.stats.clone() {
        let front_run = format!("{}-{:016x}", front.host, rand::random::<u64>());
        let reporter = crate::reports::Reporter { admin, group, front: front_run, every: front.report_fates_every };
        if front.scanner.is_some() {
            let (tally, reporter) = (front.fates.clone(), reporter.clone());
            tasks.spawn(async move {
                crate::scan::fates::report(tally, reporter).await;
                Ok(())
            });
        }
        if cfg.smtp_listeners() {
            let refusals = front.refusals.clone();
            let reporter = crate::reports::Reporter { every: crate::smtp::refusals::REPORT_EVERY, ..reporter };
            let request =
                |group, op_id, refusals| common::admin::AdminRequest::FrontRefusals { group, op_id, refusals };
            tasks.spawn(async move {
                reporter.run("refusals", || refusals.take(), request).await;
                Ok(())
            });
        }
    }
    if let Some(runner) = front.queue_runner.clone() {
        tracing::info!(groups = ?front.queue.as_ref().map(|q| q.groups().to_vec()), "queue runner started");
        tasks.spawn(async move {
            runner.run().await;
            Ok(())
        });
    }
    if let Some(watch) = front.phish.clone() {
        let (front_for_blocks, every) = (front.clone(), front.blocks_poll);
        tasks.spawn(async move {
            poll_blocks(front_for_blocks, watch, every).await;
            Ok(())
        });
    }
    tasks.spawn({
        let access = front.access.clone();
        async move {
            access.watch().await;
            Ok(())
        }
    });
    common::daemon::ready();
    let refresher = front.clone();
    tasks.spawn(async move {
        let mut known = refresher.learn_capabilities().await;
        loop {
            // Until a node has answered, ask every second; then refresh now and then.
            tokio::time::sleep(if known { CAPABILITY_REFRESH } else { Duration::from_secs(1) }).await;
            known = refresher.learn_capabilities().await || known;
        }
    });
    loop {
        tokio::select! {
            _ = hup.recv() => {
                front.reload_tls();
                front.access.reload();
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(done) = tasks.join_next() => {
                if let Ok(Err(e)) = done {
                    tracing::error!(error = %e, "listener failed");
                }
            }
        }
    }
    tracing::info!("frontd stopping");
    common::daemon::stopping();
    Ok(())
}

/// Hand a logged-in client over to its storage node: pending bytes first, then splice
/// (plain) or copy (TLS) until either side closes.
async fn hand_over(conn: Conn, backend: Backend) -> std::io::Result<()> {
    let (stream, client_pending) = conn.into_parts();
    let Backend { stream: mut node, pending: node_pending, .. } = backend;
    splice::forward_pending(&mut node, &client_pending).await?;
    match stream {
        Stream::Plain(mut client) => {
            if !node_pending.is_empty() {
                client.write_all(&node_pending).await?;
            }
            splice::splice(client, node).await?;
        }
        mut client @ Stream::Tls(_) => {
            if !node_pending.is_empty() {
                client.write_all(&node_pending).await?;
            }
            splice::copy(&mut client, &mut node).await?;
        }
    }
    Ok(())
}

/// Check credentials, take a session slot of the user and route; the backend and the slot
/// (held for the session's life), or the refusal to tell the client.
async fn login(
    front: &Front,
    protocol: Protocol,
    peer: SocketAddr,
    tls: bool,
    creds: &PlainCredentials,
) -> Result<(Backend, Slot<String>), Refusal> {
    let listener = match protocol {
        Protocol::Pop3 => Listener::Pop3,
        Protocol::Sieve => Listener::Sieve,
        _ => Listener::Imap,
    };
    let account = front.check_login(listener, peer.ip(), tls, creds).await?;
    let Some(slot) = front.per_user.try_acquire(account.mail.clone()) else {
        tracing::warn!(user = %account.mail, %peer, "session limit of the user reached");
        return Err(Refusal::TooManySessions);
    };
    let backend = front.route(protocol, &account, peer).await?;
    if let Some(watch) = &front.phish {
        watch.logged_in(account.clone(), Some(backend.group.clone()), protocol.name(), peer.ip());
    }
    Ok((backend, slot))
}

/// Read one IMAP command with its literals; `None` when the client is gone.
async fn read_imap_command(conn: &mut Conn) -> std::io::Result<Option<Result<Vec<u8>, Vec<u8>>>> {
    let mut buf = Vec::new();
    loop {
        let line = match read_line_within(&mut conn.rd, imap::LINE_MAX, LOGIN_TIME_MAX).await? {
            Line::Complete(l) => l,
            Line::TooLong { head } => {
                let first = if buf.is_empty() { head.as_slice() } else { buf.as_slice() };
                return Ok(Some(Err(common::imap_tag::bad(first, "command line too long"))));
            }
            Line::Eof | Line::Idle => return Ok(None),
        };
        buf.extend_from_slice(&line);
        buf.extend_from_slice(b"\r\n");
        match imap::framing(&buf) {
            imap::Framing::Complete => return Ok(Some(Ok(buf))),
            imap::Framing::Incomplete => {}
            imap::Framing::Bad { tag } => {
                let tag = tag.unwrap_or_else(|| "*".into());
                return Ok(Some(Err(format!("{tag} BAD syntax error in command\r\n").into_bytes())));
            }
            imap::Framing::Literal { length, sync } => {
                if length > imap::LITERAL_BYTES_MAX {
                    if !sync {
                        // The client sends the bytes anyway; they cannot be told apart from commands.
                        return Ok(None);
                    }
                    let tag = imap::tag_of(&buf).unwrap_or("*");
                    return Ok(Some(Err(format!("{tag} BAD literal too large before login\r\n").into_bytes())));
                }
                if sync {
                    conn.wr.write_all(b"+ go ahead\r\n").await?;
                }
                let mut literal = vec![0u8; length as usize];
                tokio::time::timeout(LOGIN_TIME_MAX, conn.rd.read_exact(&mut literal))
                    .await
                    .map_err(|_| std::io::Error::other("literal timed out"))??;
                buf.extend_from_slice(&literal);
            }
        }
    }
}

/// A new client connection (after the handshake with implicit TLS), the certificate in
/// force for it, and what it may do before login.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    front: &Front,
    implicit_tls: bool,
) -> std::io::Result<(Conn, Option<Arc<Tls>>, Offer)> {
    let tls = front.tls();
    let conn = Conn::open(stream, tls.as_deref(), implicit_tls).await?;
    let offer = Offer {
        starttls: tls.is_some() && !conn.tls,
        plaintext_auth: front.gate.plaintext_allowed(peer.ip(), conn.tls),
    };
    Ok((conn, tls, offer))
}

/// Answer a STARTTLS/STLS with `reply` and run the handshake; `None` if the handshake failed
/// (the connection is gone). Offered only when TLS is configured.
async fn upgrade(mut conn: Conn, reply: &[u8], tls: Option<&Tls>) -> std::io::Result<Option<Conn>> {
    conn.wr.write_all(reply).await?;
    let tls = tls.expect("STARTTLS and STLS are offered only with TLS");
    conn.start_tls(tls).await
}

/// A client of a proxied protocol (IMAP, POP3, ManageSieve): [`pre_login`] until a login
/// succeeds, then the hand-over to the storage node for the rest of the session. The login
/// phase runs boxed and is freed before the hand-over, so a proxied session, idle for hours
/// with most clients, holds its two sockets and little else (`idle-bench`).
async fn proxied<P: PreLogin>(
    client: Accepted,
    front: &Front,
    new_session: impl FnOnce(Offer) -> P,
    read: impl AsyncFnMut(&mut Conn) -> std::io::Result<Option<Result<Vec<u8>, Vec<u8>>>>,
) -> std::io::Result<()> {
    let login = Box::pin(pre_login(client, front, new_session, read)).await?;
    let Some((conn, backend, _user_slot)) = login else { return Ok(()) };
    hand_over(conn, backend).await
}

/// The connection, its storage node and the user's session slot after a login.
type LoggedIn = (Conn, Backend, Slot<String>);

/// A client connection as accepted, and the protocol its listener speaks.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    protocol: Protocol,
}

/// An IMAP or POP3 client from its greeting to a successful login: `read` frames the
/// protocol's commands, the machine `new_session` makes for the connection's offer answers
/// them. `None` when the client left (or was told to) without logging in.
async fn pre_login<P: PreLogin>(
    client: Accepted,
    front: &Front,
    new_session: impl FnOnce(Offer) -> P,
    mut read: impl AsyncFnMut(&mut Conn) -> std::io::Result<Option<Result<Vec<u8>, Vec<u8>>>>,
) -> std::io::Result<Option<LoggedIn>> {
    let Accepted { stream, peer, implicit_tls, protocol } = client;
    let (mut conn, tls, offer) = open(stream, peer, front, implicit_tls).await?;
    let mut session = new_session(offer);
    conn.wr.write_all(&session.greeting(&front.host)).await?;
    for _ in 0..PREAUTH_COMMANDS_MAX {
        let command = match read(&mut conn).await? {
            None => return Ok(None),
            Some(Err(reply)) => {
                conn.wr.write_all(&reply).await?;
                continue;
            }
            Some(Ok(c)) => c,
        };
        let mut step = session.input(&command);
        if let Step::SaslContinue = step {
            conn.wr.write_all(P::SASL_CONTINUE).await?;
            step = match read_line_within(&mut conn.rd, P::SASL_LINE_MAX, LOGIN_TIME_MAX).await? {
                Line::Complete(l) => session.sasl_response(Some(&l)),
                Line::TooLong { .. } => session.sasl_response(None),
                Line::Eof | Line::Idle => return Ok(None),
            };
        }
        match step {
            Step::Reply(b) => conn.wr.write_all(&b).await?,
            Step::Close(b) => return conn.wr.write_all(&b).await.map(|()| None),
            Step::StartTls(b) => {
                let Some(upgraded) = upgrade(conn, &b, tls.as_deref()).await? else { return Ok(None) };
                conn = upgraded;
                let said = session.tls_started(front.gate.plaintext_allowed(peer.ip(), true));
                conn.wr.write_all(&said).await?;
            }
            Step::SaslContinue => unreachable!("a SASL response is answered, never continued"),
            Step::Login(creds) => match login(front, protocol, peer, conn.tls, &creds).await {
                Ok((backend, user_slot)) => {
                    conn.wr.write_all(&session.login_succeeded(&backend.reply)).await?;
                    return Ok(Some((conn, backend, user_slot)));
                }
                Err(refusal) => conn.wr.write_all(&session.login_failed(&refusal)).await?,
            },
        }
    }
    conn.wr.write_all(P::TOO_MANY_COMMANDS).await.map(|()| None)
}

/// Read one POP3 command line; `None` when the client is gone.
async fn read_pop3_line(conn: &mut Conn) -> std::io::Result<Option<Result<Vec<u8>, Vec<u8>>>> {
    Ok(match read_line_within(&mut conn.rd, pop3::LINE_MAX, LOGIN_TIME_MAX).await? {
        Line::Complete(l) => Some(Ok(l)),
        Line::TooLong { .. } => Some(Err(b"-ERR line too long\r\n".to_vec())),
        Line::Eof | Line::Idle => None,
    })
}

/// Read one ManageSieve command with its literals, framed for the pre-login machine;
/// `None` when the client is gone.
async fn read_sieve_command(conn: &mut Conn) -> std::io::Result<Option<Result<Vec<u8>, Vec<u8>>>> {
    let mut reader = common::managesieve::Reader::new(managesieve::LITERAL_MAX);
    loop {
        let line = match read_line_within(&mut conn.rd, common::managesieve::LINE_MAX, LOGIN_TIME_MAX).await? {
            Line::Complete(l) => l,
            Line::TooLong { .. } => return Ok(Some(Err(b"NO \"line too long\"\r\n".to_vec()))),
            Line::Eof | Line::Idle => return Ok(None),
        };
        match managesieve::frame(&mut reader, &line) {
            Ok(common::managesieve::Next::Command(command)) => return Ok(Some(Ok(command.verb.into_bytes()))),
            Ok(common::managesieve::Next::Literal(n)) => {
                let mut literal = vec![0u8; n];
                tokio::time::timeout(LOGIN_TIME_MAX, conn.rd.read_exact(&mut literal))
                    .await
                    .map_err(|_| std::io::Error::other("literal timed out"))??;
                reader.literal(literal);
            }
            // A literal refused: its bytes follow anyway and cannot be told from commands.
            Err(_) if line.ends_with(b"}") => return Ok(None),
            Err(reply) => return Ok(Some(Err(reply))),
        }
    }
}
