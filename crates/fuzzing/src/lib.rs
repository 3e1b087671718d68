//! The fuzz targets' bodies: one module per parser that strangers (or a damaged disk) can
//! feed, each with `run(&[u8])`. A body panics only when the code under test is wrong: a
//! panic inside it, a reply that breaks the protocol's framing, or a round trip that does
//! not hold. `fuzz/` wraps each in a libFuzzer target; `tests/corpus.rs` replays the
//! corpora with the ordinary tests. Nothing here may touch the network or write outside a
//! private temporary directory.

pub mod aoe_codec;
mod harness;
pub mod imap;
pub mod input;
pub mod ldif;
pub mod maildir;
pub mod managesieve;
pub mod mime;
pub mod pop3;
pub mod raftlog_record;
pub mod rpc;
pub mod scan;
pub mod sieve;
pub mod smtp;
pub mod smtp_reply;
pub mod snapshot_archive;
pub mod submission;

/// A target's body.
pub type Body = fn(&[u8]);

/// The targets by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Body)] = &[
    ("aoe_codec", aoe_codec::run),
    ("imap", imap::run),
    ("ldif", ldif::run),
    ("maildir", maildir::run),
    ("managesieve", managesieve::run),
    ("mime", mime::run),
    ("pop3", pop3::run),
    ("raftlog_record", raftlog_record::run),
    ("rpc", rpc::run),
    ("scan", scan::run),
    ("sieve_compile", sieve::compile),
    ("sieve_run", sieve::run),
    ("smtp", smtp::run),
    ("smtp_reply", smtp_reply::run),
    ("snapshot_archive", snapshot_archive::run),
    ("submission", submission::run),
];
