//! SMTP for the Internet (MX, port 25) and for users (submission, 587/465): the strict
//! body assembly (`body`), the protocol state machine (`session`), the MX policy (IP
//! rules, DNS blocklists, deny patterns: `policy`) and the I/O edge (`server`). Local recipients are delivered through [`crate::delivery::Router`]; the
//! `250` to DATA is sent only once the owning group has committed the message.

pub mod body;
pub mod policy;
pub mod server;
pub mod session;
