//! `frontd`: the stateless front node (SMTP, IMAP/POP3 login proxy, directory routing).
//!
//! Not implemented yet (issues 6 and 7). This crate is an empty member of the workspace so
//! the layout matches the architecture; it exports nothing and must not be used as if it
//! worked.
