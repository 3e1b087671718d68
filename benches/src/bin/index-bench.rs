//! Loading a large mailbox index right after a restart (what the first SELECT of it waits
//! for), three ways, side by side: a memory map and deserialization (what storaged does),
//! a plain read into an aligned buffer and deserialization, and a memory map validated in
//! place without deserializing (what serving the index zero-copy would start from).
//!
//! `cargo build --release -p benches && target/release/index-bench`
//!
//! Each way runs in a fresh child process (so its resident memory is its own), with the
//! file in the page cache (`--cold` drops the caches before each run: needs root). Prints
//! the median load time and the resident memory the load added, and the ratios to
//! storaged's way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use storaged::mailstore::index::{MailboxIndex, MessageMeta};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    messages: u32,
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    #[arg(long, default_value = "target/bench-index")]
    dir: PathBuf,
    /// Drop the page cache before every load (root only).
    #[arg(long)]
    cold: bool,
    /// Internal: load the index at this path one way and print the measurement.
    #[arg(long, hide = true)]
    measure: Option<String>,
}

/// storaged's way first: the ratios are to it.
const WAYS: [&str; 3] = ["mmap", "read", "mmap-access"];

/// The bytes of the file at `path`, in a buffer aligned for rkyv archives, in one read.
fn read_aligned(path: &Path) -> std::io::Result<rkyv::util::AlignedVec<16>> {
    let mut file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
    let mut bytes = rkyv::util::AlignedVec::<16>::with_capacity(len);
    bytes.resize(len, 0);
    std::io::Read::read_exact(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// A mailbox of `n` messages as a busy campus mailbox has them: Maildir names, some flags
/// and keywords, realistic sizes.
fn mailbox(n: u32) -> MailboxIndex {
    let mut idx = MailboxIndex::new(1_733_443_200, 1);
    idx.messages = (1..=n)
        .map(|uid| MessageMeta {
            uid,
            base: format!("{}.R{}_0.hermes,S={}", 1_700_000_000 + u64::from(uid) * 37, uid * 3, 2000 + uid % 90_000),
            in_cur: uid % 3 != 0,
            flags: (uid % 7) as u8,
            keywords: if uid % 10 == 0 { vec!["$Forwarded".into()] } else { Vec::new() },
            size: 2000 + u64::from(uid % 90_000),
            internal_date: 1_700_000_000 + i64::from(uid) * 37,
            modseq: u64::from(uid) + 1,
            crc32c: uid.wrapping_mul(2_654_435_761),
            email_id: storaged::mailstore::index::new_email_id("bench", u64::from(uid) * 3, 0),
            saved_s: 1_790_000_000,
        })
        .collect();
    idx.uid_next = n + 1;
    idx.highest_modseq = u64::from(n) + 1;
    idx
}

/// `VmRSS` of this process, KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Load `path` one way in this process; print `way micros rss_added_kib messages`.
fn measure(way: &str, path: &Path) -> anyhow::Result<()> {
    let before = rss_kib();
    let start = Instant::now();
    let name = path.display().to_string();
    let (messages, keep): (usize, Box<dyn std::any::Any>) = match way {
        "mmap" => {
            let idx = MailboxIndex::load(path)?;
            (idx.messages.len(), Box::new(idx))
        }
        "read" => {
            let bytes = read_aligned(path)?;
            let idx = MailboxIndex::decode(&bytes, &name)?;
            (idx.messages.len(), Box::new(idx))
        }
        "mmap-access" => {
            let file = std::fs::File::open(path)?;
            // SAFETY: the benchmark's own file, not changed while mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }?;
            // Touch what a SELECT needs: the count, and every UID for the view.
            let archived = MailboxIndex::access(&map).map_err(anyhow::Error::msg)?;
            let uids: Vec<u32> = archived.messages.iter().map(|m| m.uid.to_native()).collect();
            (std::hint::black_box(uids).len(), Box::new(map))
        }
        other => bail!("unknown way {other}"),
    };
    let micros = start.elapsed().as_micros();
    let added = rss_kib().saturating_sub(before);
    drop(keep);
    println!("{way} {micros} {added} {messages}");
    Ok(())
}

fn drop_caches() -> anyhow::Result<()> {
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("dropping the page cache needs root")
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let path = args.dir.join("mailstore.index");
    if let Some(way) = &args.measure {
        return measure(way, &path);
    }
    std::fs::create_dir_all(&args.dir)?;
    let idx = mailbox(args.messages);
    std::fs::write(&path, idx.encode())?;
    let bytes = std::fs::metadata(&path)?.len();
    assert_eq!(MailboxIndex::load(&path)?, idx, "the index reads back as written");
    let _ = read_aligned(&path)?; // in the page cache
    println!("index of {} messages: {:.1} MiB on disk", args.messages, bytes as f64 / (1 << 20) as f64);
    let exe = std::env::current_exe()?;
    let mut results = Vec::new();
    for way in WAYS {
        let (mut times, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            if args.cold {
                drop_caches()?;
            }
            let out = Command::new(&exe).arg("--dir").arg(&args.dir).args(["--measure", way]).output()?;
            if !out.status.success() {
                bail!("{way}: {}", String::from_utf8_lossy(&out.stderr));
            }
            let line = String::from_utf8(out.stdout)?;
            let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
            anyhow::ensure!(f.len() == 3 && f[2] == u64::from(args.messages), "{way}: {line}");
            times.push(f[0]);
            rss.push(f[1]);
        }
        results.push((way, median(times), median(rss)));
    }
    let (_, base_us, base_kib) = results[0];
    println!("{:<12} {:>10} {:>14} {:>10} {:>10}", "way", "load ms", "RSS added MiB", "time/mmap", "RSS/mmap");
    for (way, us, kib) in &results {
        println!(
            "{:<12} {:>10.1} {:>14.1} {:>10.2} {:>10.2}",
            way,
            *us as f64 / 1000.0,
            *kib as f64 / 1024.0,
            *us as f64 / base_us.max(1) as f64,
            *kib as f64 / base_kib.max(1) as f64
        );
    }
    Ok(())
}
