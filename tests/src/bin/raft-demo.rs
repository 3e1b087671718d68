//! Demo of the replication layer as it stands: start three `raft-node` processes on
//! loopback, elect a leader, commit writes continuously and print each node's state every
//! second until Ctrl-C. Kill a node by its pid from another shell to watch a re-election.
//!
//! Usage: raft-demo [DATA_DIR]   (default: ./raft-demo-data)
//! (`raft-demo node ...` runs one node; the demo starts its nodes that way.)

use std::time::Duration;

use tests::cluster::{agreed_leader, status, wait_for, Cluster};
use tests::control::{call, ControlReply, ControlRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("node") {
        use clap::Parser;
        let args = tests::node::NodeArgs::parse_from(std::env::args().skip(1));
        return tests::node::run(args).await;
    }
    let root = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "raft-demo-data".into()));
    std::fs::create_dir_all(&root)?;
    let node_bin = std::env::current_exe()?;
    // A node that has a vote or entries on disk was initialized before.
    let fresh = !root.join("node1").join("meta").exists();
    let c = Cluster::new(&root, 3, node_bin, &["node"]);
    if fresh {
        c.initialize().await?;
    }
    let st = wait_for(&c, &[0, 1, 2], "a leader", |s| agreed_leader(s).is_some()).await;
    println!("3 nodes up, data under {}; leader is node {:?}. Ctrl-C stops.", root.display(), agreed_leader(&st));
    let mut key = st.iter().map(|s| s.applied_count).max().unwrap_or(0);
    use tokio::signal::unix::{signal, SignalKind};
    // Streams made once keep a signal that arrives while the loop is busy polling nodes;
    // a fresh `ctrl_c()` per iteration would miss it.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let mut leader = None;
        let mut up = 0;
        for (i, addr) in c.control.iter().enumerate() {
            match status(addr).await {
                Some(s) => {
                    up += 1;
                    leader = leader.or(s.leader);
                    println!(
                        "node {}: term {} leader {:?} last log {:?} applied {:?} digest {:08x}",
                        i + 1,
                        s.term,
                        s.leader,
                        s.last_log_index,
                        s.applied_index,
                        s.digest
                    );
                }
                None => println!("node {}: down", i + 1),
            }
        }
        if up == 0 {
            // A terminal's Ctrl-C reaches the nodes too; nothing is left to watch.
            println!("all nodes are down");
            break;
        }
        if let Some(l) = leader {
            let req = ControlRequest::Write { first_key: key, count: 500, value_len: 256, concurrency: 64 };
            if let Ok(ControlReply::Written { .. }) = call(&c.control[l as usize - 1], &req).await {
                key += 500;
            }
        }
        println!();
    }
    println!("stopping");
    Ok(())
}
