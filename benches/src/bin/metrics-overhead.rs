//! What `/metrics` costs: two 3-node storaged groups side by side, one with `[metrics]` on
//! and scraped every second (as Prometheus would), one without; LMTP deliveries and an IMAP
//! client mix run against each in turn (`--rounds` pairs, every other pair the other way
//! round), and the median of the per-pair ratios on/off is printed. Also the cost of one counted event, in nanoseconds.
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    micro();
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
    let lmtp = paired_alternating(
        args.rounds,
        || lmtp_run(&on_lmtp, args.senders, args.users, 4096, duration),
        || lmtp_run(&off_lmtp, args.senders, args.users, 4096, duration),
        LmtpStats::per_sec,
    );
    let load = |server: &str| Load {
        server: server.to_string(),
        logins: (0..args.sessions).map(|k| (format!("user{}@example.edu", k % args.users), PASSWORD.into())).collect(),
        duration,
        append_bytes: 4096,
        profile: Profile::Mixed,
    };
    let imap = paired_alternating(
        args.rounds,
        || imap_run(&load(&on_imap)),
        || imap_run(&load(&off_imap)),
        |s| s.commands_per_sec,
    );
    stop.store(true, Ordering::Relaxed);
    scraper.join().expect("scraper");
    println!("| load | on/off ratios per pair | median ratio |");
    println!("|---|---|---|");
    let pairs = |on: Vec<f64>, off: Vec<f64>| {
        on.iter().zip(&off).map(|(a, b)| format!("{:.3}", a / b)).collect::<Vec<_>>().join(", ")
    };
    let (lo, lf): (Vec<f64>, Vec<f64>) =
        (lmtp.ours.iter().map(LmtpStats::per_sec).collect(), lmtp.peer.iter().map(LmtpStats::per_sec).collect());
    println!("| LMTP 4 KiB, {} senders (deliveries/s) | {} | {:.3} |", args.senders, pairs(lo, lf), lmtp.ratio);
    let (io, iff): (Vec<f64>, Vec<f64>) = (
        imap.ours.iter().map(|s| s.commands_per_sec).collect(),
        imap.peer.iter().map(|s| s.commands_per_sec).collect(),
    );
    println!("| IMAP mixed, {} sessions (commands/s) | {} | {:.3} |", args.sessions, pairs(io, iff), imap.ratio);
    let failures = |runs: &[tools::imap_load::LoadStats]| {
        runs.iter().map(|s| format!("{}/{}", s.errors, s.failed_sessions)).collect::<Vec<_>>().join(" ")
    };
    println!("IMAP errors/failed sessions per run: on {} | off {}", failures(&imap.ours), failures(&imap.peer));
    println!("scraped {} KiB of metrics meanwhile", scraped.load(Ordering::Relaxed) / 1024);
    Ok(())
}
