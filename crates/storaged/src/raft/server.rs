//! The receiving side of Raft RPC: accept connections and hand each request to the local
//! `Raft`. One task per connection, requests answered in order; a malformed frame closes
//! the connection (the sender reconnects), it never reaches Raft.

use common::frame::{self, FrameError};
use openraft::{BasicNode, Raft, RaftTypeConfig};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use super::rpc::{self, RaftReply, RaftRequest, MAX_FRAME_BYTES};

/// Serve Raft RPCs arriving on `listener` until the listener fails.
pub async fn serve<C>(listener: TcpListener, raft: Raft<C>) -> std::io::Result<()>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    loop {
        let (stream, peer) = listener.accept().await?;
        let raft = raft.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(stream, raft).await {
                tracing::debug!(%peer, error = %e, "raft rpc connection ended");
            }
        });
    }
}

async fn serve_conn<C>(stream: TcpStream, raft: Raft<C>) -> Result<(), FrameError>
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode>,
{
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    loop {
        let body = match frame::read(&mut stream, MAX_FRAME_BYTES).await {
            Ok(b) => b,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let req: RaftRequest<C> =
            rpc::decode(&body).map_err(|e| FrameError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let reply: RaftReply<C> = match req {
            RaftRequest::AppendEntries(r) => RaftReply::AppendEntries(raft.append_entries(r).await),
            RaftRequest::Vote(r) => RaftReply::Vote(raft.vote(r).await),
            RaftRequest::InstallSnapshot(r) => RaftReply::InstallSnapshot(raft.install_snapshot(r).await),
        };
        let out = rpc::encode(&reply).map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
        frame::write(&mut stream, &out).await?;
    }
}
