//! The one SMTP and LMTP client of the workspace: frontd's LMTP delivery to storage nodes,
//! its outbound MX delivery, the chaos workload and the benchmarks all speak through it, and
//! so will vacation replies, redirects and notifications.
//!
//! - [`reply`]: reading one reply (smtp-proto's parser; one size bound for the whole reply,
//!   the 3-digit code checked, multi-line replies kept).
//! - [`connection`]: a connection with a deadline on every read and write; greeting,
//!   `EHLO`/`LHLO`, `STARTTLS`, the cluster's LMTP `AUTH`.
//! - [`transaction`]: `MAIL`, `RCPT`s, `DATA` and the end-of-data replies (one per accepted
//!   recipient in LMTP), as a transcript the caller maps onto its own outcome.
//! - [`blocking`]: the same for threads without a runtime (tests, chaos, benchmarks).
//!
//! What this must never do: send a message body the server did not invite with `354`, wait
//! without a deadline, or keep an unbounded reply.

pub mod blocking;
pub mod connection;
pub mod reply;
pub mod transaction;

pub use connection::{Connection, Deadlines};
pub use reply::Reply;
pub use transaction::{dot_stuff, dot_stuff_parts, Dialect, Envelope, Transcript};

/// Why a conversation with a server failed (as opposed to the server refusing something,
/// which is a [`Reply`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr}: no answer within {waited_s} s")]
    Timeout { addr: String, waited_s: u64 },
    #[error("{addr}: connection closed")]
    Closed { addr: String },
    #[error("{addr}: malformed reply: {why}")]
    Garbled { addr: String, why: String },
    #[error("{addr}: TLS: {reason}")]
    Tls { addr: String, reason: String },
    /// The server refused a step the conversation cannot go on without (greeting, hello,
    /// STARTTLS, AUTH).
    #[error("{addr}: {reply}")]
    Refused { addr: String, reply: Reply },
}
