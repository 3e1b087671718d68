//! Memory per idle IMAP connection through frontd: clients each `LOGIN`, `SELECT INBOX` and
//! `IDLE` through the front (OpenLDAP directory, the 3-node "bench" group behind it). Two
//! waves, both kept open to the end so neither runs in memory the other freed: `--first`
//! users logging in for the first time ever (the node creates their mailboxes and loads
//! their state, the front caches their directory entry), then `--warm` users who logged in
//! and out once before the waves. The figure is the growth of proportional set size (PSS)
//! per connection of the front, the node serving the sessions (the one holding their
//! sockets: a re-election may move the group's leader after the fill) and the other nodes
//! over the wave, measured after the daemons' periodic heap trim (`--settle-s`).
//!
//! `cargo build --release -p storaged -p frontd -p benches && target/release/idle-bench`
//! (root: it raises its open-file limit for the clients and the daemons it starts).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use benches::front::FrontCluster;
use benches::peers::PASSWORD;
use benches::procs::{pss_kib, Procs};
use clap::Parser;
use tools::imap_load::idle_connections;

#[derive(Parser, Debug)]
struct Args {
    /// Connections of users who logged in and out once before (each a different user).
    #[arg(long, default_value_t = 6_000)]
    warm: usize,
    /// Connections of users logging in for the first time (each a different user).
    #[arg(long, default_value_t = 3_000)]
    first: usize,
    /// Seconds between a wave's last login and its figure: longer than the daemons' heap
    /// trim interval (10 s), as a long-lived server would be measured.
    #[arg(long, default_value_t = 15)]
    settle_s: u64,
    /// Messages in each user's INBOX before the waves (delivered over LMTP).
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// Seconds to wait before the first wave and with every connection still open after the
    /// figures (time to attach a profiler to the printed process ids).
    #[arg(long, default_value_t = 0)]
    hold_s: u64,
    /// Fronts sharing the connections (user `n` goes to front `n % fronts`). A front holds
    /// two descriptors per connection, so past about 9,500 connections one front would
    /// need more than this machine's 20,000 open files; the front figure is then the
    /// growth of all fronts together per connection.
    #[arg(long, default_value_t = 1)]
    fronts: usize,
    #[arg(long, default_value = "target/bench-idle")]
    dir: PathBuf,
}

/// Take the hard open-file limit (children inherit it). A front holds two descriptors per
/// connection (the client's and the node's), so the limit bounds the connections a wave
/// can open: 20,000 on the machines these figures come from (and no `CAP_SYS_RESOURCE` to
/// raise it), hence a default just below 10,000.
fn raise_open_file_limit() -> u64 {
    common::daemon::raise_open_file_limit();
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into `lim`, a valid rlimit we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

/// PSS in KiB of each process measured: the front, then the nodes (leader first).
fn sample(pids: &[u32]) -> Vec<u64> {
    pids.iter().map(|p| pss_kib(*p)).collect()
}

/// Sockets process `pid` holds.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
        .count()
}

type Login = (String, String);

/// The logins of `users`, by front: user `n` goes to `fronts[n % fronts.len()]`.
fn by_front(fronts: &[String], users: std::ops::Range<usize>) -> Vec<(&str, Vec<Login>)> {
    let login = |u: usize| (format!("user{u}@example.edu"), PASSWORD.to_string());
    let k = fronts.len();
    fronts
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_str(), users.clone().filter(|u| u % k == i).map(login).collect()))
        .collect()
}

/// Log `users` in (creating their mailboxes) and out again, from 8 threads; a login that
/// failed (a busy machine's timeout) is tried once more on its own.
fn warm_up(front: &str, all: Vec<Login>) -> anyhow::Result<()> {
    let failed: Vec<Login> = std::thread::scope(|s| {
        let workers: Vec<_> = all
            .chunks(all.len().div_ceil(8).max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter(|login| idle_connections(front, std::slice::from_ref(*login)).1 == 0)
                        .cloned()
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("warm-up thread")).collect()
    });
    let (_, ready) = idle_connections(front, &failed);
    if ready < failed.len() {
        bail!("{} warm-up logins failed twice", failed.len() - ready);
    }
    Ok(())
}

/// Open a wave of idle connections for `users` through `fronts`; the clients (kept open by
/// the caller) and KiB per connection for each process.
fn wave(
    fronts: &[String],
    users: std::ops::Range<usize>,
    pids: &[u32],
    settle: Duration,
) -> anyhow::Result<(Vec<tools::imap_client::Client>, Vec<f64>)> {
    let n = users.len();
    std::thread::sleep(settle);
    let before = sample(pids);
    let (mut clients, mut ready) = (Vec::new(), 0);
    for (front, logins) in by_front(fronts, users) {
        let (opened, idle) = idle_connections(front, &logins);
        clients.extend(opened);
        ready += idle;
    }
    if ready < n {
        // A node that stops leading closes its sessions: an election under this load (the
        // nodes' logs tell) makes the figure meaningless, so none is given.
        bail!("only {ready} of {n} connections reached IDLE (an election? see the nodes' logs)");
    }
    std::thread::sleep(settle);
    let after = sample(pids);
    let per_conn = before.iter().zip(&after).map(|(b, a)| a.saturating_sub(*b) as f64 / ready as f64).collect();
    Ok((clients, per_conn))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let open_files = raise_open_file_limit();
    let n = args.warm + args.first;
    let fronts_count = args.fronts.max(1);
    let per_front = n.div_ceil(fronts_count);
    if per_front as u64 * 2 + 1000 > open_files {
        bail!(
            "{per_front} connections a front need about {} open files; the limit is {open_files}",
            per_front * 2 + 1000
        );
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let mut procs = Procs::default();
    let cluster = FrontCluster::start(&dir, n, (1, args.messages, 2048), &mut procs)?;
    let mut pids = vec![cluster.front.id()];
    let mut fronts = vec![cluster.front_imap.clone()];
    for k in 1..fronts_count {
        let (child, imap) = cluster.add_front(k + 1)?;
        pids.push(child.id());
        procs.0.push(child);
        fronts.push(imap);
    }
    pids.extend(cluster.nodes.iter().map(|node| node.pid));
    for (front, logins) in by_front(&fronts, 0..args.warm) {
        warm_up(front, logins)?;
    }
    let hold = Duration::from_secs(args.hold_s);
    if args.hold_s > 0 {
        eprintln!("front pids {:?}, node pids {:?}; waiting {hold:?}", &pids[..fronts_count], &pids[fronts_count..]);
        std::thread::sleep(hold);
    }
    let settle = Duration::from_secs(args.settle_s);
    let (_first, first) = wave(&fronts, args.warm..n, &pids, settle)?;
    let (_warm, warm) = wave(&fronts, 0..args.warm, &pids, settle)?;
    // The node serving the sessions holds a socket for each.
    let serving = (fronts_count..pids.len()).max_by_key(|k| sockets(pids[*k])).expect("three nodes");
    println!(
        "idle IMAP connections through {fronts_count} frontd (LOGIN + SELECT INBOX + IDLE), PSS growth per connection:"
    );
    println!("| wave | connections | front KiB | serving node KiB | other nodes KiB | front + serving node KiB |");
    println!("|---|---|---|---|---|---|");
    for (name, count, kib) in [("first logins", args.first, first), ("warm", args.warm, warm)] {
        let others: Vec<String> =
            (fronts_count..kib.len()).filter(|k| *k != serving).map(|k| format!("{:.1}", kib[k])).collect();
        let (f, s) = (kib[..fronts_count].iter().sum::<f64>(), kib[serving]);
        println!("| {name} | {count} | {f:.1} | {s:.1} | {} | {:.1} |", others.join(" / "), f + s);
    }
    std::thread::sleep(hold);
    Ok(())
}
