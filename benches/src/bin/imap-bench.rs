//! IMAP: our 3-replica storaged group vs. Dovecot (one copy) on the same machine, same
//! users and mailbox contents; then memory per idle IDLE connection for both.
//!
//! `cargo build --release -p storaged -p benches && target/release/imap-bench`
//!
//! Fills every user's INBOX through each server's own LMTP, runs `tools::imap_load` (a
//! weighted mix of SELECT, FETCH headers/bodies, SEARCH, STORE, APPEND, EXPUNGE) with
//! `--sessions` closed-loop sessions against each in turn (`--rounds` pairs), and prints
//! commands/s, p50/p99 and the median ratio ours/Dovecot. Then it opens `--idle`
//! connections that LOGIN, SELECT and IDLE, and reports the growth of the servers' memory
//! (PSS: storaged's leader process; Dovecot's master and all its children) per connection.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use benches::lmtp_load::fill_any;
use benches::paired::{median_by, paired};
use benches::peers::{imap_ready, start_dovecot, start_storaged, PASSWORD};
use benches::procs::{pss_kib, tree_pss_kib, Procs};
use clap::Parser;
use tools::imap_load::{idle_connections, run, Load, LoadStats, Profile};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Messages per user before the run.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    #[arg(long, default_value_t = 4096)]
    message_bytes: usize,
    /// The command mix: `mixed` (a mail client's day) or `sort-thread` (a webmail's listing).
    #[arg(long, value_enum, default_value_t = Profile::Mixed)]
    profile: Profile,
    /// Idle connections for the memory figure (0: skip).
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    #[arg(long, default_value = "target/bench-imap")]
    dir: PathBuf,
    /// Run in `dir` as it is instead of on a fresh scratch filesystem mounted there.
    #[arg(long)]
    plain_dir: bool,
}

fn logins(n: usize, users: usize) -> Vec<(String, String)> {
    (0..n).map(|k| (format!("user{}@example.edu", k % users), PASSWORD.to_string())).collect()
}

fn idle_kib_per_conn(server: &str, users: usize, n: usize, measure: impl Fn() -> u64) -> (usize, f64) {
    let before = measure();
    let (clients, ready) = idle_connections(server, &logins(n, users));
    std::thread::sleep(Duration::from_secs(2));
    let after = measure();
    drop(clients);
    (ready, (after.saturating_sub(before)) as f64 / ready.max(1) as f64)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::daemon::raise_open_file_limit();
    // Dropped after every process below has been stopped (declared first, dropped last).
    let _scratch = benches::scratch_fs::prepare(&args.dir, args.plain_dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let users = args.sessions;
    let mut procs = Procs::default();
    let ours_dir = dir.join("storaged");
    std::fs::create_dir_all(&ours_dir)?;
    let nodes = start_storaged(&ours_dir, users, &mut procs).context("starting storaged")?;
    let dv_dir = dir.join("dovecot");
    std::fs::create_dir_all(&dv_dir)?;
    let dovecot = start_dovecot(&dv_dir, &mut procs).context("starting dovecot")?;

    let lmtp: Vec<String> = nodes.iter().map(|n| n.lmtp.clone()).collect();
    eprintln!("filling {users} mailboxes with {} messages each on both servers", args.messages);
    fill_any(&lmtp, users, args.messages, args.message_bytes)?;
    fill_any(std::slice::from_ref(&dovecot.lmtp), users, args.messages, args.message_bytes)?;
    let imap: Vec<String> = nodes.iter().map(|n| n.imap.clone()).collect();
    let ours = imap_ready(&imap)?;
    let leader_pid = nodes.iter().find(|n| n.imap == ours).map(|n| n.pid).expect("leader node");
    imap_ready(std::slice::from_ref(&dovecot.imap))?;

    let load = |server: &str| Load {
        server: server.to_string(),
        logins: logins(args.sessions, users),
        duration: Duration::from_secs_f64(args.seconds),
        append_bytes: args.message_bytes,
        profile: args.profile,
    };
    let watch = benches::stages::Watch::start(&nodes);
    let runs = paired(args.rounds, || run(&load(&ours)), || run(&load(&dovecot.imap)), |s| s.commands_per_sec);
    let stages = watch.finish();
    let ratio = runs.ratio;
    let errors = (runs.ours.iter().map(|s| s.errors).sum::<u64>(), runs.peer.iter().map(|s| s.errors).sum::<u64>());
    let rate = |s: &LoadStats| s.commands_per_sec;
    let (o, p) = (median_by(runs.ours, rate), median_by(runs.peer, rate));
    println!("| sessions | ours cmd/s | Dovecot cmd/s | ratio | ours p50/p99 ms | Dovecot p50/p99 ms | errors ours/Dovecot |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.0} | {:.2} | {:.2}/{:.1} | {:.2}/{:.1} | {}/{} |",
        args.sessions,
        o.commands_per_sec,
        p.commands_per_sec,
        ratio,
        o.p50_us as f64 / 1000.0,
        o.p99_us as f64 / 1000.0,
        p.p50_us as f64 / 1000.0,
        p.p99_us as f64 / 1000.0,
        errors.0,
        errors.1
    );
    println!("\nours, mean per stage on the leader over every run: {stages}");
    println!("\nper command (median run), p50/p99 ms ours | Dovecot:");
    for (k, s) in &o.by_command {
        let d = p.by_command.get(k).cloned().unwrap_or_default();
        println!(
            "  {k:<13} {:>6} cmds {:>7.2}/{:<7.1} | {:>6} cmds {:>7.2}/{:.1}",
            s.count,
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            d.count,
            d.p50_us as f64 / 1000.0,
            d.p99_us as f64 / 1000.0
        );
        for (who, e) in [("ours", &s.first_error), ("Dovecot", &d.first_error)] {
            if let Some(e) = e {
                println!("    first {who} refusal: {e}");
            }
        }
    }
    if args.idle > 0 {
        let (n_o, kib_o) = idle_kib_per_conn(&ours, users, args.idle, || pss_kib(leader_pid));
        let (n_p, kib_p) = idle_kib_per_conn(&dovecot.imap, users, args.idle, || tree_pss_kib(dovecot.pid));
        println!("\nidle IDLE connections: ours {n_o} at {kib_o:.1} KiB each; Dovecot {n_p} at {kib_p:.1} KiB each");
    }
    Ok(())
}
