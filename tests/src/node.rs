//! A test node: one openraft member on `raftlog`, with the `kv` state machine, the storaged
//! TCP transport for peers, and the control protocol for the test harness.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::control::{ControlReply, ControlRequest, NodeStatus, MAX_CONTROL_FRAME};
use crate::kv::{KvConfig, KvStateMachine, KvWrite};
use anyhow::Context;
use clap::Parser;
use common::frame;
use common::rpc_channel::ClusterKey;
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use raftlog::{Log, Options, RaftLogStore};
use storaged::raft::{serve, Served, TcpNetworkFactory, Untimed};
use tokio::net::{TcpListener, TcpStream};

/// The one Raft group of a test cluster.
const GROUP: &str = "test";

/// Command line of a node.
#[derive(Parser, Debug)]
pub struct NodeArgs {
    #[arg(long)]
    pub id: u64,
    #[arg(long)]
    pub dir: std::path::PathBuf,
    #[arg(long)]
    pub raft: String,
    #[arg(long)]
    pub control: String,
    /// `ID=HOST:PORT`, once per member (including this node).
    #[arg(long = "peer")]
    pub peers: Vec<String>,
}

struct Node {
    id: u64,
    raft: Raft<KvConfig>,
    sm: KvStateMachine,
    members: BTreeMap<u64, BasicNode>,
}

/// Run a node until the process is killed.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .try_init();
    let mut members = BTreeMap::new();
    for p in &args.peers {
        let (id, addr) = p.split_once('=').context("--peer ID=ADDR")?;
        members.insert(id.parse::<u64>()?, BasicNode { addr: addr.to_string() });
    }
    let config = Config {
        cluster_name: "test".into(),
        heartbeat_interval: 150,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: SnapshotPolicy::Never,
        max_payload_entries: 512,
        ..Config::default()
    }
    .validate()?;
    let log = Log::open(&args.dir, Options::default())?;
    eprintln!("node {}: opened log: {:?}", args.id, log.open_report());
    let sm = KvStateMachine::default();
    let key = ClusterKey::from_secret("test cluster key");
    let network = TcpNetworkFactory::new(GROUP, args.id, key.clone());
    let raft = Raft::new(args.id, Arc::new(config), network, RaftLogStore::<KvConfig>::new(log), sm.clone()).await?;
    let raft_listener = TcpListener::bind(&args.raft).await?;
    let groups = Arc::new(std::sync::RwLock::new(std::collections::HashMap::from([(
        GROUP.to_string(),
        Served::new(raft.clone()),
    )])));
    tokio::spawn(serve(raft_listener, groups, key, Arc::new(NoMail), Arc::new(Untimed)));
    let node = Arc::new(Node { id: args.id, raft, sm, members });
    let control = TcpListener::bind(&args.control).await?;
    loop {
        let (stream, _) = control.accept().await?;
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, node).await {
                eprintln!("control connection: {e:#}");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, node: Arc<Node>) -> anyhow::Result<()> {
    let req: ControlRequest = bincode::deserialize(&frame::read(&mut stream, MAX_CONTROL_FRAME).await?)?;
    let reply = match req {
        ControlRequest::Initialize => match node.raft.initialize(node.members.clone()).await {
            Ok(()) => ControlReply::Ok,
            Err(e) => ControlReply::Error(e.to_string()),
        },
        ControlRequest::Status => {
            let m = node.raft.metrics().borrow().clone();
            let s = node.sm.state();
            ControlReply::Status(NodeStatus {
                id: node.id,
                leader: m.current_leader,
                term: m.current_term,
                last_log_index: m.last_log_index,
                applied_index: m.last_applied.map(|l| l.index),
                applied_count: s.applied_count,
                digest: s.digest,
            })
        }
        ControlRequest::Write { first_key, count, value_len, concurrency } => {
            write_many(&node, first_key, count, value_len, concurrency.max(1)).await
        }
    };
    frame::write(&mut stream, &bincode::serialize(&reply)?).await?;
    Ok(())
}

async fn write_many(node: &Node, first_key: u64, count: u64, value_len: usize, concurrency: usize) -> ControlReply {
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = first_key;
    let end = first_key + count;
    let mut last_index = 0;
    loop {
        while tasks.len() < concurrency && next < end {
            let raft = node.raft.clone();
            let value = crate::payload::payload_for(next, value_len, value_len);
            let key = next;
            tasks.spawn(async move { raft.client_write(KvWrite { key, value }).await });
            next += 1;
        }
        let Some(done) = tasks.join_next().await else { break };
        match done {
            Ok(Ok(resp)) => last_index = last_index.max(resp.log_id.index),
            Ok(Err(e)) => {
                tasks.abort_all();
                return match e.forward_to_leader() {
                    Some(f) => ControlReply::NotLeader { leader: f.leader_id },
                    None => ControlReply::Error(e.to_string()),
                };
            }
            Err(e) => return ControlReply::Error(e.to_string()),
        }
    }
    ControlReply::Written { last_index }
}

/// The test cluster keeps key-value pairs, not mail: a peer asking for a message gets none,
/// and its disk always has room.
struct NoMail;

impl storaged::raft::MessageFiles for NoMail {
    fn read(&self, _: &str, _: &str, _: &str, _: u32) -> Result<Option<Vec<u8>>, storaged::raft::server::ReadError> {
        Ok(None)
    }

    fn disk_room(&self) -> bool {
        true
    }
}
