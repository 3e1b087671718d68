//! `chaos`: run the fault-injection harness (see `tools::chaos`). Exits non-zero with the
//! violations, the seed and the history file when the checker finds lost, duplicated or
//! reordered mail. Also runs the daemons it starts (`chaos storaged|frontd --config F`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "fault injection against a local cluster, with a checker")]
struct Args {
    #[command(subcommand)]
    daemon: Option<tools::daemons::Daemon>,
    /// The nemesis schedule comes from this seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long to run the workload under faults.
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// The faults to inject (comma-separated): kill, pause, isolate, bridge, slow, split.
    #[arg(long, default_value = "kill,pause,isolate,bridge,slow,split")]
    nemesis: String,
    /// Storage nodes: 3 or 5 (every group on every node); two fronts either way.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Working directory (configs, data, logs, history); a fresh temporary one by default.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(daemon) = args.daemon {
        return daemon.run();
    }
    let tmp;
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            tmp = tempfile::Builder::new().prefix("chaos-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let kinds = args
        .nemesis
        .split(',')
        .map(|k| {
            tools::chaos::nemesis::KINDS
                .iter()
                .position(|n| *n == k.trim())
                .ok_or_else(|| anyhow::anyhow!("unknown fault {k:?}"))
        })
        .collect::<anyhow::Result<Vec<usize>>>()?;
    let exe = std::env::current_exe()?;
    let plan = tools::chaos::Plan {
        seed: args.seed,
        duration: Duration::from_secs(args.duration_s),
        kinds,
        nodes: args.nodes,
    };
    let (report, faults) = tools::chaos::run(&plan, &dir, &exe)?;
    println!(
        "seed {}: {} faults; deliveries {}/{} acknowledged, appends {}/{}, flag changes {}, expunges {}, moves {}; {} messages read back; {} violations",
        args.seed,
        faults,
        report.deliveries_acked,
        report.deliveries_sent,
        report.appends_acked,
        report.appends_sent,
        report.flags_acked,
        report.expunges_acked,
        report.moves_acked,
        report.messages_read,
        report.violations.len()
    );
    if !report.violations.is_empty() {
        for v in &report.violations {
            println!("VIOLATION: {v}");
        }
        let kept = dir.join("history.txt");
        println!(
            "history: {} (replay: chaos --seed {} --duration-s {} --nodes {})",
            kept.display(),
            args.seed,
            args.duration_s,
            args.nodes
        );
        // Exit without dropping the temporary directory: the logs and history stay.
        std::process::exit(1);
    }
    Ok(())
}
