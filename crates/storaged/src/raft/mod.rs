//! openraft plumbing for a storage node: RPC message types, the TCP client that implements
//! `RaftNetworkFactory`, and the server loop that feeds incoming RPCs to a `Raft`.

pub mod client;
pub mod rpc;
pub mod server;
pub mod snapshot_receipt;

pub use client::{TcpNetwork, TcpNetworkFactory};
pub use server::{serve, Groups, MessageFiles, Served};
