//! raftlog vs. the raw io_uring + fdatasync baseline, side by side.
//!
//! `cargo run --release -p benches --bin raftlog-bench -- --seconds 3`
//!
//! For every entry size and appender count, runs our log and the raw baseline alternately,
//! `--rounds` pairs of runs, and prints the median durable entries/s and p50/p99 latency of
//! each, and the median of the per-pair ours/raw ratios (pairing cancels the slow drifts of
//! a shared disk better than dividing two medians).

use std::time::Duration;

use benches::closed_loop::{run, RunStats};
use benches::raw_log::RawLog;
use benches::sinks::RaftlogSink;
use clap::Parser;
use raftlog::{Log, Options};

#[derive(Parser, Debug)]
struct Args {
    /// Seconds per measured run.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Alternating ours/raw pairs of runs per case.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Entry sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1024usize, 65536])]
    sizes: Vec<usize>,
    /// Concurrent appender counts.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 16, 64])]
    appenders: Vec<usize>,
    /// Directory for the files (on the disk under test).
    #[arg(long, default_value = "target/bench-raftlog")]
    dir: std::path::PathBuf,
}

fn median(mut runs: Vec<RunStats>) -> RunStats {
    runs.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    runs.swap_remove(runs.len() / 2)
}

fn median_ratio(ours: &[RunStats], raw: &[RunStats]) -> f64 {
    let mut r: Vec<f64> = ours.iter().zip(raw).map(|(o, w)| o.per_sec() / w.per_sec()).collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.seconds);
    std::fs::create_dir_all(&args.dir)?;
    println!("| entry | appenders | raftlog entries/s | raw entries/s | ratio | raftlog p50/p99 µs | raw p50/p99 µs |");
    println!("|---|---|---|---|---|---|---|");
    for &size in &args.sizes {
        for &appenders in &args.appenders {
            let mut ours = Vec::new();
            let mut raw = Vec::new();
            for round in 0..args.rounds {
                let log_dir = args.dir.join(format!("log-{size}-{appenders}-{round}"));
                let _ = std::fs::remove_dir_all(&log_dir);
                let log = Log::open(&log_dir, Options::default())?;
                let keep = ((64u64 << 20) / size as u64).max(1024);
                ours.push(run(Box::new(RaftlogSink::new(log, keep, size)), appenders, size, duration));
                std::fs::remove_dir_all(&log_dir)?;

                let raw_path = args.dir.join("raw.bin");
                let sink = RawLog::create(&raw_path, 256 << 20)?;
                raw.push(run(Box::new(sink), appenders, size, duration));
                std::fs::remove_file(&raw_path)?;
            }
            let ratio = median_ratio(&ours, &raw);
            let (o, r) = (median(ours), median(raw));
            println!(
                "| {} KiB | {appenders} | {:.0} | {:.0} | {:.2} | {}/{} | {}/{} |",
                size / 1024,
                o.per_sec(),
                r.per_sec(),
                ratio,
                o.p50_us,
                o.p99_us,
                r.p50_us,
                r.p99_us
            );
        }
    }
    Ok(())
}
