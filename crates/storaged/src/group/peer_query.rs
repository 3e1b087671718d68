//! A question to one peer of the group that is not Raft (`RaftRequest::DiskRoom`,
//! `RaftRequest::LastLogIndex`), over an authenticated connection kept from one question to
//! the next. Bounded in time; an exchange that fails or times out drops the connection
//! (it may be left mid-frame), and the next question makes a new one.

use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::{Group, MailConfig};
use crate::raft::rpc::{self, GroupReply, GroupRequest, RaftReply, RaftRequest, MAX_FRAME_BYTES};

/// A connection to one peer, kept from one question to the next.
pub(super) struct PeerLink {
    addr: String,
    stream: BufReader<TcpStream>,
    ch: common::rpc_channel::Channel,
    session: u64,
    seq: u64,
}

impl Group {
    /// Ask the peer at `raft` `request`, over `link` (made if missing or for another
    /// address); `None` if it does not answer within `timeout`.
    pub(super) async fn ask_peer(
        &self,
        link: &mut Option<PeerLink>,
        raft: &str,
        request: RaftRequest<MailConfig>,
        timeout: Duration,
    ) -> Option<RaftReply<MailConfig>> {
        let ask = async {
            if link.as_ref().is_none_or(|l| l.addr != raft) {
                let mut stream = BufReader::new(TcpStream::connect(raft).await.ok()?);
                let ch = common::rpc_channel::Channel::connect(&mut stream, &self.key).await.ok()?;
                *link = Some(PeerLink { addr: raft.to_string(), stream, ch, session: rand::random(), seq: 0 });
            }
            let l = link.as_mut()?;
            l.seq += 1;
            let request: GroupRequest<MailConfig> =
                GroupRequest { group: self.name.clone(), from: self.node_id, session: l.session, seq: l.seq, request };
            l.ch.write(&mut l.stream, &rpc::encode(&request).ok()?).await.ok()?;
            let reply = l.ch.read(&mut l.stream, MAX_FRAME_BYTES).await.ok()?;
            let reply = rpc::decode::<GroupReply<MailConfig>>(&reply).ok()?;
            (reply.seq == l.seq).then_some(reply.reply)
        };
        let answer = tokio::time::timeout(timeout, ask).await.ok().flatten();
        if answer.is_none() {
            *link = None;
        }
        answer
    }
}
