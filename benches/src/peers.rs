//! The servers a benchmark compares: a 3-replica storaged group and a Dovecot instance,
//! each in its own directory on loopback ports, with the same users and password.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use clusterkit::storage::{self, Listeners, NodeAddrs};
use tools::imap_client::Client;

use crate::procs::{free_port, spawn, Procs};

/// The password every benchmark user has on both servers.
pub const PASSWORD: &str = "bench-pw";
/// The benchmark cluster's shared secret (what our LMTP and Raft require).
pub const CLUSTER_SECRET: &str = "bench";

/// Addresses of one storaged node.
pub struct Node {
    pub pid: u32,
    pub lmtp: String,
    pub imap: String,
    /// Every listener, for a front's cluster map (`clusterkit::front::groups`).
    pub addrs: NodeAddrs,
}

/// Start a 3-node storaged group "bench" serving `users` users (`user{n}@example.edu`).
pub fn start_storaged(dir: &Path, users: usize, procs: &mut Procs) -> anyhow::Result<Vec<Node>> {
    start_storaged_with(dir, users, |_| {}, procs)
}

/// As [`start_storaged`], with every node's configuration adjusted by `tune`.
pub fn start_storaged_with(
    dir: &Path,
    users: usize,
    tune: impl Fn(&mut storaged::config::Config),
    procs: &mut Procs,
) -> anyhow::Result<Vec<Node>> {
    // `/metrics` on every node: benchmarks print where the time went (`stages`).
    let mut group = StoragedGroup::start(dir, users, Listeners { metrics: true, ..Default::default() }, tune)?;
    procs.0.append(&mut group.children);
    Ok(std::mem::take(&mut group.nodes))
}

/// A 3-node storaged group "bench" that can be restarted on the same data and ports with
/// another configuration (an A/B of one setting on the same replicas). Its processes are
/// killed when it is dropped.
pub struct StoragedGroup {
    dir: std::path::PathBuf,
    specs: Vec<NodeAddrs>,
    pub nodes: Vec<Node>,
    children: Vec<std::process::Child>,
}

impl StoragedGroup {
    /// Start the group in `dir` serving `users` users, with IMAP, admin and the optional
    /// listeners `extra` asks for, every node's configuration adjusted by `tune`.
    pub fn start(
        dir: &Path,
        users: usize,
        extra: Listeners,
        tune: impl Fn(&mut storaged::config::Config),
    ) -> anyhow::Result<Self> {
        if !storaged_binary()?.exists() {
            bail!("{} missing: cargo build --release -p storaged", storaged_binary()?.display());
        }
        // The admin listener lets benchmarks drive `mailctl` against the group.
        let specs = NodeAddrs::cluster_on_free_ports(3, Listeners { imap: true, admin: true, ..extra });
        let users_txt: String = (0..users).map(|u| format!("user{u}@example.edu {{PLAIN}}{PASSWORD}\n")).collect();
        std::fs::write(dir.join("users.txt"), users_txt)?;
        let mut group = Self { dir: dir.to_path_buf(), specs, nodes: Vec::new(), children: Vec::new() };
        group.spawn(tune)?;
        Ok(group)
    }

    /// Stop every node (SIGTERM: each checkpoints first) and start them again on the same
    /// data and ports, with their configuration adjusted by `tune` instead.
    pub fn restart(&mut self, tune: impl Fn(&mut storaged::config::Config)) -> anyhow::Result<()> {
        for c in &mut self.children {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for mut c in self.children.drain(..) {
            wait_or_kill(&mut c, Duration::from_secs(30));
        }
        self.nodes.clear();
        self.spawn(tune)
    }

    fn spawn(&mut self, tune: impl Fn(&mut storaged::config::Config)) -> anyhow::Result<()> {
        let groups = [storage::group("bench", &self.specs)];
        for (i, spec) in self.specs.iter().enumerate() {
            let mut cfg = storage::node_config(spec, &groups);
            cfg.cluster_key = Some(CLUSTER_SECRET.into());
            cfg.users_file = Some("users.txt".into());
            cfg.limits.connections_max = 4096;
            tune(&mut cfg);
            let path = self.dir.join(storage::file_name(spec.id));
            storage::write(&path, &cfg)?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("node{}.log", i + 1)))?;
            let child = spawn(
                Command::new(storaged_binary()?)
                    .arg("--config")
                    .arg(&path)
                    .env("RUST_LOG", std::env::var("BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()))
                    .stdout(Stdio::null())
                    .stderr(log),
            )?;
            let imap = spec.imap.clone().expect("an IMAP listener");
            self.nodes.push(Node { pid: child.id(), lmtp: spec.lmtp.clone(), imap, addrs: spec.clone() });
            self.children.push(child);
        }
        Ok(())
    }
}

impl Drop for StoragedGroup {
    fn drop(&mut self) {
        drop(Procs(std::mem::take(&mut self.children)));
    }
}

/// Wait (at most `within`) for `child` to exit, then kill it.
fn wait_or_kill(child: &mut std::process::Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The release `storaged` beside this benchmark's binary.
fn storaged_binary() -> anyhow::Result<std::path::PathBuf> {
    Ok(std::env::current_exe()?.with_file_name("storaged"))
}

/// A running Dovecot.
pub struct Dovecot {
    pub pid: u32,
    pub lmtp: String,
    pub imap: String,
}

/// Start Dovecot (Debian's 2.3) with LMTP and IMAP into one Maildir per user, default
/// fsync settings, every user with [`PASSWORD`].
pub fn start_dovecot(dir: &Path, procs: &mut Procs) -> anyhow::Result<Dovecot> {
    start_dovecot_with(dir, "", procs)
}

/// [`start_dovecot`] with more configuration (Pigeonhole's Sieve, say).
pub fn start_dovecot_with(dir: &Path, extra: &str, procs: &mut Procs) -> anyhow::Result<Dovecot> {
    let (lmtp_port, imap_port) = (free_port(), free_port());
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail)?;
    std::fs::create_dir_all(dir.join("run"))?;
    Command::new("chown").arg("-R").arg("mail:mail").arg(&mail).status()?;
    let conf = format!(
        "protocols = lmtp imap\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
         ssl = no\nfirst_valid_uid = 8\npostmaster_address = postmaster@example.edu\n\
         disable_plaintext_auth = no\nauth_mechanisms = plain login\n\
         default_process_limit = 2000\ndefault_client_limit = 4000\n\
         mail_location = maildir:{m}/%u/Maildir\n\
         userdb {{\n  driver = static\n  args = uid=mail gid=mail home={m}/%u\n}}\n\
         passdb {{\n  driver = static\n  args = password={PASSWORD}\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp_port}\n  }}\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n  \
           inet_listener imaps {{\n    port = 0\n  }}\n  service_count = 0\n  process_min_avail = 2\n}}\n\
         service imap {{\n  process_limit = 2000\n}}\nprotocol imap {{\n  mail_max_userip_connections = 2000\n}}\n\
         service anvil {{\n  chroot =\n}}\n{extra}",
        d = dir.display(),
        m = mail.display()
    );
    std::fs::write(dir.join("dovecot.conf"), conf)?;
    let child = spawn(Command::new("/usr/sbin/dovecot").arg("-F").arg("-c").arg(dir.join("dovecot.conf")))?;
    let pid = child.id();
    procs.0.push(child);
    Ok(Dovecot { pid, lmtp: format!("127.0.0.1:{lmtp_port}"), imap: format!("127.0.0.1:{imap_port}") })
}

/// A running Postfix instance.
pub struct Postfix {
    pub smtp: String,
}

/// Start Postfix (Debian's 3.7) as its own instance in `dir`: an SMTP listener on loopback
/// relaying every `example.edu` recipient over LMTP to `lmtp` (Dovecot), the classic
/// Postfix+Dovecot pair. Its `250` means "in Postfix's queue" (one fsync'd copy); delivery
/// to Dovecot follows asynchronously.
pub fn start_postfix(dir: &Path, lmtp: &str, procs: &mut Procs) -> anyhow::Result<Postfix> {
    start_postfix_with(dir, lmtp, "", procs)
}

/// [`start_postfix`] with more `main.cf` lines (milters, say).
pub fn start_postfix_with(dir: &Path, lmtp: &str, extra_main: &str, procs: &mut Procs) -> anyhow::Result<Postfix> {
    let port = free_port();
    let etc = dir.join("etc");
    let queue = dir.join("queue");
    let data = dir.join("data");
    for d in [&etc, &queue, &data] {
        std::fs::create_dir_all(d)?;
    }
    let owned =
        ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"];
    for d in owned {
        std::fs::create_dir_all(queue.join(d))?;
        Command::new("chown").arg("postfix").arg(queue.join(d)).status()?;
    }
    std::fs::create_dir_all(queue.join("pid"))?;
    for d in ["maildrop", "public"] {
        std::fs::create_dir_all(queue.join(d))?;
        Command::new("chown").arg("postfix:postdrop").arg(queue.join(d)).status()?;
    }
    Command::new("chown").arg("postfix").arg(&data).status()?;
    let main = format!(
        "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {data}\nmail_owner = postfix\n\
         setgid_group = postdrop\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmyhostname = bench.example.edu\n\
         mydestination =\nmynetworks = 127.0.0.0/8\nalias_maps =\nalias_database =\n\
         virtual_mailbox_domains = example.edu\nvirtual_transport = lmtp:inet:{lmtp}\n\
         smtpd_recipient_restrictions = permit_mynetworks, reject\nmaillog_file_prefixes = {d}\n\
         maillog_file = {d}/maillog\ndefault_process_limit = 200\nlmtp_destination_concurrency_limit = 32\n",
        q = queue.display(),
        data = data.display(),
        d = dir.display(),
    );
    std::fs::write(etc.join("main.cf"), format!("{main}{extra_main}"))?;
    let services = [
        ("cleanup", "unix", "n", "-", "0"),
        ("qmgr", "unix", "n", "300", "1"),
        ("rewrite", "unix", "-", "-", "-"),
        ("bounce", "unix", "-", "-", "0"),
        ("defer", "unix", "-", "-", "0"),
        ("trace", "unix", "-", "-", "0"),
        ("verify", "unix", "-", "-", "1"),
        ("proxymap", "unix", "-", "-", "-"),
        ("smtp", "unix", "-", "-", "-"),
        ("showq", "unix", "n", "-", "-"),
        ("error", "unix", "-", "-", "-"),
        ("retry", "unix", "-", "-", "-"),
        ("discard", "unix", "-", "-", "-"),
        ("lmtp", "unix", "-", "-", "-"),
        ("anvil", "unix", "-", "-", "1"),
        ("scache", "unix", "-", "-", "1"),
        ("postlog", "unix-dgram", "n", "-", "1"),
    ];
    let mut master = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    for (name, kind, private, wakeup, limit) in services {
        let program = match name {
            "rewrite" => "trivial-rewrite",
            "defer" | "trace" => "bounce",
            "retry" => "error",
            "postlog" => "postlogd",
            other => other,
        };
        master.push_str(&format!("{name} {kind} {private} - n {wakeup} {limit} {program}\n"));
    }
    std::fs::write(etc.join("master.cf"), master)?;
    let child = spawn(Command::new("/usr/lib/postfix/sbin/master").arg("-c").arg(&etc).arg("-d").current_dir(&queue))?;
    procs.0.push(child);
    Ok(Postfix { smtp: format!("127.0.0.1:{port}") })
}

/// The `frontd` binary built next to this benchmark.
pub fn frontd_binary() -> anyhow::Result<std::path::PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("frontd");
    if !bin.exists() {
        bail!("{} missing: cargo build --release -p frontd", bin.display());
    }
    Ok(bin)
}

/// Start `frontd` on `dir/frontd.toml`, appending its log to `dir/frontd.log`.
pub fn spawn_frontd(bin: &Path, dir: &Path) -> anyhow::Result<std::process::Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("frontd.log"))?;
    spawn(
        Command::new(bin)
            .arg("--config")
            .arg(dir.join("frontd.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// Wait until one of `addrs` takes `user0`'s login and SELECT; its address (for our group:
/// the leader's).
pub fn imap_ready(addrs: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for a in addrs {
            if let Ok(mut c) = Client::connect(a) {
                let ok = c.command(&format!("LOGIN user0@example.edu {PASSWORD}")).is_ok_and(|x| x.ok())
                    && c.command("SELECT INBOX").is_ok_and(|x| x.ok());
                if ok {
                    return Ok(a.clone());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no IMAP server ready among {addrs:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
