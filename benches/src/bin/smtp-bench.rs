//! SMTP delivery to local users: our full path (frontd → LMTP → a 3-replica storaged group;
//! `250` after the group committed) vs Postfix → Dovecot LMTP (one copy; Postfix's `250`
//! after its own queue file is fsync'd, delivery to Dovecot after that), same machine, same
//! message size, paired runs.
//!
//! `cargo build --release -p storaged -p frontd -p benches && target/release/smtp-bench`
//!
//! Two load generators: our closed-loop SMTP sender (`--sessions` connections, messages/s
//! and per-message p50/p99 from MAIL to the final 250) and Postfix's `smtp-source`
//! (`-s sessions -m messages -l size`, timed by wall clock).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benches::lmtp_load::{run_as, Dialect, LmtpStats};
use benches::paired::{median_by, paired};
use benches::peers::{frontd_binary, spawn_frontd, start_dovecot, start_postfix_with, start_storaged};
use benches::procs::{free_port, Procs};
use clap::Parser;
use clusterkit::front;
use frontd::config::{BackendSection, DirectorySection};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    #[arg(long, default_value_t = 4096)]
    message_bytes: usize,
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// Messages per smtp-source run (0: skip smtp-source).
    #[arg(long, default_value_t = 2000)]
    source_messages: usize,
    #[arg(long, default_value = "target/bench-smtp")]
    dir: PathBuf,
    /// Both sides scan every message with the same clamd and rspamd: ours through its
    /// scanning stage, Postfix through rspamd's milter and clamav-milter.
    #[arg(long)]
    scan: bool,
}

fn wait_smtp(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = run_as(addr, Dialect::Smtp, 1, 1, 512, Duration::from_millis(200));
        if s.delivered > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} never accepted a message");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Wall-clock messages/s of smtp-source sending `messages` over `sessions` connections
/// (one per message) to `users` recipients: one smtp-source per user, all at once, each with
/// its share of the sessions and messages (one user is smtp-source's own shape: every
/// message to `user0`).
fn smtp_source(addr: &str, sessions: usize, messages: usize, size: usize, users: usize) -> anyhow::Result<f64> {
    let users = users.clamp(1, sessions.max(1));
    let start = Instant::now();
    let runs: Vec<_> = (0..users)
        .map(|k| {
            let (s, m) = (sessions / users, messages / users);
            Command::new("smtp-source")
                .args(["-s", &s.to_string(), "-m", &m.to_string(), "-l", &size.to_string()])
                .args(["-f", "bench@example.org", "-t", &format!("user{k}@example.edu"), addr])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("smtp-source (postfix)")
        })
        .collect::<anyhow::Result<_>>()?;
    for run in runs {
        let out = run.wait_with_output()?;
        if !out.status.success() || !out.stderr.is_empty() {
            bail!("smtp-source against {addr}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let messages = messages / users * users;
    Ok(messages as f64 / start.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let frontd = frontd_binary()?;
    let mut procs = Procs::default();
    let scanners = if args.scan {
        let d = dir.join("scanners");
        std::fs::create_dir_all(&d)?;
        Some(benches::scanners::start(&d, 32 << 20, &mut procs).context("starting clamd, rspamd, clamav-milter")?)
    } else {
        None
    };

    // Ours: three storaged nodes and frontd with an LDIF directory.
    let ours_dir = dir.join("ours");
    std::fs::create_dir_all(&ours_dir)?;
    let nodes = start_storaged(&ours_dir, args.users, &mut procs).context("starting storaged")?;
    let ldif: String = (0..args.users)
        .map(|u| {
            format!("dn: uid=user{u},dc=example,dc=edu\nobjectClass: qmailUser\nmail: user{u}@example.edu\nmailHost: bench\n\n")
        })
        .collect();
    std::fs::write(ours_dir.join("users.ldif"), ldif)?;
    let front_smtp = format!("127.0.0.1:{}", free_port());
    std::fs::write(ours_dir.join("cluster.key"), benches::peers::CLUSTER_SECRET)?;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addrs.clone()).collect();
    let mut backend = BackendSection::new("frontd");
    backend.proxy_password = Some("unused".into());
    backend.cluster_key_file = Some("cluster.key".into());
    let mut cfg =
        frontd::config::Config::new(DirectorySection::ldif("users.ldif"), backend, front::groups(&["bench"], &addrs));
    cfg.listen.smtp = Some(front_smtp.clone());
    cfg.limits.connections_max = 4096;
    cfg.smtp.local_domains = vec!["example.edu".into()];
    if let Some(s) = &scanners {
        cfg.scan.clamd = Some(s.clamd_socket.clone());
        cfg.scan.rspamd = Some(s.rspamd.clone());
    }
    front::write(&ours_dir.join("frontd.toml"), &cfg)?;
    procs.0.push(spawn_frontd(&frontd, &ours_dir)?);

    // The peer: Postfix in front of Dovecot.
    let dv_dir = dir.join("dovecot");
    std::fs::create_dir_all(&dv_dir)?;
    let dovecot = start_dovecot(&dv_dir, &mut procs).context("starting dovecot")?;
    let pf_dir = dir.join("postfix");
    std::fs::create_dir_all(&pf_dir)?;
    let milters = scanners.as_ref().map_or(String::new(), |s| {
        format!(
            "smtpd_milters = inet:{}, inet:{}\nmilter_default_action = tempfail\nmilter_protocol = 6\n",
            s.rspamd_milter, s.clamav_milter
        )
    });
    let postfix = start_postfix_with(&pf_dir, &dovecot.lmtp, &milters, &mut procs).context("starting postfix")?;

    wait_smtp(&front_smtp)?;
    wait_smtp(&postfix.smtp)?;
    let secs = Duration::from_secs_f64(args.seconds);
    let (n, users, size) = (args.sessions, args.users, args.message_bytes);
    let watch = benches::stages::Watch::start(&nodes);
    let runs = paired(
        args.rounds,
        || run_as(&front_smtp, Dialect::Smtp, n, users, size, secs),
        || run_as(&postfix.smtp, Dialect::Smtp, n, users, size, secs),
        LmtpStats::per_sec,
    );
    let ratio = runs.ratio;
    let errors = (runs.ours.iter().map(|s| s.errors).sum::<u64>(), runs.peer.iter().map(|s| s.errors).sum::<u64>());
    let (o, p) = (median_by(runs.ours, LmtpStats::per_sec), median_by(runs.peer, LmtpStats::per_sec));
    let scanning = if args.scan { ", both scanning with clamd + rspamd" } else { "" };
    println!(
        "closed-loop SMTP, {n} sessions, {size}-byte messages, {} s x {} rounds{scanning}:",
        args.seconds, args.rounds
    );
    println!("| ours msg/s | Postfix+Dovecot msg/s | ratio | ours p50/p99 ms | peer p50/p99 ms | errors ours/peer |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {:.0} | {:.2} | {:.2}/{:.1} | {:.2}/{:.1} | {}/{} |",
        o.per_sec(),
        p.per_sec(),
        ratio,
        o.p50_us as f64 / 1000.0,
        o.p99_us as f64 / 1000.0,
        p.p50_us as f64 / 1000.0,
        p.p99_us as f64 / 1000.0,
        errors.0,
        errors.1
    );
    println!("\nours, mean per stage on the leader over every run: {}", watch.finish());
    if args.source_messages > 0 {
        let m = args.source_messages;
        for users in [1, args.users] {
            let ours = smtp_source(&front_smtp, n, m, size, users)?;
            let peer = smtp_source(&postfix.smtp, n, m, size, users)?;
            println!(
                "\nsmtp-source -s {n} -m {m} -l {size}, {users} recipient(s): ours {ours:.0} msg/s, Postfix+Dovecot {peer:.0} msg/s, ratio {:.2}",
                ours / peer
            );
        }
    }
    Ok(())
}
