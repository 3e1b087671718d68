//! Tools for operators and tests: `mailctl` (`up` runs a local cluster; administration
//! and moves are issue 8's next slices) and `imap-load`, an IMAP load generator that can
//! target any server (ours or a peer such as Dovecot). `aoectl` (issue 3) is not written.

pub mod imap_client;
pub mod imap_load;
pub mod mailctl;
pub mod netns;
pub mod stats;
