//! One Python imaplib session through frontd vs. the same against Dovecot 2.3, paired in
//! one run: APPEND and STORE p50/p99 (issue 26's first acceptance point: ours ≤ Dovecot's).
//! imaplib writes an APPEND's literal and its CRLF in two writes with Nagle on, so this is
//! also the regression check for the delayed-ACK stall (`common::tcp::quick_ack`).
//!
//! `cargo build --release -p storaged -p frontd -p benches && target/release/append-bench`

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use benches::front::FrontCluster;
use benches::paired::paired;
use benches::peers::{start_dovecot, PASSWORD};
use benches::procs::Procs;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// APPENDs (then as many STOREs) per run.
    #[arg(long, default_value_t = 200)]
    commands: usize,
    #[arg(long, default_value_t = 3000)]
    message_bytes: usize,
    #[arg(long, default_value = "target/bench-append")]
    dir: PathBuf,
}

/// The figures of one run.
#[derive(Debug)]
struct Latency {
    append_p50_ms: f64,
    append_p99_ms: f64,
    store_p50_ms: f64,
    store_p99_ms: f64,
}

fn session(script: &std::path::Path, addr: &str, args: &Args) -> anyhow::Result<Latency> {
    let (host, port) = addr.rsplit_once(':').context("an address host:port")?;
    let out = Command::new("python3")
        .arg(script)
        .args([host, port, "user0@example.edu", PASSWORD])
        .args([args.commands.to_string(), args.message_bytes.to_string()])
        .output()?;
    if !out.status.success() {
        bail!("imaplib against {addr}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    let [append_p50_ms, append_p99_ms, store_p50_ms, store_p99_ms] = v[..] else {
        bail!("imaplib against {addr} printed {text:?}");
    };
    Ok(Latency { append_p50_ms, append_p99_ms, store_p50_ms, store_p99_ms })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(args.dir.join("dovecot"))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let script = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).map(|d| d.join("py/imaplib_latency.py"))?;
    let mut procs = Procs::default();
    let cluster = FrontCluster::start(&dir, 1, (1, 10, args.message_bytes), &mut procs)?;
    let dovecot = start_dovecot(&dir.join("dovecot"), &mut procs)?;
    benches::lmtp_load::fill_any(std::slice::from_ref(&dovecot.lmtp), 1, 10, args.message_bytes)?;
    benches::front::wait_ready(&dovecot.imap)?;
    let watch = benches::stages::Watch::start(&cluster.nodes);
    let runs = paired(
        args.rounds,
        || session(&script, &cluster.front_imap, &args),
        || session(&script, &dovecot.imap, &args),
        |r| r.as_ref().map_or(f64::NAN, |l| 1.0 / l.append_p50_ms),
    );
    let ours: Vec<Latency> = runs.ours.into_iter().collect::<anyhow::Result<_>>()?;
    let peer: Vec<Latency> = runs.peer.into_iter().collect::<anyhow::Result<_>>()?;
    let m = |v: &[Latency], f: fn(&Latency) -> f64| median(v.iter().map(f).collect());
    println!(
        "imaplib, 1 session, {} B messages, {} commands × {} rounds (medians of the runs):",
        args.message_bytes, args.commands, args.rounds
    );
    println!("| command | ours via frontd p50/p99 ms | Dovecot p50/p99 ms | p50 ratio ours/Dovecot |");
    println!("|---|---|---|---|");
    type Pick = fn(&Latency) -> f64;
    let rows: [(&str, Pick, Pick); 2] =
        [("APPEND", |l| l.append_p50_ms, |l| l.append_p99_ms), ("STORE", |l| l.store_p50_ms, |l| l.store_p99_ms)];
    for (name, p50, p99) in rows {
        let ratios: Vec<f64> = ours.iter().zip(&peer).map(|(o, p)| p50(o) / p50(p)).collect();
        println!(
            "| {name} | {:.2}/{:.2} | {:.2}/{:.2} | {:.2} |",
            m(&ours, p50),
            m(&ours, p99),
            m(&peer, p50),
            m(&peer, p99),
            median(ratios)
        );
    }
    println!("\nours, mean per stage on the leader over every run: {}", watch.finish());
    drop(cluster);
    Ok(())
}
