//! What the compromised-account defence costs a submission: three fronts before the same
//! 3-replica storaged group: `all` (login recorded in the user's group and judged, the
//! submission rules, DKIM signing with a 2048-bit key), `phish` (the same without DKIM) and
//! `off` (recording and rules off, no key; the From check is always on); each round runs
//! the three back to back, p50 of each and its difference from `off`.
//!
//! `cargo build --release -p storaged -p frontd -p benches && target/release/submission-bench`
//!
//! Each message is a session of its own (connect, EHLO, AUTH PLAIN, MAIL, RCPT, DATA,
//! QUIT), timed from connect to the `250` after DATA: the login and its recording are in
//! the path, as they are for a mail client that connects per message.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use benches::peers::{frontd_binary, spawn_frontd, start_storaged, PASSWORD};
use benches::procs::{free_port, Procs};
use clap::Parser;
use clusterkit::front;
use frontd::config::{BackendSection, DirectorySection};
use smtp_client::{Connection, Deadlines, Dialect, Envelope};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    #[arg(long, default_value_t = 4096)]
    message_bytes: usize,
    #[arg(long, default_value_t = 16)]
    users: usize,
    #[arg(long, default_value = "target/bench-submission")]
    dir: PathBuf,
}

const DEADLINES: Deadlines =
    Deadlines { connect: Duration::from_secs(10), reply: Duration::from_secs(60), data_end: Duration::from_secs(60) };

/// One message in a session of its own (STARTTLS: submission offers AUTH over TLS only);
/// whether it was taken.
async fn submit(addr: &str, user: &str, body: &[u8]) -> anyhow::Result<bool> {
    let tls = frontd::outbound::client::opportunistic_tls();
    let (c, _) = Connection::open(addr, DEADLINES).await?;
    let mut c = c;
    c.hello(Dialect::Smtp, "bench.example.org").await?;
    let mut c = c.starttls(&tls, "localhost").await?;
    c.hello(Dialect::Smtp, "bench.example.org").await?;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
    if c.command(&format!("AUTH PLAIN {plain}")).await?.code != 235 {
        return Ok(false);
    }
    let recipients = [user.to_string()];
    let envelope =
        Envelope { from: user, mail_params: "", recipients: &recipients, rcpt_params: "", rcpt_params_each: &[] };
    let t = c.transaction(Dialect::Smtp, &envelope, &smtp_client::dot_stuff(body), |_| false).await?;
    let ok = t.per_recipient(Dialect::Smtp).iter().all(|r| r.code == 250);
    c.quit().await;
    Ok(ok)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

struct Run {
    sent: u64,
    errors: u64,
    elapsed: Duration,
    p50_us: u64,
    p99_us: u64,
}

fn run(addr: &str, sessions: usize, users: usize, size: usize, duration: Duration) -> Run {
    let start = Instant::now();
    let threads: Vec<_> = (0..sessions)
        .map(|t| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let rt = runtime();
                let (mut lat, mut errors, mut n) = (Vec::new(), 0u64, t);
                while start.elapsed() < duration {
                    let user = format!("user{}@example.edu", n % users);
                    let mut body = format!("From: <{user}>\r\nTo: <{user}>\r\nSubject: bench {n}\r\n\r\n").into_bytes();
                    while body.len() + 78 <= size {
                        body.extend_from_slice(&[b'x'; 76]);
                        body.extend_from_slice(b"\r\n");
                    }
                    let t0 = Instant::now();
                    match rt.block_on(submit(&addr, &user, &body)) {
                        Ok(true) => lat.push(t0.elapsed().as_micros() as u64),
                        _ => errors += 1,
                    }
                    n += sessions;
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in threads {
        let (l, e) = t.join().expect("sender");
        lat.extend(l);
        errors += e;
    }
    let (p50_us, p99_us) = benches::stats::p50_p99(&mut lat);
    Run { sent: lat.len() as u64, errors, elapsed: start.elapsed(), p50_us, p99_us }
}

/// What a front has on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// Login recording and phish rules off, no DKIM key.
    Off,
    /// Login recording and phish rules on, no DKIM key.
    Phish,
    /// Everything: phish as above and DKIM signing.
    All,
}

/// A front in `dir` before `groups`, set up as `setup` says.
fn front_config(dir: &Path, groups: Vec<frontd::config::GroupSection>, setup: Setup) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy(dir.parent().unwrap().join("users.ldif"), dir.join("users.ldif"))?;
    std::fs::write(dir.join("cluster.key"), benches::peers::CLUSTER_SECRET)?;
    let mut backend = BackendSection::new("frontd");
    backend.proxy_password = Some("unused".into());
    backend.cluster_key_file = Some("cluster.key".into());
    let mut cfg = frontd::config::Config::new(DirectorySection::ldif("users.ldif"), backend, groups);
    let addr = format!("127.0.0.1:{}", free_port());
    cfg.listen.submission = Some(addr.clone());
    clusterkit::certs::self_signed(dir, &["localhost"])?;
    cfg.tls = Some(frontd::config::TlsFiles { cert_file: "cert.pem".into(), key_file: "key.pem".into() });
    cfg.limits.connections_max = 4096;
    cfg.auth.failure_delay_ms = 0;
    cfg.smtp.local_domains = vec!["example.edu".into()];
    if setup == Setup::All {
        let key = tools::mailctl::dkim::keygen("example.edu", "bench", &dir.join("dkim"), 2048)?;
        cfg.dkim.keys.push(frontd::config::DkimKeySection {
            domain: "example.edu".into(),
            selector: "bench".into(),
            key_file: key.key_file,
        });
    }
    if setup == Setup::Off {
        let p = &mut cfg.phish;
        p.record_logins = false;
        (p.geo_velocity, p.impossible_travel, p.bulk_spoofing, p.outbound_volume, p.outbound_spam) =
            (false, false, false, false, false);
    }
    front::write(&dir.join("frontd.toml"), &cfg)?;
    Ok(addr)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let mut procs = Procs::default();
    let nodes_dir = dir.join("nodes");
    std::fs::create_dir_all(&nodes_dir)?;
    let nodes = start_storaged(&nodes_dir, args.users, &mut procs).context("starting storaged")?;
    let hash = common::password::PasswordHash::sha512_crypt(PASSWORD).to_stored();
    let ldif: String = (0..args.users)
        .map(|u| {
            format!(
                "dn: uid=user{u},dc=example,dc=edu\nobjectClass: qmailUser\nmail: user{u}@example.edu\n\
                 mailHost: bench\nuserPassword: {hash}\n\n"
            )
        })
        .collect();
    std::fs::write(dir.join("users.ldif"), ldif)?;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addrs.clone()).collect();
    let bin = frontd_binary()?;
    let mut fronts = Vec::new();
    for (name, setup) in [("all", Setup::All), ("phish", Setup::Phish), ("off", Setup::Off)] {
        fronts.push((name, front_config(&dir.join(name), front::groups(&["bench"], &addrs), setup)?));
        procs.0.push(spawn_frontd(&bin, &dir.join(name))?);
    }
    for (_, a) in &fronts {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !runtime().block_on(submit(a, "user0@example.edu", b"Subject: warm\r\n\r\nx\r\n")).unwrap_or(false) {
            anyhow::ensure!(Instant::now() < deadline, "{a} never took a submission");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let secs = Duration::from_secs_f64(args.seconds);
    let (n, users, size) = (args.sessions, args.users, args.message_bytes);
    println!(
        "submission, a session per message (STARTTLS, AUTH PLAIN, SHA512-CRYPT), {n} sessions, {size}-byte messages, {} s x {} rounds:",
        args.seconds, args.rounds
    );
    println!("| round | setup | msg/s | p50/p99 ms | p50 added vs off, ms | errors |");
    println!("|---|---|---|---|---|---|");
    let mut added: Vec<Vec<f64>> = vec![Vec::new(); fronts.len()];
    for round in 0..args.rounds.max(1) {
        let runs: Vec<Run> = fronts.iter().map(|(_, a)| run(a, n, users, size, secs)).collect();
        let off = runs.last().expect("the off front").p50_us as f64;
        for (k, ((name, _), r)) in fronts.iter().zip(&runs).enumerate() {
            let delta = (r.p50_us as f64 - off) / 1000.0;
            added[k].push(delta);
            println!(
                "| {round} | {name} | {:.0} | {:.2}/{:.1} | {delta:.2} | {} |",
                r.sent as f64 / r.elapsed.as_secs_f64(),
                r.p50_us as f64 / 1000.0,
                r.p99_us as f64 / 1000.0,
                r.errors
            );
        }
    }
    for ((name, _), mut d) in fronts.iter().zip(added) {
        d.sort_by(f64::total_cmp);
        println!("median p50 added by {name}: {:.2} ms", d[d.len() / 2]);
    }
    Ok(())
}
