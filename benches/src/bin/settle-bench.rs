//! How long a snapshot's settle pauses applies on a large store, two ways on one tree: with
//! every directory listed again on both sides (what each settle did before the live pass
//! noted directories' times, and still does for a directory it cannot vouch for) and with
//! only the directories changed since the live pass listed again (a `stat` of the others).
//!
//! `cargo build --release -p benches && target/release/settle-bench`
//!
//! The tree is synthetic but shaped like a store's: `--users` users, each an INBOX and
//! `--folders` more folders (Maildir `cur`, `new`, `tmp`) with `--messages` files in the
//! INBOX. The live pass and the settle run as a snapshot build runs them (the settle right
//! after the pass, the tree in the page cache). Prints the median settle time of each way and
//! their ratio.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Parser;
use storaged::mailstore::snapshot::{link_live, settle, Settled};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 13_000)]
    users: usize,
    /// Folders besides the INBOX per user.
    #[arg(long, default_value_t = 1)]
    folders: usize,
    /// Message files in each INBOX.
    #[arg(long, default_value_t = 30)]
    messages: usize,
    /// Directories changed between the live pass and the settle (a delivery each).
    #[arg(long, default_value_t = 200)]
    changed: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value = "target/bench-settle")]
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = fs::remove_dir_all(&args.dir);
    let root = args.dir.join("mail");
    let started = Instant::now();
    let dirs = build_tree(&root, &args)?;
    println!(
        "tree: {} users, {} directories, {} files, built in {:.1} s",
        args.users,
        dirs.len(),
        args.users * args.messages,
        started.elapsed().as_secs_f64()
    );
    let (mut every, mut changed) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Times the live pass cannot vouch for: every directory is listed again.
        set_times(&dirs, SystemTime::now() + Duration::from_secs(3600))?;
        every.push(pass_and_settle(&args.dir, round, &root, &[])?);
        // Times an hour old: only what changed after the pass is listed again.
        set_times(&dirs, SystemTime::now() - Duration::from_secs(3600))?;
        let touched: Vec<PathBuf> =
            (0..args.changed).map(|i| dirs_of_user(&root, (i * 7919 + round) % args.users).1).collect();
        changed.push(pass_and_settle(&args.dir, round, &root, &touched)?);
    }
    report(&every, &changed);
    let _ = fs::remove_dir_all(&args.dir);
    Ok(())
}

/// A user's directory and its INBOX's `new`.
fn dirs_of_user(root: &Path, user: usize) -> (PathBuf, PathBuf) {
    let home = root.join(format!("users/user{user}@example.edu"));
    let new = home.join("Maildir/new");
    (home, new)
}

/// Make the tree; every directory in it.
fn build_tree(root: &Path, args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs = vec![root.to_path_buf(), root.join("users")];
    fs::create_dir_all(root.join("users"))?;
    for user in 0..args.users {
        let (home, _) = dirs_of_user(root, user);
        let maildir = home.join("Maildir");
        dirs.extend([home.clone(), maildir.clone()]);
        let folders = std::iter::once(maildir.clone()).chain((0..args.folders).map(|f| maildir.join(format!(".F{f}"))));
        for folder in folders {
            if folder != maildir {
                dirs.push(folder.clone());
            }
            for sub in ["cur", "new", "tmp"] {
                fs::create_dir_all(folder.join(sub)).with_context(|| format!("{}", folder.display()))?;
                dirs.push(folder.join(sub));
            }
        }
        for m in 0..args.messages {
            fs::write(maildir.join(format!("cur/{m}.M{user}:2,S")), b"Subject: x\r\n\r\nbody\r\n")?;
        }
    }
    Ok(dirs)
}

fn set_times(dirs: &[PathBuf], at: SystemTime) -> anyhow::Result<()> {
    for d in dirs {
        fs::File::open(d)?.set_modified(at)?;
    }
    Ok(())
}

/// One snapshot's live pass into a fresh mirror, a delivery into each of `touched`, then the
/// settle: its time and what it did.
fn pass_and_settle(dir: &Path, round: usize, root: &Path, touched: &[PathBuf]) -> anyhow::Result<(Duration, Settled)> {
    let dest = dir.join(format!("tree-{round}"));
    let pass = link_live(root, &dest)?;
    for (i, d) in touched.iter().enumerate() {
        fs::write(d.join(format!("{round}-{i}")), b"new mail")?;
    }
    let started = Instant::now();
    let settled = settle(root, &dest, &dir.join("discard"), &pass)?;
    let took = started.elapsed();
    fs::remove_dir_all(&dest)?;
    for (i, d) in touched.iter().enumerate() {
        fs::remove_file(d.join(format!("{round}-{i}")))?;
    }
    Ok((took, settled))
}

fn median(v: &[(Duration, Settled)]) -> (Duration, Settled) {
    let mut s = v.to_vec();
    s.sort_by_key(|(d, _)| *d);
    s[s.len() / 2]
}

fn report(every: &[(Duration, Settled)], changed: &[(Duration, Settled)]) {
    let (e, es) = median(every);
    let (c, cs) = median(changed);
    println!("| settle | ms (median of {}) | directories checked | listed again | linked |", every.len());
    println!("|---|---|---|---|---|");
    println!("| every directory listed | {:.1} | {} | {} | {} |", e.as_secs_f64() * 1e3, es.checked, es.dirs, es.added);
    println!("| changed ones listed | {:.1} | {} | {} | {} |", c.as_secs_f64() * 1e3, cs.checked, cs.dirs, cs.added);
    println!("changed-only / every: {:.3}", c.as_secs_f64() / e.as_secs_f64());
}
