//! The pieces of a whole system for the frontd tests, each a real process killed with the
//! test: an OpenLDAP `slapd` on a loopback port loaded with `fixtures/ldap/users.ldif`, a
//! storaged cluster of three nodes serving the mailhosts "hermes" and "apollo", and
//! `frontd` in front of them (slapd is `tests::slapd`); plus the Python client and LMTP
//! delivery helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use frontd::config::TlsFiles;
// The configuration types tests adjust a front with (each test file uses some).
#[allow(unused_imports)]
pub use frontd::config::{BackendSection, DirectorySection, GroupSection, LdapSection, MemberSection, QueueSection};

#[allow(unused_imports)] // each test file uses a different part
pub use tests::slapd::{fixture, Slapd, LDAP_BIND_DN, LDAP_BIND_PASSWORD};

pub const GROUPS: [&str; 2] = ["hermes", "apollo"];
pub const PROXY_USER: &str = "frontd";
pub const PROXY_PASSWORD: &str = "proxy secret";

pub fn free_addr() -> String {
    common::testing::free_addr()
}

/// Start `cmd` as a child that dies with the test process.
pub fn spawn(mut cmd: Command, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    cmd.stdout(Stdio::null()).stderr(log);
    // SAFETY: prctl is async-signal-safe; the child dies with the test.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Wait (bounded) until something listens on `addr`.
pub fn wait_listening(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} does not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three storaged nodes, each holding a replica of both groups.
pub struct Storage {
    root: PathBuf,
    pub raft: Vec<String>,
    pub lmtp: Vec<String>,
    pub imap: Vec<String>,
    pub pop3: Vec<String>,
    /// Admin listeners (status, outbound queue), keyed with [`CLUSTER_KEY`].
    pub admin: Vec<String>,
    /// ManageSieve listeners.
    pub sieve: Vec<String>,
    /// Prometheus `/metrics` listeners.
    pub metrics: Vec<String>,
    /// Applied to every node's configuration.
    tune: std::sync::Arc<dyn Fn(&mut storaged::config::Config) + Send + Sync>,
    children: Vec<Option<Child>>,
}

/// The cluster secret of the test storage nodes (also in `cluster.key` of their root).
pub const CLUSTER_KEY: &str = "front tests";

impl Storage {
    pub fn start(root: &Path) -> Self {
        Self::start_tuned(root, |_| {})
    }

    /// Three nodes, every configuration adjusted by `tune`.
    pub fn start_tuned(root: &Path, tune: impl Fn(&mut storaged::config::Config) + Send + Sync + 'static) -> Self {
        let tune: std::sync::Arc<dyn Fn(&mut storaged::config::Config) + Send + Sync> = std::sync::Arc::new(tune);
        let n = 3;
        let addrs = || (0..n).map(|_| free_addr()).collect::<Vec<_>>();
        let (raft, lmtp, imap, pop3, admin, sieve) = (addrs(), addrs(), addrs(), addrs(), addrs(), addrs());
        let metrics = addrs();
        std::fs::write(root.join("cluster.key"), CLUSTER_KEY).unwrap();
        // Deliveries in these tests go straight to storaged over LMTP, which needs to know
        // each recipient's group; logins come through frontd and the directory.
        std::fs::write(
            root.join("users.txt"),
            "alice@example.edu hermes\nbob@example.edu apollo\nuser1@example.edu hermes\nuser2@example.edu hermes\n",
        )
        .unwrap();
        let mut s = Self {
            root: root.to_path_buf(),
            raft,
            lmtp,
            imap,
            pop3,
            admin,
            sieve,
            metrics,
            tune,
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            s.write_config(i, &GROUPS);
        }
        for i in 0..n {
            s.start_node(i);
        }
        // Listening means configured: tests may talk to any node's admin port at once.
        for addr in &s.admin {
            wait_listening(addr, "storaged admin");
        }
        s
    }

    /// Every node's listeners.
    fn node_addrs(&self) -> Vec<clusterkit::storage::NodeAddrs> {
        (0..self.raft.len())
            .map(|k| clusterkit::storage::NodeAddrs {
                id: k as u64 + 1,
                raft: self.raft[k].clone(),
                lmtp: self.lmtp[k].clone(),
                imap: Some(self.imap[k].clone()),
                pop3: Some(self.pop3[k].clone()),
                imaps: None,
                pop3s: None,
                admin: Some(self.admin[k].clone()),
                sieve: Some(self.sieve[k].clone()),
                metrics: Some(self.metrics[k].clone()),
            })
            .collect()
    }

    /// Node `i`'s configuration: a member of `groups`, which list every node known so far.
    fn write_config(&self, i: usize, groups: &[&str]) {
        use clusterkit::storage;
        let nodes = self.node_addrs();
        let groups: Vec<_> = groups.iter().map(|g| storage::group(g, &nodes)).collect();
        let mut cfg = storage::node_config(&nodes[i], &groups);
        cfg.cluster_key_file = Some("cluster.key".into());
        cfg.users_file = Some("users.txt".into());
        cfg.proxy.user = Some(PROXY_USER.into());
        cfg.proxy.password = Some(format!("{{PLAIN}}{PROXY_PASSWORD}"));
        cfg.auth.failure_delay_ms = 100;
        (self.tune)(&mut cfg);
        storage::write(&self.root.join(storage::file_name(nodes[i].id)), &cfg).unwrap();
    }

    /// Configure (not start) one more node serving `groups`; its index (its id is one more).
    pub fn add_node(&mut self, groups: &[&str]) -> usize {
        let i = self.raft.len();
        let lists = [
            &mut self.raft,
            &mut self.lmtp,
            &mut self.imap,
            &mut self.pop3,
            &mut self.admin,
            &mut self.sieve,
            &mut self.metrics,
        ];
        for list in lists {
            list.push(free_addr());
        }
        self.children.push(None);
        self.write_config(i, groups);
        i
    }

    pub fn start_node(&mut self, i: usize) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sys-storaged"));
        cmd.arg("--config").arg(self.root.join(format!("node{}.toml", i + 1)));
        cmd.env("RUST_LOG", "info,openraft=error");
        self.children[i] = Some(spawn(cmd, &self.root.join(format!("node{}.log", i + 1))));
    }

    pub fn kill(&mut self, i: usize) {
        stop(&mut self.children[i]);
    }

    /// The cluster key the nodes share.
    pub fn cluster_key(&self) -> common::rpc_channel::ClusterKey {
        common::rpc_channel::ClusterKey::from_secret(CLUSTER_KEY)
    }

    /// The cluster key file the nodes use (for a front's `[backend]`).
    pub fn key_file(&self) -> PathBuf {
        self.root.join("cluster.key")
    }

    /// Whether node `i` is running.
    /// Process id of node `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// The cluster map frontd is configured with: every group served by every node.
    pub fn group_sections(&self) -> Vec<frontd::config::GroupSection> {
        clusterkit::front::groups(&GROUPS, &self.node_addrs())
    }

    /// One more group `name` served by every node, for a front's cluster map.
    pub fn group_section(&self, name: &str) -> frontd::config::GroupSection {
        clusterkit::front::groups(&[name], &self.node_addrs()).remove(0)
    }

    /// The node leading the group `to` lives in (its LMTP accepts `to`), waiting if needed.
    pub fn leader_for(&self, to: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = (0..self.lmtp.len()).filter(|i| self.children[*i].is_some());
            if let Some(i) = up.into_iter().find(|i| rcpt(&self.lmtp[*i], to).starts_with("250")) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader accepts {to}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Deliver a message with `subject` to `to` on its group's leader.
    pub fn deliver(&self, to: &str, subject: &str) {
        self.deliver_many(to, &[subject.to_string()]);
    }

    /// Deliver one message per subject to `to`, over one LMTP session.
    /// Commit `op` on `group` through the admin protocol (as mailctl does); its response.
    pub fn commit(&self, group: &str, op: storaged::mailstore::MailOp) -> storaged::mailstore::MailResponse {
        match self.admin_call(
            group,
            common::admin::AdminRequest::Propose {
                group: group.into(),
                op_id: rand::random(),
                op: common::admin::encode(&op),
            },
        ) {
            common::admin::AdminReply::Applied(bytes) => common::admin::decode(&bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// Send `request` to `group`'s leader over the admin protocol.
    pub fn admin_call(&self, group: &str, request: common::admin::AdminRequest) -> common::admin::AdminReply {
        let cluster = std::sync::Arc::new(frontd::cluster::ClusterMap::new(&self.group_sections()));
        let client = frontd::queue::QueueClient::new(
            cluster,
            self.cluster_key(),
            vec![group.to_string()],
            Duration::from_secs(30),
        );
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(client.call(group, request)).unwrap()
    }

    pub fn deliver_many(&self, to: &str, subjects: &[String]) {
        self.deliver_sized(to, subjects, 0);
    }

    /// As [`Storage::deliver_many`], each body padded with `body_bytes` more bytes.
    pub fn deliver_sized(&self, to: &str, subjects: &[String], body_bytes: usize) {
        let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
        let padding = line.repeat(body_bytes / line.len());
        let l = self.leader_for(to);
        let mut c = Lmtp::connect(&self.lmtp[l]);
        assert!(c.cmd("LHLO test").starts_with("250"));
        for (k, subject) in subjects.iter().enumerate() {
            assert!(c.cmd("MAIL FROM:<sender@example.org>").starts_with("250"));
            let r = c.cmd(&format!("RCPT TO:<{to}>"));
            assert!(r.starts_with("250"), "{r}");
            assert!(c.cmd("DATA").starts_with("354"));
            c.send(
                format!(
                    "From: sender@example.org\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <m{k}.{l}@example.org>\r\n\r\nhello\r\n{padding}.\r\n"
                )
                .as_bytes(),
            );
            let r = c.reply();
            assert!(r.starts_with("250"), "{r}");
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        for c in &mut self.children {
            stop(c);
        }
    }
}

fn rcpt(lmtp: &str, to: &str) -> String {
    if TcpStream::connect(lmtp).is_err() {
        return String::new();
    }
    let mut c = Lmtp::connect(lmtp);
    c.cmd("LHLO probe");
    c.cmd("MAIL FROM:<probe@example.org>");
    c.cmd(&format!("RCPT TO:<{to}>"))
}

/// A minimal LMTP client (the storaged tests check LMTP itself with smtplib).
pub struct Lmtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Lmtp {
    /// Connected, greeted (`LHLO`) and authenticated with the cluster key, as a front is.
    pub fn connect(addr: &str) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Self { r: BufReader::new(s.try_clone().unwrap()), w: s };
        c.reply();
        c.cmd("LHLO test");
        let challenge = c.cmd(&format!("AUTH {}", common::lmtp_auth::MECHANISM));
        let key = common::rpc_channel::ClusterKey::from_secret(CLUSTER_KEY);
        if let Some(answer) = common::lmtp_auth::response(&key, challenge.trim().trim_start_matches("334 ")) {
            c.cmd(&answer);
        }
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

/// A running frontd.
pub struct Front {
    pub imap: String,
    pub pop3: String,
    /// SMTP for the Internet (no AUTH; a 300 ms greet delay) and submission (STARTTLS
    /// and AUTH; usable only with [`Front::start_tls`]).
    pub smtp: String,
    pub submission: String,
    /// Implicit-TLS listeners (only with [`Front::start_tls`]).
    pub imaps: String,
    pub pop3s: String,
    /// ManageSieve (STARTTLS when the front has a certificate).
    pub sieve: String,
    child: Option<Child>,
    pub log: PathBuf,
    /// How it was started (for [`Front::restart`]).
    command: (PathBuf, bool),
}

/// Make a self-signed certificate for 127.0.0.1 at `root/cert.pem` and `root/key.pem`.
pub fn make_certificate(root: &Path) {
    clusterkit::certs::self_signed(root, &["127.0.0.1"]).unwrap();
}

/// Adjusts a front's configuration (SMTP policy, limits, more groups, ...).
pub type Tune = Box<dyn Fn(&mut frontd::config::Config)>;

/// How to start a [`Front`] beyond the defaults.
#[derive(Default)]
pub struct FrontOptions {
    /// A fresh self-signed certificate, implicit-TLS listeners, SMTP AUTH.
    pub tls: bool,
    /// With `tls`: still allow passwords without TLS from loopback.
    pub plaintext_loopback: bool,
    /// Applied last to the configuration.
    pub tune: Option<Tune>,
    /// A `[queue]` (its cluster key file is filled in); `None`: no queue.
    pub queue: Option<QueueSection>,
    /// `[backend] route_timeout_ms` (20 s if not given).
    pub route_timeout_ms: Option<u64>,
    /// Log JSON (`--log-format json`).
    pub json_logs: bool,
}

/// An SMTP rule for clients in `network`.
pub fn rule(network: &str, action: &str, greet_delay_ms: Option<u64>, relay: bool) -> frontd::config::RuleSection {
    frontd::config::RuleSection {
        network: network.into(),
        action: action.into(),
        skip_dnsbl: false,
        greet_delay_ms,
        relay,
        listeners: None,
    }
}

/// The LDIF directory `users.ldif` next to the configuration.
pub fn ldif_directory() -> DirectorySection {
    DirectorySection::ldif("users.ldif")
}

/// A queue that retries fast, as tests want: 1-2 s retries, 200 ms polls, `lease_s` leases.
pub fn fast_queue(lease_s: u32) -> QueueSection {
    QueueSection { retry_min_s: 1, retry_max_s: 2, poll_ms: 200, lease_s, ..QueueSection::default() }
}

impl Front {
    /// Start frontd reading `directory` in front of `storage`; passwords without TLS are fine
    /// from loopback.
    pub fn start(root: &Path, storage: &Storage, directory: DirectorySection) -> Self {
        Self::start_opts(root, storage, directory, FrontOptions::default())
    }

    /// As [`Front::start`] with a certificate (STARTTLS, implicit TLS, SMTP AUTH), still
    /// allowing passwords without TLS from loopback.
    pub fn start_with_certificate(root: &Path, storage: &Storage, directory: DirectorySection) -> Self {
        let options = FrontOptions { tls: true, plaintext_loopback: true, ..FrontOptions::default() };
        Self::start_opts(root, storage, directory, options)
    }

    /// As [`Front::start`] with a fresh self-signed certificate, implicit-TLS listeners,
    /// and no network where passwords may travel without TLS.
    pub fn start_tls(root: &Path, storage: &Storage, directory: DirectorySection) -> Self {
        Self::start_opts(root, storage, directory, FrontOptions { tls: true, ..FrontOptions::default() })
    }

    pub fn start_opts(root: &Path, storage: &Storage, directory: DirectorySection, options: FrontOptions) -> Self {
        let FrontOptions { tls, plaintext_loopback, tune, queue, route_timeout_ms, json_logs } = options;
        if tls {
            make_certificate(root);
        }
        let (imap, pop3, imaps, pop3s) = (free_addr(), free_addr(), free_addr(), free_addr());
        let (smtp, submission, sieve) = (free_addr(), free_addr(), free_addr());
        let mut backend = BackendSection::new(PROXY_USER);
        backend.proxy_password = Some(PROXY_PASSWORD.into());
        backend.route_timeout_ms = route_timeout_ms.unwrap_or(20_000);
        backend.cluster_key_file = Some(storage.key_file());
        let mut cfg = frontd::config::Config::new(directory, backend, storage.group_sections());
        cfg.host = "front.example.edu".into();
        cfg.listen.imap = Some(imap.clone());
        cfg.listen.pop3 = Some(pop3.clone());
        cfg.listen.smtp = Some(smtp.clone());
        cfg.listen.submission = Some(submission.clone());
        cfg.listen.sieve = Some(sieve.clone());
        if tls {
            cfg.listen.imaps = Some(imaps.clone());
            cfg.listen.pop3s = Some(pop3s.clone());
            cfg.tls = Some(TlsFiles { cert_file: "cert.pem".into(), key_file: "key.pem".into() });
            // With a certificate, passwords need TLS unless loopback is allowed explicitly.
            if !plaintext_loopback {
                cfg.auth.plaintext_networks = Vec::new();
            }
        }
        cfg.smtp.local_domains = vec!["example.edu".into()];
        cfg.smtp.greet_delay_ms = 300;
        // Small unless a test asks for frontd's own default (or another limit).
        cfg.smtp.message_max_bytes = 1_000_000;
        cfg.smtp.domain_aliases.insert("mail.example.edu".into(), "example.edu".into());
        cfg.auth.failure_delay_ms = 50;
        cfg.auth.failures_max = 50;
        cfg.auth.address_failures_max = 150;
        cfg.auth.account_failures_max = 500;
        cfg.queue = queue.map(|q| QueueSection { cluster_key_file: storage.key_file(), ..q });
        if let Some(tune) = tune {
            tune(&mut cfg);
        }
        let path = root.join("frontd.toml");
        clusterkit::front::write(&path, &cfg).unwrap();
        let log = root.join("frontd.log");
        let child = Some(Self::spawn(&path, json_logs, &log));
        wait_listening(&imap, "frontd");
        Self { imap, pop3, smtp, submission, imaps, pop3s, sieve, child, log, command: (path, json_logs) }
    }

    fn spawn(config: &Path, json_logs: bool, log: &Path) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sys-frontd"));
        cmd.arg("--config").arg(config).env("RUST_LOG", "info");
        if json_logs {
            cmd.args(["--log-format", "json"]);
        }
        spawn(cmd, log)
    }

    /// Kill frontd (SIGKILL).
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Start frontd again with the same configuration (after [`Front::kill`]).
    pub fn restart(&mut self) {
        stop(&mut self.child);
        self.child = Some(Self::spawn(&self.command.0, self.command.1, &self.log));
        wait_listening(&self.imap, "frontd");
    }

    /// Process id of frontd.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("frontd runs").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `signal` to frontd.
    pub fn signal(&self, signal: i32) {
        let c = self.child.as_ref().expect("frontd running");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(c.id() as i32, signal) };
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Run `tests/py/SCRIPT` with `args` and parse the JSON of its last output line.
pub fn python_json<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(script: &str, args: &[S]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(script);
    let out = Command::new("python3").arg(path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.split(|b| *b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap()
}

/// Run `tests/py/front_client.py` and parse its JSON line.
pub fn client(args: &[&str]) -> serde_json::Value {
    python_json("front_client.py", args)
}

/// Send one message with `tests/py/smtp_client.py` (Python's smtplib) and parse its report.
pub fn smtplib(args: &[&str]) -> serde_json::Value {
    python_json("smtp_client.py", args)
}

/// Send one message from `ann@example.org` to `to` through the MX at `smtp` (smtplib);
/// whether every recipient was accepted.
pub fn mx_send(smtp: &str, to: &str, subject: &str) -> bool {
    let r = smtplib(&["--server", smtp, "--from", "ann@example.org", "--to", to, "--subject", subject]);
    r["ok"] == true && r["refused"].as_object().is_some_and(|o| o.is_empty())
}

/// A STORE that adds `flags` and `keywords` to `uids` of `user`'s INBOX (for
/// [`Storage::commit`]).
pub fn add_flags(user: &str, uids: Vec<u32>, flags: u8, keywords: &[&str]) -> storaged::mailstore::MailOp {
    storaged::mailstore::MailOp::Store {
        user: user.into(),
        mailbox: "INBOX".into(),
        uids,
        mode: storaged::mailstore::FlagMode::Add,
        flags,
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        unchanged_since: None,
    }
}

/// Wait (bounded) until `done` holds.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The subjects in `user`'s INBOX, read over IMAP through `front`.
pub fn inbox_subjects(front: &Front, user: &str, password: &str) -> Vec<String> {
    let v = imap_login(&front.imap, user, password);
    assert_eq!(v["ok"], true, "{v}");
    v["subjects"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// Log in over IMAP through `server` and report (see the script).
pub fn imap_login(server: &str, user: &str, password: &str) -> serde_json::Value {
    client(&["imap", "--server", server, "--user", user, "--password", password])
}

/// Raw exchange: send `lines` and collect what comes back until the connection is idle.
pub fn raw(server: &str, lines: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut read_some = |s: &mut TcpStream, out: &mut Vec<u8>| {
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    };
    read_some(&mut s, &mut out);
    for line in lines {
        s.write_all(line).unwrap();
        read_some(&mut s, &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Postfix `smtp-sink` on loopback: accepts everything (dumping each message to a file
/// in its directory), or refuses every recipient with `refuse`.
pub struct Sink {
    pub addr: String,
    dir: PathBuf,
    child: Child,
}

impl Sink {
    pub fn start(root: &Path, name: &str, addr: &str, refuse: Option<&str>) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // smtp-sink drops to `nobody` (required as root), who must reach and fill the dump dir.
        std::fs::set_permissions(root, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o711))
            .unwrap();
        std::fs::set_permissions(&dir, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777))
            .unwrap();
        let mut cmd = Command::new("smtp-sink");
        cmd.args(["-u", "nobody", "-d"]).arg(format!("{}/%M.", dir.display()));
        if let Some(reply) = refuse {
            // -f RCPT refuses for good with the -B reply, -r RCPT for now with the -b one.
            let (commands, reply_flag) = if reply.starts_with('4') { ("-r", "-b") } else { ("-f", "-B") };
            cmd.args([commands, "RCPT", reply_flag, reply]);
        }
        cmd.args([addr, "64"]);
        let child = spawn(cmd, &root.join(format!("{name}.log")));
        wait_listening(addr, "smtp-sink");
        Self { addr: addr.to_string(), dir, child }
    }

    /// The messages received, as text.
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
            .collect();
        out.sort();
        out
    }

    /// How many received messages have this subject.
    pub fn count(&self, subject: &str) -> usize {
        let line = format!("\nSubject: {subject}\n");
        self.messages().iter().filter(|m| m.replace("\r\n", "\n").contains(&line)).count()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `mailctl` with the front's configuration in `root`; whether it succeeded, and its
/// output.
pub fn mailctl(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sys-mailctl"))
        .args(args)
        .arg("--config")
        .arg(root.join("frontd.toml"))
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Peak resident memory (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// One SMTP transaction from `ann@example.org` to `to` through `smtp` of a small message with
/// Message-ID `<id>`: the reply to the end of data (or the refusal before it), if the
/// conversation got that far. A client's own patience: minutes for the end of data.
pub fn smtp_once(smtp: &str, to: &str, id: &str) -> Option<String> {
    use smtp_client::blocking::Client;
    use smtp_client::{dot_stuff, Deadlines, Dialect, Envelope};
    let deadlines = Deadlines {
        connect: Duration::from_secs(5),
        reply: Duration::from_secs(300),
        data_end: Duration::from_secs(300),
    };
    let (mut c, _) = Client::open(smtp, deadlines).ok()?;
    c.hello(Dialect::Smtp, "client.example.org").ok()?;
    let recipients = [to.to_string()];
    let envelope = Envelope {
        from: "ann@example.org",
        mail_params: "",
        recipients: &recipients,
        rcpt_params: "",
        rcpt_params_each: &[],
    };
    let message = format!("Message-ID: <{id}>\r\nSubject: {id}\r\nFrom: ann@example.org\r\n\r\nhello\r\n");
    let t = c.transaction(Dialect::Smtp, &envelope, &dot_stuff(message.as_bytes())).ok()?;
    c.quit();
    Some(t.per_recipient(Dialect::Smtp)[0].last_line())
}

/// How many copies of each Message-ID `user`'s INBOX holds (read over IMAP through `front`).
pub fn inbox_message_ids(front: &Front, user: &str, password: &str) -> std::collections::BTreeMap<String, usize> {
    let mut c = tools::imap_client::Client::connect(&front.imap).unwrap();
    assert!(c.command(&format!("LOGIN {user} {password}")).unwrap().ok());
    assert!(c.command("SELECT INBOX").unwrap().ok());
    let fetched = c.command("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])").unwrap();
    let mut ids = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&fetched.data).lines() {
        if let Some(id) = line.strip_prefix("Message-ID: <").and_then(|l| l.strip_suffix('>')) {
            *ids.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    ids
}
