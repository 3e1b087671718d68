//! `mailctl up`: prepare the layout, start three storaged nodes and one frontd as child
//! processes (this same binary, `mailctl storaged|frontd --config ...`), wait until every
//! mailhost has a leader, deliver a welcome message to each demo user on the first run,
//! print how to connect, and on Ctrl-C (or SIGTERM) stop the daemons cleanly (SIGTERM,
//! then SIGKILL after a grace period). A daemon that dies is restarted with backoff (from
//! half a second, doubling per quick failure up to 30 s) and its restarts are counted in
//! `logs/restarts`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use directory::{Directory, LdifDirectory};
use frontd::cluster::ClusterMap;
use frontd::config::{GroupSection, MemberSection};
use frontd::delivery::Router;

use super::layout::{DemoUser, Layout, NodePort, GROUPS, NODES};

/// How long the cluster may take to elect leaders and accept mail, and the scanners to
/// answer: rspamd's first start compiles its rules, which on a busy two-core machine once
/// took longer than 90 s.
const READY_TIME_MAX: Duration = Duration::from_secs(180);
/// How long daemons get to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A daemon this command started, and how to start it again.
struct Daemon {
    name: String,
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
    dir: Option<PathBuf>,
    child: Child,
    started: Instant,
    /// Set while it is down: when it is started again.
    restart_at: Option<Instant>,
    restarts: u32,
    exited: bool,
}

/// The first restart waits this long; each quick failure doubles it up to
/// [`RESTART_DELAY_MAX`]. A daemon that ran [`RESTART_RESET`] starts over at the first.
const RESTART_DELAY_MIN: Duration = Duration::from_millis(500);
const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
const RESTART_RESET: Duration = Duration::from_secs(60);

/// Where `up` records restarts, in its log directory.
pub(super) const RESTARTS_FILE: &str = "restarts";

/// How often the supervisor looks at its daemons.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);

/// The daemons; whatever happens, they are stopped when this is dropped.
pub(super) struct Daemons {
    all: Vec<Daemon>,
    logs: PathBuf,
}

/// Start `cmd` with its output appended to `logs/NAME.log`, in a process group of its own
/// (the terminal's Ctrl-C reaches mailctl only, which then stops the daemons in order) and
/// killed if mailctl dies.
fn launch(name: &str, cmd: &mut Command, logs: &std::path::Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{name}.log")))?;
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and only sets this child's death signal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {name}"))
}

impl Daemon {
    /// The command it was started with, made again.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// The wait before the next restart: doubled per quick failure, from the minimum again
    /// after a long run.
    fn restart_delay(&self) -> Duration {
        if self.started.elapsed() >= RESTART_RESET {
            return RESTART_DELAY_MIN;
        }
        RESTART_DELAY_MIN.saturating_mul(1 << self.restarts.min(6)).min(RESTART_DELAY_MAX)
    }
}

impl Daemons {
    pub(super) fn new(logs: PathBuf) -> Self {
        Self { all: Vec::new(), logs }
    }

    /// One of ours: this binary's `kind` subcommand.
    fn start(&mut self, name: &str, kind: &str, config: PathBuf) -> anyhow::Result<()> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg(kind).arg("--config").arg(config);
        self.spawn(name, cmd)
    }

    /// Any daemon that stays in the foreground; its output goes to `logs/NAME.log`.
    pub(super) fn spawn(&mut self, name: &str, mut cmd: Command) -> anyhow::Result<()> {
        let child = launch(name, &mut cmd, &self.logs)?;
        self.all.push(Daemon {
            name: name.to_string(),
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            envs: cmd.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect(),
            dir: cmd.get_current_dir().map(ToOwned::to_owned),
            child,
            started: Instant::now(),
            restart_at: None,
            restarts: 0,
            exited: false,
        });
        Ok(())
    }

    /// Restart daemons that exited, with backoff, saying so.
    fn supervise(&mut self) {
        let mut restarted = false;
        for d in self.all.iter_mut() {
            if d.restart_at.is_none() {
                if let Ok(Some(status)) = d.child.try_wait() {
                    let delay = d.restart_delay();
                    if d.started.elapsed() >= RESTART_RESET {
                        d.restarts = 0;
                    }
                    eprintln!(
                        "mailctl: {} exited ({status}); restarting it in {} ms; see logs/{}.log",
                        d.name,
                        delay.as_millis(),
                        d.name
                    );
                    d.restart_at = Some(Instant::now() + delay);
                }
                continue;
            }
            if d.restart_at.is_some_and(|at| Instant::now() >= at) {
                let mut cmd = d.command();
                match launch(&d.name, &mut cmd, &self.logs) {
                    Ok(child) => {
                        d.child = child;
                        d.restarts += 1;
                        d.restart_at = None;
                        d.started = Instant::now();
                        eprintln!("mailctl: {} restarted (restart {} since up)", d.name, d.restarts);
                        restarted = true;
                    }
                    Err(e) => {
                        eprintln!("mailctl: {} cannot be restarted: {e:#}; trying again", d.name);
                        d.restart_at = Some(Instant::now() + RESTART_DELAY_MAX);
                    }
                }
            }
        }
        if restarted {
            self.write_restarts();
        }
    }

    /// `logs/restarts`: each daemon's restarts since `up` (what `mailctl status` shows).
    fn write_restarts(&self) {
        let text: String = self.all.iter().map(|d| format!("{} {}\n", d.name, d.restarts)).collect();
        if let Err(e) = std::fs::write(self.logs.join(RESTARTS_FILE), text) {
            eprintln!("mailctl: cannot record restarts: {e}");
        }
    }

    /// SIGTERM to all, wait, SIGKILL what is left.
    fn stop(&mut self) {
        for d in self.all.iter().filter(|d| !d.exited && d.restart_at.is_none()) {
            // The whole process group: a daemon with workers of its own (rspamd) stops them.
            // SAFETY: signalling the process group our own child leads.
            unsafe { libc::kill(-(d.child.id() as i32), libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        for d in self.all.iter_mut().filter(|d| !d.exited) {
            if d.restart_at.take().is_some() {
                d.exited = true;
                continue;
            }
            while Instant::now() < deadline {
                if let Ok(Some(_)) = d.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if d.child.try_wait().ok().flatten().is_none() {
                eprintln!("mailctl: {} did not stop in time; killing it", d.name);
                // SAFETY: as above.
                unsafe { libc::kill(-(d.child.id() as i32), libc::SIGKILL) };
                let _ = d.child.kill();
                let _ = d.child.wait();
            }
            d.exited = true;
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The cluster map frontd is configured with, for the welcome deliveries.
fn cluster_map(layout: &Layout) -> ClusterMap {
    let members: Vec<MemberSection> = (1..=NODES)
        .map(|i| MemberSection {
            id: i as u64,
            imap: Some(layout.node(i, NodePort::Imap)),
            pop3: Some(layout.node(i, NodePort::Pop3)),
            lmtp: Some(layout.node(i, NodePort::Lmtp)),
            admin: Some(layout.node(i, NodePort::Admin)),
            sieve: Some(layout.node(i, NodePort::Sieve)),
        })
        .collect();
    let groups: Vec<GroupSection> =
        GROUPS.iter().map(|g| GroupSection { name: g.to_string(), members: members.clone() }).collect();
    ClusterMap::new(&groups)
}

fn welcome(user: &DemoUser) -> Vec<u8> {
    format!(
        "From: mailctl <postmaster@example.edu>\r\nTo: {mail}\r\nSubject: Welcome to your mailstore\r\n\
         Message-ID: <welcome.{mail}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello {mail},\r\n\r\nthis message is stored on mailhost \"{host}\": a Raft group of three storage nodes.\r\n\
         It was acknowledged only once a majority of them had it.\r\n",
        mail = user.mail,
        host = user.mail_host
    )
    .into_bytes()
}

/// Deliver the welcome messages, retrying while the groups elect leaders.
async fn deliver_welcome(layout: &Layout, users: &[DemoUser]) -> anyhow::Result<()> {
    let directory = Directory::Ldif(Arc::new(LdifDirectory::open(&layout.dir.join("users.ldif"))?));
    let secret = std::fs::read_to_string(layout.dir.join("cluster.key")).context("reading cluster.key")?;
    let key = common::rpc_channel::ClusterKey::from_secret(&secret);
    let router = Router::new(directory, Arc::new(cluster_map(layout)), Some(key), READY_TIME_MAX);
    for user in users {
        let replies = router
            .deliver(
                "postmaster@example.edu",
                std::slice::from_ref(&user.mail),
                &[&welcome(user)],
                frontd::delivery::Folder::Inbox,
            )
            .await;
        if !replies[0].starts_with("250") {
            bail!("welcome message to {} not delivered: {}", user.mail, replies[0]);
        }
    }
    Ok(())
}

/// Wait until frontd accepts connections.
fn wait_listening(addr: &str, deadline: Instant) -> anyhow::Result<()> {
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}; see the logs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// An address as clients should be told it: `localhost` rather than `127.0.0.1`, the name
/// the demo certificate names that every client checks (isync ignores IP addresses in it).
fn client(addr: String) -> String {
    match addr.strip_prefix("127.0.0.1:") {
        Some(port) => format!("localhost:{port}"),
        None => addr,
    }
}

fn print_banner(layout: &Layout, users: &[DemoUser], scanning: &str) {
    let ca = layout.ca_file();
    println!("mailstore is up: 3 storage nodes serving mailhosts {}, 1 front node", GROUPS.join(" and "));
    println!("  data and configs: {}", layout.dir.display());
    println!("  logs:             {}", layout.log_dir().display());
    println!("  IMAP  {}  (STARTTLS)     IMAPS {}", client(layout.front_imap()), client(layout.front_imaps()));
    println!("  POP3  {}  (STLS)         POP3S {}", client(layout.front_pop3()), client(layout.front_pop3s()));
    println!(
        "  SMTP  {}  (MX, no AUTH)   submission {} (STARTTLS)   submissions {}",
        client(layout.front_smtp()),
        client(layout.front_submission()),
        client(layout.front_submissions())
    );
    println!("  ManageSieve {}  (STARTTLS; Sieve filters, vacation)", client(layout.front_sieve()));
    println!("{scanning}");
    println!("  TLS certificate for localhost/127.0.0.1, signed by the local CA {}", ca.display());
    let nodes: Vec<String> =
        (1..=NODES).map(|i| format!("http://{}/metrics", layout.node(i, NodePort::Metrics))).collect();
    println!("  metrics (Prometheus): front http://{}/metrics", layout.front_metrics());
    println!("                        storage {}", nodes.join(" "));
    println!("  users (password, mailhost):");
    for u in users {
        println!("    {:<20} {:<14} {}", u.mail, u.password, u.mail_host);
    }
    if let Some(u) = users.first() {
        println!("  try:");
        println!(
            "    curl --cacert {} --user '{}:{}' 'imaps://{}/INBOX;UID=1'",
            ca.display(),
            u.mail,
            u.password,
            client(layout.front_imaps())
        );
        println!(
            "    swaks --server {} --tls --auth PLAIN --auth-user {} --auth-password '{}' --from {} --to bob@example.edu",
            client(layout.front_submission()),
            u.mail,
            u.password,
            u.mail
        );
        let (host, port) = client(layout.front_sieve())
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .unwrap_or_default();
        println!(
            "    sieve-connect --server {host} --port {port} --tlscafile {} --user {} --list",
            ca.display(),
            u.mail
        );
    }
    println!("Ctrl-C stops everything.");
}

/// Run `mailctl up`.
pub fn run(dir: &std::path::Path, port_base: u16, dns_servers: &[std::net::SocketAddr]) -> anyhow::Result<()> {
    let layout = Layout::open(dir, port_base)?;
    let scanning = super::scanners::Scanning::installed();
    let users = layout.prepare(dns_servers, (scanning.clamd, scanning.rspamd))?;
    if let Some(busy) = layout.all_addresses().into_iter().find(|a| std::net::TcpListener::bind(a).is_err()) {
        bail!("{busy} is in use (another mailctl up?); stop it or choose another --port-base");
    }
    let mut daemons = Daemons::new(layout.log_dir());
    let _ = std::fs::remove_file(layout.log_dir().join(RESTARTS_FILE));
    for i in 1..=NODES {
        daemons.start(&format!("storaged{i}"), "storaged", layout.node_config(i))?;
    }
    daemons.start("frontd", "frontd", layout.front_config())?;
    // Kept to the end: rspamd may resolve through it.
    let _resolver = scanning.start(&mut daemons, &layout, dns_servers)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let deadline = Instant::now() + READY_TIME_MAX;
    wait_listening(&layout.front_imap(), deadline)?;
    scanning.wait_ready(&layout, deadline)?;
    let marker = layout.dir.join("welcome-sent");
    if !marker.exists() {
        runtime.block_on(deliver_welcome(&layout, &users))?;
        std::fs::write(&marker, "")?;
    }
    print_banner(&layout, &users, &scanning.banner());

    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(SUPERVISE_EVERY);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => daemons.supervise(),
            }
        }
        anyhow::Ok(())
    })?;
    eprintln!("mailctl: stopping the daemons");
    daemons.stop();
    eprintln!("mailctl: stopped");
    Ok(())
}
