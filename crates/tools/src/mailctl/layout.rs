//! The files of a local cluster made by `mailctl up`: where every listener is (derived from
//! one port base, kept in the data directory because Raft remembers member addresses),
//! the secrets (cluster key, proxy password, demo passwords; created once, mode 0600),
//! the demo directory, a private CA with a certificate for localhost, and the daemons'
//! TOML. Writes files only; starts nothing.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clusterkit::front;
use clusterkit::storage::{self, NodeAddrs};
use common::password::{Digest, PasswordHash};
use frontd::config::{BackendSection, DirectorySection, QueueSection, TlsFiles};
use rand::distributions::{Alphanumeric, DistString};

/// The mailhosts (Raft groups) of the local cluster; every node serves both.
pub const GROUPS: [&str; 2] = ["hermes", "apollo"];
/// Storage nodes.
pub const NODES: usize = 3;
/// The demo users: address, mailhost.
pub const DEMO_USERS: [(&str, &str); 3] =
    [("alice@example.edu", "hermes"), ("bob@example.edu", "apollo"), ("carol@example.edu", "hermes")];

/// A demo user and the password to show.
#[derive(Debug, Clone)]
pub struct DemoUser {
    pub mail: String,
    pub password: String,
    pub mail_host: String,
}

/// Where a local cluster lives and listens.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub port_base: u16,
}

/// The storage node protocols with their port offsets.
#[derive(Debug, Clone, Copy)]
pub enum NodePort {
    Raft = 7100,
    Admin = 7200,
    Lmtp = 2400,
    Imap = 1430,
    Pop3 = 1100,
    Sieve = 4100,
    Metrics = 9100,
}

impl Layout {
    /// The layout of `dir`: the port base it was made with, or `port_base` for a new one.
    pub fn open(dir: &Path, port_base: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)?;
        let saved = dir.join("port-base");
        let port_base = match std::fs::read_to_string(&saved) {
            Ok(text) => {
                let kept: u16 = text.trim().parse().with_context(|| format!("{} is damaged", saved.display()))?;
                if kept != port_base {
                    eprintln!("note: {} was set up with --port-base {kept}; using it", dir.display());
                }
                kept
            }
            Err(_) => {
                if u32::from(port_base) + 7200 + NODES as u32 > 65_535 || port_base < 1024 {
                    // (the lowest listener is base + 25)
                    bail!("--port-base must be between 1024 and {}", 65_535 - 7200 - NODES);
                }
                std::fs::write(&saved, format!("{port_base}\n"))?;
                port_base
            }
        };
        Ok(Self { dir, port_base })
    }

    fn addr(&self, offset: u32) -> String {
        format!("127.0.0.1:{}", u32::from(self.port_base) + offset)
    }

    pub fn front_imap(&self) -> String {
        self.addr(143)
    }
    pub fn front_imaps(&self) -> String {
        self.addr(993)
    }
    pub fn front_pop3(&self) -> String {
        self.addr(110)
    }
    pub fn front_pop3s(&self) -> String {
        self.addr(995)
    }
    pub fn front_smtp(&self) -> String {
        self.addr(25)
    }
    pub fn front_submission(&self) -> String {
        self.addr(587)
    }
    pub fn front_submissions(&self) -> String {
        self.addr(465)
    }
    pub fn front_sieve(&self) -> String {
        self.addr(4190)
    }
    /// The front's Prometheus `/metrics` (the nodes' are [`NodePort::Metrics`]).
    pub fn front_metrics(&self) -> String {
        self.addr(9100)
    }

    /// rspamd's normal worker and controller (when rspamd is installed).
    pub fn rspamd_normal(&self) -> String {
        self.addr(333)
    }
    pub fn rspamd_controller(&self) -> String {
        self.addr(334)
    }

    /// The Redis rspamd learns into (when redis-server is installed).
    pub fn redis(&self) -> String {
        self.addr(379)
    }

    /// rspamd's controller password (made on the first run).
    pub fn rspamd_password(&self) -> anyhow::Result<String> {
        self.secret("rspamd.pw", 24)
    }

    /// clamd's directory (configuration, signatures, socket) and rspamd's.
    pub fn clamd_dir(&self) -> PathBuf {
        self.dir.join("clamd")
    }
    pub fn rspamd_dir(&self) -> PathBuf {
        self.dir.join("rspamd")
    }

    /// Node `i` (1-based) listening for `port`.
    pub fn node(&self, i: usize, port: NodePort) -> String {
        self.addr(port as u32 + i as u32)
    }

    /// Every address the cluster listens on, for a check before starting.
    pub fn all_addresses(&self) -> Vec<String> {
        let mut all = vec![
            self.front_imap(),
            self.front_imaps(),
            self.front_pop3(),
            self.front_pop3s(),
            self.front_smtp(),
            self.front_submission(),
            self.front_submissions(),
            self.front_sieve(),
            self.rspamd_normal(),
            self.rspamd_controller(),
            self.redis(),
            self.front_metrics(),
        ];
        for i in 1..=NODES {
            for p in [
                NodePort::Raft,
                NodePort::Admin,
                NodePort::Lmtp,
                NodePort::Imap,
                NodePort::Pop3,
                NodePort::Sieve,
                NodePort::Metrics,
            ] {
                all.push(self.node(i, p));
            }
        }
        all
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn node_config(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}.toml"))
    }

    pub fn front_config(&self) -> PathBuf {
        self.dir.join("frontd.toml")
    }

    /// Write whatever is missing (secrets, directory, certificates) and every config; the
    /// front resolves remote domains through `dns_servers` (the system's resolver if none).
    /// `scanners`: which of clamd and rspamd the front scans with.
    pub fn prepare(
        &self,
        dns_servers: &[std::net::SocketAddr],
        scanners: (bool, bool),
    ) -> anyhow::Result<Vec<DemoUser>> {
        std::fs::create_dir_all(self.log_dir())?;
        self.secret("cluster.key", 32)?;
        let proxy_password = self.secret("proxy.pw", 24)?;
        let users = self.demo_users()?;
        if !self.dir.join("cert.pem").exists() {
            self.write_certificates()?;
        }
        let proxy_hash = PasswordHash::salted(Digest::Sha512, &proxy_password).to_stored();
        let specs: Vec<NodeAddrs> = (1..=NODES)
            .map(|i| NodeAddrs {
                id: i as u64,
                raft: self.node(i, NodePort::Raft),
                lmtp: self.node(i, NodePort::Lmtp),
                imap: Some(self.node(i, NodePort::Imap)),
                pop3: Some(self.node(i, NodePort::Pop3)),
                imaps: None,
                pop3s: None,
                admin: Some(self.node(i, NodePort::Admin)),
                sieve: Some(self.node(i, NodePort::Sieve)),
                metrics: Some(self.node(i, NodePort::Metrics)),
            })
            .collect();
        let storage_groups: Vec<_> = GROUPS.iter().map(|g| storage::group(g, &specs)).collect();
        for spec in &specs {
            let mut cfg = storage::node_config(spec, &storage_groups);
            cfg.cluster_key_file = Some("cluster.key".into());
            cfg.proxy.user = Some("frontd".into());
            cfg.proxy.password = Some(proxy_hash.clone());
            if scanners.1 {
                // The leaders teach rspamd what users move into and out of Junk.
                self.rspamd_password()?;
                cfg.training.rspamd_controller = Some(self.rspamd_controller());
                cfg.training.password_file = Some("rspamd.pw".into());
            }
            storage::write(&self.node_config(spec.id as usize), &cfg)
                .with_context(|| format!("writing {}", self.node_config(spec.id as usize).display()))?;
        }
        let mut backend = BackendSection::new("frontd");
        backend.proxy_password_file = Some("proxy.pw".into());
        backend.cluster_key_file = Some("cluster.key".into());
        let mut front =
            frontd::config::Config::new(DirectorySection::ldif("users.ldif"), backend, front::groups(&GROUPS, &specs));
        front.host = "localhost".into();
        front.listen = frontd::config::Listen {
            imap: Some(self.front_imap()),
            imaps: Some(self.front_imaps()),
            pop3: Some(self.front_pop3()),
            pop3s: Some(self.front_pop3s()),
            smtp: Some(self.front_smtp()),
            submission: Some(self.front_submission()),
            submissions: Some(self.front_submissions()),
            sieve: Some(self.front_sieve()),
        };
        front.tls = Some(TlsFiles { cert_file: "cert.pem".into(), key_file: "key.pem".into() });
        front.metrics.listen = Some(self.front_metrics());
        front.auth.failure_delay_ms = 1000;
        front.smtp.local_domains = vec!["example.edu".into()];
        front.smtp.postmaster = Some("alice@example.edu".into());
        front.smtp.dns_servers = dns_servers.iter().map(ToString::to_string).collect();
        front.queue = Some(QueueSection { cluster_key_file: "cluster.key".into(), ..QueueSection::default() });
        front.scan.clamd = scanners.0.then(|| self.clamd_dir().join("clamd.sock").display().to_string());
        front.scan.rspamd = scanners.1.then(|| self.rspamd_normal());
        let added = added_groups(&self.front_config(), &front.groups);
        front.groups.extend(added);
        front::write(&self.front_config(), &front)
            .with_context(|| format!("writing {}", self.front_config().display()))?;
        Ok(users)
    }

    /// A random secret kept in `name` (made on first use).
    fn secret(&self, name: &str, len: usize) -> anyhow::Result<String> {
        let path = self.dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(text.trim().to_string());
        }
        let value = Alphanumeric.sample_string(&mut rand::thread_rng(), len);
        write_private(&path, &format!("{value}\n"))?;
        Ok(value)
    }

    /// The demo users and their passwords (`demo-passwords`), and `users.ldif` for them.
    fn demo_users(&self) -> anyhow::Result<Vec<DemoUser>> {
        let path = self.dir.join("demo-passwords");
        let mut users = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
                let mut parts = line.split_whitespace();
                let (Some(mail), Some(password), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
                    bail!("{} is damaged: {line:?}", path.display());
                };
                users.push(DemoUser { mail: mail.into(), password: password.into(), mail_host: host.into() });
            }
            return Ok(users);
        }
        let mut text = String::from("# the demo users of mailctl up: address password mailhost\n");
        let mut ldif = String::from(
            "# The directory of the local cluster (frontd re-reads it when it changes).\n\
             dn: dc=example,dc=edu\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n",
        );
        for (mail, host) in DEMO_USERS {
            let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 12);
            let uid = mail.split('@').next().expect("address");
            let hash = PasswordHash::salted(Digest::Sha512, &password).to_stored();
            writeln!(text, "{mail} {password} {host}")?;
            write!(
                ldif,
                "dn: uid={uid},dc=example,dc=edu\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\nuid: {uid}\n\
                 cn: {uid}\nsn: {uid}\nmail: {mail}\nmailHost: {host}\naccountStatus: active\nuserPassword: {hash}\n\n"
            )?;
            users.push(DemoUser { mail: mail.into(), password, mail_host: host.into() });
        }
        write_private(&self.dir.join("users.ldif"), &ldif)?;
        write_private(&path, &text)?;
        Ok(users)
    }

    /// A private CA (`ca.pem`, for clients to trust) and a certificate for localhost and
    /// 127.0.0.1 signed by it (`cert.pem`, `key.pem`).
    fn write_certificates(&self) -> anyhow::Result<()> {
        let files = clusterkit::certs::with_private_ca(&self.dir, "mailstore local CA", &["localhost", "127.0.0.1"])?;
        debug_assert_eq!(files.ca, self.ca_file());
        Ok(())
    }
}

/// Write `text` to `path`, readable by the owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// List group `name` with members `ids` in the front configuration at `path` (each
/// member's addresses as another group of that file lists the same node); whether it was
/// added (false: already there). The file is edited as TOML, every other key kept as is.
pub fn add_front_group(path: &Path, name: &str, ids: &[u64]) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let groups = doc.entry("groups").or_insert_with(|| toml::Value::Array(Vec::new()));
    let toml::Value::Array(groups) = groups else { bail!("{}: groups is not a list", path.display()) };
    let known = |g: &toml::Value| g.get("name").and_then(toml::Value::as_str).map(str::to_ascii_lowercase);
    if groups.iter().any(|g| known(g).as_deref() == Some(name)) {
        return Ok(false);
    }
    let member_of = |id: u64| {
        groups
            .iter()
            .filter_map(|g| g.get("members")?.as_array())
            .flatten()
            .find(|m| m.get("id").and_then(toml::Value::as_integer) == Some(id as i64))
    };
    let members = ids
        .iter()
        .map(|id| member_of(*id).cloned().with_context(|| format!("node {id} is in no group of {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut group = toml::Table::new();
    group.insert("name".into(), name.into());
    group.insert("members".into(), toml::Value::Array(members));
    groups.push(toml::Value::Table(group));
    write_private(path, &toml::to_string(&doc)?)?;
    Ok(true)
}

/// The groups an operator listed in the front's configuration at `path` besides `demo`'s (a
/// mailhost `mailctl group add` created): `up` keeps them when it writes the file again.
fn added_groups(path: &Path, demo: &[frontd::config::GroupSection]) -> Vec<frontd::config::GroupSection> {
    let Ok(old) = frontd::config::Config::load(path) else { return Vec::new() };
    old.groups.into_iter().filter(|g| !demo.iter().any(|d| d.name.eq_ignore_ascii_case(&g.name))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_keeps_its_port_base_and_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Layout::open(tmp.path(), 20000).unwrap();
        assert_eq!(l.front_imap(), "127.0.0.1:20143");
        assert_eq!(l.node(2, NodePort::Lmtp), "127.0.0.1:22402");
        let users = l.prepare(&[], (false, false)).unwrap();
        assert_eq!(users.len(), DEMO_USERS.len());
        let again = Layout::open(tmp.path(), 30000).unwrap();
        assert_eq!(again.port_base, 20000, "Raft remembers member addresses: the base stays");
        let same = again.prepare(&[], (false, false)).unwrap();
        assert_eq!(
            users.iter().map(|u| &u.password).collect::<Vec<_>>(),
            same.iter().map(|u| &u.password).collect::<Vec<_>>()
        );
        let ldif = std::fs::read_to_string(tmp.path().join("users.ldif")).unwrap();
        assert!(ldif.contains("mailHost: apollo") && !ldif.contains(&users[0].password), "hashes only");
        let mode = std::fs::metadata(tmp.path().join("proxy.pw")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secrets are private");
        assert!(Layout::open(&tmp.path().join("x"), 65000).is_err());
    }

    /// Hole (issue 24): `up` wrote the front's configuration afresh at every start, so a
    /// mailhost made with `mailctl group add` and listed there was lost at the next `up`.
    #[test]
    fn up_keeps_the_groups_an_operator_added() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Layout::open(tmp.path(), 20000).unwrap();
        l.prepare(&[], (false, false)).unwrap();
        // What `mailctl group add zeus --member 1,... --member 2,... --member 3,...` writes.
        assert!(add_front_group(&l.front_config(), "zeus", &[1, 2, 3]).unwrap());
        assert!(!add_front_group(&l.front_config(), "zeus", &[1, 2, 3]).unwrap(), "listed once");
        assert!(add_front_group(&l.front_config(), "hera", &[9]).is_err(), "node 9 is unknown");
        let cfg = frontd::config::Config::load(&l.front_config()).unwrap();
        let zeus = cfg.groups.iter().find(|g| g.name == "zeus").unwrap();
        assert_eq!(zeus.members.len(), 3);
        assert_eq!(zeus.members[1].imap.as_deref(), Some(l.node(2, NodePort::Imap).as_str()));
        l.prepare(&[], (false, false)).unwrap();
        let names: Vec<String> =
            frontd::config::Config::load(&l.front_config()).unwrap().groups.into_iter().map(|g| g.name).collect();
        assert_eq!(names, [GROUPS.iter().map(|g| g.to_string()).collect::<Vec<_>>(), vec!["zeus".into()]].concat());
    }
}
