//! LMTP delivery: our 3-replica storaged group vs. Dovecot's LMTP (one copy, default fsync
//! settings), side by side on this machine.
//!
//! `cargo build --release -p storaged -p benches && target/release/lmtp-bench`
//!
//! Starts three real `storaged` processes (one Raft group) and a real Dovecot, then runs
//! `--senders` closed-loop LMTP senders against each in turn (`--rounds` pairs per size) and
//! prints deliveries/s, p50/p99 latency and the median of the per-pair ratios ours/Dovecot.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benches::lmtp_load::{run, LmtpStats};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 32)]
    senders: usize,
    #[arg(long, default_value_t = 50)]
    users: usize,
    #[arg(long, value_delimiter = ',', default_values_t = vec![4096usize, 65536])]
    sizes: Vec<usize>,
    #[arg(long, default_value = "target/bench-lmtp")]
    dir: PathBuf,
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
    // SAFETY: prctl is async-signal-safe; children die with the benchmark.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

fn start_storaged(dir: &Path, users: usize, procs: &mut Procs) -> anyhow::Result<Vec<String>> {
    let bin = std::env::current_exe()?.with_file_name("storaged");
    if !bin.exists() {
        bail!("{} missing: cargo build --release -p storaged", bin.display());
    }
    let raft: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let lmtp: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let members: String =
        (0..3).map(|i| format!("  {{ id = {}, raft = \"{}\", lmtp = \"{}\" }},\n", i + 1, raft[i], lmtp[i])).collect();
    let users_txt: String = (0..users).map(|u| format!("user{u}@example.edu\n")).collect();
    std::fs::write(dir.join("users.txt"), users_txt)?;
    for i in 0..3 {
        let cfg = format!(
            "node_id = {id}\ndata_dir = \"data{id}\"\ncluster_key = \"bench\"\nusers_file = \"users.txt\"\n\
             [listen]\nraft = \"{r}\"\nlmtp = \"{l}\"\n[[groups]]\nname = \"bench\"\nmembers = [\n{members}]\n",
            id = i + 1,
            r = raft[i],
            l = lmtp[i]
        );
        let path = dir.join(format!("node{}.toml", i + 1));
        std::fs::write(&path, cfg)?;
        let log = std::fs::File::create(dir.join(format!("node{}.log", i + 1)))?;
        procs.0.push(spawn(
            Command::new(&bin).arg("--config").arg(&path).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(log),
        )?);
    }
    Ok(lmtp)
}

fn start_dovecot(dir: &Path, procs: &mut Procs) -> anyhow::Result<String> {
    let port = free_port();
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail)?;
    std::fs::create_dir_all(dir.join("run"))?;
    Command::new("chown").arg("-R").arg("mail:mail").arg(&mail).status()?;
    let conf = format!(
        "protocols = lmtp\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
         ssl = no\nfirst_valid_uid = 8\npostmaster_address = postmaster@example.edu\n\
         mail_location = maildir:{m}/%u/Maildir\n\
         userdb {{\n  driver = static\n  args = uid=mail gid=mail home={m}/%u\n}}\n\
         passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n",
        d = dir.display(),
        m = mail.display()
    );
    std::fs::write(dir.join("dovecot.conf"), conf)?;
    procs.0.push(spawn(Command::new("/usr/sbin/dovecot").arg("-F").arg("-c").arg(dir.join("dovecot.conf")))?);
    Ok(format!("127.0.0.1:{port}"))
}

/// Wait for an LMTP server that accepts a delivery (for our group: the leader).
fn wait_ready(addrs: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for a in addrs {
            let probe = run(a, 1, 1, 1024, Duration::from_millis(300));
            if probe.delivered > 0 {
                return Ok(a.clone());
            }
        }
        if Instant::now() > deadline {
            bail!("no LMTP server ready among {addrs:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn median(mut v: Vec<LmtpStats>) -> LmtpStats {
    v.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    v.swap_remove(v.len() / 2)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let mut procs = Procs(Vec::new());
    let ours_dir = dir.join("storaged");
    std::fs::create_dir_all(&ours_dir)?;
    let lmtp = start_storaged(&ours_dir, args.users, &mut procs).context("starting storaged")?;
    let dv_dir = dir.join("dovecot");
    std::fs::create_dir_all(&dv_dir)?;
    let dovecot = start_dovecot(&dv_dir, &mut procs).context("starting dovecot")?;
    let leader = wait_ready(&lmtp)?;
    wait_ready(std::slice::from_ref(&dovecot))?;
    let duration = Duration::from_secs_f64(args.seconds);
    println!("| message | senders | ours deliveries/s | Dovecot deliveries/s | ratio | ours p50/p99 ms | Dovecot p50/p99 ms | errors ours/Dovecot |");
    println!("|---|---|---|---|---|---|---|---|");
    for &size in &args.sizes {
        let (mut ours, mut peer, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            let o = run(&leader, args.senders, args.users, size, duration);
            let p = run(&dovecot, args.senders, args.users, size, duration);
            ratios.push(o.per_sec() / p.per_sec());
            ours.push(o);
            peer.push(p);
        }
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        let errs = (ours.iter().map(|s| s.errors).sum::<u64>(), peer.iter().map(|s| s.errors).sum::<u64>());
        let (o, p) = (median(ours), median(peer));
        println!(
            "| {} KiB | {} | {:.0} | {:.0} | {:.2} | {:.1}/{:.1} | {:.1}/{:.1} | {}/{} |",
            size / 1024,
            args.senders,
            o.per_sec(),
            p.per_sec(),
            ratio,
            o.p50_us as f64 / 1000.0,
            o.p99_us as f64 / 1000.0,
            p.p50_us as f64 / 1000.0,
            p.p99_us as f64 / 1000.0,
            errs.0,
            errs.1
        );
    }
    Ok(())
}
