//! What a peer sends on the internal RPC ports: first as a stranger (handshake and frames
//! from the input, so every tag is wrong and nothing may reach a decoder), then as a peer
//! holding the cluster key (the input as authenticated payloads, which the Raft and admin
//! decoders must refuse cleanly or decode). Frame lengths are bounded before allocation.

use std::cell::RefCell;

use common::admin::{decode as admin_decode, AdminReply, AdminRequest};
use common::frame::FrameError;
use common::rpc_channel::{Channel, ClusterKey};
use storaged::group::sm::MailConfig;
use storaged::raft::rpc::{decode, GroupReply, GroupRequest};
use tokio::io::AsyncWriteExt;

const FRAME_MAX: u32 = 1 << 16;
/// Most frames read from one input (each consumes at least 4 bytes, so this is a bound
/// on the loop, not a real limit).
const FRAMES_MAX: usize = 4096;

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> =
        RefCell::new(tokio::runtime::Builder::new_current_thread().build().expect("runtime"));
}

fn key() -> ClusterKey {
    ClusterKey::from_secret("fuzz cluster key")
}

/// A stranger's bytes: the server must never hand a payload on.
async fn stranger(data: &[u8]) {
    let (mut client, mut server) = tokio::io::duplex(data.len() + 1024);
    client.write_all(data).await.expect("buffer holds the input");
    client.shutdown().await.expect("shutdown");
    let Ok(mut channel) = Channel::accept(&mut server, &key()).await else { return };
    for _ in 0..FRAMES_MAX {
        match channel.read(&mut server, FRAME_MAX).await {
            Ok(payload) => panic!("a frame without a valid tag was accepted: {payload:?}"),
            Err(FrameError::TooLarge { len, max }) => assert!(len > u64::from(max)),
            Err(_) => return,
        }
    }
}

/// A key holder's payload (the whole input), decoded as every message type the nodes
/// exchange.
async fn peer(data: &[u8]) {
    let (mut a, mut b) = tokio::io::duplex(data.len() + 4096);
    let key = key();
    let (client, server) = tokio::join!(Channel::connect(&mut a, &key), Channel::accept(&mut b, &key));
    let (mut client, mut server) = (client.expect("handshake"), server.expect("handshake"));
    client.write(&mut a, data).await.expect("write to buffer");
    let got = server.read(&mut b, FRAME_MAX).await.expect("an authenticated frame is accepted");
    assert_eq!(got, data, "frame round trip");
    let _ = decode::<GroupRequest<MailConfig>>(&got);
    let _ = decode::<GroupReply<MailConfig>>(&got);
    let _ = admin_decode::<AdminRequest>(&got);
    let _ = admin_decode::<AdminReply>(&got);
    // The operation an admin `Propose` carries (a move's `ImportKept` among them).
    let _ = admin_decode::<storaged::mailstore::MailRequest>(&got);
    let _ = admin_decode::<storaged::mailstore::MailOp>(&got);
}

pub fn run(data: &[u8]) {
    RT.with(|rt| {
        rt.borrow().block_on(async {
            stranger(data).await;
            if data.len() <= FRAME_MAX as usize {
                peer(data).await;
            }
        })
    });
}
