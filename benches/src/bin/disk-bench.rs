//! Disk per message: the same messages delivered over LMTP to one user of our 3-replica
//! group and of Dovecot 2.3 (one Maildir), then `du` of each replica's data directory
//! (hard links counted once, as the disk holds them) against `du` of Dovecot's user
//! directory (Maildir and indexes). Prints KiB per message per replica, where it lies
//! (store, snapshots, Raft log) and the ratio ours / Dovecot.
//!
//! `cargo build --release -p storaged -p benches && target/release/disk-bench`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use benches::lmtp_load::{deliver_count, wait_ready};
use benches::peers::{start_dovecot, start_storaged_with};
use benches::procs::Procs;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Messages delivered to the one user, on each side.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Bytes per message (the seed's mean is about 1.6 KiB).
    #[arg(long, default_value_t = 1600)]
    size: usize,
    #[arg(long, default_value_t = 16)]
    senders: usize,
    /// Raft entries between a replica's snapshots, instead of the node's default (20,000, or
    /// fewer once they hold `snapshot_log_bytes`, 16 MiB: a run of this size goes through
    /// several snapshots and log purges, as a long-lived group has).
    #[arg(long)]
    snapshot_every: Option<u64>,
    /// Seconds to let the group settle (snapshot, purge) before measuring.
    #[arg(long, default_value_t = 20)]
    settle_s: u64,
    #[arg(long, default_value = "target/bench-disk")]
    dir: PathBuf,
    /// Run in `dir` as it is instead of on a fresh scratch filesystem mounted there.
    #[arg(long)]
    plain_dir: bool,
}

/// KiB `du` counts under `path` (each inode once).
fn du_kib(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("du").arg("-sk").arg(path).output().context("du")?;
    ensure!(out.status.success(), "du {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or("0").parse()?)
}

/// KiB of each entry directly under `path`, counted in one `du` run (so a file linked from
/// two of them counts once, under the first).
fn du_parts(path: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    names.sort();
    let out = Command::new("du").arg("-sk").args(&names).output().context("du")?;
    ensure!(out.status.success(), "du: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (kib, p) = l.split_once('\t')?;
            Some((Path::new(p).file_name()?.to_string_lossy().into_owned(), kib.parse().ok()?))
        })
        .collect())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Dropped after every process below has been stopped (declared first, dropped last).
    let sides = benches::scratch_fs::sides(&args.dir, args.plain_dir, "dovecot")?;
    let (ours_dir, dv_dir) = (&sides.ours, &sides.peer);
    let mut procs = Procs::default();
    let every = args.snapshot_every;
    let nodes = start_storaged_with(
        ours_dir,
        1,
        |c| c.raft.snapshot_every = every.unwrap_or(c.raft.snapshot_every),
        &mut procs,
    )?;
    let lmtp: Vec<String> = nodes.iter().map(|n| n.lmtp.clone()).collect();
    let dovecot = start_dovecot(dv_dir, &mut procs).context("starting dovecot")?.lmtp;
    let leader = wait_ready(&lmtp)?;
    wait_ready(std::slice::from_ref(&dovecot))?;
    // `wait_ready` delivered a message to each side: the counts stay equal.
    for (name, addr) in [("ours", &leader), ("Dovecot", &dovecot)] {
        let t0 = Instant::now();
        deliver_count(addr, "user0@example.edu", args.messages, args.size, args.senders)
            .with_context(|| format!("delivering to {name}"))?;
        println!("{name}: {} messages of {} bytes in {:.1} s", args.messages, args.size, t0.elapsed().as_secs_f64());
    }
    std::thread::sleep(Duration::from_secs(args.settle_s));
    let messages = (args.messages + 1) as f64;
    let dovecot_kib = du_kib(&dv_dir.join("mail/user0@example.edu"))?;
    println!("\nDovecot: {dovecot_kib} KiB, {:.2} KiB per message", dovecot_kib as f64 / messages);
    println!("\n| replica | KiB | KiB per message | ratio to Dovecot | where (KiB) |");
    println!("|---|---|---|---|---|");
    for n in 1..=nodes.len() {
        let data = ours_dir.join(format!("data{n}"));
        let total = du_kib(&data)?;
        let group = data.join("bench");
        let parts = match group.is_dir() {
            true => du_parts(&group)?.into_iter().map(|(p, k)| format!("{p} {k}")).collect::<Vec<_>>().join(", "),
            false => String::new(),
        };
        let per = total as f64 / messages;
        println!("| {n} | {total} | {per:.2} | {:.2} | {parts} |", total as f64 / dovecot_kib as f64);
    }
    Ok(())
}
