//! Latency statistics shared by the load generators (kept in `tools`, whose load
//! generators use them too).

pub use tools::stats::p50_p99;
