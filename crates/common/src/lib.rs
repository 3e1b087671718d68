//! Code both daemons (`storaged` and `frontd`) need: internal RPC framing, the edges of the
//! text protocols (bounded line reading, TLS, the accept loop), credentials (password
//! hashes, SASL PLAIN, failure throttling, client networks) and the storage nodes' admin
//! protocol (status and the outbound queue). The directory of users is crate `directory`.
//! Nothing protocol- or storage-specific lives here: no IMAP, no Raft, no Maildir.

pub mod accept;
pub mod address;
pub mod admin;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod deflate;
pub mod frame;
pub mod http;
pub mod imap_tag;
pub mod lazy_read;
pub mod limiter;
pub mod line;
pub mod lmtp_auth;
pub mod logins;
pub mod managesieve;
pub mod message_log;
pub mod metrics;
pub mod network;
pub mod password;
pub mod recipient_rules;
pub mod refusing_dns;
pub mod rpc_channel;
pub mod sasl;
pub mod security;
pub mod srs;
pub mod tcp;
pub mod testing;
pub mod throttle;
pub mod tls;
pub mod tracking;
