//! How a cluster on one machine is made, one way for `mailctl up`, the tests, the chaos
//! harness and the benchmarks: storage node configurations built as `storaged`'s own
//! `Config` values (so a new setting is one edit, in `storaged`), written as TOML owner-only,
//! and certificates made with rcgen (no `openssl` command). What this must never do: write
//! a configuration by hand-typed TOML text.

pub mod certs;
pub mod storage;
