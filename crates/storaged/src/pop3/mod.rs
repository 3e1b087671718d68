//! POP3 access to a user's INBOX: the pure protocol [`session`] and its TCP [`server`].

pub mod server;
pub mod session;

pub use server::serve;
