//! ManageSieve (RFC 5804) on a storage node: users' Sieve scripts uploaded, listed,
//! activated and removed, on the leader of the user's group. Fronts proxy their clients
//! here after login (as IMAP). The grammar (`common::managesieve`, shared with the front),
//! the session and the server are apart: the session is pure and tested without sockets.

pub mod server;
pub mod session;

pub use server::serve;
