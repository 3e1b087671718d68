//! How a cluster on one machine is made, one way for `mailctl up`, the tests, the chaos
//! harness and the benchmarks: storage node and front configurations built as the daemons'
//! own `Config` values (so a new setting is one edit, in its daemon), written as TOML owner-only,
//! and certificates made with rcgen (no `openssl` command). What this must never do: write
//! a configuration by hand-typed TOML text.

pub mod certs;
pub mod front;
pub mod storage;
