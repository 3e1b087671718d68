//! Tools for operators and tests: `mailctl` (a local cluster, users, status, the queue,
//! moves, membership), `chaos` (fault injection with a checker), `imap-load` (an IMAP
//! load generator for any server), `aoectl` and `aoe-target` (ATA over Ethernet).

pub mod chaos;
pub mod daemons;
pub mod imap_client;
pub mod imap_load;
pub mod mailctl;
pub mod netns;
pub mod stats;
