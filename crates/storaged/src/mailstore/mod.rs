//! The mail store of a group: operations, validated names, Maildir++ trees with rkyv
//! indexes, the outbound queue, and the deterministic apply that turns log entries into
//! files.

pub mod digest;
pub mod fates;
pub mod fileio;
pub mod index;
pub mod kept;
pub mod logins;
pub mod metadata;
pub mod names;
pub mod ops;
pub mod queue;
pub mod quota;
pub mod readers;
pub mod rejection;
pub mod scripts;
pub mod sieve_memory;
pub mod snapshot;
pub mod spare;
pub mod staging;
pub mod store;
pub mod tracked;
pub mod training;

pub use names::{Layout, MailboxName, UserName};
pub use ops::{
    FiledCopy, FlagMode, FlagState, MailOp, MailRequest, MailResponse, NewMessage, OpId, Outbound, UserState,
};
pub use rejection::Rejection;
pub use store::{Store, StoreError};
