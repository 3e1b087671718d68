//! openraft plumbing for a storage node: RPC message types, the TCP client that implements
//! `RaftNetworkFactory`, the server loop that feeds incoming RPCs to a `Raft`, and what
//! both report of their timing.

pub mod client;
pub mod rpc;
pub mod server;
pub mod snapshot_receipt;
pub mod timing;

pub use client::{TcpNetwork, TcpNetworkFactory};
pub use server::{serve, Groups, MessageFiles, Served};
pub use timing::{RpcTiming, Untimed};
