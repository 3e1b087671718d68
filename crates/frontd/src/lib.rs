//! `frontd`: a front node. Users connect here, never to a storage node: mail arrives over
//! SMTP and is delivered to the owning group; for IMAP/POP3 frontd checks the login
//! against the directory, finds the Raft group that owns their mailbox (the
//! directory's `mailHost`) and that group's leader, logs in there with the proxy
//! credential for the user, and splices the session through. Stateless: run as many as
//! needed behind one name. Mail that cannot be delivered at once goes onto a storage
//! group's replicated queue, which any front's runner delivers (locally or outbound).

pub mod access;
pub mod backend;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod imap;
pub mod login;
pub mod managesieve;
pub mod metrics;
pub mod outbound;
pub mod phish;
pub mod pop3;
pub mod queue;
pub mod reports;
pub mod scan;
pub mod server;
pub mod sessions;
pub mod smtp;
pub mod splice;
