//! `storaged`: a storage node. It hosts replicas of one or more mailhost groups; each group
//! is an openraft instance on a `raftlog` log with the Maildir store as its state machine.
//! Mail arrives over LMTP on the group leader and is acknowledged once committed; the
//! admin listener serves status and each group's replicated outbound queue.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod disk;
pub mod group;
pub mod imap;
pub mod interchange;
pub mod lmtp;
pub mod mailstore;
pub mod managesieve;
pub mod metrics;
pub mod node;
pub mod pop3;
pub mod raft;
pub mod tracking;
pub mod users;

pub use common::{accept, line, tls};
