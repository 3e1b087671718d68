//! LMTP delivery (RFC 2033): the pure protocol session and the server that runs it.

pub mod filter;
pub mod quota;
pub mod server;
pub mod session;
pub mod vacation;

pub use server::serve;
