//! IMAP access to a user's mailboxes. The command parser is imap-codec's; the pieces
//! here are pure (response syntax, the selected-mailbox view, FETCH sections, SEARCH) plus
//! the session dispatcher over a [`backend::Backend`] and the TCP server at the edge.

pub mod address;
pub mod append;
pub mod backend;
pub mod context;
pub mod encode;
pub mod fetch;
pub mod framing;
pub mod header;
pub mod idle;
pub mod list;
pub mod mime;
pub mod mutf7;
pub mod notify;
pub mod preparse;
pub mod preview;
pub mod recent;
pub mod search;
pub mod sendable;
pub mod server;
pub mod session;
pub mod sort;
pub mod thread;
pub mod view;

pub use server::serve;

#[cfg(test)]
mod tests;
