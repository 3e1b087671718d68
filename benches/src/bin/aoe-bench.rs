//! AoE: our target (`aoe-target`, io_uring) vs. vblade, one at a time on the same veth pair
//! between two namespaces and the same backing file, driven by the same initiator
//! (`aoectl bench`): sequential 128 KiB reads and writes (MB/s) and random 4 KiB reads and
//! writes (IOPS) at queue depth 32, paired rounds, median ratios ours/vblade, with each
//! side's block latency (p50/p99/p99.9, medians over the rounds). Two cache
//! modes: `page` (both targets use the page cache; the file is cached, so this measures the
//! network path) and `direct` (both open the file with `O_DIRECT`, vblade's `-d`: every
//! request goes to the disk, as on a volume larger than memory).
//!
//! `cargo build --release -p tools -p benches && target/release/aoe-bench` (root; vblade)

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use benches::procs::spawn;
use clap::Parser;
use tools::netns::Wire;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The veth MTU (9000: jumbo frames, 17 sectors per frame).
    #[arg(long, default_value_t = 9000)]
    mtu: u32,
    #[arg(long, default_value_t = 512)]
    disk_mib: u64,
    #[arg(long, default_value_t = 32)]
    depth: usize,
    #[arg(long, default_value = "target/bench-aoe")]
    dir: PathBuf,
    /// Cache modes to run: `page`, `direct` (O_DIRECT for both targets), or both.
    #[arg(long, value_delimiter = ',', default_value = "page,direct")]
    modes: Vec<String>,
    /// Workloads to run, by name: `read-seq`, `write-seq`, `read-rand`, `write-rand`.
    #[arg(long, value_delimiter = ',', default_value = "read-seq,write-seq,read-rand,write-rand")]
    workloads: Vec<String>,
}

const WORKLOADS: [(&str, &str, u32); 4] =
    [("read", "seq", 131_072), ("write", "seq", 131_072), ("read", "rand", 4096), ("write", "rand", 4096)];

struct Target(Child);

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(
    ours: bool,
    direct: bool,
    wire: &Wire,
    disk: &std::path::Path,
    bin: &std::path::Path,
) -> anyhow::Result<Target> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &wire.target_ns]);
    if ours {
        cmd.arg(bin.with_file_name("aoe-target"))
            .args(["-i", "aoe-t", "--export"])
            .arg(format!("7.3={}", disk.display()));
        if direct {
            cmd.arg("--direct");
        }
    } else {
        cmd.arg("vblade");
        if direct {
            cmd.arg("-d");
        }
        cmd.args(["7", "3", "aoe-t"]).arg(disk);
    }
    let child = spawn(cmd.stdout(Stdio::null()).stderr(Stdio::null()))?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(Target(child))
}

/// What one `aoectl bench` run reports.
struct Run {
    mb_per_sec: f64,
    iops: f64,
    retransmits: f64,
    /// Block latency p50, p99, p99.9 in microseconds.
    latency_us: [f64; 3],
}

/// One `aoectl bench` run.
fn bench(wire: &Wire, bin: &std::path::Path, args: &Args, op: &str, pattern: &str, block: u32) -> anyhow::Result<Run> {
    let out = Command::new("ip")
        .args(["netns", "exec", &wire.initiator_ns])
        .arg(bin)
        .args(["-i", "aoe-i", "--depth", &args.depth.to_string(), "bench", "7.3", "--op", op, "--pattern", pattern])
        .args(["--block-bytes", &block.to_string(), "--seconds", &args.seconds.to_string(), "--json"])
        .output()?;
    if !out.status.success() {
        bail!("aoectl bench: {}", String::from_utf8_lossy(&out.stderr));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> anyhow::Result<f64> {
        let rest = line.split(&format!("\"{name}\": ")).nth(1).context("bench output")?;
        Ok(rest.split([',', '}']).next().unwrap_or_default().trim().parse()?)
    };
    Ok(Run {
        mb_per_sec: field("mb_per_sec")?,
        iops: field("iops")?,
        retransmits: field("retransmits")?,
        latency_us: [field("p50_us")?, field("p99_us")?, field("p999_us")?],
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let aoectl = std::env::current_exe()?.with_file_name("aoectl");
    if !aoectl.exists() || !aoectl.with_file_name("aoe-target").exists() {
        bail!("aoectl/aoe-target missing: cargo build --release -p tools");
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let disk = std::fs::canonicalize(&args.dir)?.join("disk.img");
    // A written file (not sparse), so reads hit real pages for both targets.
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut f = std::fs::File::create(&disk)?;
    for _ in 0..args.disk_mib {
        std::io::Write::write_all(&mut f, &chunk)?;
    }
    f.sync_all()?;
    let wire = Wire::new(&format!("b{}", std::process::id()), args.mtu)?;
    for mode in &args.modes {
        let direct = match mode.as_str() {
            "page" => false,
            "direct" => true,
            other => bail!("unknown cache mode {other} (page or direct)"),
        };
        println!(
            "AoE, veth MTU {}, {} MiB file, {mode} I/O, depth {}, {} s runs, {} rounds",
            args.mtu, args.disk_mib, args.depth, args.seconds, args.rounds
        );
        println!("| workload | ours | vblade | ratio | ours p50/p99/p99.9 µs | vblade p50/p99/p99.9 µs | retransmits ours/vblade |");
        println!("|---|---|---|---|---|---|---|");
        for (op, pattern, block) in WORKLOADS {
            if !args.workloads.iter().any(|w| *w == format!("{op}-{pattern}")) {
                continue;
            }
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                ours.push({
                    let _t = start(true, direct, &wire, &disk, &aoectl)?;
                    bench(&wire, &aoectl, &args, op, pattern, block)?
                });
                theirs.push({
                    let _t = start(false, direct, &wire, &disk, &aoectl)?;
                    bench(&wire, &aoectl, &args, op, pattern, block)?
                });
            }
            let rate = |r: &Run| if pattern == "seq" { r.mb_per_sec } else { r.iops };
            let ratios = ours.iter().zip(&theirs).map(|(o, v)| rate(o) / rate(v)).collect();
            let unit = if pattern == "seq" { "MB/s" } else { "IOPS" };
            let med = |runs: &[Run], f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
            let lat = |runs: &[Run]| {
                let p = |i: usize| med(runs, &|r: &Run| r.latency_us[i]);
                format!("{:.0}/{:.0}/{:.0}", p(0), p(1), p(2))
            };
            println!(
                "| {op} {pattern} {} KiB | {:.0} {unit} | {:.0} {unit} | {:.2} | {} | {} | {:.0}/{:.0} |",
                block / 1024,
                med(&ours, &rate),
                med(&theirs, &rate),
                median(ratios),
                lat(&ours),
                lat(&theirs),
                med(&ours, &|r: &Run| r.retransmits),
                med(&theirs, &|r: &Run| r.retransmits),
            );
        }
    }
    Ok(())
}
