//! Helpers for the whole-system tests. Nothing here is product code: `kv` is a minimal
//! replicated key-value state machine that exercises `raftlog` under openraft, and
//! `control` is the tiny protocol the test harness uses to drive test nodes, and
//! `cluster` starts and watches a local cluster of them; `slapd` runs a throwaway OpenLDAP;
//! `scanners` runs clamd and rspamd; `dovecot` runs a Dovecot IMAP server.

pub mod cluster;
pub mod control;
pub mod dovecot;
pub mod kv;
pub mod node;
pub mod payload;
pub mod scanners;
pub mod slapd;
