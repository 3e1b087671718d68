//! Dovecot's imaptest in stress mode (random commands from many clients on one mailbox, with
//! its state tracking on) against our 3-replica storaged group and Dovecot 2.3 on the same
//! machine, in pairs: commands per second, the ratio ours/Dovecot, and imaptest's error
//! lines on each side (any is a finding: a protocol or state-tracking violation).
//!
//! `cargo build --release -p storaged -p benches && target/release/imaptest-stress`
//!
//! imaptest comes from `../shared/tools/imaptest/build.sh` (or `--imaptest PATH`); its
//! `default.mbox` feeds the APPENDs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use benches::paired::{median_by, paired};
use benches::peers::{imap_ready, start_dovecot, start_storaged, PASSWORD};
use benches::procs::Procs;
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// imaptest clients.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    #[arg(long, default_value_t = 30)]
    secs: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The imaptest binary (default: built by ../shared/tools/imaptest/build.sh).
    #[arg(long)]
    imaptest: Option<PathBuf>,
    #[arg(long, default_value = "target/bench-imaptest")]
    dir: PathBuf,
    /// Run in `dir` as it is instead of on a fresh scratch filesystem mounted there.
    #[arg(long)]
    plain_dir: bool,
}

/// One imaptest run: commands it counted, and its error lines.
#[derive(Debug, Clone)]
struct Stress {
    commands: u64,
    per_sec: f64,
    errors: Vec<String>,
}

/// The imaptest binary: the one given, else the one `build.sh` builds (or has built).
fn imaptest_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/imaptest/build.sh");
    let out = Command::new(&build).output().with_context(|| format!("running {}", build.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", build.display(), String::from_utf8_lossy(&out.stderr));
    }
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    Ok(PathBuf::from(path))
}

/// The sum of imaptest's last "Totals" counts line (one count per command kind).
fn total_commands(output: &str) -> Option<u64> {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines.iter().rposition(|l| l.starts_with("Totals:"))?;
    let counts = lines[at + 1..].iter().find(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        !words.is_empty() && words.iter().all(|w| w.parse::<u64>().is_ok())
    })?;
    Some(counts.split_whitespace().filter_map(|w| w.parse::<u64>().ok()).sum())
}

fn stress(imaptest: &Path, server: &str, args: &Args) -> anyhow::Result<Stress> {
    let (host, port) = server.rsplit_once(':').context("host:port")?;
    let mbox = imaptest.with_file_name("tests").join("default.mbox");
    let out = Command::new(imaptest)
        .arg(format!("host={host}"))
        .arg(format!("port={port}"))
        .arg("user=user0@example.edu")
        .arg(format!("pass={PASSWORD}"))
        .arg(format!("clients={}", args.clients))
        .arg(format!("secs={}", args.secs))
        .arg(format!("mbox={}", mbox.display()))
        .output()
        .context("running imaptest")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let commands = total_commands(&text).with_context(|| format!("no totals in imaptest's output:\n{text}"))?;
    let errors = text.lines().filter(|l| l.starts_with("Error:")).map(str::to_string).collect();
    Ok(Stress { commands, per_sec: commands as f64 / args.secs as f64, errors })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let imaptest = imaptest_binary(args.imaptest.clone())?;
    // Dropped after every process below has been stopped (declared first, dropped last).
    let _scratch = benches::scratch_fs::prepare(&args.dir, args.plain_dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let mut procs = Procs::default();
    let ours_dir = dir.join("storaged");
    std::fs::create_dir_all(&ours_dir)?;
    let nodes = start_storaged(&ours_dir, 1, &mut procs).context("starting storaged")?;
    let dv_dir = dir.join("dovecot");
    std::fs::create_dir_all(&dv_dir)?;
    let dovecot = start_dovecot(&dv_dir, &mut procs).context("starting dovecot")?;
    let ours = imap_ready(&nodes.iter().map(|n| n.imap.clone()).collect::<Vec<_>>())?;
    imap_ready(std::slice::from_ref(&dovecot.imap))?;

    // A run that fails outright counts as one error line that says why.
    let run = |server: &str| {
        stress(&imaptest, server, &args).unwrap_or_else(|e| Stress {
            commands: 0,
            per_sec: f64::MIN_POSITIVE,
            errors: vec![format!("Error: the imaptest run failed: {e:#}")],
        })
    };
    let watch = benches::stages::Watch::start(&nodes);
    let runs = paired(args.rounds, || run(&ours), || run(&dovecot.imap), |s| s.per_sec);
    let stages = watch.finish();
    let errors = |r: &[Stress]| r.iter().map(|s| s.errors.len()).sum::<usize>();
    let (e_o, e_p) = (errors(&runs.ours), errors(&runs.peer));
    let first_error = runs.ours.iter().flat_map(|s| s.errors.first()).next().cloned();
    let (o, p) = (median_by(runs.ours, |s| s.per_sec), median_by(runs.peer, |s| s.per_sec));
    println!("| clients | secs | ours cmd/s | Dovecot cmd/s | ratio | error lines ours/Dovecot |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.2} | {e_o}/{e_p} |",
        args.clients, args.secs, o.per_sec, p.per_sec, runs.ratio
    );
    if let Some(e) = first_error {
        println!("first error line of ours: {e}");
    }
    println!("commands in the median runs: ours {}, Dovecot {}", o.commands, p.commands);
    println!("ours, mean per stage on the leader over every run: {stages}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_summed_from_the_last_block() {
        let out = "Logi List\n 10 20\nTotals:\nLogi List Stat\n100%  50%  50%\n          30%\n3503 1763 1727\n";
        assert_eq!(total_commands(out), Some(3503 + 1763 + 1727));
        assert_eq!(total_commands("no totals"), None);
    }
}
