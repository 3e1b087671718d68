//! `storaged`: a storage node. So far it holds the Raft transport that every group on the
//! node uses; the Maildir state machine and protocol servers arrive with later issues.

pub mod mailstore;
pub mod raft;
