//! What `/metrics` costs. A node keeps its counters whether or not `[metrics]` gives them
//! an endpoint (an increment per event; the cost of one counted event, and of the
//! message-tracking records of one delivery, is measured first, in nanoseconds); what the
//! setting adds is the listener and the scrapes.
//!
//! `--mode alternate` (the default): one 3-node group with `/metrics` on; LMTP deliveries
//! and an IMAP client mix run in `--rounds` pairs of runs, one while the group is scraped
//! every second (as Prometheus would), one while nobody scrapes it, every other pair the
//! other way round; the ratio is the median of the pairs' ratios, of throughput and of the
//! CPU time the group's processes used per operation. The same processes on the same files
//! on both sides of every pair: nothing but the scraping differs.
//!
//! `--mode crossover`: two groups side by side, one with `[metrics]` on and scraped, one
//! without; halfway both are restarted on the same data with the setting swapped, and the
//! geometric mean of the two halves' median ratios cancels what the groups differ by
//! themselves (where their files landed, which one the scheduler favours: 5–25 % here,
//! which this cancels only to about ±5 %).
//!
//! `cargo build --release -p storaged -p benches && target/release/metrics-overhead`

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use benches::lmtp_load::{fill, run as lmtp_run, wait_ready, LmtpStats};
use benches::paired::{paired_alternating, Paired};
use benches::peers::{imap_ready, Node, StoragedGroup, PASSWORD};
use clap::Parser;
use tools::imap_load::{run as imap_run, Load, Profile};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Mode {
    Alternate,
    Crossover,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Alternate)]
    mode: Mode,
    /// An A/A control of `--mode alternate`: neither side is scraped, so the ratios show
    /// what the alternation itself resolves.
    #[arg(long)]
    control: bool,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Pairs of runs per load (per half in a crossover). Even, so that each side runs
    /// first in as many pairs as the other: the run right after another one pays for its
    /// writeback, by up to 15 % here.
    #[arg(long, default_value_t = 8)]
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

/// The median of the per-pair ratios `on[k] / off[k]` (of an even count, the mean of the
/// middle two).
fn median_ratio(on: &[f64], off: &[f64]) -> f64 {
    let mut ratios: Vec<f64> = on.iter().zip(off).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    match ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 0 => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
        n => ratios[n / 2],
    }
}

/// The geometric mean of the two halves' median ratios: a factor by which one group is
/// faster than the other by itself appears once in each direction and cancels.
fn crossover_ratio(halves: &[(Vec<f64>, Vec<f64>); 2]) -> f64 {
    (median_ratio(&halves[0].0, &halves[0].1) * median_ratio(&halves[1].0, &halves[1].1)).sqrt()
}

/// GET /metrics from each of `addrs` every second while `scraping`, until `stop`; the
/// bytes read.
fn scrape(addrs: Vec<String>, scraping: Arc<AtomicBool>, stop: Arc<AtomicBool>, bytes: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        for a in addrs.iter().filter(|_| scraping.load(Ordering::Relaxed)) {
            if let Ok(response) = benches::stages::get(a) {
                bytes.fetch_add(response.len() as u64, Ordering::Relaxed);
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
        tracked::derive("hermes", (u64::from(k) + 1, 0), &op, &resp, None, &mut records);
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

/// One half of the crossover: the figures of each run, metrics on and off.
struct Half {
    lmtp: Paired<(LmtpStats, f64)>,
    imap: Paired<(tools::imap_load::LoadStats, f64)>,
}

/// `rounds` alternating pairs of LMTP runs, then of IMAP runs, against `on` and `off`;
/// `set(true)` is called before every run of the `on` side, `set(false)` before the others.
fn measure_half(args: &Args, on: &[Node], off: &[Node], set: &dyn Fn(bool)) -> anyhow::Result<Half> {
    // The leader is looked up before every run: a group may elect another one meanwhile
    // (the leader's own snapshot build can silence it past its lease), and sessions on a
    // node that no longer leads are told to reconnect.
    let lmtp_of = |nodes: &[Node]| wait_ready(&nodes.iter().map(|n| n.lmtp.clone()).collect::<Vec<_>>());
    let imap_of = |nodes: &[Node]| imap_ready(&nodes.iter().map(|n| n.imap.clone()).collect::<Vec<_>>());
    let lmtp_at = |nodes: &[Node]| lmtp_of(nodes).expect("an LMTP leader");
    let imap_at = |nodes: &[Node]| imap_of(nodes).expect("an IMAP server");
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
        || {
            let at = lmtp_at(on);
            set(true);
            measured(|| cpu(on), || lmtp_run(&at, args.senders, args.users, 4096, duration))
        },
        || {
            let at = lmtp_at(off);
            set(false);
            measured(|| cpu(off), || lmtp_run(&at, args.senders, args.users, 4096, duration))
        },
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
        || {
            let at = imap_at(on);
            set(true);
            measured(|| cpu(on), || imap_run(&load(&at)))
        },
        || {
            let at = imap_at(off);
            set(false);
            measured(|| cpu(off), || imap_run(&load(&at)))
        },
        |(s, _)| s.commands_per_sec,
    );
    Ok(Half { lmtp, imap })
}

/// Print one figure's row: every pair's ratio by half, and the crossover ratio.
fn row<T>(name: &str, halves: &[Paired<T>; 2], figure: impl Fn(&T) -> f64) {
    let runs = |p: &Paired<T>| (p.ours.iter().map(&figure).collect(), p.peer.iter().map(&figure).collect());
    let split: [(Vec<f64>, Vec<f64>); 2] = [runs(&halves[0]), runs(&halves[1])];
    let pairs = |(on, off): &(Vec<f64>, Vec<f64>)| {
        on.iter().zip(off).map(|(a, b)| format!("{:.3}", a / b)).collect::<Vec<_>>().join(", ")
    };
    println!("| {name} | {} | {} | {:.3} |", pairs(&split[0]), pairs(&split[1]), crossover_ratio(&split));
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rounds >= 2 && args.rounds % 2 == 0, "--rounds must be even (each side first as often)");
    micro();
    std::fs::create_dir_all(&args.dir)?;
    tracking_micro(&args.dir)?;
    // Dropped after every process below has been stopped (declared first, dropped last).
    let _scratch = benches::scratch_fs::prepare(&args.dir, args.plain_dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    match args.mode {
        Mode::Alternate => alternate(&args, &dir),
        Mode::Crossover => crossover(&args, &dir),
    }
}

/// A group with `/metrics` on, filled; and a scraper of `groups`' endpoints, scraping
/// while its flag is set, stopped by the other.
struct Scraper {
    scraping: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    scraped: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Scraper {
    fn start(groups: &[&StoragedGroup], scraping: bool) -> Self {
        let metrics: Vec<String> =
            groups.iter().flat_map(|g| g.nodes.iter().filter_map(|n| n.addrs.metrics.clone())).collect();
        let (scraping, stop) = (Arc::new(AtomicBool::new(scraping)), Arc::new(AtomicBool::new(false)));
        let scraped = Arc::new(AtomicU64::new(0));
        let thread = {
            let (scraping, stop, scraped) = (scraping.clone(), stop.clone(), scraped.clone());
            std::thread::spawn(move || scrape(metrics, scraping, stop, scraped))
        };
        Self { scraping, stop, scraped, thread }
    }

    /// Stop; the KiB scraped.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("scraper");
        self.scraped.load(Ordering::Relaxed) / 1024
    }
}

fn start_filled(
    dir: &std::path::Path,
    args: &Args,
    tune: impl Fn(&mut storaged::config::Config),
) -> anyhow::Result<StoragedGroup> {
    std::fs::create_dir_all(dir)?;
    let listeners = clusterkit::storage::Listeners { metrics: true, ..Default::default() };
    let g = StoragedGroup::start(dir, args.users, listeners, tune)?;
    fill(&wait_ready(&g.nodes.iter().map(|n| n.lmtp.clone()).collect::<Vec<_>>())?, args.users, 100, 4096)?;
    Ok(g)
}

/// One group, scraped in every other run.
fn alternate(args: &Args, dir: &std::path::Path) -> anyhow::Result<()> {
    let group = start_filled(&dir.join("a"), args, |_| {}).context("group a")?;
    let scraper = Scraper::start(&[&group], false);
    let set = |on: bool| scraper.scraping.store(on && !args.control, Ordering::Relaxed);
    if args.control {
        println!("A/A control: neither side is scraped");
    }
    let runs = measure_half(args, &group.nodes, &group.nodes, &set)?;
    println!("| load | scraped/not per pair | median |");
    println!("|---|---|---|");
    let row = |name: &str, p: &dyn Fn(usize) -> (f64, f64), n: usize| {
        let ratios: Vec<f64> = (0..n).map(|k| p(k).0 / p(k).1).collect();
        let (on, off): (Vec<f64>, Vec<f64>) = (0..n).map(p).unzip();
        let shown = ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ");
        println!("| {name} | {shown} | {:.3} |", median_ratio(&on, &off));
    };
    let (l, i) = (&runs.lmtp, &runs.imap);
    row(
        &format!("LMTP 4 KiB, {} senders (deliveries/s)", args.senders),
        &|k| (l.ours[k].0.per_sec(), l.peer[k].0.per_sec()),
        l.ours.len(),
    );
    let per_delivery = |(s, c): &(LmtpStats, f64)| c / s.delivered.max(1) as f64;
    row("LMTP CPU per delivery", &|k| (per_delivery(&l.ours[k]), per_delivery(&l.peer[k])), l.ours.len());
    let name = format!("IMAP {:?}, {} sessions (commands/s)", args.imap_profile, args.sessions);
    row(&name, &|k| (i.ours[k].0.commands_per_sec, i.peer[k].0.commands_per_sec), i.ours.len());
    let per_command = |(s, c): &(tools::imap_load::LoadStats, f64)| c / s.commands.max(1) as f64;
    row("IMAP CPU per command", &|k| (per_command(&i.ours[k]), per_command(&i.peer[k])), i.ours.len());
    let errors = |runs: &[(tools::imap_load::LoadStats, f64)]| {
        runs.iter().map(|(s, _)| s.errors + s.failed_sessions).sum::<u64>()
    };
    println!("IMAP errors and failed sessions: scraped {} | not {}", errors(&i.ours), errors(&i.peer));
    println!("scraped {} KiB of metrics meanwhile", scraper.finish());
    Ok(())
}

/// Two groups, the setting swapped halfway.
fn crossover(args: &Args, dir: &std::path::Path) -> anyhow::Result<()> {
    // Every node of both groups has a metrics address; `off` takes it away.
    let on = |_: &mut storaged::config::Config| {};
    let off = |c: &mut storaged::config::Config| c.metrics.listen = None;
    let mut a = start_filled(&dir.join("a"), args, on).context("group a")?;
    let mut b = start_filled(&dir.join("b"), args, off).context("group b")?;
    let scraper = Scraper::start(&[&a, &b], true);
    let first = measure_half(args, &a.nodes, &b.nodes, &|_| {})?;
    a.restart(off).context("restarting group a")?;
    b.restart(on).context("restarting group b")?;
    let second = measure_half(args, &b.nodes, &a.nodes, &|_| {})?;
    report(args, [first, second]);
    println!("scraped {} KiB of metrics meanwhile", scraper.finish());
    Ok(())
}

fn report(args: &Args, [first, second]: [Half; 2]) {
    println!("| load | on/off per pair, a on | on/off per pair, b on | crossover ratio |");
    println!("|---|---|---|---|");
    let lmtp = [first.lmtp, second.lmtp];
    row(&format!("LMTP 4 KiB, {} senders (deliveries/s)", args.senders), &lmtp, |(s, _)| s.per_sec());
    row("LMTP CPU per delivery", &lmtp, |(s, c)| c / s.delivered.max(1) as f64);
    let imap = [first.imap, second.imap];
    row(&format!("IMAP {:?}, {} sessions (commands/s)", args.imap_profile, args.sessions), &imap, |(s, _)| {
        s.commands_per_sec
    });
    row("IMAP CPU per command", &imap, |(s, c)| c / s.commands.max(1) as f64);
    let failures = |runs: &[(tools::imap_load::LoadStats, f64)]| {
        runs.iter().map(|(s, _)| format!("{}/{}", s.errors, s.failed_sessions)).collect::<Vec<_>>().join(" ")
    };
    for (k, half) in imap.iter().enumerate() {
        println!(
            "IMAP errors/failed sessions per run, half {}: on {} | off {}",
            k + 1,
            failures(&half.ours),
            failures(&half.peer)
        );
    }
}
