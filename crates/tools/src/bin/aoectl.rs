//! `aoectl`: talk to ATA-over-Ethernet targets from this host. Needs root (raw sockets).
//!
//! `aoectl -i eth1 discover` · `aoectl -i eth1 identify 7.3` · `aoectl -i eth1 read 7.3
//! --lba 0 --sectors 8 --out f` · `aoectl -i eth1 write 7.3 --lba 0 --in f` ·
//! `aoectl -i eth1 flush 7.3`

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use aoe::initiator::{discover, BenchLoad, Initiator, TargetInfo};

/// The depth shown in progress lines.
fn init_depth(depth: Option<usize>) -> String {
    depth.map_or_else(|| "target's".to_string(), |d| d.to_string())
}
use aoe::packet::PacketSocket;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "ATA over Ethernet initiator")]
struct Args {
    /// The network interface the targets are on.
    #[arg(long, short)]
    interface: String,
    /// How long discovery listens for answers.
    #[arg(long, default_value_t = 1000)]
    wait_ms: u64,
    /// Commands in flight at most (default: the target's buffer count).
    #[arg(long)]
    depth: Option<usize>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the targets that answer a broadcast Query Config.
    Discover,
    /// IDENTIFY DEVICE of SHELF.SLOT.
    Identify { target: String },
    /// Read sectors to a file (or stdout with --out -).
    Read {
        target: String,
        #[arg(long)]
        lba: u64,
        #[arg(long)]
        sectors: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a file (whole sectors) at an LBA.
    Write {
        target: String,
        #[arg(long)]
        lba: u64,
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// FLUSH CACHE EXT: make earlier writes durable.
    Flush { target: String },
    /// Load a target: sequential or random reads or writes of a block size at a depth.
    Bench {
        target: String,
        #[arg(long, value_parser = ["read", "write"])]
        op: String,
        #[arg(long, value_parser = ["seq", "rand"])]
        pattern: String,
        #[arg(long, default_value_t = 4096)]
        block_bytes: u32,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn find(sock: &PacketSocket, wait: Duration, name: &str) -> anyhow::Result<TargetInfo> {
    let (shelf, slot) = name.split_once('.').context("targets are SHELF.SLOT, e.g. 7.3")?;
    let (shelf, slot): (u16, u8) = (shelf.parse()?, slot.parse()?);
    let found = discover(sock, wait)?;
    match found.into_iter().find(|t| t.major == shelf && t.minor == slot) {
        Some(t) => Ok(t),
        None => bail!("no target {shelf}.{slot} answered"),
    }
}

fn initiator<'s>(sock: &'s PacketSocket, target: TargetInfo, depth: Option<usize>) -> Initiator<'s> {
    let mut i = Initiator::new(sock, target);
    if let Some(d) = depth {
        i.depth = d.clamp(1, i.depth);
    }
    i
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sock = PacketSocket::open(&args.interface).with_context(|| format!("raw socket on {}", args.interface))?;
    let wait = Duration::from_millis(args.wait_ms);
    match args.command {
        Cmd::Discover => {
            for t in discover(&sock, wait)? {
                println!(
                    "{}.{} {} buffers {} sectors {} firmware {:#06x} config {:?}",
                    t.major,
                    t.minor,
                    t.mac,
                    t.buffer_count,
                    t.sector_count,
                    t.firmware,
                    String::from_utf8_lossy(&t.config)
                );
            }
        }
        Cmd::Identify { target } => {
            let id = initiator(&sock, find(&sock, wait, &target)?, args.depth).identify()?;
            println!("model {:?} serial {:?} firmware {:?}", id.model, id.serial, id.firmware);
            println!("sectors {} bytes {} lba48 {}", id.sectors, id.sectors * 512, id.lba48);
        }
        Cmd::Read { target, lba, sectors, out } => {
            let data = initiator(&sock, find(&sock, wait, &target)?, args.depth).read(lba, sectors)?;
            if out.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout().write_all(&data)?;
            } else {
                std::fs::write(&out, data)?;
            }
        }
        Cmd::Write { target, lba, input } => {
            let data = std::fs::read(&input)?;
            initiator(&sock, find(&sock, wait, &target)?, args.depth).write(lba, &data)?;
        }
        Cmd::Flush { target } => initiator(&sock, find(&sock, wait, &target)?, args.depth).flush()?,
        Cmd::Bench { target, op, pattern, block_bytes, seconds, json } => {
            if block_bytes == 0 || block_bytes % 512 != 0 {
                bail!("--block-bytes is a multiple of 512");
            }
            let mut init = initiator(&sock, find(&sock, wait, &target)?, args.depth);
            let sectors = init.identify()?.sectors;
            let load = BenchLoad {
                write: op == "write",
                random: pattern == "rand",
                block_sectors: block_bytes / 512,
                span_sectors: sectors,
                duration: Duration::from_secs_f64(seconds),
            };
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"));
            let started = std::time::Instant::now();
            let stats = init.bench(&load, |bytes| {
                let rate = bytes as f64 / 1e6 / started.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "{op} {pattern} {block_bytes} B depth {}: {rate:.1} MB/s",
                    init_depth(args.depth)
                ));
                bar.tick();
            })?;
            bar.finish_and_clear();
            if json {
                println!(
                    "{{\"mb_per_sec\": {:.3}, \"iops\": {:.1}, \"retransmits\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}}}",
                    stats.mb_per_sec(),
                    stats.blocks_per_sec(),
                    stats.retransmits,
                    stats.latency_us[0],
                    stats.latency_us[1],
                    stats.latency_us[2]
                );
            } else {
                println!(
                    "{op} {pattern} {block_bytes} B: {:.1} MB/s, {:.0} IOPS, {} retransmits, latency p50/p99/p99.9 {}/{}/{} µs",
                    stats.mb_per_sec(),
                    stats.blocks_per_sec(),
                    stats.retransmits,
                    stats.latency_us[0],
                    stats.latency_us[1],
                    stats.latency_us[2]
                );
            }
        }
    }
    Ok(())
}
