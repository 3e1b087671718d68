//! A test node process: see `tests::node`.
//!
//! Usage: raft-node --id 1 --dir D --raft 127.0.0.1:7001 --control 127.0.0.1:7101 \
//!          --peer 1=127.0.0.1:7001 --peer 2=... --peer 3=...

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tests::node::run(tests::node::NodeArgs::parse()).await
}
