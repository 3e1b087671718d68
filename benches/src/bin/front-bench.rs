//! frontd's cost: the IMAP load of `imap-bench` through frontd vs. straight to the
//! storaged leader, paired in one run (the proxy's throughput loss), then logins per
//! second through frontd with a real OpenLDAP directory, cache cold (every user new) and
//! warm (the same users again within the cache TTL).
//!
//! `cargo build --release -p storaged -p frontd -p benches && target/release/front-bench`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use benches::front::FrontCluster;
use benches::paired::{median_by, paired};
use benches::peers::PASSWORD;
use benches::procs::Procs;
use clap::Parser;
use tools::imap_client::Client;
use tools::imap_load::{run, Load, LoadStats};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Messages per load user before the run.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    #[arg(long, default_value_t = 4096)]
    message_bytes: usize,
    /// Directory users for the login-rate figures (each logs in once cold, once warm).
    #[arg(long, default_value_t = 2000)]
    login_users: usize,
    /// Concurrent clients logging in.
    #[arg(long, default_value_t = 16)]
    login_clients: usize,
    #[arg(long, default_value = "target/bench-front")]
    dir: PathBuf,
}

/// Log users `first..first + n` in and out with `clients` threads; logins per second and
/// failures.
fn login_rate(addr: &str, first: usize, n: usize, clients: usize) -> (f64, usize) {
    let start = Instant::now();
    let failed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut failed = 0;
                    for u in (first + c..first + n).step_by(clients) {
                        let ok = Client::connect(addr).is_ok_and(|mut cl| {
                            let ok = cl.command(&format!("LOGIN user{u}@example.edu {PASSWORD}")).is_ok_and(|a| a.ok());
                            let _ = cl.command("LOGOUT");
                            ok
                        });
                        failed += usize::from(!ok);
                    }
                    failed
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (n as f64 / start.elapsed().as_secs_f64(), failed)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let mut procs = Procs::default();
    let filled = (args.sessions, args.messages, args.message_bytes);
    let mut cluster = FrontCluster::start(&dir, args.sessions + args.login_users, filled, &mut procs)?;
    let front_imap = cluster.front_imap.clone();
    let leader_imap = cluster.nodes[cluster.leader].imap.clone();

    let load = |server: &str| Load {
        server: server.to_string(),
        logins: (0..args.sessions).map(|u| (format!("user{u}@example.edu"), PASSWORD.to_string())).collect(),
        duration: Duration::from_secs_f64(args.seconds),
        profile: Default::default(),
        append_bytes: args.message_bytes,
    };
    let runs = paired(args.rounds, || run(&load(&front_imap)), || run(&load(&leader_imap)), |s| s.commands_per_sec);
    let rate = |s: &LoadStats| s.commands_per_sec;
    let ratio = runs.ratio;
    let errors = (runs.ours.iter().map(|s| s.errors).sum::<u64>(), runs.peer.iter().map(|s| s.errors).sum::<u64>());
    let (f, d) = (median_by(runs.ours, rate), median_by(runs.peer, rate));
    println!("| sessions | via frontd cmd/s | direct cmd/s | ratio | overhead | frontd p50/p99 ms | direct p50/p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.0} | {:.3} | {:.1}% | {:.2}/{:.1} | {:.2}/{:.1} | {}/{} |",
        args.sessions,
        f.commands_per_sec,
        d.commands_per_sec,
        ratio,
        (1.0 - ratio) * 100.0,
        f.p50_us as f64 / 1000.0,
        f.p99_us as f64 / 1000.0,
        d.p50_us as f64 / 1000.0,
        d.p99_us as f64 / 1000.0,
        errors.0,
        errors.1
    );

    // A user's first login ever also creates their mailboxes on storaged (Raft commits):
    // one pass makes them all, then a fresh frontd (empty cache) gives the cold figure and
    // a second pass the warm one.
    let n = args.login_users;
    let (_, provision_failed) = login_rate(&front_imap, args.sessions, n, args.login_clients);
    if provision_failed > 0 {
        bail!("{provision_failed} first logins failed");
    }
    cluster.restart_front()?;
    let (cold, cold_failed) = login_rate(&front_imap, args.sessions, n, args.login_clients);
    let (warm, warm_failed) = login_rate(&front_imap, args.sessions, n, args.login_clients);
    println!("\nlogins through frontd (LDAP, {} clients, {n} users, LOGIN+LOGOUT each):", args.login_clients);
    println!("| cache | logins/s | failed |");
    println!("|---|---|---|");
    println!("| cold | {cold:.0} | {cold_failed} |");
    println!("| warm | {warm:.0} | {warm_failed} |");
    cluster.front.kill()?;
    Ok(())
}
