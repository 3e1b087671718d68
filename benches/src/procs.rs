//! Processes a benchmark starts: free loopback ports, children that die with the
//! benchmark, and their memory as the kernel accounts it.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Children killed when dropped.
#[derive(Default)]
pub struct Procs(pub Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // A child that leads a process group of its own (rspamd and its workers) takes
            // the group with it.
            // SAFETY: signalling our own child's process group (ESRCH if it leads none).
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_port() -> u16 {
    common::testing::free_port()
}

/// Spawn `cmd` so that it dies with this process.
pub fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
    // SAFETY: prctl is async-signal-safe; children die with the benchmark.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// Proportional set size of process `pid` in KiB (shared pages split among their users).
pub fn pss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // Field 4 (ppid) follows the parenthesized command name.
        let ppid: Option<u32> =
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|s| s.parse().ok());
        if let Some(pp) = ppid {
            parent_of.push((p, pp));
        }
    }
    let mut tree = vec![pid];
    let mut k = 0;
    while k < tree.len() {
        let parent = tree[k];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        k += 1;
    }
    tree
}

/// Total PSS of `pid` and its descendants, in KiB.
pub fn tree_pss_kib(pid: u32) -> u64 {
    process_tree(pid).into_iter().map(pss_kib).sum()
}

/// CPU time (user and system) process `pid` has used, in seconds; 0 if it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime are fields 14 and 15; the fields after the parenthesized command
    // name start at field 3.
    let after: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|k| after.get(*k)?.parse::<u64>().ok()).sum();
    // SAFETY: sysconf reads a constant of the running system; it takes no pointers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second.max(1) as f64
}
