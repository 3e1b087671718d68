//! The chaos cluster's processes: three or five storage nodes (each in its namespace, on
//! its own small tmpfs so its disk can be filled, serving the mailhosts `hermes` and
//! `apollo`) and two fronts in the host namespace with an LDIF directory of four users and
//! the replicated queue. The harness binary runs the daemons
//! itself (`chaos storaged|frontd ...`); children die with it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use clusterkit::front;
use clusterkit::storage::{self, NodeAddrs};
use frontd::config::{BackendSection, DirectorySection, QueueSection};

use super::net::{service_ip, Net};

pub const GROUPS: [&str; 2] = ["hermes", "apollo"];
/// The users: two per mailhost.
pub const USERS: [(&str, &str); 4] = [
    ("u1@chaos.test", "hermes"),
    ("u2@chaos.test", "hermes"),
    ("u3@chaos.test", "apollo"),
    ("u4@chaos.test", "apollo"),
];
pub const PASSWORD: &str = "chaos-pw";
const RAFT_PORT: u16 = 7100;
const LMTP_PORT: u16 = 2400;
const IMAP_PORT: u16 = 1430;
const ADMIN_PORT: u16 = 7200;
const CLUSTER_KEY: &str = "chaos cluster key";
const PROXY_PASSWORD: &str = "chaos proxy";

/// A running daemon, restartable.
struct Daemon {
    cmd: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.cmd[0]);
        cmd.args(&self.cmd[1..]).stdout(Stdio::null()).stderr(log).env("RUST_LOG", "info,openraft=warn");
        // SAFETY: prctl is async-signal-safe; the daemon dies with the harness.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn()?);
        Ok(())
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: a signal to our own child process.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// If the process exited by itself, how (and forget it, so it can be started again).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }
}

/// Size of each storage node's data filesystem (a tmpfs, so a node's disk can be filled
/// without touching the host's): room for both groups' preallocated log segments and mail.
const NODE_DISK_BYTES: u64 = 1 << 30;
/// The file that fills a node's disk.
const FILLER: &str = "chaos-filler";

/// The whole cluster.
pub struct Cluster {
    pub net: Net,
    pub dir: PathBuf,
    nodes: Vec<Daemon>,
    fronts: Vec<Daemon>,
    /// SMTP and IMAP listeners of each front (all fronts share the map and the queue).
    pub front_smtp: Vec<String>,
    pub front_imap: Vec<String>,
}

/// Fronts a chaos cluster runs.
pub const FRONTS: usize = 2;
/// Storage node counts a chaos cluster can have (every group has every node).
pub const NODE_COUNTS: [usize; 2] = [3, 5];

fn run(program: &str, args: &[&str]) -> std::io::Result<()> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

fn free_port() -> u16 {
    common::testing::free_port()
}

impl Cluster {
    /// Write the configurations under `dir` and start everything: `n` storage nodes (one of
    /// [`NODE_COUNTS`]) and [`FRONTS`] fronts.
    pub fn start(dir: &Path, exe: &Path, tag: &str, n: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(NODE_COUNTS.contains(&n), "a chaos cluster has 3 or 5 storage nodes");
        let net = Net::build(tag, n)?;
        std::fs::write(dir.join("cluster.key"), CLUSTER_KEY)?;
        let addr = |i: usize, port: u16| format!("{}:{port}", service_ip(i));
        let specs: Vec<NodeAddrs> = (1..=n)
            .map(|i| NodeAddrs {
                id: i as u64,
                raft: addr(i, RAFT_PORT),
                lmtp: addr(i, LMTP_PORT),
                imap: Some(addr(i, IMAP_PORT)),
                pop3: None,
                imaps: None,
                pop3s: None,
                admin: Some(addr(i, ADMIN_PORT)),
                sieve: None,
                metrics: None,
            })
            .collect();
        let groups: Vec<_> = GROUPS.iter().map(|g| storage::group(g, &specs)).collect();
        let mut nodes = Vec::new();
        for i in 1..=n {
            let data = dir.join(format!("data{i}"));
            std::fs::create_dir_all(&data)?;
            let size = format!("size={NODE_DISK_BYTES}");
            run("mount", &["-t", "tmpfs", "-o", &size, "chaos-disk", &data.display().to_string()])?;
            let mut cfg = storage::node_config(&specs[i - 1], &groups);
            cfg.cluster_key_file = Some("cluster.key".into());
            cfg.proxy.user = Some("frontd".into());
            cfg.proxy.password = Some(format!("{{PLAIN}}{PROXY_PASSWORD}"));
            cfg.auth.plaintext_networks = vec!["10.88.0.0/16".into()];
            cfg.auth.failure_delay_ms = 100;
            cfg.raft.snapshot_every = 500;
            cfg.raft.keep_logs = 100;
            let path = dir.join(storage::file_name(i as u64));
            storage::write(&path, &cfg)?;
            let cmd = ["ip", "netns", "exec", &net.ns(i)]
                .iter()
                .map(|s| s.to_string())
                .chain([exe.display().to_string(), "storaged".into(), "--config".into(), path.display().to_string()])
                .collect();
            nodes.push(Daemon { cmd, log: dir.join(format!("node{i}.log")), child: None });
        }
        let ldif: String = USERS
            .iter()
            .map(|(u, host)| {
                let local = u.split('@').next().unwrap_or(u);
                format!(
                    "dn: uid={local},dc=chaos,dc=test\nobjectClass: qmailUser\nuid: {local}\nmail: {u}\nmailHost: {host}\n\
                     userPassword: {{PLAIN}}{PASSWORD}\n\n"
                )
            })
            .collect();
        std::fs::write(dir.join("users.ldif"), ldif)?;
        std::fs::write(dir.join("proxy.pw"), PROXY_PASSWORD)?;
        // The fronts reach the nodes' IMAP, LMTP and admin listeners (no POP3 here).
        let front_groups = front::groups(&GROUPS, &specs);
        let (mut fronts, mut front_smtp, mut front_imap) = (Vec::new(), Vec::new(), Vec::new());
        for f in 1..=FRONTS {
            let (smtp, imap) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
            let mut backend = BackendSection::new("frontd");
            backend.proxy_password_file = Some("proxy.pw".into());
            backend.route_timeout_ms = 15_000;
            backend.cluster_key_file = Some("cluster.key".into());
            let mut cfg =
                frontd::config::Config::new(DirectorySection::ldif("users.ldif"), backend, front_groups.clone());
            cfg.host = format!("front{f}.chaos.test");
            cfg.listen.smtp = Some(smtp.clone());
            cfg.listen.imap = Some(imap.clone());
            cfg.auth.failure_delay_ms = 10;
            cfg.auth.failures_max = 100_000;
            cfg.auth.address_failures_max = 100_000;
            cfg.auth.account_failures_max = 100_000;
            cfg.limits.sessions_per_user_max = 1000;
            cfg.smtp.local_domains = vec!["chaos.test".into()];
            cfg.queue = Some(QueueSection {
                cluster_key_file: "cluster.key".into(),
                retry_min_s: 1,
                retry_max_s: 4,
                poll_ms: 300,
                lease_s: 20,
                ..QueueSection::default()
            });
            let front_path = dir.join(format!("frontd{f}.toml"));
            front::write(&front_path, &cfg)?;
            fronts.push(Daemon {
                cmd: vec![
                    exe.display().to_string(),
                    "frontd".into(),
                    "--config".into(),
                    front_path.display().to_string(),
                ],
                log: dir.join(format!("frontd{f}.log")),
                child: None,
            });
            front_smtp.push(smtp);
            front_imap.push(imap);
        }
        let mut cluster = Self { net, dir: dir.to_path_buf(), nodes, fronts, front_smtp, front_imap };
        for d in &mut cluster.nodes {
            d.start()?;
        }
        for f in &mut cluster.fronts {
            f.start()?;
        }
        Ok(cluster)
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Node `n` (1-based): SIGKILL.
    pub fn kill(&mut self, n: usize) {
        self.nodes[n - 1].kill();
    }

    /// Node `n`: start it again if it is not running (killed, or exited by itself).
    pub fn restart(&mut self, n: usize) -> std::io::Result<()> {
        let _ = self.nodes[n - 1].exited();
        if self.nodes[n - 1].child.is_none() {
            self.nodes[n - 1].start()?;
        }
        Ok(())
    }

    /// Nodes whose process ended by itself since the last call, with how.
    pub fn exits(&mut self) -> Vec<(usize, std::process::ExitStatus)> {
        let mut out = Vec::new();
        for (i, d) in self.nodes.iter_mut().enumerate() {
            if let Some(status) = d.exited() {
                out.push((i + 1, status));
            }
        }
        out
    }

    /// Fill node `n`'s disk to the last byte; how many bytes that took.
    pub fn fill_disk(&self, n: usize) -> std::io::Result<u64> {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join(format!("data{n}")).join(FILLER))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        // Bounded by the filesystem's size; ends at ENOSPC.
        while written <= NODE_DISK_BYTES {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(k) => written += k as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Give node `n` its space back.
    pub fn free_disk(&self, n: usize) {
        let _ = std::fs::remove_file(self.dir.join(format!("data{n}")).join(FILLER));
    }

    pub fn pause(&self, n: usize) {
        self.nodes[n - 1].signal(libc::SIGSTOP);
    }

    pub fn resume(&self, n: usize) {
        self.nodes[n - 1].signal(libc::SIGCONT);
    }

    /// Undo every fault: links healed, paused nodes resumed, dead nodes restarted.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        self.net.heal()?;
        for n in 1..=self.nodes.len() {
            self.free_disk(n);
            self.resume(n);
            self.restart(n)?;
        }
        Ok(())
    }

    /// The node that leads `group` now, by its own account (`None` if no node says so).
    pub fn leader(&self, group: &str) -> Option<usize> {
        use common::admin::{AdminClient, AdminReply, AdminRequest};
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(async {
            for n in 1..=self.nodes.len() {
                let timeout = std::time::Duration::from_secs(2);
                let Ok(mut c) = AdminClient::connect(&self.admin(n), &self.key(), timeout).await else { continue };
                if let Ok(AdminReply::Status(s)) = c.call(&AdminRequest::Status, timeout).await {
                    if s.groups.iter().any(|g| g.name == group && g.leader == Some(n as u64)) {
                        return Some(n);
                    }
                }
            }
            None
        })
    }

    /// The admin address of node `n`.
    pub fn admin(&self, n: usize) -> String {
        format!("{}:{ADMIN_PORT}", service_ip(n))
    }

    pub fn key(&self) -> common::rpc_channel::ClusterKey {
        common::rpc_channel::ClusterKey::from_secret(CLUSTER_KEY)
    }

    /// The Maildir files of `group` on node `n`: relative path → size.
    pub fn replica_files(&self, n: usize, group: &str) -> std::collections::BTreeMap<String, u64> {
        let root = self.dir.join(format!("data{n}/{group}/mail/users"));
        let mut out = std::collections::BTreeMap::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                match e.metadata() {
                    Ok(m) if m.is_dir() && !p.ends_with("tmp") => stack.push(p),
                    Ok(m) if m.is_dir() => {}
                    Ok(m) if p.components().any(|c| c.as_os_str() == "cur" || c.as_os_str() == "new") => {
                        out.insert(p.strip_prefix(&root).unwrap_or(&p).display().to_string(), m.len());
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for f in &mut self.fronts {
            f.kill();
        }
        for d in &mut self.nodes {
            d.signal(libc::SIGCONT);
            d.kill();
        }
        for n in 1..=self.nodes.len() {
            let _ = run("umount", &["-l", &self.dir.join(format!("data{n}")).display().to_string()]);
        }
    }
}
