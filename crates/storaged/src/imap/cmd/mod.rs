//! IMAP commands with a module of their own, as the session's command groups move out of
//! `session.rs` (a child of the session module: they see its state, and nothing else does).

mod append;
mod fetch;
pub(super) mod notify;
pub(super) mod search;
