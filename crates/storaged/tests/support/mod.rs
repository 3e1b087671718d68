//! A local storaged cluster for tests: configs on free loopback ports, real `storaged`
//! processes (killed with their parent), and tree comparison helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub root: PathBuf,
    pub lmtp: Vec<String>,
    pub pop3: Vec<String>,
    pub imap: Vec<String>,
    /// Implicit-TLS ports (only with [`Cluster::start_tls`]).
    pub imaps: Vec<String>,
    pub pop3s: Vec<String>,
    /// ManageSieve.
    pub sieve: Vec<String>,
    /// Prometheus `/metrics` (no token: the test's own loopback ports).
    pub metrics: Vec<String>,
    children: Vec<Option<Child>>,
}

/// The proxy credential front nodes would use.
pub const PROXY_USER: &str = "frontd";
pub const PROXY_PASSWORD: &str = "proxy secret";

/// The password of user number `u`.
pub fn password(u: usize) -> String {
    format!("pw-user{u}")
}

fn free_port() -> u16 {
    common::testing::free_port()
}

use clusterkit::storage::{self, Listeners, NodeAddrs};
use storaged::config::{Config, TlsFiles};

impl Cluster {
    /// Write configs for `n` nodes of group "hermes" with `users` users and start them.
    pub fn start(root: &Path, n: usize, users: usize) -> Self {
        Self::start_tuned(root, n, users, |_| {})
    }

    /// As [`Cluster::start`], with every node's configuration adjusted by `tune`.
    pub fn start_tuned(root: &Path, n: usize, users: usize, tune: impl Fn(&mut Config)) -> Self {
        Self::start_opts(root, n, users, tune, false)
    }

    /// A cluster that requires TLS for every password (no plaintext networks), with a
    /// self-signed certificate for 127.0.0.1 in `root/cert.pem` and implicit-TLS ports.
    pub fn start_tls(root: &Path, n: usize, users: usize) -> Self {
        clusterkit::certs::self_signed(root, &["127.0.0.1"]).unwrap();
        Self::start_opts(root, n, users, |_| {}, true)
    }

    fn start_opts(root: &Path, n: usize, users: usize, tune: impl Fn(&mut Config), tls: bool) -> Self {
        let listeners = Listeners { imap: true, pop3: true, implicit_tls: tls, admin: false, metrics: true };
        let nodes = NodeAddrs::cluster_on_free_ports(n, listeners);
        let groups = [storage::group("hermes", &nodes)];
        let users_txt: String = (0..users).map(|u| format!("user{u}@example.edu {{PLAIN}}{}\n", password(u))).collect();
        std::fs::write(root.join("users.txt"), users_txt).unwrap();
        std::fs::write(root.join("cluster.key"), format!("{CLUSTER_SECRET}\n")).unwrap();
        for node in &nodes {
            let mut cfg = storage::node_config(node, &groups);
            cfg.cluster_key_file = Some("cluster.key".into());
            cfg.users_file = Some("users.txt".into());
            cfg.proxy.user = Some(PROXY_USER.into());
            cfg.proxy.password = Some(format!("{{PLAIN}}{PROXY_PASSWORD}"));
            cfg.auth.failure_delay_ms = 100;
            if tls {
                cfg.auth.plaintext_networks = Vec::new();
                cfg.tls = Some(TlsFiles { cert_file: "cert.pem".into(), key_file: "key.pem".into() });
            }
            tune(&mut cfg);
            storage::write(&root.join(storage::file_name(node.id)), &cfg).unwrap();
        }
        let all = |f: fn(&NodeAddrs) -> Option<String>| -> Vec<String> { nodes.iter().filter_map(f).collect() };
        let mut c = Cluster {
            root: root.to_path_buf(),
            lmtp: nodes.iter().map(|n| n.lmtp.clone()).collect(),
            pop3: all(|n| n.pop3.clone()),
            imap: all(|n| n.imap.clone()),
            imaps: all(|n| n.imaps.clone()),
            pop3s: all(|n| n.pop3s.clone()),
            sieve: all(|n| n.sieve.clone()),
            metrics: all(|n| n.metrics.clone()),
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.start_node(i);
        }
        c
    }

    pub fn start_node(&mut self, i: usize) {
        self.start_node_env(i, &[]);
    }

    /// Start node `i` with extra environment variables (`FAILPOINTS` for storage faults).
    pub fn start_node_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("node{}.log", i + 1)))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_storaged"));
        cmd.arg("--config").arg(self.root.join(format!("node{}.toml", i + 1)));
        cmd.env("RUST_LOG", std::env::var("NODE_LOG").unwrap_or_else(|_| "info,openraft=error".into()));
        cmd.envs(env.iter().copied());
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
        self.children[i] = Some(cmd.spawn().unwrap());
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait (bounded) for node `i` to exit by itself; how it ended, or `None` if it still
    /// runs after `within`.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let status = self.children[i].as_mut().expect("node running").try_wait().unwrap();
            if status.is_some() {
                self.children[i] = None;
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Send `signal` to node `i`.
    pub fn signal(&self, i: usize, signal: i32) {
        let c = self.children[i].as_ref().expect("node running");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(c.id() as i32, signal) };
    }

    /// Stop node `i` cleanly (SIGTERM: it checkpoints first).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn mail_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("data{}", i + 1)).join("hermes").join("mail")
    }

    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.root.join(format!("node{}.log", i + 1))).unwrap_or_default()
    }

    /// Node `i`'s gauge `name` of group "hermes" from its `/metrics`, if it answers.
    pub fn gauge(&self, i: usize, name: &str) -> Option<f64> {
        let mut s = TcpStream::connect(&self.metrics[i]).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).ok()?;
        let prefix = format!("{name}{{group=\"hermes\"}} ");
        body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
    }

    /// Index of the node whose LMTP accepts a recipient now (the leader), if any.
    pub fn find_leader(&self) -> Option<usize> {
        (0..self.lmtp.len()).find(|i| self.children[*i].is_some() && lmtp_accepts(&self.lmtp[*i]))
    }

    /// Wait (bounded) for a leader.
    pub fn wait_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.find_leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader elected");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Does the LMTP server at `addr` accept a recipient (is it the leader)?
pub fn lmtp_accepts(addr: &str) -> bool {
    let Ok(s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) else { return false };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut read_reply = |r: &mut BufReader<TcpStream>| -> Option<String> {
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            if line.len() < 4 {
                return None;
            }
            if line.as_bytes()[3] == b' ' {
                return Some(line.clone());
            }
        }
    };
    read_reply(&mut r);
    let mut command = |cmd: &str| -> Option<String> {
        w.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        read_reply(&mut r)
    };
    let Some(challenge) = command("LHLO probe").and_then(|_| command("AUTH X-MAILSTORE-CLUSTER")) else {
        return false;
    };
    let key = common::rpc_channel::ClusterKey::from_secret(CLUSTER_SECRET);
    let Some(answer) = common::lmtp_auth::response(&key, challenge.trim().trim_start_matches("334 ")) else {
        return false;
    };
    if !command(&answer).is_some_and(|l| l.starts_with("235")) || command("MAIL FROM:<probe@test>").is_none() {
        return false;
    }
    let ok = command("RCPT TO:<user0@example.edu>").is_some_and(|l| l.starts_with("250"));
    let _ = command("QUIT");
    ok
}

/// Every file under `root` (relative path → contents), except Maildir `tmp/` scratch
/// files, which a crash may leave behind, and a replica's own spare files.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("tmp") && !p.ends_with(".spare") {
                    stack.push(p);
                }
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.insert(p.strip_prefix(root).unwrap().display().to_string(), bytes);
            }
        }
    }
    out
}

/// Message-IDs of every message file of `user` in a replica's tree, with multiplicity.
pub fn message_ids(tree: &BTreeMap<String, Vec<u8>>, user: &str) -> BTreeMap<String, usize> {
    let prefix = format!("users/{user}/Maildir/");
    let mut out = BTreeMap::new();
    for (path, bytes) in tree {
        let Some(rest) = path.strip_prefix(&prefix) else { continue };
        if !(rest.starts_with("new/") || rest.starts_with("cur/")) {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap_or_else(|| panic!("{path} has no Message-ID"))
            .trim()
            .to_string();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// Users the Python load client delivers to (`user0..user49`).
pub const LOAD_USERS: usize = 50;

/// Wait until all replicas hold identical trees.
pub fn wait_converged(c: &Cluster, nodes: &[usize], within: Duration) -> BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + within;
    loop {
        let trees: Vec<_> = nodes.iter().map(|i| tree(&c.mail_dir(*i))).collect();
        if trees.windows(2).all(|w| w[0] == w[1]) && !trees[0].is_empty() {
            return trees.into_iter().next().unwrap();
        }
        if Instant::now() > deadline {
            for (k, t) in trees.iter().enumerate().skip(1) {
                let a: Vec<_> = trees[0].keys().filter(|p| t.get(*p) != trees[0].get(*p)).take(5).collect();
                let b: Vec<_> = t.keys().filter(|p| !trees[0].contains_key(*p)).take(5).collect();
                eprintln!("replica {} differs: {a:?} / only there: {b:?}", nodes[k] + 1);
            }
            for i in nodes {
                let log = c.node_log(*i);
                let tail: Vec<&str> = log.lines().filter(|l| !l.contains(" delivered")).collect();
                eprintln!("--- node {} log tail:\n{}", i + 1, tail[tail.len().saturating_sub(15)..].join("\n"));
            }
            panic!("replicas did not converge");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn check_exactly_once(t: &BTreeMap<String, Vec<u8>>, acked: &serde_json::Value, sent: std::ops::Range<u64>) {
    let mut total = 0;
    for u in 0..LOAD_USERS {
        let user = format!("user{u}@example.edu");
        let ids = message_ids(t, &user);
        for (id, n) in &ids {
            assert_eq!(*n, 1, "{id} stored {n} times for {user}");
            let num: u64 = id.trim_start_matches("<msg-").split('@').next().unwrap().parse().unwrap();
            assert!(sent.contains(&num), "{id} was never sent");
        }
        for id in acked["acked"][&user].as_array().into_iter().flatten() {
            assert!(ids.contains_key(id.as_str().unwrap()), "acknowledged {id} missing for {user}");
            total += 1;
        }
    }
    assert!(total > 0);
}

/// Run the Python LMTP load client; `on_progress` sees each progress count.
pub fn run_load(
    servers: &[String],
    first: u64,
    count: u64,
    threads: usize,
    mut on_progress: impl FnMut(u64),
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/lmtp_load.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--servers")
        .arg(servers.join(","))
        .arg("--first")
        .arg(first.to_string())
        .arg("--count")
        .arg(count.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--lmtp-key")
        .arg(lmtp_key_hex())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut result = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("progress ") {
            on_progress(n.parse().unwrap());
        } else if line.starts_with('{') {
            result = Some(serde_json::from_str(&line).unwrap());
        }
    }
    assert!(child.wait().unwrap().success(), "load client failed");
    result.expect("load client printed its result")
}

/// The test clusters' shared secret.
pub const CLUSTER_SECRET: &str = "test cluster secret";

/// The derived key a cluster member proves on LMTP, in hex (for the Python client).
pub fn lmtp_key_hex() -> String {
    let key = common::rpc_channel::ClusterKey::from_secret(CLUSTER_SECRET).lmtp_key();
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest wait for any reply, however small the command.
const REPLY_WAIT_MIN: Duration = Duration::from_secs(60);

/// A minimal LMTP client speaking raw lines, for tests that need exact bytes.
pub struct Lmtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Lmtp {
    /// Connected, greeted (`LHLO`) and authenticated as a cluster member.
    pub fn connect(addr: &str) -> Self {
        let mut c = Self::connect_unauthenticated(addr);
        assert!(c.cmd("LHLO test").starts_with("250"));
        let done = c.authenticate(CLUSTER_SECRET);
        assert!(done.starts_with("235"), "{done}");
        c
    }

    /// `AUTH X-MAILSTORE-CLUSTER` answered with `secret`; the final reply.
    pub fn authenticate(&mut self, secret: &str) -> String {
        let challenge = self.cmd(&format!("AUTH {}", common::lmtp_auth::MECHANISM));
        let key = common::rpc_channel::ClusterKey::from_secret(secret);
        let Some(answer) = common::lmtp_auth::response(&key, challenge.trim_start_matches("334 ")) else {
            return challenge;
        };
        self.cmd(&answer)
    }

    /// Connected and greeted by the server, nothing more.
    pub fn connect_unauthenticated(addr: &str) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        let w = s.try_clone().unwrap();
        let mut c = Lmtp { r: BufReader::new(s), w };
        assert!(c.reply().starts_with("220"));
        c
    }

    /// Read one (possibly multi-line) reply; returns its last line.
    pub fn reply(&mut self) -> String {
        self.reply_after(0)
    }

    /// Read the reply to a command that sent `bytes` of data: the wait scales with the work
    /// (replicating a large message on a loaded machine takes long), so a busy machine does
    /// not fail the test, while a server that never answers still does.
    pub fn reply_after(&mut self, bytes: usize) -> String {
        let per_byte = Duration::from_secs(1).as_secs_f64() / (256.0 * 1024.0);
        let wait = REPLY_WAIT_MIN + Duration::from_secs_f64(bytes as f64 * per_byte);
        self.r.get_ref().set_read_timeout(Some(wait)).unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            self.r.read_line(&mut line).unwrap();
            assert!(line.len() >= 4, "short reply {line:?}");
            if line.as_bytes()[3] == b' ' {
                return line.trim_end().to_string();
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Send a command line and read its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }
}

/// Run a Python client script from `tests/py` and parse the JSON of its last output line.
pub fn py_json(script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(script);
    let out = Command::new("python3").arg(path).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.split(|b| *b == b'\n').rfind(|l| !l.is_empty()).unwrap()).unwrap()
}

/// The arguments that log a client script in as `user` with its password.
pub fn login_args(server: &str, user: usize) -> Vec<String> {
    ["--server", server, "--user", &format!("user{user}@example.edu"), "--password", &password(user)]
        .map(str::to_string)
        .to_vec()
}

/// Deliver `message` (CRLF lines) to `to` over LMTP, dot-stuffed.
pub fn deliver(lmtp: &str, to: &str, message: &[u8]) {
    let mut c = Lmtp::connect(lmtp);
    assert!(c.cmd("LHLO test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<sender@example.org>").starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let mut data = Vec::new();
    for line in message.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    c.send(&data);
    let reply = c.reply_after(data.len());
    assert!(reply.starts_with("250"), "{reply}");
}
