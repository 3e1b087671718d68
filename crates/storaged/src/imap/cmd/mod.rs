//! The IMAP commands, one module per command group; `session.rs` keeps the state, the
//! pre-parsers' routing and a dispatcher of one line per command. Children of the session
//! module: they see its state, and nothing else does.

mod any_state;
mod append;
mod auth;
mod enable;
mod expunge;
mod fetch;
pub(super) use fetch::email_id;
mod list;
mod mailbox;
mod metadata;
pub(super) mod notify;
mod quota;
pub(super) use quota::root_bytes;
pub(super) mod search;
mod select;
mod status;
