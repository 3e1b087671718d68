//! SMTP for the Internet (MX, port 25) and for users (submission, 587/465): the strict
//! body assembly (`body`), the protocol state machine (`session`), the MX policy (DNS
//! blocklists, deny patterns: `policy`; IP rules are `crate::access`), domain-alias
//! rewriting of address headers (`rewrite`), what a user may write as the author of a
//! submitted message (`submission`; signed by `crate::dkim`) and the I/O edge (`server`). Local recipients on one mailhost are
//! delivered through [`crate::delivery::Router`] and the `250` to DATA is sent only once
//! the owning group has committed the message; anything else goes onto the replicated
//! queue ([`crate::queue`]) and `250` means the queue entry is committed.

pub mod body;
pub mod finish;
pub mod memory;
pub mod pace;
pub mod policy;
pub mod refusals;
pub mod rewrite;
pub mod server;
pub mod session;
pub mod submission;
