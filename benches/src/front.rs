//! A benchmark cluster behind a front: the 3-node "bench" group, a real OpenLDAP holding
//! frontd's service account and the users, and frontd routing IMAP to the group. Used by
//! the benchmarks that measure what a client sees through the front.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clusterkit::front;
use common::password::{Digest, PasswordHash};
use frontd::config::{BackendSection, DirectorySection, LdapSection};
use tests::slapd::{Slapd, LDAP_BIND_DN, LDAP_BIND_PASSWORD};
use tools::imap_client::Client;

use crate::lmtp_load::fill_any;
use crate::peers::{frontd_binary, spawn_frontd, start_storaged_with, Node, PASSWORD};
use crate::procs::{free_port, Procs};

/// Client connections the front and the nodes take (`idle-bench` opens 10,000 at once).
const CONNECTIONS_MAX: usize = 65_536;

/// The running pieces; dropping it stops slapd (the caller's `Procs` holds the rest).
pub struct FrontCluster {
    pub nodes: Vec<Node>,
    /// The node that accepted the first delivery (the leader then).
    pub leader: usize,
    pub front_imap: String,
    pub front: std::process::Child,
    pub slapd: Slapd,
    frontd: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// The front's configuration, for [`FrontCluster::add_front`].
    config: frontd::config::Config,
}

impl FrontCluster {
    /// Start everything under `dir` with `users` users (`user{n}@example.edu`, all with
    /// [`PASSWORD`]); the first `filled` users get `messages` messages of `message_bytes`.
    pub fn start(
        dir: &Path,
        users: usize,
        (filled, messages, message_bytes): (usize, usize, usize),
        procs: &mut Procs,
    ) -> anyhow::Result<Self> {
        let frontd = frontd_binary()?;
        let ldif = dir.join("users.ldif");
        write_ldif(&ldif, users)?;
        let slapd = Slapd::start_with(dir, &ldif);
        let proxy = |c: &mut storaged::config::Config| {
            c.proxy.user = Some("frontd".into());
            c.proxy.password = Some("{PLAIN}proxy-pw".into());
            c.limits.imap_connections_max = CONNECTIONS_MAX;
        };
        let nodes = start_storaged_with(dir, users, proxy, procs).context("starting storaged")?;
        std::fs::write(dir.join("ldap.pw"), LDAP_BIND_PASSWORD)?;
        let front_imap = format!("127.0.0.1:{}", free_port());
        let ldap = LdapSection {
            bind_dn: Some(LDAP_BIND_DN.into()),
            bind_password_file: Some("ldap.pw".into()),
            cache_ttl_s: 600,
            connections: 8,
            ..LdapSection::new(slapd.url.clone(), "dc=example,dc=edu")
        };
        let mut backend = BackendSection::new("frontd");
        backend.proxy_password = Some("proxy-pw".into());
        let addrs: Vec<_> = nodes.iter().map(|n| n.addrs.clone()).collect();
        let directory = DirectorySection { ldif: None, ldap: Some(ldap) };
        let mut cfg = frontd::config::Config::new(directory, backend, front::groups(&["bench"], &addrs));
        cfg.listen.imap = Some(front_imap.clone());
        // Every client of a benchmark comes from 127.0.0.1.
        cfg.limits.connections_max = CONNECTIONS_MAX;
        cfg.limits.connections_per_address_max = CONNECTIONS_MAX;
        front::write(&dir.join("frontd.toml"), &cfg)?;
        let front = spawn_frontd(&frontd, dir)?;
        let config = cfg;

        eprintln!("filling {filled} mailboxes with {messages} messages each");
        let lmtp: Vec<String> = nodes.iter().map(|n| n.lmtp.clone()).collect();
        let leader = fill_any(&lmtp, filled, messages, message_bytes)?;
        wait_ready(&nodes[leader].imap)?;
        wait_ready(&front_imap)?;
        Ok(Self { nodes, leader, front_imap, front, slapd, frontd, dir: dir.to_path_buf(), config })
    }

    /// Start another front like the first (same directory and group, its own IMAP port and
    /// files under `front{n}/`): the child and its IMAP address, ready for logins.
    pub fn add_front(&self, n: usize) -> anyhow::Result<(std::process::Child, String)> {
        let dir = self.dir.join(format!("front{n}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(self.dir.join("ldap.pw"), dir.join("ldap.pw"))?;
        let imap = format!("127.0.0.1:{}", free_port());
        let mut cfg = self.config.clone();
        cfg.listen.imap = Some(imap.clone());
        front::write(&dir.join("frontd.toml"), &cfg)?;
        let child = spawn_frontd(&self.frontd, &dir)?;
        wait_ready(&imap)?;
        Ok((child, imap))
    }

    /// Stop frontd and start a fresh one (an empty directory cache).
    pub fn restart_front(&mut self) -> anyhow::Result<()> {
        self.front.kill()?;
        self.front.wait()?;
        self.front = spawn_frontd(&self.frontd, &self.dir)?;
        wait_ready(&self.front_imap)
    }
}

/// The directory: the base entries, frontd's service account and `n` users on "bench".
fn write_ldif(path: &Path, n: usize) -> anyhow::Result<()> {
    let mut out = String::from(
        "dn: dc=example,dc=edu\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: ou=people,dc=example,dc=edu\nobjectClass: organizationalUnit\nou: people\n\n",
    );
    let service = PasswordHash::salted(Digest::Sha1, LDAP_BIND_PASSWORD).to_stored();
    out.push_str(&format!(
        "dn: {LDAP_BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: frontd\nuserPassword: {service}\n\n"
    ));
    for u in 0..n {
        let hash = PasswordHash::salted(Digest::Sha1, PASSWORD).to_stored();
        out.push_str(&format!(
            "dn: uid=user{u},ou=people,dc=example,dc=edu\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\n\
             uid: user{u}\ncn: User {u}\nsn: {u}\nmail: user{u}@example.edu\nmailHost: bench\nuserPassword: {hash}\n\n"
        ));
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// Wait until user0 can log in and select INBOX at `addr`.
pub fn wait_ready(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Client::connect(addr) {
            let ok = c.command(&format!("LOGIN user0@example.edu {PASSWORD}")).is_ok_and(|a| a.ok())
                && c.command("SELECT INBOX").is_ok_and(|a| a.ok());
            if ok {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{addr} never accepted a login");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
