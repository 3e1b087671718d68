//! `raftlog`: the durable Raft log of a mailhost group.
//!
//! Every acknowledged mail operation is an entry in this log, so it owns the durability
//! promise of the whole system: an entry whose durability callback has fired survives a
//! crash or power loss intact, and a damaged entry is reported (file and offset), never
//! served or skipped.
//!
//! Layout: a directory of preallocated, fixed-size segment files holding crc32c-framed
//! records ([`record`]), plus a two-slot metadata file ([`meta`]) for the vote and the purge
//! point. One writer thread drives all writes and fdatasyncs through io_uring with group
//! commit ([`writer`]); readers read files directly through an offset index ([`index`]).
//! [`RaftLogStore`] plugs the log into openraft 0.9 as its `RaftLogStorage`.
//!
//! This crate must never acknowledge an entry before its bytes are durable, and never hand
//! out bytes whose checksum and log id it has not verified.

pub mod error;
mod faults;
mod index;
mod log;
pub mod meta;
mod options;
pub mod payload;
pub mod record;
mod recovery;
pub mod segment;
mod shared;
mod slots;
mod store;
mod uring;
mod writer;

pub use error::Error;
pub use log::{Log, LogView};
pub use meta::{Meta, StoredVote};
pub use options::Options;
pub use payload::{LogPayload, PayloadError};
pub use record::{EntryKind, RecordId};
pub use recovery::OpenReport;
pub use shared::Record;
pub use store::{AppendObserver, RaftLogStore, RaftLogStoreReader};
pub use writer::{DurableCallback, EntryIn};
