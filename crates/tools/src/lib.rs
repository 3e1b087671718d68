//! Tools for operators and tests. Now: `imap-load`, an IMAP load generator that can target
//! any server (ours or a peer such as Dovecot). `mailctl` (issue 8) and `aoectl` (issue 3)
//! are not implemented yet.

pub mod imap_client;
pub mod imap_load;
pub mod stats;
