//! `tools`: `mailctl` and `aoectl`.
//!
//! Not implemented yet (issues 3 and 8). This crate is an empty member of the workspace so
//! the layout matches the architecture; it exports nothing and must not be used as if it
//! worked.
