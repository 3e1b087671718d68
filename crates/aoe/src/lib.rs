//! `aoe`: ATA over Ethernet codec, target and initiator.
//!
//! Not implemented yet (issue 3). This crate is an empty member of the workspace so the
//! layout matches the architecture; it exports nothing and must not be used as if it worked.
