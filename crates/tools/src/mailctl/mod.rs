//! `mailctl`: run and administer a cluster. `up` starts a whole local cluster on loopback
//! from one command (three storaged nodes serving two mailhosts, one frontd, an LDIF
//! directory with demo users, a private CA and certificate) using the real daemons as
//! separate processes (`mailctl storaged ...` and `mailctl frontd ...` run their code).
//! `user` manages the users of an LDIF directory (or prints the LDIF for an LDAP one);
//! `status` and `queue` ask the storage nodes over their admin protocol; `dkim keygen`
//! makes a signing key and prints its DNS record; `phish` and `block` show and undo what
//! the fronts' phish rules did; `trace` tells where messages went; `restore` brings
//! back what users expunged or deleted; `export` and `import` write and read Maildir++
//! trees with Dovecot's and Courier's UID lists.

pub mod admin;
pub mod cli;
pub mod directory;
pub mod dkim;
pub mod export;
pub mod imap_source;
pub mod import;
mod kept_copy;
pub mod layout;
pub mod maildir_tree;
pub mod mover;
pub mod phish;
pub mod quarantine;
pub mod report;
pub mod restore;
pub mod scanners;
pub mod trace;
pub mod up;
pub mod users;
