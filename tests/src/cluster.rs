//! A local cluster of `raft-node` processes for tests and the demo: start, kill, restart,
//! and poll their status through the control protocol with bounded waits.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::control::{call, ControlReply, ControlRequest, NodeStatus};

/// Child processes and their addresses; killed on drop.
pub struct Cluster {
    pub dirs: Vec<PathBuf>,
    pub raft: Vec<String>,
    pub control: Vec<String>,
    children: Vec<Option<Child>>,
    node_bin: PathBuf,
    node_args: Vec<String>,
}

fn free_port() -> u16 {
    common::testing::free_port()
}

impl Cluster {
    /// Start `n` nodes with data under `root`, each running `node_bin node_args... NODE-FLAGS`.
    pub fn new(root: &Path, n: usize, node_bin: impl Into<PathBuf>, node_args: &[&str]) -> Self {
        let dirs = (1..=n).map(|i| root.join(format!("node{i}"))).collect();
        let raft = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let control = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let mut c = Cluster {
            dirs,
            raft,
            control,
            children: (0..n).map(|_| None).collect(),
            node_bin: node_bin.into(),
            node_args: node_args.iter().map(|a| a.to_string()).collect(),
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    /// (Re)start node `i` (0-based) on its data directory.
    pub fn start(&mut self, i: usize) {
        let mut cmd = Command::new(&self.node_bin);
        cmd.args(&self.node_args);
        cmd.arg("--id").arg((i + 1).to_string());
        cmd.arg("--dir").arg(&self.dirs[i]);
        cmd.arg("--raft").arg(&self.raft[i]).arg("--control").arg(&self.control[i]);
        for (k, addr) in self.raft.iter().enumerate() {
            cmd.arg("--peer").arg(format!("{}={addr}", k + 1));
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it makes
        // the child die with its parent so a crashed test leaves no stray nodes behind.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.children[i] = Some(cmd.spawn().expect("spawn raft-node"));
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Initialize the cluster through node 0, retrying while the nodes start listening.
    pub async fn initialize(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match call(&self.control[0], &ControlRequest::Initialize).await {
                Ok(ControlReply::Ok) => return Ok(()),
                other if Instant::now() >= deadline => anyhow::bail!("initialize: {other:?}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// Status of the node with control address `addr`, if it answers within 2 s.
pub async fn status(addr: &str) -> Option<NodeStatus> {
    match tokio::time::timeout(Duration::from_secs(2), call(addr, &ControlRequest::Status)).await {
        Ok(Ok(ControlReply::Status(s))) => Some(s),
        _ => None,
    }
}

/// Wait up to 60 s until `pred` holds for the statuses of the nodes in `alive`.
pub async fn wait_for(
    c: &Cluster,
    alive: &[usize],
    what: &str,
    pred: impl Fn(&[NodeStatus]) -> bool,
) -> Vec<NodeStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = Vec::new();
        for i in alive {
            if let Some(s) = status(&c.control[*i]).await {
                all.push(s);
            }
        }
        if all.len() == alive.len() && pred(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader all nodes agree on (same leader and term), if any.
pub fn agreed_leader(all: &[NodeStatus]) -> Option<u64> {
    let l = all.first()?.leader?;
    all.iter().all(|s| s.leader == Some(l) && s.term == all[0].term).then_some(l)
}
