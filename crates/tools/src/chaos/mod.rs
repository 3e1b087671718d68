//! The chaos harness: a real cluster (three or five storage nodes, each in its own network
//! namespace, and two fronts), a recorded workload, a seeded nemesis, and a checker that
//! holds the history to what was acknowledged. `chaos --seed N --duration-s S` runs it;
//! the same seed replays the same fault schedule. Needs root (namespaces, veth, tc).
//!
//! Never touches anything but what it creates: its namespaces, their links, the host ends
//! of those links in 10.88.0.0/16, and its working directory.

pub mod check;
pub mod cluster;
pub mod nemesis;
pub mod net;
pub mod workload;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;

pub use check::Report;
use workload::History;

/// Wait until the fronts listen and both groups have a leader.
fn wait_ready(c: &cluster::Cluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let front_up =
            c.front_smtp.iter().chain(&c.front_imap).all(|a| std::net::TcpStream::connect(a.as_str()).is_ok());
        let leaders = cluster::USERS.iter().all(|(user, _)| workload::login(&c.front_imap[0], user).is_ok());
        if front_up && leaders {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the cluster did not come up within 60 s (logs in {})", c.dir.display());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub duration: Duration,
    /// Indexes into [`nemesis::KINDS`].
    pub kinds: Vec<usize>,
    /// Storage nodes (3 or 5).
    pub nodes: usize,
}

/// Run the whole thing in `dir` with the daemons of `exe` (`exe storaged|frontd ...`).
pub fn run(plan: &Plan, dir: &Path, exe: &Path) -> anyhow::Result<(Report, usize)> {
    let (seed, duration, kinds) = (plan.seed, plan.duration, plan.kinds.as_slice());
    let tag = format!("ch{}", std::process::id() % 100_000);
    let mut cluster = cluster::Cluster::start(dir, exe, &tag, plan.nodes)?;
    wait_ready(&cluster)?;
    let history = History::new();
    let stop = AtomicBool::new(false);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (smtp, imap) = (cluster.front_smtp.clone(), cluster.front_imap.clone());
    let until = Instant::now() + duration;
    let faults = std::thread::scope(|s| {
        // One deliverer per front; the appender uses the first front, the checker the last.
        for worker in 0..cluster::FRONTS {
            let (smtp, stop, history) = (&smtp[worker], &stop, &history);
            s.spawn(move || workload::deliverer(smtp, seed, worker, stop, history));
        }
        s.spawn(|| workload::appender(&imap[0], seed, &stop, &history));
        let faults = nemesis::run(&mut cluster, &mut rng, until, kinds, &history);
        let healed = cluster.heal();
        stop.store(true, Ordering::Relaxed);
        faults.and_then(|f| healed.map(|()| f))
    })?;
    let report = check::check(&cluster, &history);
    let text: String = history.events().iter().map(|(at, e)| format!("{at:>8} ms {e:?}\n")).collect();
    std::fs::write(dir.join("history.txt"), text)?;
    Ok((report, faults))
}
