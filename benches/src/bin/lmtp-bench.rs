//! LMTP delivery: our 3-replica storaged group vs. Dovecot's LMTP (one copy, default fsync
//! settings), side by side on this machine.
//!
//! `cargo build --release -p storaged -p benches && target/release/lmtp-bench`
//!
//! Starts three real `storaged` processes (one Raft group) and a real Dovecot, then runs
//! `--senders` closed-loop LMTP senders against each in turn (`--rounds` pairs per size) and
//! prints deliveries/s, p50/p99 latency and the median of the per-pair ratios ours/Dovecot.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use benches::lmtp_load::{run, wait_ready, LmtpStats};
use benches::paired::{median_by, paired};
use benches::peers::{start_dovecot_with, start_storaged};
use benches::procs::Procs;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 32)]
    senders: usize,
    #[arg(long, default_value_t = 50)]
    users: usize,
    #[arg(long, value_delimiter = ',', default_values_t = vec![4096usize, 65536])]
    sizes: Vec<usize>,
    #[arg(long, default_value = "target/bench-lmtp")]
    dir: PathBuf,
    /// Run in `dir` as it is instead of on a fresh scratch filesystem mounted there.
    #[arg(long)]
    plain_dir: bool,
    /// Every user has a 30-rule Sieve script active (`benches::sieve_rules`), on both sides.
    #[arg(long)]
    sieve: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Dropped after every process below has been stopped (declared first, dropped last).
    let sides = benches::scratch_fs::sides(&args.dir, args.plain_dir, "dovecot")?;
    let (ours_dir, dv_dir) = (&sides.ours, &sides.peer);
    let mut procs = Procs::default();
    let nodes = start_storaged(ours_dir, args.users, &mut procs).context("starting storaged")?;
    let lmtp: Vec<String> = nodes.iter().map(|n| n.lmtp.clone()).collect();
    let extra = if args.sieve { benches::sieve_rules::DOVECOT_SIEVE } else { "" };
    let dovecot = start_dovecot_with(dv_dir, extra, &mut procs).context("starting dovecot")?.lmtp;
    if args.sieve {
        for u in 0..args.users {
            let user = format!("user{u}@example.edu");
            for n in 1..=nodes.len() {
                benches::sieve_rules::install(&ours_dir.join(format!("data{n}/bench/mail/users/{user}")), None)?;
            }
            benches::sieve_rules::install(&dv_dir.join("mail").join(&user), Some("mail:mail"))?;
        }
    }
    let leader = wait_ready(&lmtp)?;
    wait_ready(std::slice::from_ref(&dovecot))?;
    let duration = Duration::from_secs_f64(args.seconds);
    if args.sieve {
        println!("each user's 30-rule Sieve script active on both sides");
    }
    println!("| message | senders | ours deliveries/s | Dovecot deliveries/s | ratio | ours p50/p99 ms | Dovecot p50/p99 ms | errors ours/Dovecot |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut stages = Vec::new();
    for &size in &args.sizes {
        let watch = benches::stages::Watch::start(&nodes);
        let runs = paired(
            args.rounds,
            || run(&leader, args.senders, args.users, size, duration),
            || run(&dovecot, args.senders, args.users, size, duration),
            LmtpStats::per_sec,
        );
        stages.push((size, watch.finish()));
        let ratio = runs.ratio;
        let errs = (runs.ours.iter().map(|s| s.errors).sum::<u64>(), runs.peer.iter().map(|s| s.errors).sum::<u64>());
        let (o, p) = (median_by(runs.ours, LmtpStats::per_sec), median_by(runs.peer, LmtpStats::per_sec));
        println!(
            "| {} KiB | {} | {:.0} | {:.0} | {:.2} | {:.1}/{:.1} | {:.1}/{:.1} | {}/{} |",
            size / 1024,
            args.senders,
            o.per_sec(),
            p.per_sec(),
            ratio,
            o.p50_us as f64 / 1000.0,
            o.p99_us as f64 / 1000.0,
            p.p50_us as f64 / 1000.0,
            p.p99_us as f64 / 1000.0,
            errs.0,
            errs.1
        );
    }
    println!("\nours, mean per stage on the leader over every run:");
    for (size, line) in stages {
        println!("  {} KiB: {line}", size / 1024);
    }
    Ok(())
}
