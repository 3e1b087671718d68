//! Importing an existing Maildir: `mailctl import` into a 3-replica storaged group vs.
//! Dovecot's `doveadm backup -R` (dsync, which also keeps UIDVALIDITY and UIDs) of the same
//! Maildir into a Dovecot user, same machine, same source. The source is written the way
//! Dovecot writes a Maildir (LF line ends, `,S=` sizes, `dovecot-uidlist`, flags in the
//! names, four folders; Dovecot reads it with `INDEX=MEMORY`, so it keeps no index there
//! that would speed up its later rounds). Each round imports into a fresh user on each side, in alternating
//! order; the median of the per-round throughput ratios ours/peer is printed.
//!
//! Then restore: 10,000 messages of the first user's INBOX are expunged over IMAP and
//! `mailctl restore` brings them back (no peer: Dovecot keeps no expunged mail); its time
//! is printed.
//!
//! `cargo build --release -p storaged -p tools -p benches && target/release/import-bench`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use benches::peers::{start_dovecot, start_storaged_with, CLUSTER_SECRET};
use benches::procs::Procs;
use clap::Parser;
use clusterkit::front;

#[derive(Parser, Debug)]
struct Args {
    /// Messages in the source Maildir.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Average message size in bytes.
    #[arg(long, default_value_t = 2_000)]
    message_bytes: usize,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    #[arg(long, default_value = "target/bench-import")]
    dir: PathBuf,
}

const FOLDERS: &[&str] = &["", ".Archive", ".Sent", ".Lists.rust"];

/// Write a Dovecot-style Maildir of `n` messages at `root`.
fn make_source(root: &Path, n: usize, size: usize) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for (f, folder) in FOLDERS.iter().enumerate() {
        let dir = root.join(folder);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let guid = 0x5eed_0000_0000_u64 + f as u64 + 1;
        let mut list = format!("3 V{} N{} G{guid:032x}\n", 1_700_000_000 + f, n / FOLDERS.len() + 1);
        for k in (0..n).filter(|k| k % FOLDERS.len() == f) {
            let uid = k / FOLDERS.len() + 1;
            let mut msg = format!(
                "From: sender{}@example.org\nTo: user@example.edu\nSubject: import {k}\nMessage-ID: <imp{k}@example.org>\n\n",
                k % 97
            );
            let body_line = "The quick brown fox jumps over the lazy dog, again and again.\n";
            while msg.len() < size / 2 + (k * 7919) % size {
                msg.push_str(body_line);
            }
            let base = format!("{}.M{k}P1.bench,S={}", 1_600_000_000 + k, msg.len());
            let flags = ["", "S", "FS", "RS"][k % 4];
            std::fs::write(dir.join("cur").join(format!("{base}:2,{flags}")), &msg)?;
            list.push_str(&format!("{uid} :{base}\n"));
            bytes += msg.len() as u64;
        }
        std::fs::write(dir.join("dovecot-uidlist"), list)?;
    }
    Ok(bytes)
}

fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(started.elapsed())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let src = dir.join("source/Maildir");
    eprintln!("writing a {}-message Maildir", args.messages);
    let bytes = make_source(&src, args.messages, args.message_bytes)?;
    Command::new("chown").arg("-R").arg("mail:mail").arg(dir.join("source")).status()?;

    let mut procs = Procs(Vec::new());
    let ours_dir = dir.join("ours");
    std::fs::create_dir_all(&ours_dir)?;
    let nodes = start_storaged_with(&ours_dir, args.rounds, |_| {}, &mut procs).context("starting storaged")?;
    let addrs: Vec<_> = nodes.iter().map(|n| n.addrs.clone()).collect();
    let ldif: String = (0..args.rounds)
        .map(|u| {
            format!(
                "dn: uid=user{u},ou=people,dc=example,dc=edu\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\n\
                 uid: user{u}\ncn: u\nsn: u\nmail: user{u}@example.edu\nmailHost: bench\n\n"
            )
        })
        .collect();
    std::fs::write(ours_dir.join("users.ldif"), ldif)?;
    std::fs::write(ours_dir.join("cluster.key"), CLUSTER_SECRET)?;
    let directory = frontd::config::DirectorySection::ldif("users.ldif");
    let mut backend = frontd::config::BackendSection::new("frontd");
    // Never used: mailctl reads only the cluster map and the directory.
    backend.proxy_password = Some("unused".into());
    let cfg = frontd::config::Config::new(directory, backend, front::groups(&["bench"], &addrs));
    front::write(&ours_dir.join("frontd.toml"), &cfg)?;
    let dovecot_dir = dir.join("dovecot");
    std::fs::create_dir_all(&dovecot_dir)?;
    let _dovecot = start_dovecot(&dovecot_dir, &mut procs)?;
    let mailctl = std::env::current_exe()?.with_file_name("mailctl");
    if !mailctl.exists() {
        bail!("{} missing: cargo build --release -p tools", mailctl.display());
    }
    std::thread::sleep(Duration::from_secs(3));

    let ours = |u: usize| {
        timed(
            Command::new(&mailctl)
                .arg("import")
                .arg(format!("user{u}@example.edu"))
                .arg(&src)
                .arg("--config")
                .arg(ours_dir.join("frontd.toml")),
        )
    };
    let peer = |u: usize| {
        timed(
            Command::new("doveadm")
                .arg("-c")
                .arg(dovecot_dir.join("dovecot.conf"))
                .args(["backup", "-R", "-u", &format!("user{u}@example.edu")])
                // No index kept in the source: every round reads it as the first did.
                .arg(format!("maildir:{}:INDEX=MEMORY", src.display())),
        )
    };
    let mut ratios = Vec::new();
    println!("| round | messages | MB | ours s | ours msg/s | doveadm backup s | doveadm msg/s | ratio ours/peer |");
    println!("|---|---|---|---|---|---|---|---|");
    for round in 0..args.rounds {
        let (a, b) = if round % 2 == 0 {
            let a = ours(round)?;
            (a, peer(round)?)
        } else {
            let b = peer(round)?;
            (ours(round)?, b)
        };
        let rate = |d: Duration| args.messages as f64 / d.as_secs_f64();
        ratios.push(rate(a) / rate(b));
        println!(
            "| {round} | {} | {:.1} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} |",
            args.messages,
            bytes as f64 / 1e6,
            a.as_secs_f64(),
            rate(a),
            b.as_secs_f64(),
            rate(b),
            rate(a) / rate(b)
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio ours/peer: {:.2}", ratios[ratios.len() / 2]);
    let imap = nodes.iter().map(|n| n.imap.as_str()).collect::<Vec<_>>();
    let expunged = expunge_inbox(&imap, RESTORE_MESSAGES.min(args.messages / FOLDERS.len()))?;
    let took = timed(
        Command::new(&mailctl)
            .args(["restore", "user0@example.edu", "--folder", "INBOX", "--config"])
            .arg(ours_dir.join("frontd.toml")),
    )?;
    println!(
        "restore of {expunged} expunged messages: {:.2} s ({:.0} messages/s)",
        took.as_secs_f64(),
        expunged as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Messages the restore timing expunges and brings back.
const RESTORE_MESSAGES: usize = 10_000;

/// Expunge the first `n` messages of user0's INBOX on whichever node leads; how many.
fn expunge_inbox(nodes: &[&str], n: usize) -> anyhow::Result<usize> {
    use tools::imap_client::Client;
    for addr in nodes {
        let mut c = Client::connect(addr)?;
        let login = c.command(&format!("LOGIN user0@example.edu {}", benches::peers::PASSWORD))?;
        let select = c.command("SELECT INBOX")?;
        if !login.ok() || !select.ok() {
            continue;
        }
        let stored = c.command(&format!("STORE 1:{n} +FLAGS.SILENT (\\Deleted)"))?;
        let gone = c.command("EXPUNGE")?;
        if stored.ok() && gone.ok() {
            return Ok(String::from_utf8_lossy(&gone.data).matches("EXPUNGE").count());
        }
    }
    bail!("no node expunged user0's INBOX")
}
