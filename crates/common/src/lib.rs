//! Code both daemons need and nothing else: the framing and authentication of internal
//! RPC messages.
//! Keep this crate thin: no protocol logic, no I/O policy beyond reading and writing frames.

pub mod auth;
pub mod frame;
