//! What `/metrics` costs: two 3-node storaged groups side by side, one with `[metrics]` on
//! and scraped every second (as Prometheus would), one without; LMTP deliveries and an IMAP
//! client mix run against each in turn (`--rounds` pairs, every other pair the other way
//! round), and the median of the per-pair ratios on/off is printed, of throughput and of the
//! CPU time the group's processes used per operation. Also the cost of one counted event,
//! and of the message-tracking records of one delivery, in nanoseconds.
//!
//! `cargo build --release -p storaged -p benches && target/release/metrics-overhead`

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use benches::lmtp_load::{fill, run as lmtp_run, wait_ready, LmtpStats};
use benches::paired::paired_alternating;
use benches::peers::{imap_ready, start_storaged_with, Node, PASSWORD};
use benches::procs::Procs;
use clap::Parser;
use tools::imap_load::{run as imap_run, Load, Profile};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    #[arg(long, default_value_t = 32)]
    senders: usize,
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    #[arg(long, default_value_t = 50)]
    users: usize,
    #[arg(long, default_value = "target/bench-metrics")]
    dir: PathBuf,
    /// Run in `dir` as it is instead of on a fresh scratch filesystem mounted there.
    #[arg(long)]
    plain_dir: bool,
    /// The IMAP command mix: `mixed` writes (each run changes the mailboxes the next one
    /// reads, and its checkpoints land in the next run), `sort-thread` only reads, so its
    /// runs are alike and the A/B resolves small differences.
    #[arg(long, value_enum, default_value_t = Profile::Mixed)]
    imap_profile: Profile,
}

/// The median of the per-pair ratios `on[k] / off[k]`.
fn median_ratio(on: Vec<f64>, off: Vec<f64>) -> f64 {
    let mut ratios: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN)
}

/// GET /metrics from each of `addrs` every second until `stop`; the bytes read.
fn scrape(addrs: Vec<String>, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) {
    use std::io::{Read, Write};
    while !stop.load(Ordering::Relaxed) {
        for a in &addrs {
            if let Ok(mut s) = std::net::TcpStream::connect(a) {
                let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut body = Vec::new();
                let _ = s.read_to_end(&mut body);
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Nanoseconds per call of `f`, over `n` calls.
fn ns_per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let started = Instant::now();
    for k in 0..n {
        f(k);
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

fn micro() {
    let m = storaged::metrics::NodeMetrics::default();
    let lines = [&b"a1 UID FETCH 1:* (FLAGS)\r\n"[..], b"a2 SELECT INBOX\r\n", b"a3 NOOP\r\n"];
    let lmtp = ns_per_call(1_000_000, |k| {
        m.lmtp_recipient("250 2.0.0 <a@x> delivered", 4096, Duration::from_micros(u64::from(k % 5000)))
    });
    let imap = ns_per_call(1_000_000, |k| {
        m.imap_command(lines[k as usize % 3], b"a1 OK done\r\n", Duration::from_micros(u64::from(k % 900)))
    });
    println!("per event: LMTP recipient {lmtp:.0} ns, IMAP command {imap:.0} ns (one thread, no contention)");
}

/// What message tracking adds to applying one delivery: reading the header's facts,
/// building the records and appending them to the day file (page cache; synced at the
/// checkpoint like the store).
fn tracking_micro(dir: &std::path::Path) -> anyhow::Result<()> {
    use storaged::mailstore::{tracked, MailOp, MailResponse};
    let mut header = String::from("Return-Path: <ann@example.org>\r\nReceived: from client.example ([192.0.2.7])\r\n\t(using TLSv1.3)\r\n\tby front1.example.edu (frontd) with ESMTPS id 0123456789abcdef;\r\n\tSun, 6 Dec 2026 20:00:00 +0000\r\n");
    for k in 0..12 {
        header.push_str(&format!("X-Header-{k}: a typical header field of a message from a mailing list\r\n"));
    }
    header.push_str("Message-ID: <0123456789@example.org>\r\nSubject: tracking cost\r\n\r\n");
    let mut message = header.into_bytes();
    message.resize(4096, b'x');
    let tracking_dir = dir.join("tracking-micro");
    let _ = std::fs::remove_dir_all(&tracking_dir);
    let mut tracker = storaged::tracking::Tracker::open(tracking_dir.clone(), Default::default())?;
    let resp = MailResponse::Delivered(vec![Ok((1, 1))]);
    let mut failed = None;
    let ns = ns_per_call(200_000, |k| {
        let op = MailOp::Deliver {
            recipients: vec!["alice@example.edu".into()],
            internal_date: 1_796_515_200,
            message: message.clone(),
        };
        let mut records = Vec::new();
        tracked::derive("hermes", u64::from(k) + 1, &op, &resp, None, &mut records);
        if let Err(e) = tracker.append(&records) {
            failed = Some(e);
        }
    });
    let copy_ns = ns_per_call(200_000, |_| {
        std::hint::black_box(message.clone());
    });
    let _ = std::fs::remove_dir_all(&tracking_dir);
    if let Some(e) = failed {
        anyhow::bail!("tracking append: {e}");
    }
    println!("per delivery: message tracking {:.0} ns (one recipient, 4 KiB message; the message copy of the bench loop, {copy_ns:.0} ns, included)", ns);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    micro();
    std::fs::create_dir_all(&args.dir)?;
    tracking_micro(&args.dir)?;
    // Dropped after every process below has been stopped (declared first, dropped last).
    let _scratch = benches::scratch_fs::prepare(&args.dir, args.plain_dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let mut procs = Procs::default();
    let (on_dir, off_dir) = (dir.join("on"), dir.join("off"));
    std::fs::create_dir_all(&on_dir)?;
    std::fs::create_dir_all(&off_dir)?;
    let metrics: Vec<String> = (0..3).map(|_| common::testing::free_addr()).collect();
    let next = std::sync::Mutex::new(metrics.clone().into_iter());
    let tune_on = |c: &mut storaged::config::Config| c.metrics.listen = next.lock().unwrap().next();
    let on = start_storaged_with(&on_dir, args.users, tune_on, &mut procs).context("storaged with metrics")?;
    let off = start_storaged_with(&off_dir, args.users, |_| {}, &mut procs).context("storaged without")?;
    let lmtp_of = |nodes: &[Node]| wait_ready(&nodes.iter().map(|n| n.lmtp.clone()).collect::<Vec<_>>());
    let (on_lmtp, off_lmtp) = (lmtp_of(&on)?, lmtp_of(&off)?);
    for lmtp in [&on_lmtp, &off_lmtp] {
        fill(lmtp, args.users, 100, 4096)?;
    }
    let imap = |nodes: &[Node]| imap_ready(&nodes.iter().map(|n| n.imap.clone()).collect::<Vec<_>>());
    let (on_imap, off_imap) = (imap(&on)?, imap(&off)?);
    let (stop, scraped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let scraper = {
        let (stop, scraped) = (stop.clone(), scraped.clone());
        std::thread::spawn(move || scrape(metrics, stop, scraped))
    };
    let duration = Duration::from_secs_f64(args.seconds);
    // Each run also measures the CPU its group's three processes used: CPU per operation
    // does not depend on how the two cores were shared, as throughput does.
    let cpu = |nodes: &[Node]| nodes.iter().map(|n| benches::procs::cpu_seconds(n.pid)).sum::<f64>();
    fn measured<T>(cpu: impl Fn() -> f64, run: impl FnOnce() -> T) -> (T, f64) {
        let before = cpu();
        let out = run();
        (out, cpu() - before)
    }
    let lmtp = paired_alternating(
        args.rounds,
        || measured(|| cpu(&on), || lmtp_run(&on_lmtp, args.senders, args.users, 4096, duration)),
        || measured(|| cpu(&off), || lmtp_run(&off_lmtp, args.senders, args.users, 4096, duration)),
        |(s, _)| s.per_sec(),
    );
    let load = |server: &str| Load {
        server: server.to_string(),
        logins: (0..args.sessions).map(|k| (format!("user{}@example.edu", k % args.users), PASSWORD.into())).collect(),
        duration,
        append_bytes: 4096,
        profile: args.imap_profile,
    };
    let imap = paired_alternating(
        args.rounds,
        || measured(|| cpu(&on), || imap_run(&load(&on_imap))),
        || measured(|| cpu(&off), || imap_run(&load(&off_imap))),
        |(s, _)| s.commands_per_sec,
    );
    stop.store(true, Ordering::Relaxed);
    scraper.join().expect("scraper");
    println!("| load | on/off ratios per pair | median ratio |");
    println!("|---|---|---|");
    let pairs = |on: Vec<f64>, off: Vec<f64>| {
        on.iter().zip(&off).map(|(a, b)| format!("{:.3}", a / b)).collect::<Vec<_>>().join(", ")
    };
    let (lmtp_on, lmtp_off) = (&lmtp.ours, &lmtp.peer);
    let rates = |runs: &[(LmtpStats, f64)]| runs.iter().map(|(s, _)| s.per_sec()).collect::<Vec<_>>();
    println!(
        "| LMTP 4 KiB, {} senders (deliveries/s) | {} | {:.3} |",
        args.senders,
        pairs(rates(lmtp_on), rates(lmtp_off)),
        lmtp.ratio
    );
    let lmtp_cpu = |runs: &[(LmtpStats, f64)]| runs.iter().map(|(s, c)| c / s.delivered.max(1) as f64).collect();
    println!(
        "| LMTP CPU per delivery, on/off | {} | {:.3} |",
        pairs(lmtp_cpu(lmtp_on), lmtp_cpu(lmtp_off)),
        median_ratio(lmtp_cpu(lmtp_on), lmtp_cpu(lmtp_off))
    );
    let (imap_on, imap_off) = (&imap.ours, &imap.peer);
    let rates = |runs: &[(tools::imap_load::LoadStats, f64)]| runs.iter().map(|(s, _)| s.commands_per_sec).collect();
    println!(
        "| IMAP {:?}, {} sessions (commands/s) | {} | {:.3} |",
        args.imap_profile,
        args.sessions,
        pairs(rates(imap_on), rates(imap_off)),
        imap.ratio
    );
    let imap_cpu =
        |runs: &[(tools::imap_load::LoadStats, f64)]| runs.iter().map(|(s, c)| c / s.commands.max(1) as f64).collect();
    println!(
        "| IMAP CPU per command, on/off | {} | {:.3} |",
        pairs(imap_cpu(imap_on), imap_cpu(imap_off)),
        median_ratio(imap_cpu(imap_on), imap_cpu(imap_off))
    );
    let failures = |runs: &[(tools::imap_load::LoadStats, f64)]| {
        runs.iter().map(|(s, _)| format!("{}/{}", s.errors, s.failed_sessions)).collect::<Vec<_>>().join(" ")
    };
    println!("IMAP errors/failed sessions per run: on {} | off {}", failures(imap_on), failures(imap_off));
    println!("scraped {} KiB of metrics meanwhile", scraped.load(Ordering::Relaxed) / 1024);
    Ok(())
}
